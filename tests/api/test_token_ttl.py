"""Tokens with a TTL: refused (401, saying when) once expired, on a cached answer too; accepted before."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from vnstitch.api.app import create_app
from vnstitch.api.auth import Authenticator, TokenExpired, create_token, has_admin, list_tokens
from vnstitch.api.errors import Unauthenticated
from vnstitch.api.settings import Settings
from vnstitch.cli.main import main
from vnstitch.errors import InvalidInput
from vnstitch.store.memory import MemoryStore

T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_token_is_accepted_until_it_expires_and_refused_after(tmp_path):
    store = MemoryStore()
    token, token_id = create_token(store, "acme", "member", now=T0, ttl_s=3600)
    clock = Clock(T0 + 3599)
    auth = Authenticator(store, cache_s=60.0, clock=clock)
    assert auth.verify(token).tenant == "acme"
    assert auth.cached(token).token_id == token_id        # the answer is cached for a minute...
    clock.now = T0 + 3600
    with pytest.raises(TokenExpired) as refused:         # ...but the expiry is checked on every request
        auth.cached(token)
    assert f"token {token_id} expired at 2023-11-14T23:13:20.000Z" in refused.value.message
    with pytest.raises(Unauthenticated, match="expired"):
        auth.verify(token)


def test_a_token_without_ttl_never_expires_and_an_unknown_one_says_nothing_about_others():
    store = MemoryStore()
    token, _ = create_token(store, "acme", "reader", now=T0)
    expired, _ = create_token(store, "acme", "reader", now=T0, ttl_s=1)
    auth = Authenticator(store, clock=Clock(T0 + 100 * 365 * 86400))
    assert auth.verify(token).role == "reader"
    with pytest.raises(Unauthenticated) as unknown:
        auth.verify("vns_" + "x" * 43)
    assert unknown.value.message == "unknown or revoked token"   # the same answer whatever else exists
    with pytest.raises(TokenExpired):
        auth.verify(expired)


def test_ttl_must_be_positive_and_expired_admins_do_not_count():
    store = MemoryStore()
    with pytest.raises(InvalidInput, match="positive"):
        create_token(store, "ops", "admin", ttl_s=0)
    create_token(store, "ops", "admin", now=T0, ttl_s=60)
    assert has_admin(store, now=T0 + 59) and not has_admin(store, now=T0 + 60)
    assert list_tokens(store)[0]["expiresAt"] == T0 + 60


def test_the_api_answers_401_with_the_expiry(tmp_path):
    store = MemoryStore()
    create_token(store, "ops", "admin")
    token, _ = create_token(store, "acme", "member", now=T0, ttl_s=30 * 86400)
    clock = Clock(T0 + 86400)
    app = create_app(Settings(reconcile=False, rate_limit_per_s=0), store=store, clock=clock)
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/v1/whoami", headers=headers).json()["tenant"] == "acme"
        clock.now = T0 + 30 * 86400
        answer = client.get("/v1/whoami", headers=headers)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
        assert answer.json()["code"] == "unauthenticated"
        assert "expired at 2023-12-14T22:13:20.000Z" in answer.json()["message"]


def test_cli_creates_and_lists_tokens_with_expiry(tmp_path, capsys):
    store = f"sqlite://{tmp_path}/state.db"
    assert main(["--store", store, "--create", "token", "create", "--tenant", "acme", "--role", "member",
                 "--ttl", "30d"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("vns_") and ", expires 20" in err
    assert main(["--store", store, "token", "create", "--tenant", "acme", "--role", "reader"]) == 0
    assert "never expires" in capsys.readouterr().err
    assert main(["--store", store, "token", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "TENANT", "ROLE", "EXPIRES", "DESCRIPTION"]
    expiries = sorted(line.split()[3] for line in lines[1:])
    assert expiries[0].startswith("20") and expiries[0].endswith("Z") and expiries[1] == "never"
    assert "vns_" not in out
    assert main(["--store", store, "token", "create", "--tenant", "acme", "--role", "reader", "--ttl", "soon"]) != 0
