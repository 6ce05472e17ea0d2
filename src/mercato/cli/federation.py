# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato fl`: federated training tasks.

A requester escrows a reward for a model trained on data it does not have
(`fl create`); data owners stake and join with their own data, which never leaves
their machine (`fl join`); the requester's node coordinates the rounds (`fl run`),
each committed on-chain; shares are posted (`fl finalize`) and everyone takes out what
they are owed (`fl claim`). `fl list`, `fl show` and `fl status` read the index.
Each command checks its flags, calls the SDK and prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mercato.cli.app import app
from mercato.cli.common import (
    AccountOption,
    DataDirOption,
    JsonOption,
    PasswordFileOption,
    RpcUrlOption,
    YesOption,
    confirm,
    console,
    format_tokens,
    open_market,
    parse_tokens,
    print_json,
    read_address,
    unlock,
)
from mercato.cli.errors import handles_errors
from mercato.errors import ConfigError, NothingToClaimError

if TYPE_CHECKING:
    from mercato.client import Market
    from mercato.index.tasks import TaskDetail, TaskSummary

fl_app = typer.Typer(
    help="Federated training tasks: pay data owners to train a model on data that never "
    "leaves them.",
    no_args_is_help=True,
)
app.add_typer(fl_app, name="fl")

TaskId = Annotated[int, typer.Argument(help="The task's id ('mercato fl list').", min=1)]
BPS = 10_000
ENDED = ("finalized", "cancelled", "aborted")
ENDED_STATUS = {3: "finalized", 4: "cancelled", 5: "aborted"}  # the contract's status codes


def _spec_rounds(detail: TaskDetail) -> int | None:
    rounds = (detail.spec or {}).get("rounds")
    return rounds if isinstance(rounds, int) and not isinstance(rounds, bool) else None


def _summary_json(t: TaskSummary) -> dict[str, Any]:
    return {
        "task_id": t.task_id,
        "name": t.name,
        "status": t.status.value,
        "requester": t.requester,
        "coordinator": t.coordinator,
        "reward": t.reward,
        "stake": t.stake,
        "min_participants": t.min_participants,
        "max_participants": t.max_participants,
        "participants": t.participants,
        "rounds": t.rounds,
        "join_deadline": t.join_deadline,
        "finish_deadline": t.finish_deadline,
        "parent_model_id": t.parent_model_id or None,
    }


def _detail_json(d: TaskDetail) -> dict[str, Any]:
    from mercato.federation.spec import scoring_in_effect
    from mercato.index.tasks import spec_cid

    return _summary_json(d.summary) | {
        "description": d.description,
        "spec_cid": spec_cid(d.summary.spec_digest),
        "spec": d.spec,
        "total_rounds": _spec_rounds(d),
        "participant_list": [
            {
                "seat": p.seat,
                "account": p.account,
                "contributed_rounds": p.contributed_rounds,
                "share_bps": p.share_bps,
                "claimed": p.claimed,
            }
            for p in d.participants
        ],
        "round_list": [
            {"round": r.round, "metric": r.metric, "contributors": r.contributors} for r in d.rounds
        ],
        "splitter": d.splitter,
        "result_model_id": d.result_model_id,
        "privacy": d.privacy.__dict__ if d.privacy is not None else None,
        "scoring": scoring_in_effect(d.spec),
    }


def _budget(d: TaskDetail) -> str | None:
    """A task's privacy budget in one line (None: the spec is not here)."""
    if d.privacy is None:
        return "none (no noise added)" if d.spec else None
    p = d.privacy
    return (
        f"epsilon {p.epsilon:.3g} after {p.rounds} round(s), delta {p.delta:.3g}; "
        f"epsilon {p.planned_epsilon:.3g} after all {p.planned_rounds}"
    )


def _when(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


@contextmanager
def round_progress(
    description: str, total: int | None, done: int = 0
) -> Iterator[Callable[[Any], None]]:
    """A Rich progress bar over rounds; yields the callback a round record is passed to."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[metric]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total, completed=done, metric="")

        def on_round(record: Any) -> None:
            metric = getattr(record, "metric", None)
            shown = f"metric {metric:.4f}" if isinstance(metric, float) else ""
            bar.update(task, completed=int(getattr(record, "round", done)), metric=shown)

        yield on_round


@fl_app.command("list")
@handles_errors
def list_tasks(
    text: Annotated[
        str | None, typer.Argument(help="Words of the task's name or description.")
    ] = None,
    status: Annotated[
        str | None, typer.Option(help="open, running, finalized, cancelled or aborted.")
    ] = None,
    mine: Annotated[
        bool, typer.Option("--mine", help="Only tasks your account created or joined.")
    ] = False,
    limit: Annotated[int, typer.Option(help="Tasks per page.", min=1, max=100)] = 20,
    before: Annotated[
        int | None, typer.Option(help="The 'more:' id a list printed.", min=1)
    ] = None,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    json_output: JsonOption = False,
) -> None:
    """List training tasks, newest first (the index catches up with the chain first)."""
    from mercato.index.tasks import TaskQuery, TaskStatus

    try:
        wanted = TaskStatus(status) if status else None
    except ValueError as exc:
        choices = ", ".join(s.value for s in TaskStatus)
        raise ConfigError(f"--status must be one of {choices}, not {status!r}.") from exc
    market = open_market(data_dir, rpc_url, account, signing=False)
    who = read_address(market, account) if mine else None
    index = market.synced_index()
    query = TaskQuery(text=text, status=wanted, limit=limit, before=before)
    if who is None:
        page = index.tasks(query)
        items, more = page.items, page.next_before
    else:  # created or joined: two queries, merged newest first
        created = index.tasks(TaskQuery(**{**query.__dict__, "requester": who})).items
        joined = index.tasks(TaskQuery(**{**query.__dict__, "participant": who})).items
        merged = {t.task_id: t for t in [*created, *joined]}
        items = sorted(merged.values(), key=lambda t: -t.task_id)[:limit]
        more = items[-1].task_id if len(merged) > limit else None
    if json_output:
        print_json({"items": [_summary_json(t) for t in items], "next_before": more})
        return
    if not items:
        console.print("No task matches.")
        return
    table = Table("task", "name", "status", "reward", "stake", "seats", "rounds", "joins close")
    for t in items:
        table.add_row(
            str(t.task_id),
            t.name or "?",
            t.status.value,
            format_tokens(t.reward),
            format_tokens(t.stake),
            f"{t.participants}/{t.max_participants} (min {t.min_participants})",
            str(t.rounds),
            _when(t.join_deadline),
        )
    console.print(table)
    if more:
        console.print(f"more: --before {more}")


def _detail(market: Market, task_id: int) -> TaskDetail:
    return market.synced_index().task(task_id)


@fl_app.command()
@handles_errors
def show(
    task_id: TaskId,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show a task: terms, spec (the data schema to match), participants and result."""
    from mercato.federation.spec import scoring_terms
    from mercato.index.tasks import spec_cid, spec_terms

    market = open_market(data_dir, rpc_url, signing=False)
    d = _detail(market, task_id)
    if json_output:
        print_json(_detail_json(d))
        return
    t = d.summary
    console.print(
        f"[bold]Task {t.task_id}[/bold] {t.name or '(spec not here yet)'} · {t.status.value}",
        highlight=False,
    )
    if d.description:
        console.print(d.description, highlight=False, markup=False)
    table = Table(show_header=False, box=None)
    rows = [
        ("reward", format_tokens(t.reward)),
        ("stake", f"{format_tokens(t.stake)} per participant"),
        (
            "seats",
            f"{t.participants} joined, {t.min_participants} needed, {t.max_participants} at most",
        ),
        ("joins close", _when(t.join_deadline)),
        ("finish by", _when(t.finish_deadline)),
        ("requester", t.requester),
        ("coordinator", t.coordinator),
        ("spec", spec_cid(t.spec_digest)),
        (
            "starting model",
            f"model {t.parent_model_id}" if t.parent_model_id else "the ONNX file the spec names",
        ),
        *spec_terms(d.spec, format_tokens),
        *scoring_terms(d.spec),
    ]
    budget = _budget(d)
    if budget is not None:
        rows.append(("privacy budget", budget))
    if d.result_model_id is not None:
        rows.append(("result", f"model {d.result_model_id} ('mercato show {d.result_model_id}')"))
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
    if t.status.value == "open":
        console.print(
            f"Join with your data: mercato fl join {t.task_id} --data PATH", highlight=False
        )


@fl_app.command()
@handles_errors
def status(
    task_id: TaskId,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", help="Keep showing rounds as they are committed, until the task ends."
        ),
    ] = False,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Rounds done, the metric per round and the participants of a task."""
    market = open_market(data_dir, rpc_url, signing=False)
    d = _detail(market, task_id)
    if follow and not json_output and d.summary.status.value not in ENDED:
        with round_progress(f"Task {task_id}", _spec_rounds(d), d.summary.rounds) as on_round:
            while d.summary.status.value not in ENDED:
                for r in d.rounds:
                    on_round(r)
                time.sleep(2.0)
                d = _detail(market, task_id)
            for r in d.rounds:
                on_round(r)
    if json_output:
        print_json(_detail_json(d))
        return
    t = d.summary
    total = _spec_rounds(d)
    console.print(
        f"Task {t.task_id}: {t.status.value}, {t.rounds}"
        f"{f' of {total}' if total else ''} rounds committed",
        highlight=False,
    )
    if d.privacy is not None:
        console.print(f"Privacy budget: {_budget(d)}", highlight=False)
    if d.rounds:
        rounds = Table("round", "metric", "contributors (seats)")
        for r in d.rounds:
            rounds.add_row(
                str(r.round), f"{r.metric:.4f}", ", ".join(map(str, r.contributors)) or "-"
            )
        console.print(rounds)
    people = Table("seat", "account", "rounds contributed", "share", "claimed")
    for p in d.participants:
        share = f"{p.share_bps / 100:g}%" if p.share_bps is not None else "-"
        people.add_row(
            str(p.seat),
            p.account,
            str(p.contributed_rounds),
            share,
            format_tokens(p.claimed) if p.claimed else "-",
        )
    console.print(people if d.participants else "Nobody joined yet.")


def _chain_now(market: Market) -> int:
    return int(market.w3.eth.get_block("latest")["timestamp"])


@fl_app.command()
@handles_errors
def create(
    spec_path: Annotated[
        Path, typer.Argument(help="The task spec (TOML): model, learner, data schema, rounds.")
    ],
    reward: Annotated[
        str, typer.Option(help="Reward in MCT, escrowed now and shared by contribution.")
    ],
    stake: Annotated[
        str,
        typer.Option(
            help="MCT each data owner stakes to join (returned unless it never contributes)."
        ),
    ] = "0",
    join_hours: Annotated[
        float, typer.Option(help="Hours data owners have to join.", min=0.01)
    ] = 24.0,
    finish_hours: Annotated[
        float,
        typer.Option(
            help="Hours until the task must be finalized (else anyone may abort it and "
            "everything is refunded).",
            min=0.02,
        ),
    ] = 72.0,
    coordinator: Annotated[
        str | None,
        typer.Option(help="The account that runs the rounds and commits them (default: yours)."),
    ] = None,
    superlink: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT where data owners reach this node's SuperLink (Flower's Fleet "
            "API), when the spec names no coordinator_address."
        ),
    ] = None,
    validation: Annotated[
        Path | None,
        typer.Option(
            help="Your validation set (CSV or .npz, the task's schema, at most 2 MiB): the "
            "task is scored on it (robust aggregation, each data owner paid by measured "
            "contribution). Its CID goes into the spec now; the file stays private on this "
            "node until you reveal it after the task ends ('mercato fl reveal').",
        ),
    ] = None,
    yes: YesOption = False,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    password_file: PasswordFileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Post a training task: store its spec and escrow the reward in one transaction."""
    from mercato.federation.spec import TaskSpec, store_spec
    from mercato.wallet import parse_address

    reward_units, stake_units = parse_tokens(reward), parse_tokens(stake)
    if reward_units == 0:
        raise ConfigError("--reward must be more than 0 MCT: it is what data owners are paid.")
    if finish_hours <= join_hours:
        raise ConfigError(
            "--finish-hours must be later than --join-hours: the rounds run after joining closes."
        )
    chosen = parse_address(coordinator) if coordinator else None
    market = open_market(data_dir, rpc_url, account, signing=False)
    validation_cid = ""
    if validation is not None:
        from mercato.errors import LocalDataError
        from mercato.federation.spec import raw_cid_for

        try:
            validation_cid = str(raw_cid_for(validation.read_bytes()))
        except OSError as exc:
            raise LocalDataError(validation, f"it cannot be read ({exc})") from exc
    spec = TaskSpec.from_toml(spec_path, store=market.store, validation_cid=validation_cid)
    if validation is not None:
        from mercato.federation.validation import keep_validation

        keep_validation(market.settings.data_dir, validation, spec)  # checks the schema too
    elif spec.privacy == "none":
        Console(stderr=True).print(
            "[yellow]No --validation set: the task is not scored; shares follow the examples "
            "each data owner claims, which a free-rider can inflate.[/yellow]",
            highlight=False,
        )
    spec, tls_dir = _with_superlink(market, spec, superlink)
    confirm(
        f"Create task {spec.name!r}: escrow {format_tokens(reward_units)} now; "
        f"{spec.min_participants} to {spec.max_participants} data owners stake "
        f"{format_tokens(stake_units)} each. Go ahead?",
        "create the task",
        yes=yes,
    )
    market = unlock(market, account, password_file)
    if spec.initial_model.model_id:
        # Fetched, opened with this account's licence and checked against the spec now,
        # so a model the task cannot start from is refused before the reward is escrowed.
        from mercato.federation.initial import RegistryModels, load_initial_params

        load_initial_params(spec, RegistryModels(market))
    cid = store_spec(market.store, spec)
    now = _chain_now(market)
    task_id = market.federation.create(
        cid,
        reward=reward_units,
        stake=stake_units,
        min_participants=spec.min_participants,
        max_participants=spec.max_participants,
        join_deadline=now + round(join_hours * 3600),
        finish_deadline=now + round(finish_hours * 3600),
        coordinator=chosen,
        parent_model_id=spec.initial_model.model_id,
        parent_royalty_bps=spec.parent_royalty_bps if spec.initial_model.model_id else 0,
    )
    if tls_dir is not None:  # the SuperLink of `fl run` finds its certificate here
        from mercato.federation.checkpoint import task_dir

        target = task_dir(market.settings.data_dir, market.chain_id, task_id) / "superlink"
        target.mkdir(parents=True, exist_ok=True)
        tls_dir.rename(target / "tls")
    if json_output:
        print_json(
            {"task_id": task_id, "spec_cid": str(cid), "reward": reward_units, "stake": stake_units}
        )
        return
    console.print(
        f"Created task [bold]{task_id}[/bold] {spec.name!r} (spec {cid})", highlight=False
    )
    console.print(f"Data owners join with: mercato fl join {task_id} --data PATH", highlight=False)


def _with_superlink(market: Market, spec: Any, superlink: str | None) -> tuple[Any, Path | None]:
    """The spec with the SuperLink's address and TLS root certificate, made for this node
    when the spec names none (returns the new TLS folder, to move under the task)."""
    import dataclasses
    import secrets

    from mercato.federation.runtime import make_tls
    from mercato.federation.spec import store_bytes

    if superlink:
        spec = dataclasses.replace(spec, coordinator_address=superlink)
    if not spec.coordinator_address:
        raise ConfigError(
            "Say where data owners reach your SuperLink: --superlink HOST:PORT (a public "
            "address for a real federation, 127.0.0.1:PORT on one machine)."
        )
    if spec.tls_root_cid:
        return spec, None
    host = spec.coordinator_address.rsplit(":", 1)[0].strip("[]")
    folder = market.settings.data_dir / "federation" / f"new-tls-{secrets.token_hex(8)}"
    tls = make_tls(folder, host)
    root = store_bytes(market.store, tls.ca.read_bytes())
    return dataclasses.replace(spec, tls_root_cid=str(root)), folder


def _default_shares(d: TaskDetail) -> list[int]:
    """Equal shares for the seats that contributed to any round (to every round, for a
    private task: a drop-out forfeits), 0 for the others (the remainder of the division
    goes to the lowest paid seats)."""
    by_round = [set(r.contributors) for r in d.rounds]
    private = (d.spec or {}).get("privacy", "none") == "private"
    paid = set.intersection(*by_round) if private and by_round else set().union(*by_round)
    contributed = sorted(paid)
    seats = len(d.participants)
    if not contributed:
        raise ConfigError(
            f"No seat of task {d.summary.task_id} contributed to "
            f"{'every' if private else 'a'} committed round; nothing to share."
        )
    shares = [0] * seats
    base, rest = divmod(BPS, len(contributed))
    for i, seat in enumerate(contributed):
        if seat < seats:
            shares[seat] = base + (1 if i < rest else 0)
    return shares


def _is_scored(d: TaskDetail) -> bool:
    scoring = (d.spec or {}).get("scoring")
    return (d.spec or {}).get("privacy", "none") == "none" and bool(
        isinstance(scoring, dict) and scoring.get("validation_cid")
    )


def _parse_shares(text: str, seats: int) -> list[int]:
    try:
        shares = [int(part) for part in text.split(",")]
    except ValueError as exc:
        raise ConfigError(
            f"--shares must be basis points per seat, like 6000,4000,0; not {text!r}."
        ) from exc
    if len(shares) != seats or any(s < 0 for s in shares) or sum(shares) != BPS:
        raise ConfigError(
            f"--shares needs one value per seat ({seats}), none negative, summing to "
            f"10000; got {text!r}."
        )
    return shares


@fl_app.command()
@handles_errors
def finalize(
    task_id: TaskId,
    shares: Annotated[
        str | None,
        typer.Option(
            help="Basis points per seat, in seat order, summing to 10000 (default: a "
            "scored task's shares from its published evidence; otherwise equal among the "
            "seats that contributed)."
        ),
    ] = None,
    yes: YesOption = False,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    password_file: PasswordFileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Post each seat's share of the reward (coordinator only).

    A seat given 0 (it never contributed, or scored nothing) forfeits its stake to
    the seats with a share.
    """
    market = open_market(data_dir, rpc_url, account, signing=False)
    d = _detail(market, task_id)
    if shares:
        posted = _parse_shares(shares, len(d.participants))
    elif _is_scored(d):
        posted = market.federation.scored_shares(task_id)
    else:
        posted = _default_shares(d)
    listing = ", ".join(f"seat {i}: {s / 100:g}%" for i, s in enumerate(posted))
    confirm(f"Finalize task {task_id} with {listing}?", f"finalize task {task_id}", yes=yes)
    market = unlock(market, account, password_file)
    market.federation.finalize(task_id, posted)
    if json_output:
        print_json({"task_id": task_id, "shares": posted})
        return
    console.print(f"Task {task_id} finalized: {listing}", highlight=False)


@fl_app.command()
@handles_errors
def claim(
    task_id: TaskId,
    yes: YesOption = False,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    password_file: PasswordFileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Take out what a task owes you.

    Your stake and reward share once finalized (nothing if your share is 0: the stake
    is forfeited), or your refund once cancelled or aborted (the requester's reward too).
    """
    market = open_market(data_dir, rpc_url, account, signing=False)
    who = read_address(market, account)
    owed = market.federation.claimable(task_id, who)
    if owed == 0:
        raise NothingToClaimError(task_id, who)
    confirm(
        f"Claim {format_tokens(owed)} from task {task_id} to {who}?",
        f"claim from task {task_id}",
        yes=yes,
    )
    market = unlock(market, account, password_file)
    paid = market.federation.claim(task_id)
    if json_output:
        print_json({"task_id": task_id, "account": who, "amount": paid})
        return
    console.print(f"Claimed {format_tokens(paid)} from task {task_id} to {who}", highlight=False)


def _task_files(market: Market, task_id: int) -> Any:
    """The task (from the chain) with its spec and TLS root certificate in this node's
    store, fetched from its requester's or coordinator's node when missing.

    Raises:
        FederationTaskNotFoundError: No such task.
        FederationSpecError: The spec or certificate cannot be had, or the spec is invalid.
    """
    from mercato.client.metadata import MAX_SPEC, fetch_from_accounts
    from mercato.errors import FederationSpecError
    from mercato.federation.spec import load_spec
    from mercato.storage.cids import parse_cid

    task = market.federation.task(task_id)
    parties = [task.requester, task.coordinator]
    if not fetch_from_accounts(market, task.spec_cid, parties, 2 * MAX_SPEC):
        raise FederationSpecError(
            f"Task {task_id}'s spec {task.spec_cid} is not reachable: its requester's and "
            "coordinator's nodes do not serve it now. Try again when they are up."
        )
    spec = load_spec(market.store.get(task.spec_cid))
    if spec.tls_root_cid and not fetch_from_accounts(
        market, parse_cid(spec.tls_root_cid), parties, 64 * 1024
    ):
        raise FederationSpecError(
            f"Task {task_id}'s SuperLink certificate {spec.tls_root_cid} is not reachable."
        )
    return task, spec


def _follow_rounds(market: Market, task_id: int, total: int, stop: Callable[[], bool]) -> int:
    """Shows committed rounds as a progress bar until the task ends; returns its status."""
    with round_progress(f"Task {task_id}", total) as on_round:
        while True:
            task = market.federation.task(task_id)
            for record in market.federation.rounds(task_id)[-1:]:
                on_round(record)
            if int(task.status) in ENDED_STATUS or stop():
                return int(task.status)
            time.sleep(2.0)


@fl_app.command()
@handles_errors
def join(
    task_id: TaskId,
    data: Annotated[
        Path, typer.Option(help="Your data: a CSV or .npz file matching the task's input schema.")
    ],
    superlink: Annotated[
        str | None, typer.Option(help="HOST:PORT of the SuperLink, instead of the spec's.")
    ] = None,
    yes: YesOption = False,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    password_file: PasswordFileOption = None,
) -> None:
    """Join a task with your data and train until it ends.

    The data is checked against the spec first (nothing is sent when it does not
    match), then you stake, this machine's SuperNode key is bound on-chain, and the
    SuperNode trains. Only model parameters and metrics leave this machine.
    """
    from mercato.federation.data import load_local_data
    from mercato.federation.participant import start_participant

    market = open_market(data_dir, rpc_url, account, signing=False)
    task, spec = _task_files(market, task_id)
    rows, _ = load_local_data(data, spec)
    who = read_address(market, account)
    seated = any(p.account == who for p in market.federation.participants(task_id))
    if not seated:
        confirm(
            f"Join task {task_id} {spec.name!r} with {len(rows)} rows of {data.name}, "
            f"staking {format_tokens(int(task.stake))}?",
            f"join task {task_id}",
            yes=yes,
        )
    market = unlock(market, account, password_file)
    node = start_participant(
        market.federation,
        market.store,
        who,
        task_id,
        data,
        market.settings.data_dir / "federation",
        superlink_address=superlink,
    )

    def stopped() -> bool:
        return node.process is not None and node.process.poll() is not None

    try:
        status = _follow_rounds(market, task_id, spec.rounds, stopped)
    finally:
        node.stop()
    if status in ENDED_STATUS:
        console.print(
            f"Task {task_id} is {ENDED_STATUS[status]}: 'mercato fl claim {task_id}' takes "
            "out what it owes you.",
            highlight=False,
        )
    else:
        from mercato.errors import FederationRuntimeError

        raise FederationRuntimeError(
            "SuperNode", f"it stopped before the task ended; its log is {node.log_path}"
        )


def _key_source(market: Market, task_id: int) -> Callable[[bytes], bytes | None]:
    """Finds a participant's public key by the hash it bound: in this node's store, else
    from that participant's own node (its recorded provider URL), nowhere else."""
    from mercato.client.metadata import fetch_from_accounts
    from mercato.federation.coordinator import raw_cid_for_digest

    def find(digest: bytes) -> bytes | None:
        cid = raw_cid_for_digest(digest)
        owners = [
            p.account
            for p in market.federation.participants(task_id)
            if bytes(p.node_key_hash) == bytes(digest)
        ]
        if fetch_from_accounts(market, cid, owners, 16 * 1024):
            return market.store.get(cid)
        return None

    return find


@fl_app.command()
@handles_errors
def run(
    task_id: TaskId,
    evaluate_on: Annotated[
        Path | None,
        typer.Option(
            "--eval",
            help="Your held-out data (CSV or .npz, the task's schema): each round's metric is "
            "measured on it. It never leaves this machine.",
        ),
    ] = None,
    validation: Annotated[
        Path | None,
        typer.Option(
            help="A scored task's validation set, when this node did not create the task "
            "(default: the copy 'fl create --validation' kept here).",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="The address the SuperLink binds.")] = "127.0.0.1",
    retry_seconds: Annotated[
        float,
        typer.Option(
            min=1,
            max=86_400,
            help="How long to wait for enough SuperNodes, and to resend a round that got too "
            "few updates, before the run stops (run the command again to resume).",
        ),
    ] = 600.0,
    no_publish: Annotated[
        bool, typer.Option("--no-publish", help="Stop after the last round (finalize later).")
    ] = False,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    password_file: PasswordFileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Coordinate a task's rounds (its coordinator only).

    Runs the SuperLink, admits exactly the SuperNode keys that joined on-chain, commits
    each round, then finalizes with shares by contribution and publishes the trained
    model through the task's revenue splitter. Resumes from the last committed round
    after a restart.
    """
    from mercato.federation.checkpoint import task_dir
    from mercato.federation.coordinator import Coordinator, accuracy_on
    from mercato.federation.data import load_local_data
    from mercato.federation.initial import RegistryModels

    market = open_market(data_dir, rpc_url, account, signing=False)
    _, spec = _task_files(market, task_id)
    evaluate = None
    if evaluate_on is not None:
        evaluate = accuracy_on(*load_local_data(evaluate_on, spec))
    validation_bytes = _validation_for(market, spec, validation)
    market = unlock(market, account, password_file)
    with round_progress(f"Task {task_id}", spec.rounds) as on_round:
        coordinator = Coordinator(
            market.federation,
            market.store,
            task_id,
            task_dir(market.settings.data_dir, market.chain_id, task_id),
            key_source=_key_source(market, task_id),
            evaluate=evaluate,
            host=host,
            retry_seconds=retry_seconds,
            on_round=lambda r, m: on_round(_Round(r, m)),
            validation=validation_bytes,
            initial_source=RegistryModels(market),
        )
        model_id = coordinator.run(publish=not no_publish)
    if json_output:
        print_json({"task_id": task_id, "model_id": model_id})
    elif model_id is not None:
        console.print(
            f"Task {task_id} finalized; the trained model is model {model_id}.", highlight=False
        )
    else:
        console.print(f"Task {task_id}: every round committed.", highlight=False)


@dataclass(frozen=True)
class _Round:
    """A committed round as the progress bar reads it."""

    round: int
    metric: float


def _validation_for(market: Market, spec: Any, path: Path | None) -> bytes | None:
    """A scored task's validation set for 'fl run': the file given, else this node's copy."""
    from mercato.errors import LocalDataError
    from mercato.federation.spec import is_scored, scoring_of
    from mercato.federation.validation import kept_validation

    if not is_scored(spec):
        return None
    if path is not None:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise LocalDataError(path, f"it cannot be read ({exc})") from exc
    return kept_validation(market.settings.data_dir, scoring_of(spec).validation_cid)


@fl_app.command()
@handles_errors
def reveal(
    task_id: TaskId,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    json_output: JsonOption = False,
) -> None:
    """Reveal an ended scored task's validation set (its requester only).

    This node then serves it by the CID the spec committed to, so anyone can check
    the published scores with 'mercato fl verify'. Refused before the task ends.
    """
    market = open_market(data_dir, rpc_url, account, signing=False)
    cid = market.federation.reveal_validation(task_id, read_address(market, account))
    if json_output:
        print_json({"task_id": task_id, "validation_cid": str(cid)})
        return
    console.print(
        f"Task {task_id}'s validation set {cid} is served by this node; anyone can now run "
        f"'mercato fl verify {task_id}'.",
        highlight=False,
    )


@fl_app.command()
@handles_errors
def verify(
    task_id: TaskId,
    validation: Annotated[
        Path | None,
        typer.Option(help="The validation file (default: fetch the one the requester revealed)."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Your own data file (the one you joined with): your leave-one-out score is "
            "recomputed for every round you took part in."
        ),
    ] = None,
    updates: Annotated[
        Path | None,
        typer.Option(
            help="The updates your node kept as sent (<data dir>/federation/task-ID/updates; "
            "the default with --data when the task adds local DP noise): your update digest "
            "and leave-one-out score are checked against them."
        ),
    ] = None,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check a scored task's published evidence against the chain (anyone).

    Every round's record is fetched by the CID committed on-chain and checked against
    the chain and the spec, the validation set against the spec's CID, and the
    finalized shares against the published scores, and every round's global model is
    re-hashed against its digest. With --data, your own scores are recomputed; with
    --updates (or --data on a task with local DP), against the updates your node kept.
    Exit code 120 names the round that disagrees, 123 a round whose digest or score for
    your seat is not what the update you sent gives.
    """
    market = open_market(data_dir, rpc_url, account, signing=False)
    own = data is not None or updates is not None
    who = read_address(market, account) if own else None
    report = market.federation.verify(
        task_id, validation=validation, data=data, account=who, updates=updates
    )
    if json_output:
        print_json(
            {
                "task_id": task_id,
                "rounds": report.rounds,
                "seat": report.seat,
                "scores": [
                    {"round": v.round, "published": v.published, "recomputed": v.recomputed}
                    for v in report.verdicts
                ],
                "shares_checked": report.shares_checked,
                "validation_checked": report.validation_checked,
            }
        )
        return
    console.print(
        f"Task {task_id}: the evidence of rounds {', '.join(map(str, report.rounds)) or '-'} "
        "matches the chain and the spec.",
        highlight=False,
    )
    if report.seat is not None:
        for v in report.verdicts:
            shown = "scored in a Sybil group" if v.recomputed is None else f"{v.recomputed:.6f}"
            console.print(
                f"  round {v.round}: seat {report.seat} published {v.published:.6f}, "
                f"recomputed {shown}",
                highlight=False,
            )
    if report.shares_checked:
        console.print("The finalized shares are what the published scores give.")
    if not report.validation_checked:
        console.print(
            "The validation set is not revealed yet: scores were not recomputed.",
            highlight=False,
        )
