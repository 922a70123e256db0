"""bench/recipe_grid.py on a shrunk grid (2 variants x 1 seed, a tiny subset, 1 epoch), resumed, then read on
validation by bench/recipe.py, which refuses runs without a validation split."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TINY, run_entry, run_in_process

SHRUNK = [t for t in TINY if not t.startswith("train.threads")]


def test_grid_trains_each_variant_and_seed_once_and_recipe_compares_them_on_validation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    args = ["+experiment=fcfree_5k", "--variants", "today,conv_bn_relu", "--seeds", "201", "--out", "grid",
            "--lanes", "2", "--threads", "1", *SHRUNK]
    done = run_entry("bench/recipe_grid.py", args, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    runs = {v: json.loads((tmp_path / "grid/fcfree_5k" / v / "seed_201/metrics.json").read_text())
            for v in ("today", "conv_bn_relu")}
    for variant, m in runs.items():
        assert m["status"] == "complete" and m["config"]["seed"] == 201
        assert m["config"]["data"]["val_size"] == 200 and m["config"]["data"]["split_seed"] == 0
        assert m["config"]["model"]["name"] == "fcfree_5k" and m["config"]["sched"]["name"] == "onecycle"
        assert m["config"]["model"]["block"] == ("conv_relu_bn" if variant == "today" else variant)
    assert runs["today"]["params"] == runs["conv_bn_relu"]["params"]

    code, out, err = run_in_process("bench/recipe_grid.py", args, tmp_path, monkeypatch, capsys)  # again
    assert code == 0, err
    assert out.count("done already") == 2 and "trained" not in out

    # Other overrides over finished runs: refused before a new seed trains, though it comes first in the order.
    clash = [*args, "--seeds", "202,201", "model.dropout=0.05"]
    code, out, err = run_in_process("bench/recipe_grid.py", clash, tmp_path, monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "seed_201 holds a complete run of other overrides" in err
    assert not list(tmp_path.glob("grid/fcfree_5k/*/seed_202"))

    code, table, err = run_in_process("bench/recipe.py", ["--dir", "grid/fcfree_5k"], tmp_path, monkeypatch, capsys)
    assert code == 0, err
    assert "200 images held out of the training set (split_seed 0)" in table
    for variant, m in runs.items():
        last = " / ".join(f"{a:.2%}" for a in m["val_acc_per_epoch"][-3:])
        assert f"| {variant} | {variant} | 201 | 1 | {last} |" in table


def test_recipe_refuses_runs_without_a_validation_split(tmp_path: Path) -> None:
    run = tmp_path / "recipes/batch64/seed_1"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"status": "complete", "config": {"data": {"val_size": 0}}}))
    done = run_entry("bench/recipe.py", ["--dir", str(tmp_path / "recipes")], cwd=tmp_path, timeout=60)
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1
    assert "data.val_size=0, no validation split" in done.stderr


def test_a_variant_replaces_the_base_keys_and_groups_it_sets() -> None:
    from recipe_grid import merged

    base = ["model=stages", "sched=onecycle", "sched.pct_start=0.3", "train.batch_size=64", "optim.lr=0.04"]
    assert merged(base, ["train.batch_size=32"]) == [*base[:3], "optim.lr=0.04", "train.batch_size=32"]
    assert merged(base, ["optim.lr=0.1", "sched=linear"]) == ["model=stages", "train.batch_size=64", "optim.lr=0.1",
                                                             "sched=linear"]


def test_a_study_trial_base_is_its_overrides_without_what_only_the_search_used() -> None:
    from recipe_grid import plan, trial_overrides
    from conftest import ROOT, compose

    from archsearch.core.config import validate

    base = trial_overrides(f"sqlite:///{ROOT}/results/search_v3.db", "tiny4k_v3", 16)
    assert "model=stages" in base and "sched=onecycle" in base and "model.stages.s1.width=6" in base
    assert not [o for o in base if o.split("=")[0] in ("data.val_size", "train.threads", "train.progress", "sweep")]
    (run_dir, overrides), = plan(base, "tiny4k_v3_t16", ["sgd0_linear"], [202], Path("out"), [])
    assert run_dir == Path("out/tiny4k_v3_t16/sgd0_linear/seed_202")
    assert "sched=onecycle" not in overrides and not [o for o in overrides if o.startswith("sched.pct_start=0.28")]
    assert overrides[-4:] == ["sweep=none", "data.val_size=10000", "data.split_seed=0", "seed=202"]
    cfg = compose(overrides)
    validate(cfg)
    assert (cfg.sched.name, cfg.sched.pct_start, cfg.optim.momentum, cfg.optim.lr) == ("linear", 0.25, 0, 0.1)
    assert cfg.model.stages.s1.width == 6 and cfg.data.val_size == 10_000 and cfg.seed == 202
