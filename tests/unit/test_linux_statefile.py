"""The linux driver's state file and its journal (drivers/linux/statefile.py)."""

from __future__ import annotations

import json
import os

from vnstitch.drivers.linux.statefile import COMPACT_MIN, StateFile, read_state


def _state(n: int) -> dict:
    return {"networks": {"acme/blue": {"vnid": 7, "members": []}}, "filters": {},
            "stitches": {f"acme/s{i}": {"index": i, "hash": f"{i:08x}", "pids": {"a": 100 + i}} for i in range(n)}}


def test_a_save_appends_only_what_changed_and_reads_back_the_same_state(tmp_path):
    files = StateFile(str(tmp_path))
    state = _state(1000)
    files.compact(state)
    size = os.path.getsize(files.path)
    state["stitches"]["acme/s5"]["pids"]["a"] = 9
    state["stitches"]["acme/new"] = {"index": 1000, "hash": "ffffffff", "pids": {}}
    del state["stitches"]["acme/s7"]
    for key in ("acme/s5", "acme/new", "acme/s7"):
        files.save(state, {key})
    assert os.path.getsize(files.path) == size, "driver.json is not rewritten by a save"
    journal = open(files.journal).read().splitlines()
    assert len(journal) == 3 and all(len(line) < 200 for line in journal)
    assert read_state(str(tmp_path)) == state

    state["networks"]["acme/red"] = {"vnid": 8, "members": []}
    files.save(state, set())
    assert json.loads(open(files.journal).read().splitlines()[-1]) == {"rest": {"filters": {}, "networks": state["networks"]}}
    assert read_state(str(tmp_path)) == state


def test_the_journal_is_folded_into_the_file_once_it_outgrows_the_stitches(tmp_path):
    files = StateFile(str(tmp_path))
    state = _state(10)
    for i in range(COMPACT_MIN + 5):
        state["stitches"]["acme/s1"]["pids"]["a"] = i
        files.save(state, {"acme/s1"})
    assert files.lines < COMPACT_MIN
    assert len(open(files.journal).read().splitlines()) == files.lines
    assert read_state(str(tmp_path)) == state


def test_a_torn_last_line_is_ignored_and_a_replayed_journal_changes_nothing(tmp_path):
    files = StateFile(str(tmp_path))
    state = _state(3)
    files.compact(state)
    state["stitches"]["acme/s0"]["pids"]["a"] = 42
    files.save(state, {"acme/s0"})
    with open(files.journal, "a") as handle:
        handle.write('{"stitch": "acme/s1", "record": {"ind')     # a crash mid-append
    assert read_state(str(tmp_path)) == state

    # a crash after driver.json was replaced but before the journal was emptied
    journal = open(files.journal).read()
    files.compact(state)
    with open(files.journal, "w") as handle:
        handle.write(journal)
    assert read_state(str(tmp_path)) == state


def test_another_writer_s_save_changes_the_stamp(tmp_path):
    mine, theirs = StateFile(str(tmp_path)), StateFile(str(tmp_path))
    state = _state(2)
    mine.compact(state)
    stamp = mine.stamp()
    theirs.load()
    state["stitches"]["acme/s1"]["pids"]["b"] = 5
    theirs.save(state, {"acme/s1"})
    assert mine.stamp() != stamp
    assert mine.load()[0] == state


def test_a_crash_between_the_snapshot_and_the_journal_s_truncation_reverts_nothing(tmp_path, monkeypatch):
    files = StateFile(str(tmp_path))
    state = _state(3)
    files.compact(state)
    truncate = os.truncate
    monkeypatch.setattr(os, "truncate", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt("crash")))
    try:
        for i in range(COMPACT_MIN + 1):        # the last save compacts, and "crashes" before the truncation
            state["stitches"]["acme/s0"]["pids"]["a"] = i
            files.save(state, {"acme/s0"})
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(os, "truncate", truncate)
    assert json.load(open(files.path))["stitches"]["acme/s0"]["pids"]["a"] == COMPACT_MIN
    assert read_state(str(tmp_path)) == state, "the journal's older lines must not win over the snapshot"


def test_the_save_after_a_torn_line_starts_a_line_of_its_own(tmp_path):
    files = StateFile(str(tmp_path))
    state = _state(2)
    files.compact(state)
    with open(files.journal, "a") as handle:
        handle.write('{"stitch": "acme/s1", "rec')          # a crash mid-append
    after = StateFile(str(tmp_path))                        # the restarted driver
    state, _ = after.load()
    state["stitches"]["acme/new"] = {"index": 2, "hash": "0000000a", "pids": {"a": 7}}
    after.save(state, {"acme/new"})
    assert read_state(str(tmp_path))["stitches"]["acme/new"] == {"index": 2, "hash": "0000000a", "pids": {"a": 7}}


def test_a_read_that_another_writer_overlapped_is_read_again(tmp_path, monkeypatch):
    mine, theirs = StateFile(str(tmp_path)), StateFile(str(tmp_path))
    state = _state(2)
    mine.compact(state)
    theirs.load()
    read = StateFile._read
    calls = []

    def overlapped(self):
        data = read(self)
        if not calls:   # another instance saves while the first read is under way
            state["networks"]["acme/red"] = {"vnid": 8, "members": []}
            theirs.save(state, set())
        calls.append(1)
        return data
    monkeypatch.setattr(StateFile, "_read", overlapped)
    data, stamp = mine.load()
    assert len(calls) == 2 and "acme/red" in data["networks"] and stamp == mine.stamp()
