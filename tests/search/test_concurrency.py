"""Several workers on one study: two sweeps started at the same moment on the same storage and study name,
on SQLite (one machine, one working directory) and on a real PostgreSQL server (as from two machines).

Both contribute, trial numbers are unique, every trial finishes with its own job directory, and the
storage is intact.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from conftest import ROOT, TINY
from pg import postgres_url  # noqa: F401 - the fixture

PER_WORKER = 2


def run_workers(cwds: list[Path], url: str) -> None:
    """Start one sweep per cwd at once, each with its own sampler seed (as the README says), and wait."""
    procs = []
    for seed, cwd in enumerate(cwds, start=1):
        cwd.mkdir(exist_ok=True)
        args = ["-m", f"hydra.sweeper.n_trials={PER_WORKER}", "hydra.sweeper.study_name=t",
                f"hydra.sweeper.storage={url}", f"hydra.sweeper.sampler.seed={seed}", *TINY]
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "sweep" / "run.py"), *args], cwd=cwd,
                                      env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [proc.communicate(timeout=400)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-3000:]


def assert_all_trials_finished_once(url: str, n_workers: int) -> None:
    trials = optuna.load_study(study_name="t", storage=url).get_trials()
    assert sorted(t.number for t in trials) == list(range(n_workers * PER_WORKER))  # none duplicated, none lost
    for t in trials:
        assert t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs["status"] == "complete", t
        metrics = json.loads((Path(t.user_attrs["run_dir"]) / "metrics.json").read_text())
        assert metrics["config"]["trial"] == t.number  # its own directory: no other trial wrote over it
        assert metrics["objective"] == t.value
    assert len({t.user_attrs["run_dir"] for t in trials}) == len(trials)


@pytest.mark.slow
def test_two_workers_on_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/outputs/optuna.db"
    run_workers([tmp_path, tmp_path], url)  # the same working directory, as two terminals would
    assert_all_trials_finished_once(url, 2)
    with sqlite3.connect(tmp_path / "outputs" / "optuna.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_on_one_postgres_database(tmp_path: Path, postgres_url: str) -> None:
    run_workers([tmp_path / "machine1", tmp_path / "machine2"], postgres_url)
    assert_all_trials_finished_once(postgres_url, 2)


def test_two_workers_starting_together_queue_one_retry_of_a_lost_trial(tmp_path: Path) -> None:
    """Two sweepers, each with its own storage on one SQLite file, queue retries at the same moment. The
    worst order is forced: each reads the study before either writes, and again after both have written."""
    import threading

    from hydra_plugins.archsearch_sweeper.archsearch_sweeper import ArchSearchSweeper
    from archsearch.search.storage import open_storage

    url = f"sqlite:///{tmp_path}/optuna.db"
    space = {"optim.lr": optuna.distributions.FloatDistribution(0.01, 0.1)}
    study = optuna.create_study(study_name="t", storage=open_storage(url), direction="maximize")
    lost = study.ask(space)
    lost.set_user_attr("status", "failed")
    lost.set_user_attr("reason", "terminated (SIGTERM) during epoch 2")
    study.tell(lost, state=optuna.trial.TrialState.FAIL)
    together = threading.Barrier(2, timeout=60)
    errors = []

    def worker() -> None:
        try:
            storage = open_storage(url)
            own = optuna.load_study(study_name="t", storage=storage)
            read = own.get_trials
            own.get_trials = lambda *a, **k: (together.wait(), read(*a, **k))[1]  # type: ignore[method-assign]
            sweeper = ArchSearchSweeper.__new__(ArchSearchSweeper)
            sweeper.retry_lost = 1
            sweeper._queue_retries(own, storage, space)
        except Exception as e:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    retries = [t for t in study.get_trials() if t.system_attrs.get("failed_trial") == lost.number]
    assert len(retries) == 2  # both queued one, so the race happened
    first, second = retries
    assert first.state == optuna.trial.TrialState.WAITING and first.params == lost.params
    assert second.state == optuna.trial.TrialState.FAIL and second.user_attrs["status"] == "duplicate"
    assert second.user_attrs["reason"] == f"same retry of #{lost.number} as #{first.number}"
