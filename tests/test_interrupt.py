"""Trials that end early: Ctrl-C (SIGINT), a killed worker (SIGKILL) and a diverging loss.

Real processes and signals: nothing finished is lost, no trial stays RUNNING, and running the same
command again goes on in a new sweep directory without touching the earlier one.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import optuna
import pytest

from conftest import ROOT, SMALL, run_entry, sigint_as_at_a_terminal, TINY
from sweep.study import GRACE_ENV

# Three epochs, so that a signal sent after a trial's first epoch lands in the middle of its training.
SWEEP = ["-m", "hydra.sweeper.n_trials=3", "hydra.sweeper.study_name=t", *TINY, "train.epochs=3"]
FAST_GRACE = {GRACE_ENV: "2"}  # a killed worker's trial is stale after 2 s instead of 60 s
COMPLETE, FAIL, RUNNING = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                           optuna.trial.TrialState.RUNNING)


def trials(cwd: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="t", storage=f"sqlite:///{cwd}/outputs/optuna.db").get_trials()


@pytest.fixture
def start_sweep(tmp_path: Path) -> Iterator[Callable[[str], tuple[subprocess.Popen, Path]]]:
    """Start the sweep in tmp_path with a short heartbeat grace, logging to tmp_path/<name>.log; a sweep
    still running at teardown (after a failed assertion) is killed."""
    procs = []

    def start(name: str) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"{name}.log"
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "sweep" / "run.py"), *SWEEP], cwd=tmp_path,
                                      env={**os.environ, "PYTHONUNBUFFERED": "1", **FAST_GRACE},
                                      stdout=log.open("w"), stderr=subprocess.STDOUT,
                                      preexec_fn=sigint_as_at_a_terminal))
        return procs[-1], log

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for_second_trial_training(proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    """Until the sweep's second trial has logged the first of its three epochs (the first is then finished)."""
    deadline = time.monotonic() + timeout
    while log.read_text().count("epoch  1/3") < 2:
        assert proc.poll() is None, f"the sweep ended early ({proc.returncode}): {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)


def finished_trial_files(cwd: Path) -> dict[str, bytes]:
    """The metrics.json of every finished trial, by path: later runs must leave these untouched."""
    return {t.user_attrs["run_dir"]: (Path(t.user_attrs["run_dir"]) / "metrics.json").read_bytes()
            for t in trials(cwd) if t.state == COMPLETE}


def test_an_interrupted_then_killed_sweep_goes_on_and_loses_nothing(tmp_path: Path, start_sweep) -> None:
    # Ctrl-C during the second trial: that trial fails at once, with its reason; the first stays finished.
    proc, log = start_sweep("first")
    wait_for_second_trial_training(proc, log)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130, log.read_text()[-3000:]
    assert log.read_text().rstrip().endswith("\ninterrupted")
    *done, interrupted = trials(tmp_path)
    assert done and all(t.state == COMPLETE and t.user_attrs["status"] == "complete" for t in done)
    assert interrupted.state == FAIL and interrupted.user_attrs["status"] == "failed"
    assert interrupted.user_attrs["reason"].startswith("interrupted (SIGINT)")
    kept = finished_trial_files(tmp_path)

    # The same command goes on with new trials until SIGKILL during its second: that one stays RUNNING.
    n_before = len(done) + 1
    proc, log = start_sweep("second")
    wait_for_second_trial_training(proc, log)
    proc.kill()
    proc.wait(timeout=60)
    killed_at = time.monotonic()
    *done, killed = trials(tmp_path)[n_before:]
    assert done and all(t.state == COMPLETE for t in done)
    assert killed.state == RUNNING  # nobody was left to say otherwise
    assert finished_trial_files(tmp_path).items() > kept.items()
    kept = finished_trial_files(tmp_path)

    # Once the heartbeat grace has passed, the same command fails the killed trial and runs its three.
    time.sleep(max(0.0, killed_at + 3.5 - time.monotonic()))  # Optuna counts whole seconds beyond the grace
    finished = run_entry("run.py", SWEEP, cwd=tmp_path, env=FAST_GRACE)
    assert finished.returncode == 0, finished.stderr[-3000:]
    after = trials(tmp_path)
    assert after[killed.number].state == FAIL and "status" not in after[killed.number].user_attrs  # it never said
    assert after[killed.number].user_attrs["reason"].startswith("worker lost: no heartbeat for over 2 s")
    assert [t.state for t in after[killed.number + 1:]] == [COMPLETE] * 3
    assert not [t for t in after if t.state == RUNNING]
    assert finished_trial_files(tmp_path).items() >= kept.items()  # earlier results, byte for byte
    sweep_dirs = {Path(t.user_attrs["run_dir"]).parent for t in after if t.state == COMPLETE}
    assert len(sweep_dirs) == 3  # one timestamped sweep directory per run


def test_diverging_trials_fail_at_once_and_the_sweep_goes_on(tmp_path: Path) -> None:
    # SGD at the largest allowed LR with batches of 16 turns the loss to NaN within ~20 steps; this
    # sampler seed asks 10.0 twice, so no trial finishes, which is a result, not a crash.
    done = run_entry("run.py", ["-m", "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=t", *TINY,
                                "train.epochs=2", "optim.lr=choice(0.05,10.0)", "train.batch_size=16",
                                "model.dropout=0", "sched=none"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "no trial of this study has finished yet" in done.stdout
    study = trials(tmp_path)
    assert len(study) == 2  # the first diverged trial did not stop the sweep
    for t in study:
        assert t.params["optim.lr"] == 10.0 and t.state == FAIL and t.user_attrs["status"] == "failed"
        assert t.user_attrs["reason"].startswith("diverged: loss") and "at epoch 1," in t.user_attrs["reason"]
        assert not t.intermediate_values  # stopped inside its first epoch, never reported
        metrics = json.loads((Path(t.user_attrs["run_dir"]) / "metrics.json").read_text())
        assert metrics["status"] == "failed" and metrics["reason"] == t.user_attrs["reason"]
