# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato moderation deny|allow|list|subscribe|unsubscribe|refresh` on a data directory.

Subscribed lists are served by a real HTTP server on loopback.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from mercato.cli.app import _register_commands, app
from mercato.moderation.denylist import RuleKind, creator_rule, format_rule, model_rule, parse
from mercato.moderation.lists import NodeDenylists
from mercato.storage.blockstore import Blockstore
from mercato.storage.unixfs import import_file

_register_commands()
runner = CliRunner()
CREATOR = "0x" + "ab" * 20
CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
SHARED_LIST = (
    "version: 1\nname: Shared list\n---\n"
    f"{format_rule(model_rule(7, 'malware'))}\n"
    f"{format_rule(creator_rule(CREATOR, 'spam'))}\n"
    "not a rule\n"
).encode()


class _Lists(BaseHTTPRequestHandler):
    bodies: ClassVar[dict[str, tuple[int, bytes]]] = {}

    def do_GET(self) -> None:
        status, body = self.bodies.get(self.path, (404, b""))
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Lists.bodies = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Lists)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def run(data_dir: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["moderation", *args, "--data-dir", str(data_dir)])
    return result.exit_code, result.stdout + result.stderr


def listed(data_dir: Path) -> dict[str, object]:
    code, out = run(data_dir, "list", "--json")
    assert code == 0, out
    return dict(json.loads(out))


def test_deny_model_creator_and_cid_writes_a_compact_denylist(data_dir: Path) -> None:
    assert run(data_dir, "deny", "42", "--reason", "illegal content")[0] == 0
    assert run(data_dir, "deny", CREATOR, "--reason", "malware")[0] == 0
    assert run(data_dir, "deny", f"/ipfs/{CID}")[0] == 0
    rules = parse((data_dir / "moderation" / "local.deny").read_bytes()).rules
    assert [r.kind for r in rules] == [RuleKind.MODEL, RuleKind.CREATOR, RuleKind.CID]
    assert rules[0].reason == "illegal content"
    targets = [(r["target"], r["action"], r["source"]) for r in listed(data_dir)["rules"]]  # type: ignore[attr-defined]
    assert targets == [
        ("model 42", "deny", "local"),
        (f"creator {rules[1].key}", "deny", "local"),
        (f"/ipfs/{CID}", "deny", "local"),
    ]


def test_deny_again_replaces_the_reason(data_dir: Path) -> None:
    run(data_dir, "deny", "42", "--reason", "first")
    run(data_dir, "deny", "42", "--reason", "second")
    rules = NodeDenylists(data_dir).local().rules
    assert [r.reason for r in rules] == ["second"]


def test_allow_replaces_the_operators_rule_with_an_exception(data_dir: Path) -> None:
    run(data_dir, "deny", "42")
    code, out = run(data_dir, "allow", "42")
    assert code == 0, out
    [rule] = NodeDenylists(data_dir).local().rules
    assert rule.allow and rule.key == "42"
    assert NodeDenylists(data_dir).matcher().check_model(42) is None
    run(data_dir, "deny", "42")  # deny replaces the exception again
    assert NodeDenylists(data_dir).matcher().check_model(42) is not None


def test_forget_drops_the_operators_rule(data_dir: Path) -> None:
    run(data_dir, "deny", "42")
    code, out = run(data_dir, "forget", "42")
    assert code == 0 and "Dropped" in out
    assert NodeDenylists(data_dir).local().rules == []
    code, out = run(data_dir, "forget", "42")
    assert code == 0 and "no rule of its own" in out


def test_reasons_from_lists_are_not_read_as_markup(data_dir: Path, server: str) -> None:
    hostile = format_rule(model_rule(9, "[red]x"))
    _Lists.bodies["/hostile.deny"] = (200, (hostile + "\n").encode())
    assert run(data_dir, "subscribe", f"{server}/hostile.deny")[0] == 0
    code, out = run(data_dir, "list")
    assert code == 0
    assert "[red]x" in out  # shown as written, not taken as a colour


def test_unknown_target_exits_111(data_dir: Path) -> None:
    code, out = run(data_dir, "deny", "not-a-model")
    assert code == 111
    assert "neither a model id" in out
    assert not (data_dir / "moderation" / "local.deny").exists()


def test_subscribe_by_url_then_allow_adds_an_exception(data_dir: Path, server: str) -> None:
    _Lists.bodies["/shared.deny"] = (200, SHARED_LIST)
    code, out = run(data_dir, "subscribe", f"{server}/shared.deny")
    assert code == 0, out
    assert "2 rules, 1 unreadable lines skipped" in " ".join(out.split())
    lists = NodeDenylists(data_dir)
    assert lists.matcher().check_model(7) is not None
    assert lists.matcher().check_model(8, CREATOR) is not None
    code, out = run(data_dir, "allow", "7")
    assert code == 0, out
    assert NodeDenylists(data_dir).matcher().check_model(7) is None
    assert NodeDenylists(data_dir).matcher().check_model(8, CREATOR) is not None


def test_refresh_keeps_the_last_good_copy_when_the_list_breaks(data_dir: Path, server: str) -> None:
    url = f"{server}/shared.deny"
    _Lists.bodies["/shared.deny"] = (200, SHARED_LIST)
    assert run(data_dir, "subscribe", url)[0] == 0
    _Lists.bodies["/shared.deny"] = (200, b"version: 9\n---\n")
    code, out = run(data_dir, "refresh", "--json")
    assert code == 0
    [state] = json.loads(out)
    assert "version 9 is not supported" in state["error"]
    assert NodeDenylists(data_dir).matcher().check_model(7) is not None  # still denied
    _Lists.bodies["/shared.deny"] = (500, b"")
    code, out = run(data_dir, "refresh", "--json")
    assert "HTTP 500" in json.loads(out)[0]["error"]
    assert NodeDenylists(data_dir).matcher().check_model(7) is not None


def test_subscribe_to_a_redirect_is_refused_and_not_kept(data_dir: Path, server: str) -> None:
    _Lists.bodies["/moved.deny"] = (302, b"")
    code, out = run(data_dir, "subscribe", f"{server}/moved.deny")
    assert code == 32
    assert "redirect" in out
    assert NodeDenylists(data_dir).subscriptions() == []


def test_subscribe_to_a_huge_list_is_refused(
    data_dir: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mercato.moderation import denylist, sources

    monkeypatch.setattr(denylist, "MAX_LIST_BYTES", 1_000)
    monkeypatch.setattr(sources, "MAX_LIST_BYTES", 1_000)
    _Lists.bodies["/huge.deny"] = (200, b"# padding\n" * 500)
    code, out = run(data_dir, "subscribe", f"{server}/huge.deny")
    assert code == 36, out  # FetchTooLargeError: refused by its Content-Length, unread
    assert NodeDenylists(data_dir).subscriptions() == []


def test_subscribe_to_a_loopback_url_off_a_local_chain_is_refused(
    data_dir: Path, server: str
) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "config.toml").write_text('rpc_url = "https://rpc.example.org"\n')
    _Lists.bodies["/shared.deny"] = (200, SHARED_LIST)
    code, out = run(data_dir, "subscribe", f"{server}/shared.deny")
    assert code == 35, out  # UnsafeURLError
    assert NodeDenylists(data_dir).subscriptions() == []


def test_subscribe_by_cid_reads_the_nodes_store(data_dir: Path) -> None:
    store = Blockstore(data_dir / "store")
    cid = import_file(io.BytesIO(SHARED_LIST), store, cid_version=1).cid
    code, out = run(data_dir, "subscribe", f"ipfs://{cid}")
    assert code == 0, out
    [subscription] = NodeDenylists(data_dir).subscriptions()
    assert subscription.source == f"ipfs://{cid}"
    assert NodeDenylists(data_dir).matcher().check_model(7) is not None


def test_subscribe_by_cid_not_stored_and_no_gateway_exits_32(data_dir: Path) -> None:
    code, out = run(data_dir, "subscribe", CID)
    assert code == 32
    assert "--gateway" in out


def test_unsubscribe_unknown_exits_114(data_dir: Path, server: str) -> None:
    code, out = run(data_dir, "unsubscribe", f"{server}/none.deny")
    assert code == 114
    assert "no denylist subscription" in out


def test_unsubscribe_drops_the_rules(data_dir: Path, server: str) -> None:
    _Lists.bodies["/shared.deny"] = (200, SHARED_LIST)
    run(data_dir, "subscribe", f"{server}/shared.deny")
    assert run(data_dir, "unsubscribe", f"{server}/shared.deny")[0] == 0
    assert NodeDenylists(data_dir).matcher().check_model(7) is None
    assert list((data_dir / "moderation" / "subscriptions").iterdir()) == []
