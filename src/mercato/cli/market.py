# SPDX-License-Identifier: AGPL-3.0-only
"""Market commands: publish, version add, price set, show, try, buy, orders, download,
refund, review, attest, earnings, withdraw. Each checks its flags, calls one SDK
function and prints."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from mercato.cli.app import app
from mercato.cli.common import (
    AccountOption,
    AddressOption,
    DataDirOption,
    JsonOption,
    PasswordFileOption,
    RpcUrlOption,
    YesOption,
    byte_progress,
    confirm,
    console,
    err_console,
    format_tokens,
    open_market,
    parse_tokens,
    print_json,
    read_address,
    unlock,
)
from mercato.cli.errors import handles_errors
from mercato.cli.trying import TryInput, read_input, show_answer
from mercato.cli.wallet import wallet_app
from mercato.errors import ConfigError, DownloadError, NothingToWithdrawError

if TYPE_CHECKING:
    from mercato.client import Market
    from mercato.client.models import ModelInfo

version_app = typer.Typer(help="Model versions.", no_args_is_help=True)
price_app = typer.Typer(help="Prices and license terms.", no_args_is_help=True)
app.add_typer(version_app, name="version")
app.add_typer(price_app, name="price")

ModelId = Annotated[int, typer.Argument(help="The model's id.", min=1)]


class SortOrder(StrEnum):
    """`mercato.index.Sort`'s values, spelled here so `--help` need not import the index."""

    NEWEST = "newest"
    BEST_RATED = "best_rated"
    MOST_BOUGHT = "most_bought"
    PRICE_LOW = "price_low"
    PRICE_HIGH = "price_high"


def _package_size(path: Path) -> int | None:
    """The bytes a package's files hold, for a progress bar (None if unreadable)."""
    try:
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return None


@app.command()
@handles_errors
def publish(
    path: Annotated[Path, typer.Argument(help="The model package: ONNX + README.md model card.")],
    name: Annotated[
        str | None,
        typer.Option(help="The model's name (default: the card's '# ' title, not the folder)."),
    ] = None,
    price: Annotated[str, typer.Option(help="Price in MCT, e.g. 5 or 0.25; 0 is free.")] = "0",
    license_days: Annotated[
        int, typer.Option(help="License length in days; 0 is perpetual.", min=0)
    ] = 0,
    parent: Annotated[
        list[int] | None, typer.Option(help="A parent model id (repeat for several).")
    ] = None,
    royalty: Annotated[
        list[int] | None, typer.Option(help="Each parent's royalty in basis points, same order.")
    ] = None,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    password_file: PasswordFileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Validate, store (encrypted when paid) and publish a model in one transaction."""
    parents, shares = parent or [], royalty or []
    if len(parents) != len(shares):
        raise ConfigError("Give one --royalty per --parent, in the same order.")
    amount = parse_tokens(price)
    from mercato.client.models import load_named_package

    # Every local check before the password is asked.
    package = load_named_package(path, name)
    missing = package.card.missing_sections()
    if missing and amount:
        from mercato.models.card import require_buyer_sections

        require_buyer_sections(package.card, path=str(package.root))
    if missing:
        err_console.print(
            f"[yellow]warning:[/yellow] the card has no {' and no '.join(missing)} section. "
            "A buyer reads these before paying: add them to README.md before you set a price.",
            highlight=False,
        )
    market = open_market(data_dir, rpc_url, account, password_file)
    step = "Hashing, encrypting and storing" if amount else "Hashing and storing"
    with byte_progress(step, package.total_size) as progress:
        result = market.models.publish(
            package,
            price=amount,
            license_duration=license_days * 86_400,
            parents=parents,
            royalty_bps=shares,
            progress=progress,
        )
    delivery = market.models.delivery_status(result.model_id)
    if json_output:
        print_json(
            {
                "model_id": result.model_id,
                "name": package.name,
                "version": result.version,
                "artifact_cid": str(result.artifact_cid),
                "manifest_cid": str(result.manifest_cid),
                "encrypted": result.encrypted,
                "delivered_by": delivery.by.value,
                "delivery_account": delivery.account,
                "delivery": delivery.message,
            }
        )
        return
    console.print(
        f"Published model [bold]{result.model_id}[/bold] {package.name!r} (version 1)",
        highlight=False,
    )
    console.print(f"artifact {result.artifact_cid}{' (encrypted)' if result.encrypted else ''}")
    console.print(f"manifest {result.manifest_cid}")
    console.print(delivery.message, highlight=False, soft_wrap=True)


@version_app.command("add")
@handles_errors
def version_add(
    model_id: ModelId,
    path: Annotated[Path, typer.Argument(help="The new version's model package.")],
    encrypt: Annotated[
        bool | None,
        typer.Option(
            "--encrypt/--no-encrypt",
            help="Encrypt the version (default: only when the model is paid). A free "
            "model needs an encrypted version before it can be priced.",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    password_file: PasswordFileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Publish a new version of a model you own (it keeps the model's name)."""
    market = open_market(data_dir, rpc_url, signing=False)
    # Every local check before the password is asked.
    package = market.models.version_package(model_id, path)
    market = unlock(market, account, password_file)
    with byte_progress("Hashing and storing", package.total_size) as progress:
        result = market.models.add_version(model_id, package, progress=progress, encrypt=encrypt)
    if json_output:
        print_json(
            {
                "model_id": model_id,
                "version": result.version,
                "artifact_cid": str(result.artifact_cid),
            }
        )
    else:
        console.print(
            f"Model {model_id}: version {result.version} published ({result.artifact_cid})"
        )


@price_app.command("set")
@handles_errors
def price_set(
    model_id: ModelId,
    price: Annotated[str, typer.Argument(help="Price in MCT; 0 is free.")],
    license_days: Annotated[
        int, typer.Option(help="License length in days; 0 is perpetual.", min=0)
    ] = 0,
    off_sale: Annotated[bool, typer.Option("--off-sale", help="Stop new purchases.")] = False,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    password_file: PasswordFileOption = None,
) -> None:
    """Set a model's price and license terms."""
    amount = parse_tokens(price)
    market = open_market(data_dir, rpc_url, account, password_file)
    listing = market.models.set_price(
        model_id, amount, license_duration=license_days * 86_400, for_sale=not off_sale
    )
    state = "for sale" if listing.for_sale else "off sale"
    console.print(f"Model {model_id}: {format_tokens(listing.price)}, {state}")


@app.command()
@handles_errors
def search(
    text: Annotated[
        str | None, typer.Argument(help="Words to find in names, tags and cards.")
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="The card's pipeline_tag, e.g. tabular-classification.")
    ] = None,
    license: Annotated[str | None, typer.Option(help="SPDX license, e.g. MIT.")] = None,
    tag: Annotated[str | None, typer.Option(help="One tag.")] = None,
    min_price: Annotated[str | None, typer.Option(help="Lowest price in MCT.")] = None,
    max_price: Annotated[str | None, typer.Option(help="Highest price in MCT.")] = None,
    free: Annotated[bool, typer.Option("--free", help="Only free models.")] = False,
    min_rating: Annotated[float | None, typer.Option(help="Lowest average rating, 1-5.")] = None,
    creator: Annotated[str | None, typer.Option(help="The creator's address.")] = None,
    derived_from: Annotated[
        int | None, typer.Option(help="Only models built on this model id.")
    ] = None,
    sort: Annotated[SortOrder, typer.Option(help="Order of the results.")] = SortOrder.NEWEST,
    limit: Annotated[int, typer.Option(help="Models per page.", min=1, max=100)] = 20,
    cursor: Annotated[
        str | None, typer.Option(help="The next-page cursor a search printed.")
    ] = None,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Search the marketplace (the index catches up with the chain first)."""
    from mercato.index import SearchQuery, Sort

    market = open_market(data_dir, rpc_url, signing=False)
    query = SearchQuery(
        text=text, task=task, license=license, tag=tag,
        min_price=parse_tokens(min_price) if min_price is not None else None,
        max_price=parse_tokens(max_price) if max_price is not None else None,
        free_only=free, min_rating=min_rating, creator=creator, derived_from=derived_from,
        sort=Sort(sort.value), limit=limit, cursor=cursor,
    )  # fmt: skip
    page = market.models.search(query)
    if json_output:
        print_json(
            {
                "items": [
                    {"model_id": m.model_id, "name": m.name, "creator": m.creator,
                     "task": m.task, "license": m.license, "tags": list(m.tags),
                     "price": m.price, "rating": m.rating, "purchases": m.purchases,
                     "latest_version": m.latest_version}
                    for m in page.items
                ],
                "next_cursor": page.next_cursor,
            }
        )  # fmt: skip
        return
    table = Table("model", "name", "task", "license", "price", "rating", "sales")
    for m in page.items:
        rating = f"{m.rating:.1f}" if m.rating is not None else "-"
        table.add_row(str(m.model_id), m.name or "?", m.task or "-", m.license or "-",
                      format_tokens(m.price), rating, str(m.purchases))  # fmt: skip
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


@app.command()
@handles_errors
def show(
    model_id: ModelId,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show a model: name, description, inputs and outputs, current version, price,
    lineage, ratings, and whether the seller's node answers."""
    market = open_market(data_dir, rpc_url, signing=False)
    info = market.models.show(model_id)
    manifest = market.models.manifest(model_id)
    history = market.reviews.history(model_id)
    reachable = market.models.provider_reachable(info.provider_url)
    card = manifest.get("card")
    description = _description(str(card.get("text", ""))) if isinstance(card, dict) else ""
    current = next((v for v in reversed(info.versions) if not v.deprecated), info.latest)
    if json_output:
        print_json(
            {
                "model_id": info.model_id,
                "name": manifest.get("name"),
                "description": description,
                "inputs": manifest.get("inputs", []),
                "outputs": manifest.get("outputs", []),
                "current_version": current.version,
                "owner": info.owner,
                "price": info.listing.price,
                "license_duration": info.listing.license_duration,
                "for_sale": info.listing.for_sale,
                "provider_url": info.provider_url,
                "provider_reachable": reachable,
                "parents": [{"model_id": p, "royalty_bps": b} for p, b in info.parents],
                "versions": [
                    {
                        "version": v.version,
                        "artifact_cid": str(v.artifact_cid),
                        "manifest_cid": str(v.manifest_cid),
                        "plaintext_sha256": v.plaintext_sha256.hex(),
                        "deprecated": v.deprecated,
                    }
                    for v in info.versions
                ],
                "average_rating": history.average_rating,
                "reviews": len(history.reviews),
                "evaluations": [
                    {"author": e.author, "version": e.version, "metric": e.metric, "score": e.score}
                    for e in history.evaluations
                ],
            }
        )
        return
    name = manifest.get("name") or "(name not available: no store or provider has its manifest)"
    console.print(f"[bold]Model {info.model_id}: {name}[/bold]", highlight=False)
    if description:
        console.print(description, highlight=False, markup=False)
    for label in ("inputs", "outputs"):
        specs = manifest.get(label) or []
        if specs:
            console.print(f"{label}: " + "; ".join(_signature(s) for s in specs), markup=False)
    console.print(
        f"current version {current.version} (of {len(info.versions)}) · owner {info.owner}"
    )
    sale = "for sale" if info.listing.for_sale else "off sale"
    term = (
        f"{info.listing.license_duration // 86_400} days"
        if info.listing.license_duration
        else "perpetual"
    )
    console.print(f"price {format_tokens(info.listing.price)} · {term} license · {sale}")
    if not info.provider_url:
        console.print("seller's node: none recorded (try and delivery are not possible)")
    else:
        state = "reachable" if reachable else "NOT reachable now (try, delivery and download wait)"
        console.print(f"seller's node {info.provider_url}: {state}", highlight=False)
    for parent, bps in info.parents:
        console.print(f"derived from model {parent} (royalty {bps / 100:g}%)")
    table = Table("version", "artifact CID", "status")
    for v in info.versions:
        table.add_row(
            str(v.version), str(v.artifact_cid), "deprecated" if v.deprecated else "current"
        )
    console.print(table)
    rating = f"{history.average_rating:.1f}/5" if history.average_rating else "no reviews yet"
    console.print(
        f"rating {rating} ({len(history.reviews)} reviews), {len(history.evaluations)} evaluations"
    )


def _description(text: str) -> str:
    """The card text's first paragraph that is not a title."""
    for paragraph in text.split("\n\n"):
        stripped = paragraph.strip()
        if stripped and not stripped.startswith("#"):
            return " ".join(stripped.split())
    return ""


def _signature(spec: object) -> str:
    """One input or output of a manifest, e.g. "X float32 [N, 4]"."""
    if not isinstance(spec, dict):
        return "?"
    name, kind = spec.get("name", "?"), spec.get("kind", "tensor")
    if kind != "tensor":
        return f"{name} ({kind})"
    shape = ", ".join(str(d) for d in spec.get("shape") or [])
    return f"{name} {spec.get('dtype', '?')} [{shape}]"


@app.command("try")
@handles_errors
def try_command(
    model_id: ModelId,
    inputs: TryInput,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Run a model on the creator's node before buying it; the weights stay there."""
    from mercato.client.fetching import current_provider_url, post_try
    from mercato.models.runtime.inputs import check_request, request_bytes

    text = read_input(inputs)
    market = open_market(data_dir, rpc_url, signing=False)
    info = market.models.show(model_id)
    manifest = _published_manifest(market, info)
    request = request_bytes(text, manifest.get("inputs") if manifest else None)
    if manifest and isinstance(manifest.get("inputs"), list):
        check_request(request, manifest["inputs"])  # a mistake explained, no call made
    # The owner's URL, called as every URL others choose: checked, capped, no redirects.
    provider = current_provider_url(market, model_id)
    answer = post_try(market, provider, model_id, request)
    show_answer(answer, manifest, json_output)


def _published_manifest(market: Market, info: ModelInfo) -> Mapping[str, Any] | None:
    """The latest version's manifest (its blocks verified against the on-chain digest),
    for input names and class names; None when no store or provider has it."""
    from mercato.client.artifacts import cid_digest
    from mercato.client.metadata import StoreMetadataSource

    manifest = StoreMetadataSource(market).manifest(cid_digest(info.latest.manifest_cid))
    return manifest or None


@app.command()
@handles_errors
def buy(
    model_id: ModelId,
    max_price: Annotated[
        str | None, typer.Option(help="The most to pay in MCT (default: the current price).")
    ] = None,
    wait: Annotated[
        int, typer.Option(help="Seconds to wait for the key; 0 returns at once.", min=0)
    ] = 60,
    yes: YesOption = False,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    password_file: PasswordFileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Buy a license: the price waits in escrow until the creator's node delivers the key.

    Shows the price, how it is split (royalties, fee) and the licence terms, and asks
    first; --yes skips that. The purchase commits to the terms shown: it is refused if
    the creator changes them before it is mined.
    """
    from mercato.client.license_terms import terms_digest, terms_label

    limit = parse_tokens(max_price) if max_price is not None else None
    market = open_market(data_dir, rpc_url, account, signing=False)
    quote = market.orders.quote(model_id)
    terms = market.orders.terms(model_id)
    lines = [f"Model {model_id}: price {format_tokens(quote.price)}"]
    lines += [
        f"  royalty to the owner of model {parent}: {format_tokens(amount)}"
        for parent, amount in quote.royalties
    ]
    lines.append(f"  protocol fee ({quote.fee_bps / 100:g}%): {format_tokens(quote.fee)}")
    lines.append(f"  to the owner {quote.owner}: {format_tokens(quote.owner_share)}")
    if terms is None:
        lines.append(
            "Licence: unknown (the card could not be read); the purchase takes the terms "
            "the listing commits to on-chain"
        )
    else:
        lines.append(f"Licence: {terms_label(terms)}")
        if terms.text:
            lines.append(f"  its text ({len(terms.text):,} characters) is in the model's LICENSE")
        lines.append(f"  terms digest {terms_digest(terms).hex()}")
    if not (yes and json_output):
        err_console.print("\n".join(lines), highlight=False)
    confirm(
        f"Pay {format_tokens(quote.price)} for model {model_id}?",
        f"buy model {model_id} for {format_tokens(quote.price)}",
        yes=yes,
    )
    market = unlock(market, account, password_file)
    with err_console.status("Buying…"):
        # The price the user confirmed is the most the purchase may take.
        order = market.orders.buy(
            model_id, max_price=quote.price if limit is None else limit, terms=terms
        )
    if wait and order.state.name == "PENDING":
        with err_console.status("Waiting for the creator's node to deliver the key…"):
            order = market.orders.wait_for_delivery(model_id, timeout=wait)
    digest = terms_digest(terms).hex() if terms is not None else None
    if json_output:
        print_json(
            {"model_id": model_id, "state": order.state.name.lower(), "price": order.price,
             "license": terms.id if terms is not None else None, "terms_digest": digest}
        )  # fmt: skip
    else:
        console.print(
            f"Model {model_id}: {order.state.name.lower()} ({format_tokens(order.price)})"
            + (f", licence {terms_label(terms)}" if terms is not None else "")
        )


@app.command()
@handles_errors
def orders(
    address: AddressOption = None,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    json_output: JsonOption = False,
) -> None:
    """List your orders and licenses, and when a pending one can be refunded (no password)."""
    from mercato.chain.contracts import LicenseState
    from mercato.errors import local_time

    market = open_market(data_dir, rpc_url, account, signing=False)
    found = market.orders.list(read_address(market, address))
    if json_output:
        print_json(
            [
                {"model_id": o.model_id, "state": o.state.name.lower(), "price": o.price,
                 "licensed": o.licensed, "time": o.time,
                 "terms_digest": o.terms_digest.hex() if o.terms_digest else None,
                 "refund_after": local_time(o.time) if o.state is LicenseState.PENDING else None,
                 "expires": local_time(o.time) if o.licensed and o.time else None}
                for o in found
            ]
        )  # fmt: skip
        return
    table = Table("model", "state", "price", "license", "terms bought", "when")
    for o in found:
        if o.state is LicenseState.PENDING:
            when = f"refund possible after {local_time(o.time)}"
        elif o.licensed:
            when = f"expires {local_time(o.time)}" if o.time else "perpetual"
        else:
            when = ""
        table.add_row(
            str(o.model_id),
            o.state.name.lower(),
            format_tokens(o.price),
            "yes" if o.licensed else "no",
            _terms_cell(o.terms_digest),
            when,
        )
    console.print(table)


def _terms_cell(digest: bytes | None) -> str:
    """A terms digest, shortened for a table ("none stated" for zero bytes)."""
    if digest is None:
        return ""
    return "none stated" if not any(digest) else digest.hex()[:16] + "…"


@app.command()
@handles_errors
def download(
    model_id: ModelId,
    dest: Annotated[Path, typer.Argument(help="A new, empty folder for the model package.")],
    gateway: Annotated[
        str | None, typer.Option(help="Fetch from this IPFS gateway instead of the creator's node.")
    ] = None,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    password_file: PasswordFileOption = None,
) -> None:
    """Download a model you hold a license for, own, or that is free (no password for a
    free model); every block and the sha256 are checked."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DownloadError(f"{dest} is not an empty folder; choose a new folder.")
    market = open_market(data_dir, rpc_url, account, signing=False)
    if market.models.show(model_id).listing.price > 0:
        market = unlock(market, account, password_file)
    with byte_progress("Downloading, verifying and decrypting", None) as progress:
        path = market.orders.download(model_id, dest, gateway=gateway, progress=progress)
    console.print(f"Model {model_id} verified and unpacked into {path}")
    console.print(_download_terms(market, model_id), highlight=False, markup=False)


def _download_terms(market: Market, model_id: int) -> str:
    """Which licence terms the download is under: those bought, else the card's."""
    from mercato.client.license_terms import terms_digest, terms_label

    terms = market.orders.terms(model_id)
    label = terms_label(terms) if terms is not None else "none stated"
    bought = market.orders.terms_bought(model_id) if market.account is not None else None
    if bought is None:
        return f"Licence: {label}"
    if terms is not None and terms_digest(terms) == bought:
        return f"Licence: {label}, as bought (terms digest {bought.hex()})"
    return (
        f"Licence: you bought under terms digest {bought.hex()}; the latest version's card "
        f"now states {label}."
    )


@app.command()
@handles_errors
def refund(
    model_id: ModelId,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    password_file: PasswordFileOption = None,
) -> None:
    """Take back the price of a purchase that was not delivered before its deadline."""
    market = open_market(data_dir, rpc_url, account, password_file)
    order = market.orders.refund(model_id)
    console.print(
        f"Model {model_id}: {order.state.name.lower()}; {format_tokens(order.price)} returned"
    )


@app.command()
@handles_errors
def review(
    model_id: ModelId,
    rating: Annotated[int, typer.Argument(help="1 (worst) to 5 (best).", min=1, max=5)],
    text_cid: Annotated[str | None, typer.Option(help="CID of the review text.")] = None,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    password_file: PasswordFileOption = None,
) -> None:
    """Review a model you hold a license for (again to update your review)."""
    from mercato.storage.cids import parse_cid

    market = open_market(data_dir, rpc_url, account, password_file)
    market.reviews.review(model_id, rating, parse_cid(text_cid) if text_cid else None)
    console.print(f"Model {model_id}: reviewed {rating}/5")


@app.command()
@handles_errors
def attest(
    model_id: ModelId,
    version: Annotated[int, typer.Argument(help="The evaluated version.", min=1)],
    metric: Annotated[str, typer.Argument(help="The metric, e.g. accuracy.")],
    score: Annotated[float, typer.Argument(help="The score, e.g. 0.93.")],
    dataset_cid: Annotated[str, typer.Option(help="CID of the evaluation dataset.")],
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    password_file: PasswordFileOption = None,
) -> None:
    """Attest an evaluation of a model version under your address."""
    from mercato.storage.cids import parse_cid

    market = open_market(data_dir, rpc_url, account, password_file)
    market.reviews.attest(model_id, version, parse_cid(dataset_cid), metric, score)
    console.print(f"Model {model_id} v{version}: {metric} = {score:g} attested")


@wallet_app.command("balance")
@handles_errors
def wallet_balance(
    address: Annotated[
        str | None,
        typer.Argument(help="Any address (default: --account, else your default account)."),
    ] = None,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show MCT, gas and the earnings waiting in the marketplace (no password)."""
    market = open_market(data_dir, rpc_url, account, signing=False)
    who = read_address(market, address)
    balance = market.wallet.balance(who)
    gas = market.wallet.gas_balance(who)
    withdrawable = market.earnings.withdrawable(who)
    if json_output:
        print_json({"address": who, "balance": balance, "gas": gas, "withdrawable": withdrawable})
    else:
        console.print(
            f"{who}: {format_tokens(balance)} (+ {format_tokens(withdrawable)} to withdraw), "
            f"gas {Decimal(gas) / 10**18:f}",
            highlight=False,
        )


@wallet_app.command("faucet")
@handles_errors
def wallet_faucet(
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    password_file: PasswordFileOption = None,
) -> None:
    """On a local chain: give your account gas (native currency) and test MCT."""
    market = open_market(data_dir, rpc_url, account, password_file)
    balance = market.wallet.faucet()
    console.print(
        f"{market.require_account('use the faucet').address}: now {format_tokens(balance)} "
        "and gas for transactions",
        highlight=False,
    )


@app.command()
@handles_errors
def earnings(
    address: AddressOption = None,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    json_output: JsonOption = False,
) -> None:
    """What your sales, royalties and fees earned, per model, and what you can withdraw
    (no password)."""
    market = open_market(data_dir, rpc_url, account, signing=False)
    earned = market.earnings.summary(read_address(market, address))
    if json_output:
        print_json(
            {
                "account": earned.account,
                "credited": earned.credited,
                "withdrawn": earned.withdrawn,
                "withdrawable": earned.withdrawable,
                "models": [
                    {"model_id": m.model_id, "sales": m.sales, "sold": m.sold,
                     "royalties": m.royalties, "fees": m.fees, "total": m.total}
                    for m in earned.per_model
                ],
            }
        )  # fmt: skip
        return
    table = Table("model", "sales", "from sales", "royalties", "fees", "total")
    for m in earned.per_model:
        table.add_row(
            str(m.model_id),
            str(m.sales),
            format_tokens(m.sold),
            format_tokens(m.royalties),
            format_tokens(m.fees),
            format_tokens(m.total),
        )
    console.print(table)
    console.print(
        f"{earned.account}: credited {format_tokens(earned.credited)}, withdrawn "
        f"{format_tokens(earned.withdrawn)}, withdrawable now {format_tokens(earned.withdrawable)}",
        highlight=False,
    )
    if earned.withdrawable:
        console.print("Run 'mercato withdraw' to send it to your account.")


@app.command()
@handles_errors
def withdraw(
    yes: YesOption = False,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    password_file: PasswordFileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Send your earnings (sales, royalties, fees) from the marketplace to your account."""
    market = open_market(data_dir, rpc_url, account, signing=False)
    who = read_address(market, None)
    amount = market.earnings.withdrawable(who)
    if amount == 0:
        raise NothingToWithdrawError(who)
    confirm(
        f"Withdraw {format_tokens(amount)} to {who}?",
        f"withdraw {format_tokens(amount)}",
        yes=yes,
    )
    market = unlock(market, account, password_file)
    done = market.earnings.withdraw()
    if json_output:
        print_json({"account": done.account, "amount": done.amount, "tx_hash": done.tx_hash})
    else:
        console.print(
            f"Withdrew {format_tokens(done.amount)} to {done.account} ({done.tx_hash})",
            highlight=False,
        )
