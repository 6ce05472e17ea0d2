# SPDX-License-Identifier: AGPL-3.0-only
"""Denylists in the IPFS compact denylist format (IPIP-383), as kubo and NOpfs read it.

A list is an optional YAML header ended by a `---` line, then one rule a line:

    version: 1
    name: Example list
    ---
    # comments and blank lines are ignored
    /ipfs/bafy...                      a CID, by its multihash (any codec, v0 or v1)
    /ipfs/bafy.../path                 a path under a CID; `path*` or `path/*` a prefix
    //Qm...                            a double-hashed CID or path (base58 sha2-256 multihash)
    //9f86d0...                        a legacy badbits double hash (hex sha256)
    /ipns/name                         IPNS (kept, never served here)
    !/ipfs/bafy...                     an allow rule: the last rule that matches wins
    /ipfs/bafy... reason=malware       hints after the rule, space-separated key=value

Mercato's own entries are double-hash rules, so every list Mercato writes is a list
kubo reads (it hashes nothing that could ever match them, so it ignores them), while
hints say what they mean to a Mercato node:

    //<anchor> mercato.model=42 reason=illegal%20content
    //<anchor> mercato.creator=0xAbC... reason=malware

The anchor is the base58 sha2-256 multihash of `mercato/model/42` or
`mercato/creator/<lower-case address>`; a Mercato entry whose anchor does not match
its hint is refused, so a list cannot say one thing to kubo and another to Mercato.
Hint values are %-encoded (RFC 3986) as rules are, so reasons may hold spaces.

A malformed line is reported with its number and skipped (NOpfs does the same); a list
past the size limits is refused whole.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

import yaml
from eth_utils import is_address, to_checksum_address
from multiformats import CID, multihash
from multiformats.multibase import get as get_multibase

from mercato.errors import DenylistFormatError, DenylistTooLargeError

MAX_HEADER_BYTES = 1024 * 1024  # the spec's header limit
MAX_LINE_BYTES = 2 * 1024 * 1024  # the spec's line limit
MAX_LIST_BYTES = 64 * 1024 * 1024  # what one list may hold here, all lines together
MAX_RULES = 1_000_000  # rules one list may hold here
MAX_REASON_CHARS = 500  # characters of a reason a node stores or shows
MAX_ERRORS_KEPT = 100  # bad lines remembered per list (the rest are only counted)
SUPPORTED_VERSION = 1
MODEL_HINT = "mercato.model"
CREATOR_HINT = "mercato.creator"
REASON_HINT = "reason"
_ALLOW_PREFIXES = ("!", "+", "-")  # NOpfs reads all three as allow rules
_SHA256 = 0x12
_BASE58 = get_multibase("base58btc")
_BASE32 = get_multibase("base32")


class RuleKind(enum.Enum):
    CID = "cid"  # /ipfs/CID
    CID_PATH = "cid_path"  # /ipfs/CID/path or /ipfs/CID/path*
    DOUBLE_HASH = "double_hash"  # //b58-multihash or //hex-sha256
    IPNS = "ipns"  # /ipns/NAME[/path]
    PATH = "path"  # /path (any CID)
    MODEL = "model"  # Mercato: a model id
    CREATOR = "creator"  # Mercato: a creator's address


@dataclass(frozen=True)
class Rule:
    """One rule of a list.

    Attributes:
        kind: What the rule matches.
        key: What it is looked up by: a base58 multihash (CID rules), the double hash
            as written, the model id as text, the checksum address, the IPNS name.
        path: The path under a CID or IPNS name ("" for none), without a trailing `*`.
        prefix: The path is a prefix (`path*`, `path/*`).
        allow: An allow rule (`!rule`).
        hints: key -> value, %-decoded.
        line: The line it came from (1-based; 0 for rules built in code).
        raw: The rule as written (without hints).
    """

    kind: RuleKind
    key: str
    path: str = ""
    prefix: bool = False
    allow: bool = False
    hints: dict[str, str] = field(default_factory=dict, compare=False)
    line: int = field(default=0, compare=False)
    raw: str = ""

    @property
    def reason(self) -> str:
        """The reason a hint gives, or "" when there is none."""
        return self.hints.get(REASON_HINT, "")[:MAX_REASON_CHARS]


@dataclass(frozen=True)
class LineError:
    line: int
    message: str


@dataclass
class Denylist:
    """A parsed list: its header and rules in file order, and the lines it skipped."""

    header: dict[str, object] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    error_count: int = 0

    @property
    def name(self) -> str:
        return str(self.header.get("name", ""))


# --- anchors and keys ------------------------------------------------------------------


def b58_multihash(cid: CID | str) -> str:
    """The base58btc multihash inside a CID: what CID rules are keyed by (CIDv0's text)."""
    parsed = CID.decode(cid) if isinstance(cid, str) else cid
    return _b58(bytes(parsed.digest))


def _b58(data: bytes) -> str:
    # Multibase text starts with the base's code ("z"); the format writes bare base58.
    return _BASE58.encode(data)[1:]


def _sha256_b58(text: str) -> str:
    return _b58(multihash.wrap(hashlib.sha256(text.encode()).digest(), "sha2-256"))


def model_anchor(model_id: int) -> str:
    """The double-hash anchor of a model-id entry."""
    return _sha256_b58(f"mercato/model/{model_id}")


def creator_anchor(address: str) -> str:
    """The double-hash anchor of a creator entry."""
    return _sha256_b58(f"mercato/creator/{address.lower()}")


def double_hashes(cid: CID, path: str = "") -> set[str]:
    """Every double-hash key a request for `cid` (and `path` under it) matches.

    Args:
        cid: The requested CID.
        path: The path under it, without leading or trailing `/` ("" for none).

    Returns:
        The modern form (base58 sha2-256 of `<b58 multihash>[/path]`) and the legacy
        badbits form (hex sha256 of `<CIDv1 base32>/[path]`).
    """
    mh = b58_multihash(cid)
    modern = _sha256_b58(f"{mh}/{path}" if path else mh)
    v1 = cid if cid.version == 1 else cid.set(version=1)
    legacy = hashlib.sha256(f"{v1.encode(_BASE32)}/{path}".encode()).hexdigest()
    return {modern, legacy}


# --- parsing ---------------------------------------------------------------------------


def _split_hints(tokens: Iterable[str]) -> dict[str, str]:
    hints: dict[str, str] = {}
    for token in tokens:
        # NOpfs writes key=value; the spec's prose shows key:value. Read both.
        key, sep, value = token.partition("=")
        if not sep:
            key, sep, value = token.partition(":")
        if sep and key:
            hints[key] = unquote(value)
    return hints


def _split_path(rest: str) -> tuple[str, bool]:
    path = unquote(rest)
    prefix = path.endswith("*")
    path = path.rstrip("*").strip("/")
    return path, prefix


def parse_rule(text: str, line: int = 0) -> Rule:
    """Parses one rule line (without comments).

    Args:
        text: The line, e.g. `/ipfs/bafy... reason=malware`.
        line: Its line number, for errors.

    Returns:
        The rule.

    Raises:
        DenylistFormatError: The line is not a rule this format knows.
    """
    tokens = text.split()
    if not tokens:
        raise DenylistFormatError(line, "the line is empty")
    rule_text, hints = tokens[0], _split_hints(tokens[1:])
    allow = rule_text[:1] in _ALLOW_PREFIXES
    body = rule_text[1:] if allow else rule_text
    common = {"allow": allow, "hints": hints, "line": line, "raw": body}
    if body.startswith("//"):
        key = body[2:]
        model, creator = hints.get(MODEL_HINT), hints.get(CREATOR_HINT)
        if model is not None:
            if not model.isdigit() or len(model) > 78:
                raise DenylistFormatError(line, f"{MODEL_HINT}={model!r} is not a model id")
            if key != model_anchor(int(model)):
                raise DenylistFormatError(line, f"the anchor does not match {MODEL_HINT}={model}")
            return Rule(RuleKind.MODEL, str(int(model)), **common)  # type: ignore[arg-type]
        if creator is not None:
            if not is_address(creator):
                raise DenylistFormatError(line, f"{CREATOR_HINT}={creator!r} is not an address")
            if key != creator_anchor(creator):
                raise DenylistFormatError(
                    line, f"the anchor does not match {CREATOR_HINT}={creator}"
                )
            return Rule(RuleKind.CREATOR, to_checksum_address(creator), **common)  # type: ignore[arg-type]
        if not _is_double_hash(key):
            raise DenylistFormatError(
                line, "a double hash must be a base58 multihash or 64 hex digits"
            )
        return Rule(RuleKind.DOUBLE_HASH, key, **common)  # type: ignore[arg-type]
    for namespace in ("/ipfs/", "/ipld/"):
        if body.startswith(namespace):
            cid_text, slash, rest = body[len(namespace) :].partition("/")
            try:
                key = b58_multihash(cid_text)
            except (ValueError, KeyError) as exc:
                raise DenylistFormatError(line, f"{cid_text[:100]!r} is not a CID") from exc
            if not slash:
                return Rule(RuleKind.CID, key, **common)  # type: ignore[arg-type]
            path, prefix = _split_path(rest)
            return Rule(RuleKind.CID_PATH, key, path, prefix, **common)  # type: ignore[arg-type]
    if body.startswith("/ipns/"):
        name, _, rest = body[len("/ipns/") :].partition("/")
        if not name:
            raise DenylistFormatError(line, "an /ipns/ rule needs a name")
        path, prefix = _split_path(rest)
        return Rule(RuleKind.IPNS, name, path, prefix, **common)  # type: ignore[arg-type]
    if body.startswith("/") and len(body) > 1:
        path, prefix = _split_path(body)
        return Rule(RuleKind.PATH, path, path, prefix, **common)  # type: ignore[arg-type]
    raise DenylistFormatError(line, f"{body[:100]!r} is not a rule of the compact denylist format")


def _is_double_hash(key: str) -> bool:
    if len(key) == 64:
        try:
            bytes.fromhex(key)
            return True
        except ValueError:
            pass
    try:
        multihash.unwrap(_BASE58.decode("z" + key))
    except (ValueError, KeyError):
        return False
    return True


def parse(data: bytes) -> Denylist:
    """Parses a whole list.

    Args:
        data: The list's bytes (UTF-8).

    Returns:
        The list. Lines that are not rules are skipped and recorded in `errors` (the
        first `MAX_ERRORS_KEPT`) and `error_count`.

    Raises:
        DenylistTooLargeError: The list is over `MAX_LIST_BYTES`, has a line over
            `MAX_LINE_BYTES` or more than `MAX_RULES` rules.
        DenylistFormatError: The header is not YAML, or names a version other than 1.
    """
    if len(data) > MAX_LIST_BYTES:
        raise DenylistTooLargeError(f"{len(data)} bytes", f"{MAX_LIST_BYTES} bytes")
    lines = data.split(b"\n")
    denylist = Denylist()
    first = _read_header(lines, denylist)
    for number, raw in enumerate(lines[first:], start=first + 1):
        if len(raw) + 1 > MAX_LINE_BYTES:
            raise DenylistTooLargeError(f"line {number}", f"{MAX_LINE_BYTES} bytes a line")
        text = raw.decode("utf-8", errors="replace").strip()
        if not text or text.startswith("#"):
            continue
        try:
            rule = parse_rule(text, number)
        except DenylistFormatError as exc:
            denylist.error_count += 1
            if len(denylist.errors) < MAX_ERRORS_KEPT:
                denylist.errors.append(LineError(number, exc.detail))
            continue
        if len(denylist.rules) >= MAX_RULES:
            raise DenylistTooLargeError("the rules", f"{MAX_RULES} rules")
        denylist.rules.append(rule)
    return denylist


def _read_header(lines: list[bytes], denylist: Denylist) -> int:
    """Parses the header into `denylist`; returns the index of the first rule line."""
    size = 0
    for index, raw in enumerate(lines):
        size += len(raw) + 1
        if size > MAX_HEADER_BYTES:
            return 0  # no header: the spec reads such lines as rules
        if raw.rstrip(b"\r") == b"---":
            try:
                header = yaml.safe_load(b"\n".join(lines[:index]).decode("utf-8")) or {}
            except (yaml.YAMLError, UnicodeDecodeError) as exc:
                raise DenylistFormatError(index + 1, f"the header is not YAML ({exc})") from exc
            if not isinstance(header, dict):
                raise DenylistFormatError(index + 1, "the header is not a YAML mapping")
            version = header.get("version", SUPPORTED_VERSION)
            if version != SUPPORTED_VERSION:
                raise DenylistFormatError(
                    index + 1, f"version {version!r} is not supported (only version 1)"
                )
            denylist.header = header
            return index + 1
    return 0


# --- writing ---------------------------------------------------------------------------


def _hint_text(hints: dict[str, str]) -> str:
    return "".join(f" {key}={quote(value, safe='')}" for key, value in hints.items())


def format_rule(rule: Rule) -> str:
    """One rule as a line of the list (without the newline)."""
    if rule.kind is RuleKind.MODEL:
        body = "//" + model_anchor(int(rule.key))
        hints = {MODEL_HINT: rule.key} | {k: v for k, v in rule.hints.items() if k != MODEL_HINT}
    elif rule.kind is RuleKind.CREATOR:
        body = "//" + creator_anchor(rule.key)
        hints = {CREATOR_HINT: rule.key} | {
            k: v for k, v in rule.hints.items() if k != CREATOR_HINT
        }
    else:
        body, hints = rule.raw, rule.hints
    return ("!" if rule.allow else "") + body + _hint_text(hints)


def dump(denylist: Denylist) -> bytes:
    """A list as bytes: its header (when it has one), `---`, then one rule a line."""
    parts = []
    if denylist.header:
        parts.append(yaml.safe_dump(denylist.header, sort_keys=False, allow_unicode=True))
        parts.append("---\n")
    parts.extend(format_rule(rule) + "\n" for rule in denylist.rules)
    return "".join(parts).encode()


def model_rule(model_id: int, reason: str = "", *, allow: bool = False) -> Rule:
    """A rule for a Mercato model id."""
    hints = {MODEL_HINT: str(model_id)}
    if reason:
        hints[REASON_HINT] = reason[:MAX_REASON_CHARS]
    raw = "//" + model_anchor(model_id)
    return Rule(RuleKind.MODEL, str(model_id), allow=allow, hints=hints, raw=raw)


def creator_rule(address: str, reason: str = "", *, allow: bool = False) -> Rule:
    """A rule for every model a creator address minted."""
    checksummed = str(to_checksum_address(address))
    hints: dict[str, str] = {CREATOR_HINT: checksummed}
    if reason:
        hints[REASON_HINT] = reason[:MAX_REASON_CHARS]
    raw = "//" + creator_anchor(checksummed)
    return Rule(RuleKind.CREATOR, checksummed, allow=allow, hints=hints, raw=raw)


def cid_rule(cid: str, reason: str = "", *, allow: bool = False) -> Rule:
    """A rule for a CID (by its multihash), written `/ipfs/<cid>` as given.

    Raises:
        DenylistFormatError: `cid` is not a CID.
    """
    hints = {REASON_HINT: reason[:MAX_REASON_CHARS]} if reason else {}
    try:
        key = b58_multihash(cid)
    except (ValueError, KeyError) as exc:
        raise DenylistFormatError(0, f"{cid[:100]!r} is not a CID") from exc
    return Rule(RuleKind.CID, key, allow=allow, hints=hints, raw=f"/ipfs/{cid}")
