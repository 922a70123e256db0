#!/usr/bin/env bash
# `make gpu-check`: the CUDA path on one GPU, in a few minutes.
#   1. the tests marked cuda (train() in bf16 and fp32, augmentation, Dropout, a 2-trial sweep);
#   2. fcfree_5k5, seed 1, 15 epochs on the full 60k, in bf16 and in fp32: seconds per trial, and the
#      mean test accuracy of the last 3 epochs next to the CPU run of RESULTS.md (results/confirm);
#   3. the default sweep (python sweep/run.py -m) on a 2-minute budget: trials per hour on this GPU.
# PY picks the interpreter (default .venv/bin/python); everything is written under outputs/gpu-check.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DIR=outputs/gpu-check
rm -rf "$DIR" && mkdir -p "$DIR"

"$PY" -m pytest -m cuda tests/test_cuda.py -q -p no:cacheprovider
for precision in bf16 fp32; do
  "$PY" sweep/run.py +experiment=fcfree_5k5 seed=1 train.device=cuda train.precision="$precision" \
    train.progress=false hydra.run.dir="$DIR/fcfree_5k5_$precision"
done
"$PY" sweep/run.py -m train.device=cuda train.progress=false hydra.sweeper.budget.minutes=2 \
  hydra.sweeper.storage="sqlite:///$DIR/optuna.db" hydra.sweep.dir="$DIR/sweep"

"$PY" - "$DIR" <<'PY'
import json, sys
from pathlib import Path

import optuna

out = Path(sys.argv[1])
cpu = Path("results/confirm/fcfree_5k5/seed_1/metrics.json")
runs = [("cpu (RESULTS.md)", cpu)] + [(p, out / f"fcfree_5k5_{p}" / "metrics.json") for p in ("bf16", "fp32")]
print("| fcfree_5k5, seed 1 | device | s per 15-epoch trial | s per epoch (median) | last-3 test mean |")
print("|---|---|---:|---:|---:|")
for name, path in runs:
    if not path.exists():
        continue
    m = json.loads(path.read_text())
    secs = sorted(e["seconds"] for e in m["epochs"])
    last3 = sum(m["test_acc_per_epoch"][-3:]) / 3
    device = m["machine"]["gpu"] or f'{m["machine"]["cpu"]}, {m["machine"]["torch_threads"]} thread(s)'
    print(f"| {name} | {device} | {m['wall_time_s']:.1f} | {secs[len(secs) // 2]:.2f} | {100 * last3:.2f}% |")
study = optuna.load_study(study_name="mnist_20k_v2", storage=f"sqlite:///{out}/optuna.db")
done = [t for t in study.trials if t.datetime_complete and t.datetime_start]
span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
states = {s.name: sum(t.state == s for t in done) for s in optuna.trial.TrialState}
print(f"default sweep, 2-minute budget: {len(done)} trials in {span:.0f} s "
      f"({3600 * len(done) / span:.0f} trials/hour); by state: { {k: v for k, v in states.items() if v} }")
if study.best_trials:
    print(f"best: #{study.best_trial.number} val {study.best_value:.4f}, {study.best_trial.user_attrs.get('n_params')} params")
PY
