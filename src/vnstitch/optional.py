"""Optional packages: imported when first needed, with an error that names the extra to install."""

from __future__ import annotations

import importlib
import sys

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


def progress_bar(total: int, disable: bool = False, **options):
    """A tqdm bar on stderr; none where it is disabled or tqdm (extra `forecast`) is not installed."""
    if disable:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, file=options.pop("file", sys.stderr), **options)
