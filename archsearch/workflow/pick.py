"""Which complete trials a confirmation takes first (confirm.py --pick): selection rules, pure functions on review rows."""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from archsearch.core.errors import ConfigError

PICKS = ("best", "smallest-within-noise")


def standard_error(p: float, n: int) -> float:
    """One standard error of an accuracy p measured on n images: 0.08 points at 99.4% on 10k."""
    return math.sqrt(p * (1 - p) / n)


def val_size(row: Any) -> Optional[int]:
    """data.val_size of the trial, as its user attrs record the sweep's fixed value."""
    value = row.trial.user_attrs.get("data.val_size") if row.trial is not None else None
    try:
        return int(float(value)) or None
    except (TypeError, ValueError):
        return None


def comparable(rows: Sequence[Any]) -> list[Any]:
    """The complete rows, in their order, that hold as many seeds as the study's most-seeded ones: a value over
    fewer seeds is never weighed against means over more (archsearch/search/reseed.py)."""
    from archsearch.search.reseed import seeds_asked, seeds_held

    complete = [r for r in rows if r.state == "complete" and r.objective]
    attrs = [r.trial.user_attrs if r.trial is not None else {} for r in complete]
    asked = seeds_asked([(r.objective[0], a) for r, a in zip(complete, attrs)])
    return [r for r, a in zip(complete, attrs) if (seeds_held(a) or 1) >= asked]


def smallest_within_noise(rows: Sequence[Any], n: int) -> list[Any]:
    """The complete trials within one standard error (on n validation images) of the best objective, fewest params
    first, then fewest MACs, then the higher objective: a winner as good within noise that is cheaper to confirm.
    A maximized objective (validation accuracy); trials short of seeds never count."""
    complete = comparable(rows)
    if not complete:
        return []
    best = max(r.objective[0] for r in complete)
    floor = best - standard_error(best, n)
    tied = [r for r in complete if r.objective[0] >= floor]
    return sorted(tied, key=lambda r: (r.params if r.params is not None else math.inf,
                                       r.macs if r.macs is not None else math.inf, -r.objective[0], r.number))


def ordered(rows: Sequence[Any], pick: str, directions: Sequence[str] = ("maximize",)) -> list[Any]:
    """The ranked rows with the rule's choices first, in its order, then the others as they were; `best` keeps
    them."""
    if pick == "best":
        return list(rows)
    if list(directions) != ["maximize"]:
        raise ConfigError(f"--pick={pick}: rules on one maximized objective (validation accuracy); this study's "
                          f"directions are {list(directions)}; use --pick best")
    complete = comparable(rows)
    if not complete:
        return list(rows)
    top = complete[0]  # the ranked winner
    n = val_size(top)
    if n is None:
        raise ConfigError(f"--pick={pick}: trial #{top.number} records no data.val_size, the images its objective "
                          "was measured on; use --pick best")
    first = smallest_within_noise(complete, n)
    return [*first, *(r for r in rows if all(r is not f for f in first))]
