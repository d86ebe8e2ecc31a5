"""Request body size (413), per-token rate limit (429 + Retry-After), token revocation."""

from __future__ import annotations

import time

from vnstitch.api.auth import list_tokens, revoke_token
from tests.api.payloads import vnet


def test_body_over_the_limit_is_413_declared_or_chunked(make_api):
    api = make_api(max_body_bytes=2048)
    big = vnet("big", 7, "10.7.0.0/24", [])
    big["metadata"]["labels"] = {f"k{i}": "v" * 50 for i in range(100)}
    answer = api.call("member", "POST", "/v1/virtualnetworks", json=big)
    assert answer.status_code == 413 and answer.json()["code"] == "payload_too_large"

    def chunks():
        yield b'{"kind": "VirtualNetwork", '
        yield b" " * 4096
        yield b"}"
    chunked = api.call("member", "POST", "/v1/virtualnetworks", content=chunks(),
                       headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    small = api.call("member", "POST", "/v1/virtualnetworks", json=vnet("small", 8, "10.8.0.0/24", []))
    assert small.status_code == 201


def test_rate_limit_per_token_answers_429_with_retry_after(make_api):
    api = make_api(rate_limit_per_s=5, rate_limit_burst=5)
    codes = [api.call("reader", "GET", "/v1/virtualnetworks").status_code for _ in range(8)]
    assert codes[:5] == [200] * 5 and 429 in codes[5:]
    limited = api.call("reader", "GET", "/v1/virtualnetworks")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["code"] == "rate_limited"
    # Another token has its own bucket.
    assert api.call("member", "GET", "/v1/virtualnetworks").status_code == 200
    time.sleep(0.3)
    assert api.call("reader", "GET", "/v1/virtualnetworks").status_code == 200


def test_revoked_token_stops_working(make_api):
    api = make_api(token_cache_s=0.0)
    store = api.app.state.ctx.store
    assert api.call("reader", "GET", "/v1/whoami").json()["role"] == "reader"
    reader_id = next(t["id"] for t in list_tokens(store) if t["role"] == "reader")
    assert revoke_token(store, reader_id) == 1
    answer = api.call("reader", "GET", "/v1/whoami")
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
    assert all("sha256" not in str(t) and "vns_" not in str(t) for t in list_tokens(store))
    raw = store.list("ApiToken")[0].value
    assert api.tokens["admin"] not in str(raw), "tokens are stored hashed"
