"""The driver's state on disk: `driver.json` and an append-only journal beside it.

A save used to rewrite the whole file (every stitch record, ~2 MB at 1,000 stitches, twice per new
stitch: ~16 ms per stitch at 800, growing with their number). Now a save appends one line per changed
stitch record (its whole value, or null when it went) and, when it changed, one with the rest of the
state (networks, filters) to `driver.json.journal`; once the journal holds more lines than there are
stitches (and at least COMPACT_MIN), the state is written whole to `driver.json` (atomic replace) and the
journal emptied. Reading is `driver.json`, then every journal line in order. Each line is a whole value,
so replaying a journal that a crash left beside a newer `driver.json` gives the same state; a torn last
line (a crash mid-append) is ignored, any other unreadable line is skipped with a warning.
"""

from __future__ import annotations

import json
import logging
import os

from vnstitch.drivers.linux.layout import DRIVER_FILE, write_json

JOURNAL_SUFFIX = ".journal"
COMPACT_MIN = 256

log = logging.getLogger(__name__)


def _stamp(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _rest(state: dict) -> str:
    return json.dumps({k: v for k, v in state.items() if k != "stitches"}, sort_keys=True)


class StateFile:
    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, DRIVER_FILE)
        self.journal = self.path + JOURNAL_SUFFIX
        self.lines = 0             # journal lines since the last compaction
        self.rest: str | None = None   # the rest of the state as last written

    def stamp(self) -> tuple:
        """Changes whenever another writer saved (a new inode, mtime or size of either file)."""
        return (_stamp(self.path), _stamp(self.journal))

    def load(self) -> dict:
        try:
            with open(self.path) as handle:
                data = json.load(handle)
        except FileNotFoundError:
            data = {}
        data.setdefault("networks", {})
        data.setdefault("filters", {})
        data.setdefault("stitches", {})
        self.lines = 0
        try:
            with open(self.journal) as handle:
                text = handle.read()
        except FileNotFoundError:
            text = ""
        lines = text.split("\n")
        for number, line in enumerate(lines, 1):
            if not line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                if number < len(lines):   # not the torn tail of a crash mid-append
                    log.warning("%s line %d is not JSON: skipped", self.journal, number)
                continue
            self.lines += 1
            if "stitch" in entry:
                if entry.get("record") is None:
                    data["stitches"].pop(entry["stitch"], None)
                else:
                    data["stitches"][entry["stitch"]] = entry["record"]
            elif isinstance(entry.get("rest"), dict):
                data.update(entry["rest"])
        self.rest = _rest(data)
        return data

    def save(self, state: dict, changed: set[str]) -> None:
        """Journal the stitch records in `changed` (and the rest if it changed); compact when due."""
        stitches = state["stitches"]
        if self.lines + len(changed) + 1 > max(COMPACT_MIN, len(stitches)):
            self.compact(state)
            return
        out = []
        for key in sorted(changed):
            record = stitches.get(key)
            out.append(json.dumps({"stitch": key, "record": record}, sort_keys=True))
        rest = _rest(state)
        if rest != self.rest:
            out.append('{"rest": ' + rest + "}")
            self.rest = rest
        if not out:
            return
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, ("\n".join(out) + "\n").encode())
        finally:
            os.close(fd)
        self.lines += len(out)

    def compact(self, state: dict) -> None:
        """driver.json written whole, then the journal emptied (a crash between the two: replaying it gives
        the same state)."""
        write_json(self.path, state)
        if os.path.exists(self.journal):
            os.truncate(self.journal, 0)
        self.lines, self.rest = 0, _rest(state)


def read_state(directory: str) -> dict:
    """The state as the driver would read it (`lab down` uses this)."""
    return StateFile(directory).load()
