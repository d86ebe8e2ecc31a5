"""Optional packages: imported when first needed, with an error that names the extra to install."""

from __future__ import annotations

import importlib
import sys
import time

from vnstitch.errors import MissingDependency

EXTRAS = {"matplotlib": "plots", "pandas": "forecast", "tqdm": "forecast", "torch": "forecast"}


def require(module: str, purpose: str):
    """`module` imported, or MissingDependency saying `pip install 'vnstitch[<extra>]'`."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(f"{purpose} needs {top}, which is not installed: "
                                f"pip install 'vnstitch[{EXTRAS[top]}]'") from None


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (extra `plots`)."""
    require("matplotlib", "plotting").use("Agg")
    return require("matplotlib.pyplot", "plotting")


class _NoBar:
    """What a disabled progress bar does: nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc) -> None:
        pass


class _LineBar(_NoBar):
    """A progress bar where stderr is no terminal (a CI log, a pipe): one line when the phase ends,
    no redraws flooding the log."""

    def __init__(self, total: int, desc: str | None, unit: str, file) -> None:
        self.total, self.desc, self.unit, self.file = total, (desc or "progress").strip(), unit, file
        self.n, self.started, self.closed = 0, time.perf_counter(), False

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            print(f"{self.desc}: {self.n:,}/{self.total:,} {self.unit}s in {time.perf_counter() - self.started:.1f} s",
                  file=self.file, flush=True)

    def __exit__(self, *exc) -> None:
        self.close()


def _interactive(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def progress_bar(total: int, disable: bool = False, **options):
    """A tqdm bar on stderr where that is a terminal (extra `forecast`; none without tqdm), one line per
    phase where it is not; nothing where it is disabled."""
    if disable:
        return _NoBar()
    stream = options.pop("file", None) or sys.stderr
    if not _interactive(stream):
        return _LineBar(total, options.get("desc"), options.get("unit", "it"), stream)
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, file=stream, **options)
