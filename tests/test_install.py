"""The package works installed: it ships conf/ as archsearch/conf, finds it there, and `python -m archsearch` runs
from any directory. `make install-check` (CI) installs it into a fresh venv and trains one epoch."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, run_in_process


def test_the_shipped_conf_wins_and_the_checkouts_is_the_fallback(tmp_path: Path, monkeypatch) -> None:
    from archsearch.core import defaults

    monkeypatch.setattr(defaults, "files", lambda package: tmp_path)  # an installed package without conf/
    assert defaults.conf_dir() == ROOT / "conf"
    (tmp_path / "conf").mkdir()  # ... and with it
    assert defaults.conf_dir() == tmp_path / "conf"


def test_python_m_archsearch_composes_from_another_directory(tmp_path: Path, monkeypatch, capsys) -> None:
    code, out, err = run_in_process("archsearch/__main__.py", ["--cfg", "job", "train.epochs=3"], tmp_path,
                                    monkeypatch, capsys)
    assert code == 0, err
    assert "epochs: 3" in out and "max_params: 20000" in out


@pytest.mark.slow  # copies the checkout and builds the wheel: 10-20 s
def test_the_wheel_ships_every_config_and_runs_from_them(tmp_path: Path) -> None:
    # From a copy of the tracked files, as CI's fresh clone: the build writes build/ into its source.
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tmp_path / "src" / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(tmp_path / "src"), "-w",
                    str(tmp_path)], cwd=tmp_path, check=True, capture_output=True)
    [wheel] = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n.removeprefix("archsearch/conf/") for n in archive.namelist() if n.startswith("archsearch/conf/")}
        archive.extractall(tmp_path / "site")
    assert shipped == {p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml")}
    done = subprocess.run([sys.executable, "-m", "archsearch", "--cfg", "job", "train.epochs=3"], cwd=tmp_path,
                          env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True)
    assert done.returncode == 0 and "epochs: 3" in done.stdout, done.stderr[-3000:]
