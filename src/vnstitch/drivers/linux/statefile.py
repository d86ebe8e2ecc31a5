"""The driver's state on disk: `driver.json` and an append-only journal beside it.

A save used to rewrite the whole file (every stitch record, ~2 MB at 1,000 stitches, twice per new
stitch: ~16 ms per stitch at 800, growing with their number). Now a save appends one line per changed
stitch record (its whole value, or null when it went) and, when it changed, one with the rest of the
state (networks, filters) to `driver.json.journal`; once the journal holds more lines than there are
stitches (and at least COMPACT_MIN), the state is then written whole to `driver.json` (atomic replace)
and the journal emptied. Reading is `driver.json`, then every journal line in order: the last line for
a key wins. The save's lines are in the journal before `driver.json` is replaced, so a crash (or a
reader) between the replace and the truncation replays lines whose last values are the snapshot's own.
A torn last line (a crash mid-append) is ignored, and the next save starts on a new line; any other
unreadable line is skipped with a warning. A read is retried until both files' stamps are the same
before and after it, so a reader never pairs an old `driver.json` with a newer journal unnoticed.
"""

from __future__ import annotations

import json
import logging
import os

from vnstitch.drivers.linux.layout import DRIVER_FILE, write_json

JOURNAL_SUFFIX = ".journal"
COMPACT_MIN = 256
READ_TRIES = 5

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
        self.torn = False          # the journal ends in a torn line (a crash mid-append)

    def stamp(self) -> tuple:
        """Changes whenever another writer saved (a new inode, mtime or size of either file)."""
        return (_stamp(self.path), _stamp(self.journal))

    def load(self) -> tuple[dict, tuple]:
        """(the state, the stamp it is of): read again while another writer changed the files meanwhile."""
        for _ in range(READ_TRIES - 1):
            before = self.stamp()
            data = self._read()
            if self.stamp() == before:
                return data, before
        before = self.stamp()   # a writer that never pauses: the last read, under the caller's lock
        return self._read(), before

    def _read(self) -> dict:
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
        self.torn = bool(text) and not text.endswith("\n")   # the next save starts on a line of its own
        for number, line in enumerate(lines, 1):
            if not line:
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict):
                    raise ValueError("not an object")
            except ValueError:
                if number < len(lines):   # not the torn tail of a crash mid-append
                    log.warning("%s line %d is not a JSON object: skipped", self.journal, number)
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
        """Journal the stitch records in `changed` (and the rest if it changed); then compact when due."""
        stitches = state["stitches"]
        out = [json.dumps({"stitch": key, "record": stitches.get(key)}, sort_keys=True) for key in sorted(changed)]
        rest = _rest(state)
        if rest != self.rest:
            out.append('{"rest": ' + rest + "}")
        if out:
            self._append(("\n" if self.torn else "") + "\n".join(out) + "\n")
            self.torn, self.rest = False, rest
            self.lines += len(out)
        if self.lines > max(COMPACT_MIN, len(stitches)):
            self.compact(state)

    def _append(self, text: str) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        data = text.encode()
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            while data:   # a short write (a full disk) raises on the next try rather than tearing a line
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)

    def compact(self, state: dict) -> None:
        """driver.json written whole, then the journal emptied. Call it with the state's every change
        already journaled (save does): a crash or a reader between the two replays lines whose last
        values are the snapshot's."""
        write_json(self.path, state)
        if os.path.exists(self.journal):
            os.truncate(self.journal, 0)
        self.lines, self.rest, self.torn = 0, _rest(state), False


def read_state(directory: str) -> dict:
    """The state as the driver would read it (`lab down` uses this)."""
    return StateFile(directory).load()[0]
