"""`bench.py --launchers`: trials per hour of a shrunk sweep under each launcher set-up."""
from __future__ import annotations

import argparse
import os
import statistics

from bench_utils import QUIET, Rates, conditions, run_sweep, say


LAUNCHERS = {  # name -> overrides; {cores} is filled in
    "sequential, 1 thread": ["train.threads=1"],
    "sequential, {cores} threads": ["train.threads={cores}"],
    "joblib, {cores} processes x 1 thread": ["hydra/launcher=joblib", "hydra.launcher.n_jobs={cores}",
                                             "hydra.sweeper.n_jobs={cores}", "train.threads=1"],
}
LAUNCHER_SHRINK = [*QUIET, "data.train_subset=10000", "data.val_size=1000", "data.test_subset=1000"]


def time_sweep(overrides: list[str], trials: int) -> float:
    """Seconds of one `run.py -m` of `trials` trials into a throw-away study, process start included."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return run_sweep([*overrides, f"hydra.sweeper.n_trials={trials}"], tmp, "--launchers")


def bench_launchers(args: argparse.Namespace) -> None:
    """Trials per hour of one shrunk sweep under each launcher set-up, interleaved over repeats."""
    from archsearch.core.machine import machine_info

    cores = os.cpu_count() or 1
    setups = {name.format(cores=cores): [o.format(cores=cores) for o in extra] for name, extra in LAUNCHERS.items()}
    rates: Rates = {name: [] for name in setups}
    load_start = os.getloadavg()[0]
    for r in range(args.repeats):
        for name, extra in setups.items():
            seconds = time_sweep([*LAUNCHER_SHRINK, *extra, *args.overrides], args.trials)
            rates[name].append(args.trials / seconds * 3600)
            say(f"repeat {r + 1}/{args.repeats}  {name}: {seconds:.1f} s, {rates[name][-1]:.0f} trials/h")
    print(f"{args.trials} trials per sweep: {' '.join(LAUNCHER_SHRINK)} {' '.join(args.overrides)}".rstrip()
          + f"; median of {args.repeats} interleaved sweeps, each a fresh process and study")
    print(conditions(machine_info("cpu"), cores, load_start))
    print()
    print("| launcher | trials/h | runs (trials/h) |")
    print("|---|---:|---|")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):,.0f} | {' '.join(f'{v:.0f}' for v in values)} |")
