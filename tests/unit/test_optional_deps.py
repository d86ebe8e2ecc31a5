"""matplotlib, pandas and tqdm are extras: the CLI and the API start without importing them, and a
feature that needs one that is missing names the extra to install."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from vnstitch.errors import MissingDependency

OPTIONAL = ("matplotlib", "pandas", "tqdm")


def imported_after(code: str) -> list[str]:
    probe = (f"import sys\n{code}\nimport json\n"
             f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({OPTIONAL!r}))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("code", [
    "import vnstitch.cli.main",
    "import vnstitch.api.app",
    "import vnstitch.experiments.replay, vnstitch.forecast.datasets, vnstitch.forecast.backtest",
    "from vnstitch.forecast.datasets import load_bundled_abilene; load_bundled_abilene()",
    "import sys; sys.argv = ['vnstitch', '--help']\nfrom vnstitch.cli.main import main\n"
    "try:\n    main()\nexcept SystemExit:\n    pass",
], ids=["cli", "api", "modules", "bundled-data", "vnstitch-help"])
def test_core_paths_import_no_optional_package(code):
    assert imported_after(code) == []


def test_core_dependencies_list_none_of_them():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert not [name for name in OPTIONAL if name in core], core
    extras = project["optional-dependencies"]
    assert any(d.startswith("matplotlib") for d in extras["plots"])
    assert any(d.startswith("pandas") for d in extras["forecast"]) and any(d.startswith("tqdm") for d in extras["forecast"])


def test_a_missing_package_names_its_extra(monkeypatch):
    from vnstitch import optional

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    with pytest.raises(MissingDependency, match=r"pip install 'vnstitch\[plots\]'"):
        optional.pyplot()
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingDependency, match=r"pip install 'vnstitch\[forecast\]'"):
        optional.require("pandas", "a table")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_without_tqdm_a_progress_bar_on_a_terminal_is_silent(monkeypatch):
    from vnstitch import optional

    monkeypatch.setitem(sys.modules, "tqdm", None)
    terminal = _Terminal()
    with optional.progress_bar(10, desc="x", file=terminal) as bar:
        bar.update(5)
    assert terminal.getvalue() == ""


def test_a_progress_bar_in_a_log_writes_one_line_per_phase(capsys):
    """stderr not a terminal (CI, a pipe): no redraws, one line when the phase ends."""
    from vnstitch import optional

    for phase in ("static", "reactive"):
        with optional.progress_bar(288, desc=f"{phase:>9}", unit="interval") as bar:
            for _ in range(288):
                bar.update()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "\r" not in "".join(lines)
    assert lines[0].startswith("static: 288/288 intervals in ") and lines[1].startswith("reactive: 288/288")
    with optional.progress_bar(5, disable=True) as bar:
        bar.update(5)
    assert capsys.readouterr().err == ""


def test_replay_without_matplotlib_fails_before_it_runs(monkeypatch, tmp_path):
    from vnstitch.experiments.replay import ReplayConfig, run_replay

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    loaded = []
    with pytest.raises(MissingDependency, match="plots"):
        run_replay(ReplayConfig(), model_name="last_value", plot_dir=str(tmp_path), show_progress=False,
                   inputs=None, log=loaded.append)
    assert not loaded and not list(tmp_path.iterdir())
