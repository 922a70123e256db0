"""A study as a ranked review: rows in leaderboard order, counts per state, epochs saved, the winner."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar

from archsearch.core.defaults import assignment
from archsearch.core.records import OBJECTIVE_EPOCHS
from archsearch.report.rows import BASELINE_LABEL, STATES, Row, as_number, metrics_row, read_metrics, trial_row
from archsearch.search.reseed import rank_keys, seeds_asked, short_of_seeds

RANKED_BY_VALUE = ("complete", "pruned", "running")  # the states that have an objective to sort by
T = TypeVar("T")


def pareto_front(items: Sequence[T], key: Callable[[T], Sequence[float]]) -> list[T]:
    """Items that no other item dominates, where key gives scores to maximize. Not Optuna's study.best_trials,
    which is the front of the study's own objectives: the review's front adds params, which a single-objective
    study does not optimize, and rank() peels several fronts in turn."""
    scores = [list(key(item)) for item in items]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [item for item, s in zip(items, scores) if not any(dominates(o, s) for o in scores if o is not s)]


RULE_WORDS = {"mean": "mean", "min": "worst"}  # train.objective_rule, as the report words it


@dataclass
class StudyTotals:
    counts: dict[str, int]
    n_trials: int
    epochs_trained: int  # every seed's
    further_seed_epochs: int  # of those, the ones of reseeded trials' seeds after the first
    epochs_budget: int  # every trial's first seed run to its train.epochs
    max_epochs: Optional[int]  # the common train.epochs; None when trials differ
    trial_time_s: float  # sum of start-to-finish times, startup included
    span_s: Optional[float]  # first start to last finish

    @property
    def first_seed_epochs(self) -> int:
        return self.epochs_trained - self.further_seed_epochs

    @property
    def saving(self) -> float:
        return 1 - self.first_seed_epochs / self.epochs_budget if self.epochs_budget else 0.0

    @property
    def rejected_fraction(self) -> float:
        return self.counts["rejected"] / self.n_trials if self.n_trials else 0.0


@dataclass
class Review:
    study: str
    storage: str
    directions: list[str]
    objective_names: list[str]
    rows: list[Row]  # ranked
    summary: StudyTotals
    target: float
    budget: int
    baseline: Optional[Row] = None
    baseline_path: Optional[Path] = None

    @property
    def winner(self) -> Optional[Row]:
        """The best complete trial as ranked: a pruned one never wins, whatever its last value, nor, in a study that
        reseeds, one short of seeds ahead of those that hold them all."""
        return next((r for r in self.rows if r.state == "complete"), None)

    def accuracy(self, row: Row) -> Optional[float]:
        """The row's validation objective (val_acc), the accuracy that selection uses; None where it has none.
        Test accuracy is recorded beside it and never used to rank or select."""
        if "val_acc" not in self.objective_names or not row.objective:
            return None
        return row.objective[self.objective_names.index("val_acc")]

    @property
    def objective_rule(self) -> str:
        """How the trials' validation objective reads their last epochs (and a reseeded trial's seeds): the
        train.objective_rule they ran with, 'mean' (the default) or 'min'; 'mean or min' where they differ."""
        rules = {next((o.split("=", 1)[1] for o in r.overrides if o.startswith("train.objective_rule=")), "mean")
                 for r in self.rows if r.state in ("complete", "pruned", "running")}
        return " or ".join(sorted(rules)) or "mean"

    @property
    def objective_label(self) -> str:
        """'mean of the last 3 epochs', 'worst of the last 3 epochs', or both with 'or'."""
        rules = self.objective_rule.split(" or ")
        return f"{' or '.join(RULE_WORDS.get(r, r) for r in rules)} of the last {OBJECTIVE_EPOCHS} epochs"

    @property
    def front(self) -> list[Row]:
        """Complete trials on the Pareto front of the validation objective (max) and params (min)."""
        done = [r for r in self.rows if r.state == "complete" and self.accuracy(r) is not None and r.params]
        return sorted(pareto_front(done, key=lambda r: (self.accuracy(r), -r.params)), key=lambda r: r.params)


def rank(rows: list[Row], directions: Sequence[str]) -> list[Row]:
    """Rows in STATES order: complete trials by value (Pareto layers first for several objectives), pruned and
    running ones by their last value, then rejected, failed; numbers break ties. In a study that reseeds, a
    complete trial short of seeds ranks after those holding them all, and its label says so ("1 of 2 seeds")."""
    signs = [1 if d == "maximize" else -1 for d in directions]
    layer: dict[int, int] = {}
    done = [r for r in rows if r.state == "complete" and r.objective]
    left, depth = done, 0
    while left and len(signs) > 1:  # non-dominated sorting: peel Pareto fronts
        front = pareto_front(left, key=lambda r: [s * v for s, v in zip(signs, r.objective)])
        layer.update({id(r): depth for r in front})
        left, depth = [r for r in left if id(r) not in layer], depth + 1
    reseeded: dict[int, tuple[float, bool]] = {}
    if len(signs) == 1:  # the reseed ranks trials by one objective
        seeded = [(r.objective[0], _user_attrs(r)) for r in done]
        reseeded = dict(zip(map(id, done), rank_keys(seeded, signs[0])))
        asked = seeds_asked(seeded)
        for r in done:
            if note := short_of_seeds(_user_attrs(r), asked):
                r.label = f"{r.label}, {note}"

    def key(r: Row) -> tuple:
        score, short = reseeded.get(id(r), (-signs[0] * r.objective[0] if r.objective else float("inf"), False))
        return (STATES.index(r.state), layer.get(id(r), 0), score if r.state in RANKED_BY_VALUE else 0, short,
                r.number)

    ranked = sorted(rows, key=key)
    for i, r in enumerate(ranked, 1):
        r.rank = i
    return ranked


def summarize(rows: list[Row], duplicates: int = 0) -> StudyTotals:
    """Counts per state, and epochs trained against every trial trained to its train.epochs (a rejected trial
    counts in that budget: without the rejection its epochs would have been trained). The saving compares first
    seeds only; the further seeds of reseeded trials are spent on purpose and counted apart. Duplicate asks are
    not rows: they are only counted, as asks that repeated a configuration another trial holds."""
    longest = max((r.epochs_trained - r.further_seed_epochs for r in rows), default=0)
    maxima = {r.max_epochs or longest for r in rows}
    times = [(r.finished - r.started).total_seconds() for r in rows if r.started and r.finished]
    starts = [r.started for r in rows if r.started]
    ends = [r.finished for r in rows if r.finished]
    counts = {s: sum(r.state == s for r in rows) for s in STATES}
    counts["duplicate"] = duplicates
    return StudyTotals(counts=counts, n_trials=len(rows),
                   epochs_trained=sum(r.epochs_trained for r in rows),
                   further_seed_epochs=sum(r.further_seed_epochs for r in rows),
                   epochs_budget=sum(r.max_epochs or longest for r in rows),
                   max_epochs=maxima.pop() if len(maxima) == 1 else None, trial_time_s=sum(times),
                   span_s=(max(ends) - min(starts)).total_seconds() if starts and ends else None)


def _user_attrs(row: Row) -> dict[str, Any]:
    return row.trial.user_attrs if row.trial is not None else {}


def _attr(trials: Sequence[Any], key: str) -> Optional[str]:
    return next((t.user_attrs[key] for t in trials if key in t.user_attrs), None)


def review_study(study: Any, storage_url: str, baseline: Optional[Path]) -> Review:
    """The ranked review of a loaded study, with the baseline's metrics.json as a reference row when given."""
    trials = study.get_trials(deepcopy=False)
    target, budget = assignment()
    target = as_number(_attr(trials, "constraints.target_acc"), float) or target
    budget = as_number(_attr(trials, "constraints.max_params"), int) or budget
    directions = [d.name.lower() for d in study.directions]
    names = (_attr(trials, "objectives") or "").strip("[]").replace(" ", "").split(",")  # e.g. "[val_acc,params]"
    if len(names) != len(directions) or not all(names):
        names = ["val_acc"] if len(directions) == 1 else [f"objective {i}" for i in range(len(directions))]
    every = [trial_row(t, target) for t in trials]
    # A duplicate ask trained nothing and holds nothing: it is counted, never ranked, tabled or plotted.
    rows = rank([r for r in every if r.state != "duplicate"], directions)
    ref = metrics_row(read_metrics(baseline), BASELINE_LABEL) if baseline else None
    return Review(study.study_name, storage_url, directions, names, rows,
                  summarize(rows, duplicates=len(every) - len(rows)), target, budget, ref, baseline)
