"""Shared fixtures: a real SQLite store in a tmp dir, the bundled Abilene substrate."""

import pytest

from vnstitch.controller.service import Controller
from vnstitch.data import data_path
from vnstitch.store.sqlite import SQLiteStore
from vnstitch.topology.importers import load_topology


class Clock:
    """A clock the tests move by hand (the core never reads the wall clock)."""

    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "state.db"))
    yield s
    s.close()


@pytest.fixture(scope="session")
def abilene():
    return load_topology(data_path("abilene.xml"))


@pytest.fixture
def controller(store, clock, abilene):
    c = Controller(store, clock=clock)
    c.apply(list(abilene.nodes) + list(abilene.links))
    return c
