"""Runs and sweeps close what they open: a trial's database connections, an earlier sweep's log file."""
from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

import optuna
import pytest

from conftest import TINY, compose, run_in_process
from archsearch.search.storage import open_storage
from archsearch.search.trial import TrialLink


def test_a_trial_link_closes_its_heartbeat_and_its_connections(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="t", storage=open_storage(url), direction="maximize")
    study.ask()
    link = TrialLink(url, "t", 0, compose([], hydra_config=True).hydra.sweeper.pruner)
    link.report(0.5, 1)
    assert link.storage.engine.pool.checkedin() > 0
    link.close()
    assert link.storage.engine.pool.checkedin() == 0
    assert not [t for t in threading.enumerate() if t.name == "heartbeat"]


def sweep_logs() -> list[logging.FileHandler]:
    return [h for h in logging.getLogger("archsearch.search.sweeper").handlers if isinstance(h, logging.FileHandler)]


def test_a_run_and_two_sweeps_in_one_process_leave_no_file_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys, mnist) -> None:
    sweep = ["-m", "hydra.sweeper.n_trials=1", *TINY]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for args in ([*TINY], [*sweep, "hydra.sweeper.study_name=first"], [*sweep, "hydra.sweeper.study_name=second"]):
            code, _, err = run_in_process("run.py", args, tmp_path, monkeypatch, capsys)
            assert code == 0, err[-3000:]
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    first, second = (next((tmp_path / "outputs" / "sweeps" / name).glob("*/sweep.log")) for name in ("first", "second"))
    # Each sweep's trials and verdict in its own log (its first line, the study, comes before its log is opened).
    assert "--study second" not in first.read_text() and "--study second" in second.read_text()
    assert [Path(h.baseFilename) for h in sweep_logs()] == [second]  # the first's was closed when the second began
