"""bench/selection.py judges the selection rules against val-confirmations (fresh seeds on the search's split),
and refuses a run that is not on that split."""
from __future__ import annotations

from pathlib import Path

from conftest import run_entry
from test_objective_rank import metrics, tiny_study

# seed 1 (the trial), seed 2 (results/selection), then the val-confirmations' seeds 201-203
RUNS = {0: ([0.995, 0.995, 0.995], [0.990, 0.990, 0.990], [0.991, 0.992, 0.991]),  # seed 1 lucky
        1: ([0.994, 0.993, 0.994], [0.994, 0.993, 0.994], [0.994, 0.995, 0.994]),  # steady
        2: ([0.992, 0.991, 0.992], [0.992, 0.992, 0.991], [0.993, 0.992, 0.993])}


def selection(tmp_path: Path, bad: dict | None = None):
    tiny_study(f"sqlite:///{tmp_path}/s.db", {n: {"val_acc_per_epoch": [0.5, *s1]} for n, (s1, _, _) in RUNS.items()})
    for n, (_, s2, judged) in RUNS.items():
        metrics(tmp_path / f"selection/tiny_t{n}/seed_2", "val_acc", s2)
        for k, low in zip((201, 202, 203), judged):
            metrics(tmp_path / f"val_confirm/tiny_t{n}/seed_{k}", "val_acc", [0.999, low, 0.999],
                    bad if (n, k) == (2, 203) else None)
    return run_entry("bench/selection.py", ["--storage", f"sqlite:///{tmp_path}/s.db", "--study", "tiny",
                                            "--val-confirm-dir", str(tmp_path / "val_confirm"),
                                            "--selection-dir", str(tmp_path / "selection")], cwd=tmp_path, timeout=120)


def test_rules_are_judged_by_the_val_confirmed_worst_seed(tmp_path: Path) -> None:
    done = selection(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "## tiny: 3 trials val-confirmed over seeds 201,202,203" in done.stdout
    assert "| #1 | 99.37% | 99.30% | 99.37% | 99.30% | 99.744% | 99.40% |" in done.stdout
    assert "The best val-confirmed worst min: #1 99.40%." in done.stdout
    assert "| seed 1, mean of last 3 (v2) | #0 | 99.10% | -0.50 |" in done.stdout
    assert "| seeds 1-2, min of last 3 | #1 | 99.40% | +1.00 |" in done.stdout


def test_a_val_confirmation_off_the_searchs_split_is_refused_in_one_line(tmp_path: Path) -> None:
    done = selection(tmp_path, bad={"val_size": 0})
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1
    assert "tiny_t2/seed_203/metrics.json: data.val_size=0" in done.stderr and "not the search's split" in done.stderr
