"""Fixtures: an app over a real SQLite file with the Abilene substrate and four tokens."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from vnstitch.api.app import create_app
from vnstitch.api.auth import create_token
from vnstitch.api.settings import Settings
from vnstitch.controller.service import Controller
from vnstitch.data import data_path
from vnstitch.store.sqlite import SQLiteStore
from vnstitch.topology.importers import load_topology

from tests.api.payloads import stitch, vnet

@dataclass
class Api:
    client: TestClient
    tokens: dict[str, str]
    app: object

    def headers(self, who: str, **extra: str) -> dict:
        token = self.tokens.get(who)
        out = {"Authorization": f"Bearer {token}"} if token else {}
        out.update(extra)
        return out

    def call(self, who: str, method: str, path: str, **kwargs):
        headers = {**self.headers(who), **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)


def make_store(tmp_path) -> SQLiteStore:
    store = SQLiteStore(str(tmp_path / "state.db"))
    topology = load_topology(data_path("abilene.xml"))
    Controller(store).apply(list(topology.nodes) + list(topology.links))
    return store


def make_tokens(store) -> dict[str, str]:
    return {"admin": create_token(store, "ops", "admin")[0],
            "member": create_token(store, "acme", "member")[0],
            "reader": create_token(store, "acme", "reader")[0],
            "other": create_token(store, "globex", "member")[0]}


@pytest.fixture
def make_api(tmp_path):
    """Factory: make_api(**settings) → Api, closed at teardown."""
    opened = []

    def factory(**overrides) -> Api:
        store = make_store(tmp_path / f"s{len(opened)}")
        tokens = make_tokens(store)
        settings = Settings(**{"reconcile": False, "rate_limit_per_s": 0, **overrides})
        app = create_app(settings, store=store)
        client = TestClient(app)
        client.__enter__()
        opened.append((client, store, app))
        return Api(client, tokens, app)

    yield factory
    for client, store, app in opened:  # the files of hundreds of apps must not pile up in the test process
        client.__exit__(None, None, None)
        app.state.audit.close()
        store.close()


@pytest.fixture
def api(make_api) -> Api:
    return make_api()


@pytest.fixture
def seeded(api) -> Api:
    """acme has networks web (10.0.0.0/24 at NYC) and db (10.1.0.0/24 at LA) and a stitch."""
    api.call("member", "POST", "/v1/virtualnetworks",
             json=vnet("web", 100, "10.0.0.0/24", [("w1", "NYCMng", "10.0.0.1")])).raise_for_status()
    api.call("member", "POST", "/v1/virtualnetworks",
             json=vnet("db", 101, "10.1.0.0/24", [("d1", "LOSAng", "10.1.0.1")])).raise_for_status()
    api.call("member", "POST", "/v1/stitches", json=stitch("web-db", "web", "db")).raise_for_status()
    return api


@dataclass
class Live:
    url: str
    tokens: dict[str, str]
    app: object
    store: object

    def headers(self, who: str) -> dict:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live(tmp_path):
    """A real uvicorn server on 127.0.0.1 (free port) over a SQLite file, reconciler inside."""
    import threading
    import time

    import uvicorn

    store = make_store(tmp_path)
    tokens = make_tokens(store)
    app = create_app(Settings(tick_s=0.5, rate_limit_per_s=0), store=store)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield Live(f"http://127.0.0.1:{port}", tokens, app, store)
    server.should_exit = True
    thread.join(10)
