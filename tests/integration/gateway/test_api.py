# SPDX-License-Identifier: AGPL-3.0-only
"""The REST API against a real node: resources, errors with stable codes, sign-in."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from mercato.models.card import CARD_FILENAME
from mercato.models.samples import build_samples
from mercato.node import Node

pytestmark = pytest.mark.integration
BUYER = Account.from_key("0x" + "33" * 32)


def test_openapi_lists_every_resource(demo_node: tuple[Node, str, list[int]]) -> None:
    _, base, _ = demo_node
    paths = httpx.get(f"{base}/openapi.json").json()["paths"]
    for path in (
        "/v1/models",
        "/v1/models/{model_id}",
        "/v1/models/{model_id}/versions",
        "/v1/models/{model_id}/lineage",
        "/v1/models/{model_id}/reviews",
        "/v1/models/{model_id}/evaluations",
        "/v1/orders",
        "/v1/creators/{address}",
        "/v1/creators/{address}/earnings",
        "/v1/auth/verify",
    ):
        assert path in paths


def test_models_search_detail_and_lineage(demo_node: tuple[Node, str, list[int]]) -> None:
    _, base, ids = demo_node
    free = httpx.get(f"{base}/v1/models", params={"free": "true"}).json()["items"]
    assert [m["name"] for m in free] == ["diabetes-gbr"]
    cheap = httpx.get(f"{base}/v1/models", params={"max_price": 4 * 10**18, "sort": "price_low"})
    assert [m["price"] for m in cheap.json()["items"]] == ["0", str(3 * 10**18)]
    tuned = httpx.get(f"{base}/v1/models/{ids[3]}").json()
    assert tuned["inputs"][0]["name"] and tuned["protocol_fee_bps"] == 0
    assert tuned["versions"][0]["artifact_cid"].startswith("Qm")
    lineage = httpx.get(f"{base}/v1/models/{ids[3]}/lineage").json()
    assert lineage["parents"] == [{"model_id": ids[0], "royalty_bps": 1500}]
    assert httpx.get(f"{base}/v1/models/{ids[0]}/lineage").json()["children"] == [ids[3]]


def test_errors_have_stable_codes(demo_node: tuple[Node, str, list[int]]) -> None:
    _, base, _ = demo_node
    missing = httpx.get(f"{base}/v1/models/999")
    assert (missing.status_code, missing.json()["error"]) == (404, "indexed_model_not_found")
    bad = httpx.get(f"{base}/v1/creators/not-an-address")
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid_search_query")
    invalid = httpx.get(f"{base}/v1/models", params={"limit": 0})
    assert (invalid.status_code, invalid.json()["error"]) == (422, "invalid_request")
    anonymous = httpx.get(f"{base}/v1/orders/mine")
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "session_required")


def test_sign_in_opens_a_session_and_refuses_a_replay(
    demo_node: tuple[Node, str, list[int]],
) -> None:
    _, base, _ = demo_node
    with httpx.Client(base_url=base) as client:
        message = client.post("/v1/auth/nonce", json={"address": BUYER.address}).json()["message"]
        signature = "0x" + bytes(BUYER.sign_message(encode_defunct(text=message)).signature).hex()
        signed = client.post("/v1/auth/verify", json={"message": message, "signature": signature})
        assert signed.status_code == 200 and signed.json()["address"] == BUYER.address
        assert client.get("/v1/auth/session").json()["address"] == BUYER.address  # cookie
        token = signed.json()["token"]
        mine = httpx.get(f"{base}/v1/orders/mine", headers={"Authorization": f"Bearer {token}"})
        assert mine.status_code == 200 and mine.json() == []
        again = client.post("/v1/auth/verify", json={"message": message, "signature": signature})
        assert (again.status_code, again.json()["error"]) == (401, "siwe_nonce")


def test_earnings_and_creator(demo_node: tuple[Node, str, list[int]]) -> None:
    node, base, _ = demo_node
    creator = node.accounts[0].address
    info = httpx.get(f"{base}/v1/creators/{creator}").json()
    assert info["models_created"] == 3 and info["provider_url"] == base
    earned = httpx.get(f"{base}/v1/creators/{creator}/earnings").json()
    assert earned["credited"] == "0" and earned["credits"] == []


def _sign_in(client: httpx.Client, account: object = BUYER) -> str:
    address = account.address  # type: ignore[attr-defined]
    message = client.post("/v1/auth/nonce", json={"address": address}).json()["message"]
    signed = account.sign_message(encode_defunct(text=message))  # type: ignore[attr-defined]
    answer = client.post(
        "/v1/auth/verify",
        json={"message": message, "signature": "0x" + bytes(signed.signature).hex()},
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["token"]
    return token


def test_logout_revokes_the_token_on_the_server(demo_node: tuple[Node, str, list[int]]) -> None:
    _, base, _ = demo_node
    with httpx.Client(base_url=base) as client:
        token = _sign_in(client)
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{base}/v1/auth/session", headers=bearer).status_code == 200
        assert client.post("/v1/auth/logout").status_code == 204  # the cookie's session
        # A copy of the token kept elsewhere (stolen, or another tab) is refused too.
        after = httpx.get(f"{base}/v1/orders/mine", headers=bearer)
        assert (after.status_code, after.json()["error"]) == (401, "session_required")
        assert httpx.get(f"{base}/v1/auth/session", headers=bearer).status_code == 401


def test_a_nonce_flood_from_one_client_leaves_another_clients_sign_in_working(
    demo_node: tuple[Node, str, list[int]],
) -> None:
    _, base, _ = demo_node
    honest = httpx.Client(base_url=base)
    message = honest.post("/v1/auth/nonce", json={"address": BUYER.address}).json()["message"]
    with httpx.Client(base_url=base) as flood:
        for _ in range(300):
            assert flood.post("/v1/auth/nonce", json={"address": BUYER.address}).status_code == 200
    signature = "0x" + bytes(BUYER.sign_message(encode_defunct(text=message)).signature).hex()
    signed = honest.post("/v1/auth/verify", json={"message": message, "signature": signature})
    honest.close()
    assert signed.status_code == 200


@pytest.mark.parametrize(
    "path",
    ["model\x00.onnx", "a" * 300, "/etc/passwd", "../../escape.onnx", "a/../../b", "\ud800"],
    ids=["nul", "long-name", "absolute", "dotdot", "dotdot-inside", "lone-surrogate"],
)
def test_odd_upload_paths_get_a_typed_400(
    demo_node: tuple[Node, str, list[int]], path: str
) -> None:
    _, base, _ = demo_node
    with httpx.Client(base_url=base) as client:
        _sign_in(client)
        body = {"name": "odd", "files": [{"path": path, "data": ""}], "encrypt": False}
        # json.dumps escapes the lone surrogate as \ud800, as a hostile client would.
        answer = client.post(
            "/v1/uploads", content=json.dumps(body), headers={"Content-Type": "application/json"}
        )
    assert (answer.status_code, answer.json()["error"]) == (400, "upload_path_invalid")
    assert "Traceback" not in answer.text


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        # Each was a 500 the API fuzzer found (test_fuzz_api.py).
        ("GET", "/v1/models/276828114745688658019209969664/versions", 422),  # SQLite overflow
        ("GET", "/v1/models/276828114745688658019209969664", 422),
        ("GET", "/v1/models?derived_from=276828114745688658019209969664", 422),
        ("GET", "/v1/chain/permit?amount=0&deadline=0&owner=", 422),  # no owner address
        ("GET", f"/v1/chain/permit?amount={2**256}&deadline=0&owner={BUYER.address}", 422),
        ("GET", "/v1/artifacts/0", 400),  # a one-character "CID": IndexError in multiformats
        ("GET", "/ipfs/0", 400),
        ("POST", "/v1/models/-428/try", 422),  # a negative id reached the contract call
    ],
)
def test_inputs_that_made_the_node_fail_are_refused_as_bad_requests(
    demo_node: tuple[Node, str, list[int]], method: str, path: str, status: int
) -> None:
    _, base, _ = demo_node
    answer = httpx.request(method, f"{base}{path}", json={} if method == "POST" else None)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] in (
        "invalid_request",
        "invalid_search_query",
        "invalid_cid",
        "http_400",
    )


def test_range_offsets_of_thousands_of_digits_are_answered_not_a_500(
    demo_node: tuple[Node, str, list[int]],
) -> None:
    _, base, ids = demo_node
    cid = httpx.get(f"{base}/v1/models/{ids[2]}").json()["versions"][0]["artifact_cid"]
    huge = "9" * 5000  # past Python's 4,300-digit limit for int(): was a ValueError, a 500
    past_end = httpx.get(f"{base}/ipfs/{cid}", headers={"Range": f"bytes={huge}-"})
    assert past_end.status_code == 416
    whole = httpx.get(f"{base}/ipfs/{cid}", headers={"Range": f"bytes=0-{huge}"})
    size = int(whole.headers["Content-Length"])
    assert whole.status_code == 206
    assert whole.headers["Content-Range"] == f"bytes 0-{size - 1}/{size}"
    suffix = httpx.get(f"{base}/ipfs/{cid}", headers={"Range": f"bytes=-{huge}"})
    assert suffix.status_code == 206 and len(suffix.content) == size


def test_pages_and_refusals_carry_security_headers(demo_node: tuple[Node, str, list[int]]) -> None:
    _, base, _ = demo_node
    page = httpx.get(f"{base}/")
    refused = httpx.post(f"{base}/v1/auth/nonce", content=b"[" * 200)
    assert refused.status_code == 400
    for answer in (page, refused):
        assert answer.headers["X-Frame-Options"] == "DENY"  # no framing of the buy pages
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "same-origin"


def test_other_sites_get_no_cors_grant(demo_node: tuple[Node, str, list[int]]) -> None:
    _, base, _ = demo_node
    evil = {"Origin": "https://evil.example"}
    preflight = httpx.options(
        f"{base}/v1/uploads",
        headers={**evil, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    read = httpx.get(f"{base}/v1/orders/mine", headers=evil)
    assert "access-control-allow-origin" not in read.headers
    assert "access-control-allow-credentials" not in read.headers


@pytest.mark.parametrize(
    "path",
    [
        "/ipfs/..%2F..%2F..%2Fetc%2Fpasswd",
        "/ipfs/%2E%2E",
        "/ipfs/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG%00",
        "/static/..%2F..%2Fsessions.py",
        "/static/%2E%2E/api/auth.py",
    ],
)
def test_paths_that_climb_out_serve_nothing(
    demo_node: tuple[Node, str, list[int]], path: str
) -> None:
    _, base, _ = demo_node
    answer = httpx.get(f"{base}{path}")
    assert answer.status_code in (400, 404), answer.status_code
    assert b"root:" not in answer.content and b"import" not in answer.content


@pytest.mark.parametrize("terms", [{"price": 10**18, "encrypt": True}, {"encrypt": True}])
def test_a_paid_upload_without_the_buyers_sections_is_refused(
    demo_node: tuple[Node, str, list[int]], tmp_path: Path, terms: dict[str, object]
) -> None:
    _, base, _ = demo_node
    package = build_samples(tmp_path, ["iris-logreg"])["iris-logreg"]
    files = []
    for path in sorted(p for p in package.root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name == CARD_FILENAME:  # keep the front matter, drop uses and limitations
            _, front, _ = data.decode().split("---\n", 2)
            data = f"---\n{front}---\n# Iris\n\nA classifier.\n".encode()
        relative = path.relative_to(package.root).as_posix()
        files.append({"path": relative, "data": base64.b64encode(data).decode()})
    with httpx.Client(base_url=base, timeout=60) as client:
        _sign_in(client)
        answer = client.post("/v1/uploads", json={"name": "iris", "files": files, **terms})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "model_card_sections_missing"
