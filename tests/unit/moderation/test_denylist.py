# SPDX-License-Identifier: AGPL-3.0-only
"""The IPIP-383 compact denylist format: parsing, writing, matching."""

from __future__ import annotations

import hashlib

import pytest
from multiformats import CID, multihash

from mercato.errors import DenylistFormatError, DenylistTooLargeError
from mercato.moderation import denylist as fmt
from mercato.moderation.denylist import (
    Denylist,
    RuleKind,
    b58_multihash,
    cid_rule,
    creator_rule,
    double_hashes,
    dump,
    model_anchor,
    model_rule,
    parse,
)
from mercato.moderation.matcher import Matcher

# The CID and multihash pair the spec uses in its kubo example.
SPEC_CID = "bafybeihrw75yfhdx5qsqgesdnxejtjybscwuclpusvxkuttep6h7pkgmze"
SPEC_MULTIHASH = "QmecDgNqCRirkc3Cjz9eoRBNwXGckJ9WvTdmY16HP88768"
# The spec's double hash of `<SPEC_MULTIHASH>/my/path`.
SPEC_PATH_DOUBLE_HASH = "QmSju6XPmYLG611rmK7rEeCMFVuL6EHpqyvmEU6oGx3GR8"
CREATOR = "0x" + "ab" * 20


def _cid(seed: bytes, version: int = 1, codec: str = "raw") -> CID:
    digest = hashlib.sha256(seed).digest()
    if version == 0:
        return CID("base58btc", 0, "dag-pb", ("sha2-256", digest))
    return CID("base32", 1, codec, ("sha2-256", digest))


# A list as operators publish them: a header with hints, comments, CIDs in both
# versions, subpath and prefix rules, exceptions, IPNS names, both double-hash forms,
# an entry with hints, a broken line, and Mercato entries.
REAL_WORLD = f"""version: 1
name: Example operator list
description: Things this gateway will not serve
author: abuse@example.org
hints:
  gateway_status: 410
---
# Blocking by CID blocks the multihash, whatever the codec.
/ipfs/{_cid(b"one")}
/ipfs/{_cid(b"two", 0)} reason=malware%20dropper

# Subpaths and prefixes
/ipfs/{_cid(b"three")}/docs/secret.txt
/ipfs/{_cid(b"four")}/*
/ipfs/{_cid(b"five")}/blocked*
!/ipfs/{_cid(b"five")}/blocked/fine

# IPNS names and DNSLink
/ipns/bad.example
/ipns/bad.example/path

# Double hashes
//{SPEC_PATH_DOUBLE_HASH}
//d9d295bde21f422d471a90f2a37ec53049fdf3e5fa3ee2e8f20e10003da429e7

this line is not a rule
{fmt.format_rule(model_rule(42, "illegal content"))}
{fmt.format_rule(creator_rule(CREATOR, "malware"))}
""".encode()


def test_real_world_list_parses_every_rule_and_reports_the_bad_line() -> None:
    parsed = parse(REAL_WORLD)
    assert parsed.name == "Example operator list"
    assert parsed.header["hints"] == {"gateway_status": 410}
    kinds = [r.kind for r in parsed.rules]
    assert kinds == [
        RuleKind.CID,
        RuleKind.CID,
        RuleKind.CID_PATH,
        RuleKind.CID_PATH,
        RuleKind.CID_PATH,
        RuleKind.CID_PATH,
        RuleKind.IPNS,
        RuleKind.IPNS,
        RuleKind.DOUBLE_HASH,
        RuleKind.DOUBLE_HASH,
        RuleKind.MODEL,
        RuleKind.CREATOR,
    ]
    assert parsed.rules[1].reason == "malware dropper"
    assert (parsed.rules[4].path, parsed.rules[4].prefix) == ("blocked", True)
    assert parsed.rules[5].allow
    assert parsed.error_count == 1
    assert parsed.errors[0].line == REAL_WORLD.split(b"\n").index(b"this line is not a rule") + 1


def test_round_trip_keeps_every_rule_and_the_header() -> None:
    parsed = parse(REAL_WORLD)
    again = parse(dump(parsed))
    assert again.header == parsed.header
    assert again.rules == parsed.rules
    assert [r.hints for r in again.rules] == [r.hints for r in parsed.rules]
    assert again.error_count == 0  # the bad line is not written back


def test_mercato_entries_are_valid_double_hash_rules() -> None:
    line = fmt.format_rule(model_rule(42, "illegal content"))
    rule_text, *hints = line.split()
    # What kubo sees: a double-hash rule whose key is a base58 sha2-256 multihash.
    assert rule_text.startswith("//")
    digest = multihash.unwrap(fmt._BASE58.decode("z" + rule_text[2:]))
    assert digest == hashlib.sha256(b"mercato/model/42").digest()
    assert hints == ["mercato.model=42", "reason=illegal%20content"]


def test_mercato_entry_whose_anchor_does_not_match_its_hint_is_refused() -> None:
    forged = f"//{model_anchor(41)} mercato.model=42".encode()
    parsed = parse(forged)
    assert parsed.rules == []
    assert "anchor does not match" in parsed.errors[0].message


def test_cid_rule_matches_every_cid_of_the_same_multihash() -> None:
    v0 = _cid(b"model", 0)
    v1 = v0.set(version=1, codec="dag-pb", base="base32")
    raw = CID("base32", 1, "raw", v0.digest)
    matcher = Matcher([(cid_rule(str(v1)), "local")])
    assert matcher.check_cid(v0) is not None
    assert matcher.check_cid(raw) is not None
    assert matcher.check_cid(_cid(b"other")) is None


def test_spec_example_double_hashes() -> None:
    cid = CID.decode(SPEC_CID)
    assert b58_multihash(cid) == SPEC_MULTIHASH
    assert SPEC_PATH_DOUBLE_HASH in double_hashes(cid, "my/path")
    # The legacy badbits anchor: hex sha256 of "<CIDv1 base32>/".
    legacy = hashlib.sha256(f"{SPEC_CID}/".encode()).hexdigest()
    assert legacy in double_hashes(cid)


def test_double_hash_rule_denies_the_cid() -> None:
    cid = _cid(b"hidden")
    modern = next(h for h in double_hashes(cid) if len(h) != 64)
    matcher = Matcher([(r, "l") for r in parse(f"//{modern}\n".encode()).rules])
    assert matcher.check_cid(cid) is not None
    legacy = hashlib.sha256(f"{cid}/".encode()).hexdigest()
    matcher = Matcher([(r, "l") for r in parse(f"//{legacy}\n".encode()).rules])
    assert matcher.check_cid(cid) is not None


def test_last_matching_rule_wins() -> None:
    deny, allow = model_rule(7, "x"), model_rule(7, allow=True)
    assert Matcher([(deny, "a"), (allow, "b")]).check_model(7) is None
    decision = Matcher([(allow, "a"), (deny, "b")]).check_model(7)
    assert decision is not None and decision.source == "b"


def test_model_is_denied_by_creator_and_by_its_cids() -> None:
    artifact = _cid(b"artifact", 0)
    matcher = Matcher([(creator_rule(CREATOR, "spam"), "l"), (cid_rule(str(artifact)), "l")])
    by_creator = matcher.check_model(1, CREATOR.upper().replace("0X", "0x"))
    assert by_creator is not None and by_creator.reason == "spam"
    assert matcher.check_model(2, None, [artifact]) is not None
    assert matcher.check_model(3, "0x" + "cd" * 20, [_cid(b"fine", 0)]) is None


def test_prefix_rule_with_empty_path_covers_the_cid() -> None:
    cid = _cid(b"dir")
    rules = parse(f"/ipfs/{cid}/*\n/ipfs/{_cid(b'x')}/only/this\n".encode()).rules
    matcher = Matcher([(r, "l") for r in rules])
    assert matcher.check_cid(cid) is not None
    assert matcher.check_cid(_cid(b"x")) is None  # a path rule leaves the CID itself


def test_header_with_another_version_is_refused() -> None:
    with pytest.raises(DenylistFormatError, match="version 2 is not supported"):
        parse(b"version: 2\n---\n")


def test_header_that_is_not_yaml_is_refused() -> None:
    with pytest.raises(DenylistFormatError, match="not YAML"):
        parse(b"name: [unclosed\n---\n")


def test_list_without_header_is_all_rules() -> None:
    parsed = parse(f"/ipfs/{_cid(b'a')}\n".encode())
    assert parsed.header == {} and len(parsed.rules) == 1


def test_hints_in_the_specs_colon_form_are_read() -> None:
    rule = parse(f"/ipfs/{_cid(b'a')} reason:gone\n".encode()).rules[0]
    assert rule.reason == "gone"


def test_too_large_list_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fmt, "MAX_LIST_BYTES", 1_000)
    with pytest.raises(DenylistTooLargeError):
        parse(b"#" * 1_001)


def test_too_long_line_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fmt, "MAX_LINE_BYTES", 100)
    with pytest.raises(DenylistTooLargeError, match="line 2"):
        parse(b"# fine\n/ipfs/" + b"a" * 200 + b"\n")


def test_too_many_rules_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fmt, "MAX_RULES", 2)
    line = f"/ipfs/{_cid(b'a')}\n".encode()
    assert len(parse(line * 2).rules) == 2
    with pytest.raises(DenylistTooLargeError, match="2 rules"):
        parse(line * 3)


def test_bad_lines_are_counted_but_only_some_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = parse(b"junk\n" * (fmt.MAX_ERRORS_KEPT + 50))
    assert parsed.error_count == fmt.MAX_ERRORS_KEPT + 50
    assert len(parsed.errors) == fmt.MAX_ERRORS_KEPT


def test_reason_is_capped() -> None:
    rule = parse(f"/ipfs/{_cid(b'a')} reason={'x' * 5000}\n".encode()).rules[0]
    assert len(rule.reason) == fmt.MAX_REASON_CHARS


def test_dump_of_empty_list_without_header_is_empty() -> None:
    assert dump(Denylist()) == b""
