"""What the benchmarks share: the overrides of every benchmarked run, the conditions line, progress, one timed sweep."""
from __future__ import annotations

import os
import sys
import time
from typing import Any

from archsearch.core.defaults import ROOT


BENCH_DEFAULTS = ["data.rotation=7", "train.device=cpu"]  # user overrides come after and win
Rates = dict[str, list[float]]  # loop or launcher name -> its rate in each repeat
QUIET_RUN = ["train.progress=false", "train.checkpoint=false"]  # every benchmarked run
QUIET = ["train.epochs=1", *QUIET_RUN]  # every timed run


def conditions(machine: dict[str, Any], cores: int, load_start: float, detail: str = "") -> str:
    """When and where it ran, and how busy the machine was: the line every table starts from."""
    import datetime

    return (f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {machine['cpu']}, {cores} cores{detail}; "
            f"torch {machine['torch']}; load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)  # progress goes to stderr, so stdout is only the table


def run_sweep(overrides: list[str], tmp: str, mode: str, study: str = "bench") -> float:
    """Seconds of one `run.py -m` into the study `study` of <tmp>/bench.db, its sweep directory <tmp>/<study>,
    process start included. These come after `overrides`, so that the study is always the throw-away one."""
    import subprocess

    from archsearch.core.errors import ConfigError

    command = [sys.executable, str(ROOT / "sweep" / "run.py"), "-m", *overrides,
               f"hydra.sweeper.study_name={study}", f"hydra.sweeper.storage=sqlite:///{tmp}/bench.db",
               f"hydra.sweep.dir={tmp}/{study}"]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise ConfigError(f"bench {mode}: the sweep failed: {last.removeprefix('error: ')}")
    return seconds
