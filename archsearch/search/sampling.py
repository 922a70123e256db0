"""A sampler seeded per trial, so that workers started together on one study never ask in lockstep."""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import optuna


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial `number`: mixed, not added, so that seeds 1 and 2 do not meet at trial numbers n+1 and n."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class PerTrialSeed(optuna.samplers.BaseSampler):
    """Delegates each trial to a fresh sampler seeded from (seed, the trial's number).

    The storage gives every trial a unique number, so workers that start together on one study draw from
    different streams from their first ask on, while a single worker's sweep stays reproducible from its
    seed. A seed mixed with the study's trial count could not do this: workers that start together read the
    same count. Samplers keep their state in the storage, so a fresh one per trial loses nothing but caches."""

    def __init__(self, make: Callable[[Optional[int]], optuna.samplers.BaseSampler], seed: int) -> None:
        self._make, self._seed = make, seed
        self._sampler = make(seed)
        self.asking: Optional[int] = None  # the number of the trial being sampled: the storage holds it already


    @property
    def wrapped(self) -> optuna.samplers.BaseSampler:
        return self._sampler

    def before_trial(self, study: Any, trial: Any) -> None:
        self.asking = trial.number
        self._sampler = self._make(trial_seed(self._seed, trial.number))
        self._sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return self._sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
        return self._sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        return self._sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self._sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._sampler.reseed_rng()
