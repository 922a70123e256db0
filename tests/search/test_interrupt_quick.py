"""The default suite's end-to-end check that a signal fails the running trial, saying why: one short sweep, one
SIGTERM. tests/search/test_interrupt.py has the thorough cases (every signal, launcher and resume), all slow."""
from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest

from conftest import ROOT, TINY

# One 1-epoch trial on enough images (10k) that it is still training when the signal lands.
SWEEP = ["-m", "hydra.sweeper.n_trials=1", "hydra.sweeper.study_name=t", *TINY, "data.train_subset=10000"]
RUNNING, FAIL = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL


def trials(cwd: Path) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, or none while the sweep has not created it yet. Opening the storage creates its
    tables when any is missing: opened while the sweep is creating them, both would, and one would fail. So
    the storage is opened only once its schema is whole (its version is recorded last) and the study is in."""
    db = cwd / "outputs" / "optuna.db"
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as read_only:
            ready = (read_only.execute("SELECT count(*) FROM alembic_version").fetchone()[0] and
                     read_only.execute("SELECT count(*) FROM studies WHERE study_name = 't'").fetchone()[0])
    except sqlite3.OperationalError:  # no file, or a table not created yet
        return []
    return optuna.load_study(study_name="t", storage=f"sqlite:///{db}").get_trials() if ready else []


def test_sigterm_fails_the_running_trial_with_its_reason(tmp_path: Path) -> None:
    """SIGTERM once the trial's model is built: it ends FAIL, saying why, and so does its run."""
    (tmp_path / "outputs").mkdir()  # so that polling the storage never creates it in the sweep's place
    log = tmp_path / "sweep.log"
    proc = subprocess.Popen([sys.executable, str(ROOT / "sweep" / "run.py"), *SWEEP], cwd=tmp_path,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        # once its model is built (its accounting recorded): from then on the run has a metrics.json to write
        while not any(t.state == RUNNING and "n_params" in t.user_attrs for t in trials(tmp_path)):
            assert proc.poll() is None, f"the sweep ended early ({proc.returncode}): {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    [trial] = trials(tmp_path)
    assert trial.state == FAIL and trial.user_attrs["status"] == "failed", trial.user_attrs
    assert re.fullmatch(r"terminated \(SIGTERM\) (during epoch 1|before its first epoch)",
                        trial.user_attrs["reason"]), trial.user_attrs.get("reason")
    metrics = json.loads((Path(trial.user_attrs["run_dir"]) / "metrics.json").read_text())
    assert (metrics["status"], metrics["reason"]) == ("failed", trial.user_attrs["reason"])


def test_a_stop_while_the_sampler_draws_fails_the_trial_it_was_drawing(tmp_path: Path) -> None:
    """study.ask stores the trial before the sampler draws its values: a stop then must not leave it RUNNING."""
    from archsearch.search.sampling import PerTrialSeed
    from archsearch.search.storage import open_storage
    from hydra_plugins.archsearch_sweeper.archsearch_sweeper import ArchSearchSweeper

    class StoppedWhileDrawing(optuna.samplers.RandomSampler):
        def sample_independent(self, *args: Any) -> Any:
            raise KeyboardInterrupt

    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db")
    study = optuna.create_study(study_name="t", storage=storage,
                                sampler=PerTrialSeed(lambda seed: StoppedWhileDrawing(seed=seed), 1))
    sweeper = ArchSearchSweeper.__new__(ArchSearchSweeper)
    sweeper.ids, sweeper.study_name = {}, "t"
    with pytest.raises(KeyboardInterrupt):
        sweeper._ask_new(study, storage, {"optim.lr": optuna.distributions.FloatDistribution(0.01, 0.1)}, {})
    sweeper._fail_unfinished(study, storage, "interrupted (SIGINT)")
    [trial] = study.get_trials()
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs["reason"] == "interrupted (SIGINT) before its job started"


# A worker process running two jobs in turn, as loky reuses its processes: SIGTERM stops each job, and between
# the jobs the worker outlives SIGTERM and SIGHUP (tests/search/test_interrupt.py has the whole sweep's case).
WORKER = """
import os, signal, time
from archsearch.search import signals

signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as at a terminal, also under a suite started with nohup
for job in (1, 2):
    try:
        with signals.job_scope() as own_handler:
            assert own_handler
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    except signals.Terminated:
        print(f"job {job} stopped", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGHUP)
    time.sleep(0.1)
    print(f"alive after job {job}", flush=True)
"""


def test_a_worker_between_jobs_outlives_sigterm_and_sighup_and_its_next_job_still_stops() -> None:
    done = subprocess.run([sys.executable, "-c", WORKER], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.split("\n")) == (
        0, ["job 1 stopped", "alive after job 1", "job 2 stopped", "alive after job 2", ""]), done.stderr[-2000:]
