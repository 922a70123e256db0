"""Leaderboard rows: one per trial, from its state and the records its job wrote, or one per run's metrics.json."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from archsearch.core.errors import ConfigError
from archsearch.core.records import first_epoch_at
from archsearch.search.trial import RETRY_OF, STATUS

STATES = ("complete", "pruned", "running", "rejected", "duplicate", "failed")  # leaderboard order
BASELINE_GLOBS = ("outputs/confirm/baseline/seed_*/metrics.json", "outputs/runs/*baseline*/metrics.json")
BASELINE_LABEL = "baseline (documented Net)"


@dataclass
class Row:
    """One leaderboard line: a trial, or the baseline's metrics.json (number None)."""
    number: Optional[int]
    state: str  # one of STATES, or "baseline"
    label: str
    target: float  # constraints.target_acc of the run
    params: Optional[int] = None
    macs: Optional[int] = None
    objective: Optional[list[float]] = None  # the trial's values; pruned/running: the last reported value
    best_val: Optional[float] = None
    test_curve: list[float] = field(default_factory=list)
    first_at_target: Optional[int] = None
    wall_s: Optional[float] = None
    epochs_trained: int = 0  # every seed's: a reseeded trial (hydra.sweeper.reseed) trained more than one
    further_seed_epochs: int = 0  # of those, the ones of seeds after the first
    max_epochs: Optional[int] = None  # train.epochs of the trial
    hparams: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    started: Optional[datetime] = None
    finished: Optional[datetime] = None
    rank: Optional[int] = None
    trial: Any = field(default=None, repr=False)  # the FrozenTrial

    @property
    def test_acc(self) -> Optional[float]:
        return self.test_curve[-1] if self.test_curve else None


def trial_state(t: Any) -> str:
    """One of STATES: the job's own `status` record first, Optuna's state where the job left none.

    The records say more than the state: Optuna 2.10 studies hold pruned trials as COMPLETE and rejected ones as
    FAIL or PRUNED; the Optuna 5 sweeper tells pruned and rejected trials PRUNED, failed and duplicate ones FAIL.
    A `complete` (or `running`) record only counts once Optuna agrees: the sweeper may not have told the value yet."""
    status = t.user_attrs.get(STATUS)
    if status in ("pruned", "rejected", "duplicate", "failed"):
        return status
    return {"COMPLETE": "complete", "PRUNED": "pruned", "RUNNING": "running", "WAITING": "running"}.get(
        t.state.name, "failed")


def state_label(t: Any) -> str:
    """The trial's state in words, with why it ended; a retry of a lost trial (archsearch/search/asking.py) says so."""
    label = _end_label(t)
    lost = t.system_attrs.get(RETRY_OF)
    return label if lost is None else f"{label}, retry of #{lost}"


def _end_label(t: Any) -> str:
    state, reason = trial_state(t), t.user_attrs.get("reason")
    if state == "pruned":
        return f"pruned at epoch {t.user_attrs.get('pruned_at_epoch') or max(t.intermediate_values, default='?')}"
    if t.state.name == "WAITING":  # asked for by a retry or study.enqueue_trial, not started yet
        return "queued"
    if state == "running":
        return f"running, {len(t.intermediate_values)} epochs done" if t.intermediate_values else "running"
    if state in ("rejected", "duplicate", "failed") and reason:
        return f"{state}: {reason}"
    if state == "failed" and t.user_attrs.get(STATUS) != "failed":
        return "failed (stale/killed)"  # the job never recorded an end: its worker died
    return state


def as_number(value: Any, kind: Callable[[Any], Any]) -> Any:
    """kind(value), or None when the record is missing or not a number."""
    try:
        return None if value is None else kind(value)
    except (TypeError, ValueError):
        return None


def trial_row(t: Any, target: float) -> Row:
    """A leaderboard row from what the job recorded on its trial."""
    a = t.user_attrs
    state = trial_state(t)
    target = as_number(a.get("constraints.target_acc"), float) or target
    test = [x for x in a.get("test_acc_per_epoch") or [] if x is not None]
    val = [x for x in a.get("val_acc_per_epoch") or [] if x is not None]
    steps = t.intermediate_values
    if state == "complete":
        objective = list(t.values) if t.values is not None else None
    elif steps:  # a pruned trial's told value, when it has one, is this last value
        objective = [steps[max(steps)]]
    else:
        objective = list(t.values) if state == "pruned" and t.values is not None else None
    wall = a.get("wall_time_s")
    if wall is None and t.datetime_start and t.datetime_complete:
        wall = (t.datetime_complete - t.datetime_start).total_seconds()
    first = a["first_epoch_at_target"] if "first_epoch_at_target" in a else first_epoch_at(test, target)
    trained = a.get("epochs_trained", len(steps))
    further = max(0, trained - len(a.get("val_acc_per_epoch") or [])) if len(a.get("seeds") or []) > 1 else 0
    return Row(number=t.number, state=state, label=state_label(t), target=target, params=a.get("n_params"),
               macs=a.get("macs"), objective=objective, best_val=max(val, default=None), test_curve=test,
               first_at_target=first, wall_s=wall, epochs_trained=trained, further_seed_epochs=further,
               max_epochs=as_number(t.params.get("train.epochs", a.get("train.epochs")), int), hparams=dict(t.params),
               overrides=list(a.get("overrides") or []), started=t.datetime_start, finished=t.datetime_complete,
               trial=t)


def param_keys(rows: Sequence[Row]) -> list[str]:
    return sorted({k for r in rows for k in r.hparams})


def read_metrics(path: Path) -> dict[str, Any]:
    """A run's metrics.json, as archsearch/core/train.py's _write leaves it."""
    try:
        metrics = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable metrics.json ({getattr(e, 'strerror', None) or e})") from None
    missing = [k for k in ("status", "params", "macs", "fc_layers", "epochs", "config") if k not in metrics]
    if missing:
        raise ConfigError(f"{path}: has no {', '.join(missing)}; not a metrics.json written by sweep/run.py")
    return metrics


def find_baseline() -> Optional[Path]:
    """The newest complete seed confirmation of the documented Net, else its newest complete single run
    (cwd-relative): an interrupted or diverged run is no reference."""
    for pattern in BASELINE_GLOBS:
        found = sorted(Path().glob(pattern), key=lambda p: p.stat().st_mtime)
        complete = [p for p in found if _status(p) == "complete"]
        if complete:
            return complete[-1]
    return None


def _status(metrics_path: Path) -> Optional[str]:
    try:
        return json.loads(metrics_path.read_text()).get("status")
    except (OSError, ValueError):
        return None


def metrics_row(metrics: dict[str, Any], label: str) -> Row:
    """A reference row from a run's metrics.json."""
    epochs, cfg = metrics["epochs"], metrics["config"]
    val = [e["val_acc"] for e in epochs if e["val_acc"] is not None]
    return Row(number=None, state="baseline", label=label, target=cfg["constraints"]["target_acc"],
               params=metrics["params"], macs=metrics["macs"], best_val=max(val, default=None),
               test_curve=[e["test_acc"] for e in epochs], first_at_target=metrics.get("first_epoch_at_target"),
               wall_s=metrics.get("wall_time_s"), epochs_trained=len(epochs), max_epochs=cfg["train"]["epochs"])
