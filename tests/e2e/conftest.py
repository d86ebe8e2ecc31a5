"""The CLI as a user runs it: `vnstitch --store sqlite://TMP/state.db ...` through `main`."""

import pytest

from vnstitch.cli.main import main


@pytest.fixture
def cli(tmp_path, capsys):
    """Run `vnstitch` on a fresh SQLite store (TMP/state.db, made with --create): cli(*argv) → (code, out,
    err); cli.store is the store's URL."""
    store = f"sqlite://{tmp_path}/state.db"

    def run(*argv):
        code = main(["--store", store, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    assert main(["--store", store, "--create", "plan"]) == 0
    capsys.readouterr()
    run.store = store
    return run
