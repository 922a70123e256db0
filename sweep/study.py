"""The link between a training job and its Optuna trial: storage, pruner, heartbeat, records.

The plugin's sweeper asks for trials and tells their final value; everything in between
(per-epoch values, pruning, records, failure reasons) is written here by the job itself.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from sweep.errors import StorageError

HEARTBEAT_SECONDS = 10  # a RUNNING trial with no heartbeat for GRACE_SECONDS is stale
GRACE_SECONDS = 60
STATUS = "status"  # user attr: complete | pruned | rejected | failed

T = TypeVar("T")


def pareto_front(items: Sequence[T], key: Callable[[T], Sequence[float]]) -> list[T]:
    """Items that no other item dominates, where key gives scores to maximize."""
    scores = [list(key(item)) for item in items]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [item for item, s in zip(items, scores) if not any(dominates(o, s) for o in scores if o is not s)]


def open_storage(url: str) -> Any:
    """An RDB storage with heartbeats, so that trials of killed workers can be failed later."""
    import optuna

    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS,
                                          grace_period=GRACE_SECONDS)
    except Exception as e:  # SQLAlchemy raises many types; the user needs the URL and the cause
        cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(f"hydra.sweeper.storage={url!r}: cannot be opened ({cause})") from None


def make_pruner(cfg: Any) -> Any:
    """Build the pruner named by hydra.sweeper.pruner (median | halving | none)."""
    import optuna

    if cfg.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.n_startup_trials,
                                           n_warmup_steps=cfg.n_warmup_epochs)
    if cfg.name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=cfg.n_warmup_epochs,
                                                      reduction_factor=cfg.reduction_factor)
    if cfg.name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"hydra.sweeper.pruner.name={cfg.name!r}: must be one of median, halving, none")


def trial_id(study: Any, number: int) -> int:
    """The storage id of trial `number` (Optuna's Trial takes ids, jobs are told numbers)."""
    return study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)


class TrialLink:
    """The job's handle on its trial: report epochs, ask the pruner, write records, keep a heartbeat."""

    def __init__(self, storage_url: str, study_name: str, number: int, pruner_cfg: Any) -> None:
        import optuna

        self.storage = open_storage(storage_url)
        self.study = optuna.load_study(study_name=study_name, storage=self.storage,
                                       pruner=make_pruner(pruner_cfg))
        self.number = number
        self.trial = optuna.trial.Trial(self.study, trial_id(self.study, number))
        self._stop = threading.Event()
        self.storage.record_heartbeat(self.trial._trial_id)
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="optuna-heartbeat")
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self.storage.record_heartbeat(self.trial._trial_id)

    def report(self, value: float, epoch: int) -> bool:
        """Record the epoch's objective; True when the pruner says stop."""
        self.trial.report(value, epoch)
        return self.trial.should_prune()

    def record(self, **attrs: Any) -> None:
        for key, value in attrs.items():
            self.trial.set_user_attr(key, value)

    def interrupted(self, reason: str) -> None:
        """Fail the trial now: the sweeper is being interrupted too and will not tell it."""
        import optuna

        self.record(**{STATUS: "failed", "reason": reason})
        self.study.tell(self.number, state=optuna.trial.TrialState.FAIL)

    def close(self) -> None:
        self._stop.set()
