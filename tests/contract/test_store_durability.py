"""SIGKILL a writer in the middle of a burst: every acknowledged write survives, the file is intact."""

import os
import signal
import subprocess
import sys
import textwrap

from vnstitch.store.sqlite import SQLiteStore

WRITER = textwrap.dedent("""
    import sys
    from vnstitch.store import Compare, Put
    from vnstitch.store.sqlite import SQLiteStore
    store = SQLiteStore(sys.argv[1])
    i = 0
    while True:
        # a multi-object transaction, like a stitch admission: stitch + two ledger rows
        store.txn([Compare("Stitch", "t", f"s{i}", 0)],
                  [Put("Stitch", "t", f"s{i}", {"i": i, "pad": "x" * 512}),
                   Put("LinkLedger", "", f"l{i % 7}", {"last": i}), Put("LinkLedger", "", f"m{i % 5}", {"last": i})])
        print(i, flush=True)  # acknowledged only after COMMIT returned
        i += 1
""")


def test_sigkill_mid_burst_loses_no_acknowledged_write(tmp_path):
    path = str(tmp_path / "burst.db")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    acked = -1
    try:
        for line in proc.stdout:
            acked = int(line)
            if acked >= 300:  # the writer is mid-burst: it keeps committing while we kill it
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    store = SQLiteStore(path)
    assert store.integrity_check() == "ok"
    names = {r.name for r in store.list("Stitch", "t")}
    missing = [i for i in range(acked + 1) if f"s{i}" not in names]
    assert not missing, f"acknowledged writes lost: {missing[:10]}"
    # every transaction landed whole: the ledger rows carry at least the stitch's revision
    for record in store.list("Stitch", "t"):
        assert store.get("LinkLedger", "", f"l{record.value['i'] % 7}").revision >= record.revision
    store.close()


def test_a_writer_that_cannot_get_the_lock_meets_store_unavailable(tmp_path):
    """Threads of one process queue on an in-process lock for SQLite's write lock; the wait is bounded,
    and a writer that times out gets the store's own error (never a hang or a raw sqlite3 error)."""
    import threading
    import time

    import pytest

    from vnstitch.errors import StoreUnavailable
    from vnstitch.store import Put

    store = SQLiteStore(str(tmp_path / "state.db"))
    store.write_timeout_s = 0.2
    held, release = threading.Event(), threading.Event()

    def hold():
        with store._write():
            held.set()
            release.wait(5)
    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="busy"):
            store.txn([], [Put("Probe", "", "p", {})])
        assert time.monotonic() - started < 2
    finally:
        release.set()
        holder.join(5)
    assert store.txn([], [Put("Probe", "", "p", {})]).succeeded  # the lock is free again
    store.close()
