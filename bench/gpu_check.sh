#!/usr/bin/env bash
# `make gpu-check`: the CUDA path on one GPU, in about 10 minutes. Parts (all by default, or name some):
#   tests      the tests marked cuda (train() in bf16 and fp32, augmentation, Dropout, a 2-trial sweep);
#   precision  fcfree_5k5, seed 1, 15 epochs on the full 60k, in bf16 and in fp32: seconds per trial, and
#              the mean test accuracy of the last 3 epochs next to the CPU run of RESULTS.md;
#   sharing    the default sweep (python sweep/run.py -m) on a budget of MINUTES (2) with 1, 2 and 4 trials
#              at once on the one GPU (joblib): trained epochs per hour.
# PY picks the interpreter (default .venv/bin/python); everything is written under outputs/gpu-check.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DIR=outputs/gpu-check
MINUTES=${MINUTES:-2}  # the sharing part's budget per sweep
PARTS=${*:-tests precision sharing}
mkdir -p "$DIR"

for part in $PARTS; do
  case $part in
    tests)
      "$PY" -m pytest -m cuda tests/core/test_cuda.py -q -p no:cacheprovider ;;
    precision)
      for precision in bf16 fp32; do
        rm -rf "$DIR/fcfree_5k5_$precision"
        "$PY" sweep/run.py +experiment=fcfree_5k5 seed=1 train.device=cuda train.precision="$precision" \
          train.progress=false hydra.run.dir="$DIR/fcfree_5k5_$precision"
      done ;;
    sharing)
      rm -f "$DIR/sharing.db"
      for jobs in 1 2 4; do
        "$PY" sweep/run.py -m train.device=cuda train.progress=false hydra.sweeper.budget.minutes="$MINUTES" \
          hydra/launcher=joblib hydra.launcher.n_jobs="$jobs" hydra.sweeper.n_jobs="$jobs" \
          hydra.sweeper.storage="sqlite:///$DIR/sharing.db" hydra.sweeper.study_name="jobs$jobs" \
          hydra.sweep.dir="$DIR/sharing/jobs$jobs"
      done ;;
    *) echo "error: unknown part '$part' (tests, precision, sharing)" >&2; exit 2 ;;
  esac
done

"$PY" - "$DIR" <<'PY'
import json, sys
from pathlib import Path

import optuna

out = Path(sys.argv[1])
cpu = Path("results/confirm/fcfree_5k5/seed_1/metrics.json")
runs = [("cpu (RESULTS.md)", cpu)] + [(p, out / f"fcfree_5k5_{p}" / "metrics.json") for p in ("bf16", "fp32")]
if any(path.exists() for _, path in runs[1:]):
    print("| fcfree_5k5, seed 1 | device | s per 15-epoch trial | s per epoch (median) | last-3 test mean |")
    print("|---|---|---:|---:|---:|")
    for name, path in runs:
        if path.exists():
            m = json.loads(path.read_text())
            secs = sorted(e["seconds"] for e in m["epochs"])
            last3 = sum(m["test_acc_per_epoch"][-3:]) / 3
            device = m["machine"]["gpu"] or f'{m["machine"]["cpu"]}, {m["machine"]["torch_threads"]} thread(s)'
            print(f"| {name} | {device} | {m['wall_time_s']:.1f} | {secs[len(secs) // 2]:.2f} | {100 * last3:.2f}% |")
storage = f"sqlite:///{out}/sharing.db"
if (out / "sharing.db").exists():
    print("| trials at once | trials | complete | trained epochs | epochs per hour | best val |")
    print("|---:|---:|---:|---:|---:|---:|")
    for name in sorted(optuna.get_all_study_names(storage)):
        trials = optuna.load_study(study_name=name, storage=storage).trials
        done = [t for t in trials if t.datetime_complete and t.datetime_start]
        span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
        complete = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
        epochs = sum(len(t.intermediate_values) for t in done)
        best = max((t.value for t in complete), default=float("nan"))
        print(f"| {name[4:]} | {len(done)} | {len(complete)} | {epochs} | {3600 * epochs / span:.0f} | {best:.4f} |")
PY
