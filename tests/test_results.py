"""sweep/results.py on fabricated seed confirmations: verdicts, arithmetic, RESULTS.md and the plot."""
from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path

import pytest

from conftest import run_entry
from sweep import results as rs
from sweep.rows import first_epoch_at
from test_review import NEW_TRIALS, TRIALS, make_study

EPOCHS = 20
# experiment: (params, FC layers, the last 3 test accuracies of seeds 1, 2, 3)
RUNS = {
    "baseline": (19642, ["fc2.0: Linear 16->10"], [[0.9941, 0.9944, 0.9942], [0.9940, 0.9946, 0.9943],
                                                  [0.9945, 0.9944, 0.9947]]),
    "good": (14210, [], [[0.9945, 0.9950, 0.9948], [0.9941, 0.9944, 0.9947], [0.9952, 0.9949, 0.9951]]),
    "shaky": (9000, [], [[0.9946, 0.9948, 0.9950], [0.9942, 0.9938, 0.9945], [0.9944, 0.9947, 0.9949]]),
}


def write_run(root: Path, name: str, seed: int, params: int, fc_layers: list[str], last: list[float]) -> None:
    """A run directory as `python sweep/run.py -m +experiment=<name> seed=<seed>` leaves it (sweep/train.py)."""
    test = [round(0.985 + 0.0005 * e, 4) for e in range(1, EPOCHS - 2)] + last
    run = root / name / f"seed_{seed}"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(f"- +experiment={name}\n- seed={seed}\n")
    (run / "metrics.json").write_text(json.dumps({
        "status": "complete", "params": params, "macs": params * 50, "fc_free": not fc_layers,
        "fc_layers": fc_layers, "epochs_trained": EPOCHS, "wall_time_s": 600.0 + seed,
        "first_epoch_at_target": first_epoch_at(test, 0.994),
        "epochs": [{"epoch": e, "val_acc": None, "test_acc": a} for e, a in enumerate(test, 1)],
        "config": {"seed": seed, "model": {"name": name},
                   "constraints": {"max_params": 20000, "max_epochs": 20, "target_acc": 0.994}}}))


@pytest.fixture(scope="module")
def confirm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("confirm")
    for name, (params, fc, lasts) in RUNS.items():
        for seed, last in enumerate(lasts, 1):
            write_run(root, name, seed, params, fc, last)
    return root


@pytest.fixture(scope="module")
def experiments(confirm: Path) -> dict[str, rs.Experiment]:
    return {e.name: e for e in rs.find_experiments(confirm)}


@pytest.mark.parametrize("name, confirmed, says", [
    ("good", True, "**CONFIRMED**: FC-free, 14,210 < 20,000 params, 20 <= 20 epochs; every seed reaches 99.4%"),
    ("shaky", False, "**NOT CONFIRMED**: accuracy rule fails: seed 2 has 99.38% at epoch 19, under 99.4%."),
    ("baseline", False, "**NOT CONFIRMED**: it has a fully connected layer (fc2.0: Linear 16->10), which the rules "
                        "forbid. Accuracy alone passes: every seed reaches 99.4% in each of the last 3 epochs "
                        "(min 99.40%)."),
])
def test_verdicts(experiments: dict[str, rs.Experiment], name: str, confirmed: bool, says: str) -> None:
    e = experiments[name]
    assert e.confirmed is confirmed
    assert says in e.verdict()


@pytest.mark.parametrize("name", RUNS)
def test_mean_and_min_over_seeds(experiments: dict[str, rs.Experiment], name: str) -> None:
    lasts = RUNS[name][2]
    e = experiments[name]
    assert [r.last for r in e.runs] == lasts
    assert e.mean == pytest.approx(statistics.mean(statistics.mean(last) for last in lasts))
    assert e.min == min(min(last) for last in lasts)


def test_order_and_reproduce_commands(experiments: dict[str, rs.Experiment], confirm: Path) -> None:
    assert [e.name for e in rs.find_experiments(confirm)] == ["baseline", "shaky", "good"]  # baseline, then params
    assert experiments["good"].commands() == ["python sweep/run.py -m +experiment=good seed=1,2,3"]


def test_targets_name_what_meets_them_and_what_only_tried(experiments: dict[str, rs.Experiment]) -> None:
    rows = rs.targets_table(list(experiments.values())).splitlines()[2:]
    assert rows == [  # the baseline is never a candidate: it has a Linear head
        "| required | < 20,000 | <= 20 | good (14,210 params) | shaky (min 99.38%, 3 seed(s)) |",
        "| goal | < 6,000 | <= 15 | **not met** | - |",
        "| stretch | < 4,000 | <= 15 | **not met** | - |",
    ]


def test_fewer_seeds_and_over_budget_are_not_confirmed(tmp_path: Path) -> None:
    write_run(tmp_path, "big", 1, 20000, [], [0.996, 0.996, 0.996])
    (e,) = rs.find_experiments(tmp_path)
    assert not e.confirmed and e.rule_misses() == ["20,000 params, not under constraints.max_params=20,000",
                                                   "1 seed(s); confirmation needs 3"]


def test_writes_results_md_plot_and_sweep_cost(confirm: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = make_study(tmp_path / "optuna.db", "demo", TRIALS)
    out, plot = tmp_path / "RESULTS.md", tmp_path / "results" / "acc_vs_params.png"
    rs.main(["--confirm-dir", str(confirm), "--out", str(out), "--plot", str(plot), "--storage", url,
             "--study", "demo"])
    text = out.read_text()
    assert "Confirmed: good." in text and "cores" in text
    assert "![test accuracy vs params](results/acc_vs_params.png)" in text
    assert "| baseline (documented Net) | 19,642 | 0.98M | no | 20 | 1, 2, 3 |" in text
    assert "| demo | 8 | 3 | 2 | 0 | 1 | 2 | 38 | 80 | 52.5% |" in text  # the review's arithmetic
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert "good: CONFIRMED" in capsys.readouterr().out


def test_no_runs_is_one_line_error(tmp_path: Path) -> None:
    result = run_entry("results.py", ["--confirm-dir", str(tmp_path), "--out", str(tmp_path / "R.md")], cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "no */seed_*/metrics.json there" in result.stderr and not (tmp_path / "R.md").exists()


def test_sweep_cost_counts_duplicates_in_their_own_column(tmp_path: Path) -> None:
    url = make_study(tmp_path / "optuna.db", "new", NEW_TRIALS)
    header, _, row = rs.sweep_cost(url, ["new"])[4].splitlines()
    assert header.startswith("| study | trials | complete | pruned | running | rejected | duplicate | failed |")
    assert row.startswith("| new | 6 | 2 | 1 | 0 | 1 | 1 | 1 | 24 | 60 | 60.0% |")


def test_machine_line_names_the_cpu_as_cpuinfo_does() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)
    if not model:
        pytest.skip("no model name in /proc/cpuinfo here")
    assert rs.machine() == f"{model}, {os.cpu_count()} cores, {platform.system()}"
