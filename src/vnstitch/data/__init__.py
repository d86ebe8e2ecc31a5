"""Small attributed copies of public data the demo and tests need (see README.md here)."""

from importlib import resources
from pathlib import Path


def data_path(name: str) -> Path:
    """Path of a bundled data file."""
    return Path(str(resources.files(__name__).joinpath(name)))
