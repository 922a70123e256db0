"""What reseeding (hydra.sweeper.reseed) records on a trial, and how a study that reseeds ranks its trials.

A reseeded trial's value combines its seeds by train.objective_rule, the mean or the worst (archsearch/search/job.py,
more_seeds). A trial the reseed reached but that holds fewer seeds than the study's reseeded trials (the budget ran
out, say) has a value over fewer seeds: it is never ranked among the values over all of them, but right after the
last of them."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

SEED_OBJECTIVES = "seed_objectives"  # user attr: each seed's objective, once the reseed reached the trial
TRAINING_SEED = "training_seed"  # user attr: the further seed being trained, None once every seed is in


def seeds_held(attrs: Mapping[str, Any]) -> Optional[int]:
    """How many seeds a trial's value averages where the reseed reached it; None where it never did."""
    seeds = attrs.get(SEED_OBJECTIVES)
    return len(seeds) if seeds else None


def seeds_asked(trials: Sequence[tuple[float, Mapping[str, Any]]]) -> int:
    """The most seeds any of the (value, user attrs) trials holds: 1 when the study does not reseed."""
    return max((seeds_held(a) or 1 for _, a in trials), default=1)


def rank_keys(trials: Sequence[tuple[float, Mapping[str, Any]]], sign: int) -> list[tuple[float, bool]]:
    """A sort key per complete (value, user attrs) trial of one objective, best first; sign is 1 to maximize.

    A trial short of seeds ranks as if its value were the lowest of the trials holding them all (or its own, if
    lower), after them: then it never reaches the top, or a finalist's place, on a value over fewer seeds."""
    asked = seeds_asked(trials)
    full = [sign * v for v, a in trials if seeds_held(a) == asked]
    floor = min(full, default=None) if asked > 1 else None
    keys = []
    for value, attrs in trials:
        held = seeds_held(attrs)
        short = floor is not None and held is not None and held < asked
        keys.append((-min(sign * value, floor) if short else -sign * value, short))
    return keys


def short_of_seeds(attrs: Mapping[str, Any], asked: int) -> Optional[str]:
    """'1 of 2 seeds' for a trial the reseed reached that holds fewer seeds than asked, else None."""
    held = seeds_held(attrs)
    return f"{held} of {asked} seeds" if held is not None and held < asked else None
