"""bench.py runs end to end and prints its tables. Nothing here asserts a speed: that is what the
benchmark is for, on an idle machine."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from conftest import DATA, run_entry

TINY = ["data.train_subset=1000", "data.val_size=200", "data.test_subset=200", f"data.root={DATA}"]


def table_rows(stdout: str) -> dict[str, list[str]]:
    """First cell -> the other cells of each Markdown table row below the header."""
    rows = [line.strip("|").split("|") for line in stdout.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def test_loop_bench_times_the_tutorial_loop_the_trainer_and_the_bare_loop(tmp_path: Path) -> None:
    done = run_entry("bench.py", ["--images", "256", "--repeats", "1", "--workers", "0", "train.threads=1",
                                  f"data.root={DATA}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = table_rows(done.stdout)
    assert [name[:3] for name in rows] == ["(a)", "(b)", "(c)"]
    assert all(float(cells[0].replace(",", "")) > 0 for cells in rows.values())  # img/s
    assert re.search(r"^\(b\)/\(a\) = \d+\.\d\dx", done.stdout, re.M)
    assert "per-trial overhead" in done.stdout


@pytest.mark.slow
def test_launcher_bench_times_a_sweep_under_each_launcher(tmp_path: Path) -> None:
    done = run_entry("bench.py", ["--launchers", "--trials", "1", "--repeats", "1", *TINY], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = table_rows(done.stdout)
    cores = os.cpu_count()
    assert list(rows) == ["sequential, 1 thread", f"sequential, {cores} threads", f"joblib, {cores} processes x 1 thread"]
    assert all(float(cells[0].replace(",", "")) > 0 for cells in rows.values())  # trials/h
    assert not list(tmp_path.glob("outputs/**/optuna.db"))  # the studies were throw-away


def test_launcher_bench_reports_a_bad_override_in_one_line(tmp_path: Path) -> None:
    done = run_entry("bench.py", ["--launchers", "--trials", "1", "--repeats", "1", "model.dropout=7", *TINY],
                     cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: bench --launchers: the sweep failed: model.dropout=7.0: must be in [0, 1)"
    assert done.stdout == ""
