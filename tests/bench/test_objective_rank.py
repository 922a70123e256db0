"""bench/objective_rank.py on a tiny temporary study: both rules' ranks, a reseeded trial's later seed, and the
Spearman correlation with the confirmed worst seed."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import run_entry


def metrics(path: Path, key: str, accs: list[float], data: dict | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    config = {"data": {"val_size": 10_000, "split_seed": 0, "train_subset": 0, **(data or {})},
              "model": {"name": path.parent.name}, "seed": int(path.name.removeprefix("seed_")),
              "constraints": {"target_acc": 0.994, "max_params": 4000, "max_epochs": 15}}
    (path / "metrics.json").write_text(json.dumps({"status": "complete", "config": config, "params": 3000,
                                                   "macs": 10**6, "fc_layers": [],
                                                   "epochs": [{key: a, "val_acc": a} for a in accs]}))


def tiny_study(url: str, trials: dict[int, dict]) -> None:
    """Complete trials numbered 0.. with the user attrs a search stores; value: the study's objective."""
    import optuna

    study = optuna.create_study(study_name="tiny", storage=url, direction="maximize")
    for number in sorted(trials):
        attrs = {"data.val_size": "10000", **trials[number]}
        value = attrs.pop("value", None) or sum(attrs["val_acc_per_epoch"][-3:]) / 3
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs=attrs))


def test_each_rule_ranks_the_trials_and_is_judged_against_the_confirmed_worst_seed(tmp_path: Path) -> None:
    seed2 = tmp_path / "runs/trial_4/seed_2"  # a later seed of a reseeded trial
    metrics(seed2, "val_acc", [0.99, 0.991, 0.99])
    tiny_study(f"sqlite:///{tmp_path}/s.db", {
        0: {"val_acc_per_epoch": [0.5, 0.990, 0.995, 0.995]},  # mean 99.33%, min 99.0%
        1: {"val_acc_per_epoch": [0.5, 0.992, 0.992, 0.993]},  # mean 99.23%, min 99.2%: steadiest
        2: {"val_acc_per_epoch": [0.5, 0.980, 0.999, 0.999]},  # mean 99.27%, min 98.0%
        3: {"val_acc_per_epoch": [0.5, 0.970, 0.970, 0.970]},
        4: {"val_acc_per_epoch": [0.996, 0.996, 0.996], "value": 0.993, "seeds": [1, 2],  # seed 2 dips to 99.0%
            "seed_run_dirs": [str(tmp_path / "runs/trial_4"), str(seed2)]},
    })
    for number, lows in {0: [0.994, 0.996], 1: [0.995, 0.997], 2: [0.990, 0.999]}.items():
        for seed, low in enumerate(lows, 1):
            metrics(tmp_path / f"confirm/tiny_t{number}/seed_{seed}", "test_acc", [0.999, low, 0.999])
    done = run_entry("bench/objective_rank.py", ["--study", f"sqlite:///{tmp_path}/s.db::tiny", "--confirm-dir",
                                                 str(tmp_path / "confirm")], cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "## tiny (sqlite:///" in out and "5 complete trials" in out
    by_mean, by_min = out.split("Top 5 by robust")
    assert [line.split("|")[2].strip() for line in by_mean.splitlines() if line.startswith("| ") and "#" in line] \
        == ["#0", "#4", "#2", "#1", "#3"]
    assert "| 1 | #1 | 99.233% | 99.20% | 1 (1) |" in by_min
    assert "| 3 | #4 | 99.300% | 99.00% | 2 (2) |" in by_min  # its second seed's dip counts
    assert "| #1 | 4 | 1 | 99.50% | 2 |" in out and "| #2 | 3 | 4 | 99.00% | 2 |" in out
    assert "min rule against the confirmed worst min: +1.00 (n=3)" in out
    assert "mean rule against the confirmed worst min: -0.50 (n=3)" in out
