"""Trials that end early: Ctrl-C (SIGINT), SIGTERM and SIGHUP, a Slurm job's time-limit warning
(submitit's SIGUSR2), a killed worker (SIGKILL) and a diverging loss.

Real processes and signals: nothing finished is lost, no trial stays RUNNING, and running the same
command again goes on in a new sweep directory without touching the earlier one.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import optuna
import psutil
import pytest

from conftest import ROOT, TINY, run_entry, sigint_as_at_a_terminal
from archsearch.search.signals import _children
from archsearch.search.storage import GRACE_ENV

# Three epochs, so that a signal sent after a trial's first epoch lands in the middle of its training.
SWEEP = ["-m", "hydra.sweeper.n_trials=3", "hydra.sweeper.study_name=t", *TINY, "train.epochs=3"]
FAST_GRACE = {GRACE_ENV: "2"}  # a killed worker's trial is stale after 2 s instead of 60 s
COMPLETE, FAIL, RUNNING = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                           optuna.trial.TrialState.RUNNING)


def trials(cwd: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="t", storage=f"sqlite:///{cwd}/outputs/optuna.db").get_trials()


def in_own_process_group() -> None:
    """preexec_fn: Ctrl-C and a hang-up as at a terminal (a suite started with nohup ignores SIGHUP, and
    children inherit that), and a process group of its own, which the test can signal whole, as a closed
    terminal or `timeout` does, without reaching pytest."""
    sigint_as_at_a_terminal()
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    os.setpgrp()


@pytest.fixture
def start_sweep(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen, Path]]]:
    """Start the sweep (SWEEP, or the args given) in tmp_path with a short heartbeat grace, logging to
    tmp_path/<name>.log; a sweep still running at teardown (after a failed assertion) is killed, with
    its process group."""
    procs = []

    def start(name: str, args: list[str] = SWEEP) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"{name}.log"
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "sweep" / "run.py"), *args], cwd=tmp_path,
                                      env={**os.environ, "PYTHONUNBUFFERED": "1", **FAST_GRACE},
                                      stdout=log.open("w"), stderr=subprocess.STDOUT,
                                      preexec_fn=in_own_process_group))
        return procs[-1], log

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for_second_trial_training(proc: subprocess.Popen, log: Path, timeout: float = 240, epochs: int = 3) -> None:
    """Until the sweep's second trial has logged the first of its epochs (the first is then finished; with two
    parallel jobs, both are training)."""
    deadline = time.monotonic() + timeout
    while log.read_text().count(f"epoch  1/{epochs}") < 2:
        assert proc.poll() is None, f"the sweep ended early ({proc.returncode}): {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)


def finished_trial_files(cwd: Path) -> dict[str, bytes]:
    """The metrics.json of every finished trial, by path: later runs must leave these untouched."""
    return {t.user_attrs["run_dir"]: (Path(t.user_attrs["run_dir"]) / "metrics.json").read_bytes()
            for t in trials(cwd) if t.state == COMPLETE}


@pytest.mark.slow  # three sweeps and a heartbeat's grace: a minute on 2 cores; SIGTERM's test below stays quick
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


@pytest.mark.slow  # two sweeps of diverging trials: ~30 s
def test_diverging_trials_fail_at_once_and_the_sweep_goes_on(tmp_path: Path) -> None:
    # SGD at these LRs with batches of 16 turns the loss to NaN within ~20 steps, so no trial finishes, which
    # is a result, not a crash.
    done = run_entry("run.py", ["-m", "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=t", *TINY,
                                "train.epochs=2", "optim.lr=choice(5.0,10.0)", "train.batch_size=16",
                                "model.dropout=0", "sched=none"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "no trial of this study has finished yet" in done.stdout
    study = trials(tmp_path)
    assert len(study) == 2  # the first diverged trial did not stop the sweep
    for t in study:
        assert t.params["optim.lr"] in (5.0, 10.0) and t.state == FAIL and t.user_attrs["status"] == "failed"
        assert t.user_attrs["reason"].startswith("diverged: loss") and "at epoch 1," in t.user_attrs["reason"]
        assert not t.intermediate_values  # stopped inside its first epoch, never reported
        metrics = json.loads((Path(t.user_attrs["run_dir"]) / "metrics.json").read_text())
        assert metrics["status"] == "failed" and metrics["reason"] == t.user_attrs["reason"]


# SIGTERM and SIGHUP: schedulers and tools never press Ctrl-C. Two trials, so that the sequential sweep
# has a finished one to keep and a running one to fail; two parallel jobs are both running when hit.
SHORT_SWEEP = ["-m", "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=t", *TINY, "train.epochs=3"]
LAUNCHERS = {"sequential": [],
             "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"]}


def deliver(proc: subprocess.Popen, sig: int, how: str) -> None:
    """Send sig as it comes in real life: `timeout` signals its child, then the child's whole process group;
    a closed terminal hangs up the foreground group; `kill`, `docker stop` and systemd's main-process mode
    reach the sweeper alone, which passes it on to its jobs."""
    if how in ("timeout", "kill"):
        os.kill(proc.pid, sig)
    if how in ("timeout", "hangup"):
        os.killpg(proc.pid, sig)


def idle_worker(sweeper: int, timeout: float = 30) -> int:
    """The sweeper's worker process that is between jobs: it uses no CPU over half a second while another one
    trains. A worker whose job just ended needs a moment to hand back its result first."""
    workers = [psutil.Process(pid) for pid in _children(sweeper)]  # not loky's resource tracker

    def cpu_s(worker: psutil.Process) -> float:
        return worker.cpu_times().user + worker.cpu_times().system

    deadline = time.monotonic() + timeout
    while True:
        before = {w.pid: cpu_s(w) for w in workers}
        time.sleep(0.5)
        used = {w.pid: cpu_s(w) - before[w.pid] for w in workers}
        idle = [pid for pid, seconds in used.items() if seconds == 0]
        if len(idle) == 1 and max(used.values()) >= 0.1:
            return idle[0]
        assert time.monotonic() < deadline, used


@pytest.mark.slow  # a joblib sweep of two 15-epoch trials: ~30 s
def test_a_signal_to_a_worker_between_jobs_leaves_the_job_on_the_other_worker_training(
        tmp_path: Path, start_sweep) -> None:
    # A worker whose job has ended gets signals all the same: the ones its stopping sweeper passes on to all its
    # workers, or a hang-up of the whole group. Had it died of one, loky would have called its executor broken
    # and SIGKILLed the job still training, before it could fail its trial (the sweep then ended with exit 1).
    args = ["-m", "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=t", *TINY, "train.epochs=15",
            *LAUNCHERS["joblib"]]
    proc, log = start_sweep("first", args)
    wait_for_second_trial_training(proc, log, epochs=15)
    deadline = time.monotonic() + 60
    while sorted(t.user_attrs.get("status", "training") for t in trials(tmp_path)) != ["complete", "training"]:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    idle = idle_worker(proc.pid)
    os.kill(idle, signal.SIGTERM)
    os.kill(idle, signal.SIGHUP)
    assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    assert [t.state for t in trials(tmp_path)] == [COMPLETE, COMPLETE]


@pytest.mark.parametrize("sig, launcher, how", [
    pytest.param(signal.SIGTERM, "sequential", "timeout", id="SIGTERM-sequential-timeout", marks=pytest.mark.slow),
    pytest.param(signal.SIGHUP, "sequential", "hangup", id="SIGHUP-sequential-hangup", marks=pytest.mark.slow),
    pytest.param(signal.SIGTERM, "joblib", "timeout", id="SIGTERM-joblib-timeout", marks=pytest.mark.slow),
    pytest.param(signal.SIGTERM, "joblib", "kill", id="SIGTERM-joblib-kill", marks=pytest.mark.slow),
    pytest.param(signal.SIGHUP, "joblib", "hangup", id="SIGHUP-joblib-hangup", marks=pytest.mark.slow),
])
def test_sigterm_and_sighup_fail_the_running_trials_at_once_and_the_sweep_goes_on(
        tmp_path: Path, start_sweep, sig: int, launcher: str, how: str) -> None:
    name, args = signal.Signals(sig).name, [*SHORT_SWEEP, *LAUNCHERS[launcher]]
    proc, log = start_sweep("first", args)
    wait_for_second_trial_training(proc, log)
    deliver(proc, sig, how)
    assert proc.wait(timeout=60) == 128 + sig, log.read_text()[-3000:]
    # The entry point's line; not always the log's last: a hang-up of the whole group also kills loky's
    # resource tracker, and the one loky starts instead prints tracebacks of what it never tracked.
    assert f"\nterminated ({name})\n" in log.read_text()

    # Right after the exit: no trial RUNNING; each one that was training says why and how far it got,
    # and so does its metrics.json; a finished one stays finished.
    study = trials(tmp_path)
    assert not [t for t in study if t.state == RUNNING]
    stopped = [t for t in study if t.state == FAIL]
    # Sequential: the second trial was training. Joblib: both were, but under load one of the two jobs
    # may finish its last epoch before the signal lands; it then stays COMPLETE.
    assert len(study) == 2 and (len(stopped) == 1 if launcher == "sequential" else 1 <= len(stopped) <= 2)
    assert all(t.state == COMPLETE for t in study if t not in stopped)
    for t in stopped:
        assert t.user_attrs["status"] == "failed"
        assert re.fullmatch(rf"terminated \({name}\) during epoch [123]", t.user_attrs["reason"]), (
            t.user_attrs["reason"], log.read_text()[-3000:])
        metrics = json.loads((Path(t.user_attrs["run_dir"]) / "metrics.json").read_text())
        assert metrics["status"] == "failed" and metrics["reason"] == t.user_attrs["reason"]
    assert all(t.state == COMPLETE for t in study if t not in stopped)
    kept = finished_trial_files(tmp_path)

    # The same command goes on at once, with the default heartbeat grace: there is nothing stale to wait for.
    again = run_entry("run.py", args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "stale" not in again.stdout + again.stderr
    new = [t for t in trials(tmp_path)[len(study):] if t.user_attrs.get("status") != "duplicate"]
    assert [t.state for t in new] == [COMPLETE] * 2
    assert finished_trial_files(tmp_path).items() >= kept.items()  # earlier results, byte for byte
    # Each stopped trial's configuration was never judged: it ran again first, with its parameters.
    retries = {t.system_attrs["failed_trial"]: t for t in new if "failed_trial" in t.system_attrs}
    assert sorted(retries) == [t.number for t in stopped]
    assert all(retries[t.number].params == t.params for t in stopped)


def submitit_job_pid(cwd: Path) -> int | None:
    """The process of the submitit job that a sweep started in cwd runs its trial in, if there is one yet."""
    for entry in Path("/proc").iterdir():
        try:
            if b"submitit.core._submit" in (entry / "cmdline").read_bytes() and (entry / "cwd").resolve() == cwd:
                return int(entry.name)
        except (OSError, ValueError):
            continue
    return None


@pytest.mark.slow
def test_a_slurm_time_limit_warning_fails_the_submitit_jobs_trial_and_the_sweep_goes_on(
        tmp_path: Path, start_sweep) -> None:
    # Slurm sends a submitit job SIGUSR2 signal_delay_s before its time limit, and on preemption; the
    # sweeper is not signalled. The job fails its own trial with the reason, and the sweep goes on.
    proc, log = start_sweep("first", [*SHORT_SWEEP, "hydra/launcher=submitit_local", "hydra.sweeper.n_jobs=1"])
    deadline = time.monotonic() + 240
    while not any("epoch  1/3" in p.read_text() for p in tmp_path.glob("outputs/sweeps/t/*/.submitit/*/*_log.out")):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
    pid = submitit_job_pid(tmp_path.resolve())
    assert pid is not None
    os.kill(pid, signal.SIGUSR2)
    assert proc.wait(timeout=240) == 0, log.read_text()[-3000:]
    warned, second = trials(tmp_path)
    assert warned.state == FAIL and warned.user_attrs["status"] == "failed"
    assert re.fullmatch(r"terminated \(SIGUSR2: the job's time limit or preemption\) during epoch [123]",
                        warned.user_attrs["reason"]), warned.user_attrs
    metrics = json.loads((Path(warned.user_attrs["run_dir"]) / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["reason"] == warned.user_attrs["reason"]
    assert second.state == COMPLETE


def test_a_stopped_sweep_keeps_what_its_jobs_finished_and_fails_the_rest_with_how_far_they_got(tmp_path: Path) -> None:
    # The sweeper's safety net, after its jobs in other processes were killed before the sweeper could
    # tell their trials: a finished job's trial keeps its result, the others fail with what is known.
    from hydra_plugins.archsearch_sweeper.archsearch_sweeper import ArchSearchSweeper
    from archsearch.search.storage import open_storage
    from archsearch.search.trial import trial_id

    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db")
    study = optuna.create_study(study_name="t", storage=storage, direction="maximize")
    complete, pruned, failed, training, queued = (study.ask() for _ in range(5))
    for t in (complete, pruned, failed, training):
        t.set_user_attr("run_dir", str(tmp_path / f"trial_{t.number}"))
        t.report(0.5, 1)
    for t, status in ((complete, "complete"), (pruned, "pruned"), (failed, "failed")):
        t.set_user_attr("status", status)
    complete.set_user_attr("objective", 0.9)
    failed.set_user_attr("reason", "terminated (SIGTERM) during epoch 2")  # its job said so, then was killed
    training.report(0.6, 2)
    sweeper = ArchSearchSweeper.__new__(ArchSearchSweeper)
    sweeper.ids = {t.number: trial_id(storage, "t", t.number) for t in (complete, pruned, failed, training, queued)}

    sweeper._fail_unfinished(study, storage, "terminated (SIGTERM)")
    after = study.get_trials()
    assert [t.state for t in after] == [COMPLETE, optuna.trial.TrialState.PRUNED, FAIL, FAIL, FAIL]
    assert after[0].value == 0.9 and after[1].value == 0.5
    assert [t.user_attrs.get("reason") for t in after[2:]] == [
        "terminated (SIGTERM) during epoch 2", "terminated (SIGTERM) before its job finished, after epoch 2",
        "terminated (SIGTERM) before its job started"]
    assert all(t.user_attrs["status"] == "failed" for t in after[2:])


def test_trials_lost_to_a_stop_or_a_dead_worker_are_queued_once_to_run_again(tmp_path: Path) -> None:
    # Each way a trial can end, and which of them the next sweep runs again: only those whose configuration
    # was never judged, each once (retry_lost=1), and only where it fits this sweep's search space.
    from hydra_plugins.archsearch_sweeper.archsearch_sweeper import ArchSearchSweeper

    from archsearch.search.storage import open_storage

    space = {"optim.lr": optuna.distributions.FloatDistribution(0.01, 0.1)}
    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db")
    study = optuna.create_study(study_name="t", storage=storage, direction="maximize")
    ends = {"complete": ("complete", None), "diverged": ("failed", "diverged: loss nan at epoch 1"),
            "duplicate": ("duplicate", "same configuration as #0"),
            "terminated": ("failed", "terminated (SIGTERM) while training seed 2 during epoch 7"),
            "interrupted": ("failed", "interrupted (SIGINT) during epoch 2"),
            "killed-in-seed-2": (None, "worker lost: no heartbeat for over 60 s while training seed 2"),
            "killed-in-seed-2-older": ("complete", None),  # as jobs recorded it before seed 2 withdrew `complete`
            "worker-lost": (None, "worker lost: no heartbeat for over 60 s"),
            "other-space": ("failed", "terminated (SIGTERM) during epoch 1")}
    numbers = {}
    for name, (status, reason) in ends.items():
        trial = study.ask({"optim.lr": optuna.distributions.FloatDistribution(0.01, 0.2 if name == "other-space"
                                                                              else 0.1)})
        for key, value in (("status", status), ("reason", reason)):
            if value is not None:
                trial.set_user_attr(key, value)
        if name == "complete":
            study.tell(trial, 0.9)
        else:
            study.tell(trial, state=FAIL)
        numbers[name] = trial.number
    sweeper = ArchSearchSweeper.__new__(ArchSearchSweeper)

    sweeper.retry_lost = 0
    sweeper._queue_retries(study, storage, space)
    assert len(study.get_trials()) == len(ends)  # retries off: nothing queued

    sweeper.retry_lost = 1
    for _ in range(2):  # a second sweep, or a second worker starting, queues nothing more
        sweeper._queue_retries(study, storage, space)
    queued = study.get_trials(states=[optuna.trial.TrialState.WAITING])
    lost = [numbers[k] for k in ("terminated", "interrupted", "killed-in-seed-2", "killed-in-seed-2-older",
                                 "worker-lost")]
    assert [t.system_attrs["failed_trial"] for t in queued] == lost
    assert [t.system_attrs["retry_history"] for t in queued] == [[n] for n in lost]
    assert "fixed_params" not in queued[0].system_attrs  # not a trial queued by hand (RESULTS.md tells those)

    # The next ask runs the first of them, with its parameters; lost again, it is not queued a third time.
    retry = study.ask(space)
    assert retry.params == study.trials[numbers["terminated"]].params
    retry.set_user_attr("status", "failed")
    retry.set_user_attr("reason", "terminated (SIGTERM) during epoch 3")
    study.tell(retry, state=FAIL)
    sweeper._queue_retries(study, storage, space)
    assert len(study.get_trials(states=[optuna.trial.TrialState.WAITING])) == len(lost) - 1
    sweeper.retry_lost = 2
    sweeper._queue_retries(study, storage, space)
    again = study.get_trials(states=[optuna.trial.TrialState.WAITING])[-1]
    assert again.system_attrs["retry_history"] == [numbers["terminated"], retry.number]


@pytest.mark.slow  # two sweeps and a heartbeat's grace: about a minute on 2 cores
def test_a_worker_killed_in_a_further_seed_leaves_a_trial_that_says_so_and_runs_again(tmp_path: Path,
                                                                                        start_sweep) -> None:
    # One trial, in the top by itself, so it trains seed 2; SIGKILL once seed 2 has started its first epoch.
    args = [*SHORT_SWEEP, "hydra.sweeper.n_trials=1", "hydra.sweeper.reseed.top=1", "hydra.sweeper.reseed.seeds=2"]
    proc, log = start_sweep("first", args)
    deadline = time.monotonic() + 240
    while "training seed 2 too" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    killed_at = time.monotonic()
    [killed] = trials(tmp_path)
    # Its first seed's record is withdrawn while seed 2 trains: no stop may tell it COMPLETE on one seed.
    assert killed.state == RUNNING and killed.user_attrs["status"] is None and killed.user_attrs["training_seed"] == 2

    # Once the grace has passed, the next sweep fails it with why and which seed, and runs it again first.
    time.sleep(max(0.0, killed_at + 3.5 - time.monotonic()))
    again = run_entry("run.py", args, cwd=tmp_path, env=FAST_GRACE)
    assert again.returncode == 0, again.stderr[-3000:]
    killed, retry = trials(tmp_path)
    assert killed.state == FAIL
    assert re.fullmatch(r"worker lost: no heartbeat for over 2 s .* while training seed 2", killed.user_attrs["reason"])
    assert retry.system_attrs["failed_trial"] == killed.number and retry.params == killed.params
    assert retry.state == COMPLETE and retry.user_attrs["seeds"] == [1, 2] and retry.user_attrs["reason"] is None
