"""Reseeding (hydra.sweeper.reseed) and what a stop or a ranking makes of it: a trial is COMPLETE only with every
seed it was asked for, and a value over fewer seeds never ranks among the means over all of them.

The job's own more_seeds runs against a real storage through a link that writes as TrialLink does; training is
replaced by a stand-in that returns a seed's result or stops as a killed job would."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from omegaconf import OmegaConf

from archsearch.search import job
from archsearch.search.reseed import rank_keys, seeds_asked, short_of_seeds
from archsearch.search.storage import open_storage
from archsearch.search.trial import TrialLink, trial_id

COMPLETE, FAIL = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL


class Killed(Exception):
    """The job's process dying mid-seed: nothing after it runs in the job."""


class StorageLink:
    """TrialLink without its heartbeat thread and pruner, on a trial of a real storage."""

    ahead_of = TrialLink.ahead_of

    def __init__(self, storage: Any, study: Any, number: int) -> None:
        self.storage, self.study, self.number = storage, study, number
        self.trial_id = trial_id(storage, study.study_name, number)

    def record(self, **attrs: Any) -> None:
        for key, value in attrs.items():
            self.storage.set_trial_user_attr(self.trial_id, key, value)

    def fail(self, reason: str) -> None:
        self.record(status="failed", reason=reason)
        self.study.tell(self.number, state=FAIL, skip_if_finished=True)


def reseed_cfg(top: int = 1, rule: str = "mean") -> Any:
    return OmegaConf.create({"seed": 1, "train": {"epochs": 2, "objective_rule": rule}, "reseed": {"top": top, "seeds": 2,
                                                                           "min_objective": None},
                             "trial_budget": {"epochs": None, "deadline": None}})


def first_seed_done(tmp_path: Path, top: int = 1) -> tuple[Any, Any, StorageLink, Any]:
    """A study with one trial whose first seed has just ended, recorded by the job's TrialCallbacks.finished."""
    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db")
    study = optuna.create_study(study_name="t", storage=storage, direction="maximize")
    trial = study.ask({"optim.lr": optuna.distributions.FloatDistribution(0.01, 0.1)})
    link = StorageLink(storage, study, trial.number)
    link.record(run_dir=str(tmp_path / "run"))
    trial.report(0.99, 2)
    callbacks = job.TrialCallbacks(link, reseed_cfg(top))
    callbacks.finished({"status": "complete", "objective": 0.99, "epochs_trained": 2})
    first = SimpleNamespace(status="complete", objective=0.99, epochs=[{"seconds": 1.0}] * 2)
    assert callbacks.reseeding is bool(top)  # alone in the study, it is in any top
    return storage, study, link, first


def stopped_by_the_sweeper(study: Any, storage: Any, link: StorageLink) -> Any:
    """The sweeper's safety net after its jobs were killed before they could fail their trials."""
    from hydra_plugins.archsearch_sweeper.archsearch_sweeper import ArchSearchSweeper

    sweeper = ArchSearchSweeper.__new__(ArchSearchSweeper)
    sweeper.ids = {link.number: link.trial_id}
    sweeper._fail_unfinished(study, storage, "terminated (SIGTERM)")
    return sweeper


def test_a_trial_without_further_seeds_is_complete_on_its_first(tmp_path: Path) -> None:
    storage, study, link, _ = first_seed_done(tmp_path, top=0)
    stopped_by_the_sweeper(study, storage, link)
    [done] = study.get_trials()
    assert done.state == COMPLETE and done.value == 0.99


def test_a_trial_stopped_between_its_seeds_fails_saying_which_was_next(tmp_path: Path) -> None:
    storage, study, link, _ = first_seed_done(tmp_path)
    assert storage.get_trial(link.trial_id).user_attrs["status"] is None  # not complete: seed 2 is to come
    stopped_by_the_sweeper(study, storage, link)
    [stopped] = study.get_trials()
    assert stopped.state == FAIL and stopped.user_attrs["reason"] == "terminated (SIGTERM) while training seed 2"


def test_a_trial_killed_in_its_second_seed_fails_saying_so_and_is_queued_again(tmp_path, monkeypatch) -> None:
    storage, study, link, first = first_seed_done(tmp_path)

    def killed_in_training(cfg: Any, out_dir: Any, callbacks: Any) -> None:
        raise Killed

    monkeypatch.setattr(job, "train", killed_in_training)
    with pytest.raises(Killed):
        job.more_seeds(reseed_cfg(), first, tmp_path / "run", link)
    sweeper = stopped_by_the_sweeper(study, storage, link)
    [stopped] = study.get_trials()
    assert stopped.state == FAIL and stopped.user_attrs["status"] == "failed"
    assert stopped.user_attrs["reason"] == "terminated (SIGTERM) while training seed 2"

    sweeper.retry_lost = 1
    sweeper._queue_retries(study, storage, stopped.distributions)
    [retry] = study.get_trials(states=[optuna.trial.TrialState.WAITING])
    assert retry.system_attrs["failed_trial"] == stopped.number and retry.params == stopped.params


@pytest.mark.parametrize("rule, value", [("mean", 0.98), ("min", 0.97)])
def test_a_trial_with_every_seed_in_ends_complete_on_their_seeds_by_the_objective_rule(tmp_path, monkeypatch, rule,
                                                                                       value) -> None:
    storage, study, link, first = first_seed_done(tmp_path)
    seen = []

    def second_seed(cfg: Any, out_dir: Any, callbacks: Any) -> Any:
        seen.append(dict(storage.get_trial(link.trial_id).user_attrs))  # what a stop now would find
        return SimpleNamespace(status="complete", objective=0.97, epochs=[{"seconds": 1.0}] * 2)

    monkeypatch.setattr(job, "train", second_seed)
    job.more_seeds(reseed_cfg(rule=rule), first, tmp_path / "run", link)
    assert seen[0]["status"] is None and seen[0]["training_seed"] == 2
    attrs = storage.get_trial(link.trial_id).user_attrs
    assert attrs["status"] == "complete" and attrs["training_seed"] is None and attrs["reason"] is None
    assert attrs["objective"] == pytest.approx(value) and attrs["seed_objectives"] == [0.99, 0.97]


def attrs(*seed_objectives: float) -> dict[str, Any]:
    return {"seed_objectives": list(seed_objectives)} if seed_objectives else {}


@pytest.mark.parametrize("trials, sign, order", [
    # Seed 1 of #1 beats every 2-seed mean, but the budget left it one seed: it ranks after them, before #3.
    ([(0.990, attrs(0.991, 0.989)), (0.995, attrs(0.995)), (0.985, attrs(0.986, 0.984)), (0.980, attrs())],
     1, [0, 2, 1, 3]),
    # Its own value below the lowest full mean: where its value puts it.
    ([(0.990, attrs(0.991, 0.989)), (0.970, attrs(0.970)), (0.980, attrs())], 1, [0, 2, 1]),
    # A study that does not reseed ranks by value.
    ([(0.990, attrs()), (0.995, attrs())], 1, [1, 0]),
    # Minimized: the lowest first, the one short of seeds after the full ones.
    ([(0.10, attrs(0.1, 0.1)), (0.05, attrs(0.05)), (0.20, attrs(0.2, 0.2))], -1, [0, 2, 1]),
])
def test_a_value_over_fewer_seeds_ranks_after_the_means_over_all(trials, sign, order) -> None:
    keys = rank_keys(trials, sign)
    assert sorted(range(len(trials)), key=lambda i: (keys[i], i)) == order


def test_short_of_seeds_says_how_many_of_how_many() -> None:
    trials = [(0.99, attrs(0.99, 0.99, 0.99)), (0.99, attrs(0.99, 0.98)), (0.98, attrs())]
    assert seeds_asked(trials) == 3
    assert [short_of_seeds(a, 3) for _, a in trials] == [None, "2 of 3 seeds", None]


def test_the_sweepers_best_is_never_a_trial_short_of_seeds(tmp_path: Path) -> None:
    from hydra_plugins.archsearch_sweeper.archsearch_sweeper import ArchSearchSweeper

    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/optuna.db", direction="maximize")
    for value, a in [(0.985, attrs()), (0.995, attrs(0.995)), (0.990, attrs(0.991, 0.989))]:
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs={"status": "complete", **a}))
    sweeper = ArchSearchSweeper.__new__(ArchSearchSweeper)
    sweeper.directions = ["maximize"]
    assert sweeper._best(study).number == 2  # #1's value is its first seed's alone: 1 of 2 seeds


def test_a_further_seed_that_diverges_fails_the_trial_as_diverged(tmp_path, monkeypatch) -> None:
    from archsearch.core.errors import DivergedError

    storage, study, link, first = first_seed_done(tmp_path)

    def diverging(cfg: Any, out_dir: Any, callbacks: Any) -> Any:
        raise DivergedError("diverged: loss nan at epoch 1")

    monkeypatch.setattr(job, "train", diverging)
    with pytest.raises(DivergedError):
        job.more_seeds(reseed_cfg(), first, tmp_path / "run", link)
    attrs = storage.get_trial(link.trial_id).user_attrs
    # "diverged..." is what makes the configuration held (asking.py, _holder): it is never trained again
    assert attrs["status"] == "failed" and attrs["reason"] == "diverged: loss nan at epoch 1 (seed 2)"


def test_whether_a_trial_is_in_the_top_counts_a_trial_short_of_seeds_as_the_review_ranks_it() -> None:
    study = optuna.create_study(direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for value, seeds in ((0.990, [0.990, 0.990]), (0.995, [0.995])):  # #1 holds one seed of two
        study.add_trial(optuna.trial.create_trial(value=value, params={"x": 0.5}, distributions=dist,
                                                  user_attrs={"seed_objectives": seeds}))
    link = SimpleNamespace(study=study, number=99)
    assert TrialLink.ahead_of(link, 0.992) == 0  # #1 ranks as #0's 0.990, behind 0.992
    assert TrialLink.ahead_of(link, 0.989) == 2
