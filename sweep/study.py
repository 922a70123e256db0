"""The link between a training job and its Optuna trial: storage, pruner, heartbeat, records.

The plugin's sweeper asks for trials and tells their final value; everything in between
(per-epoch values, pruning, records, failure reasons) is written here by the job itself.
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from sweep.errors import ConfigError, StorageError

log = logging.getLogger(__name__)

# A RUNNING trial with no heartbeat for the grace period belongs to a killed worker and is failed
# when a sweep starts. The grace is an environment setting, not a config key: it is a property of
# the machines (how long a live worker may go silent), it must be the same for every process that
# touches the study (sweeper, local or cluster jobs, other workers), and the environment reaches all
# of them without being threaded through each job's config. Tests shorten it to a few seconds.
GRACE_ENV = "ARCHSEARCH_HEARTBEAT_GRACE_S"
DEFAULT_GRACE_SECONDS = 60
SQLITE_BUSY_SECONDS = 60  # concurrent workers on one SQLite file wait for its lock instead of failing at 5 s
STATUS = "status"  # user attr: complete | pruned | rejected | failed

T = TypeVar("T")


def pareto_front(items: Sequence[T], key: Callable[[T], Sequence[float]]) -> list[T]:
    """Items that no other item dominates, where key gives scores to maximize."""
    scores = [list(key(item)) for item in items]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [item for item, s in zip(items, scores) if not any(dominates(o, s) for o in scores if o is not s)]


def heartbeat_timing() -> tuple[float, int]:
    """(interval, grace) in seconds; the grace comes from $ARCHSEARCH_HEARTBEAT_GRACE_S (default 60)."""
    text = os.environ.get(GRACE_ENV, str(DEFAULT_GRACE_SECONDS))
    if not text.strip().isdigit() or int(text) < 2:
        raise ConfigError(f"{GRACE_ENV}={text!r}: must be a whole number of seconds >= 2")
    grace = int(text)  # Optuna compares whole seconds
    return min(10.0, grace / 4), grace  # several beats per grace period, so one slow write is not a death


# Errors of two processes creating the same fresh storage at once (tables, alembic's version row)
# or meeting a busy SQLite file; the second try finds the storage ready.
_RACES = ("already exists", "UNIQUE constraint failed", "duplicate key", "database is locked")


def with_busy_timeout(url: str) -> str:
    """The URL, for SQLite made to wait for a lock held by another worker (the driver gives up after 5 s)."""
    if url.startswith("sqlite:") and "timeout=" not in url:
        return f"{url}{'&' if '?' in url else '?'}timeout={SQLITE_BUSY_SECONDS}"
    return url


def open_storage(url: str) -> Any:
    """An RDB storage with heartbeats, so that trials of killed workers can be failed later."""
    import optuna

    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///"):].split("?")[0])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"hydra.sweeper.storage={url!r}: cannot create {e.filename} ({e.strerror})") from None
    interval, grace = heartbeat_timing()
    for attempt in range(4):
        try:
            return optuna.storages.RDBStorage(with_busy_timeout(url), heartbeat_interval=interval, grace_period=grace)
        except Exception as e:  # SQLAlchemy raises many types; the user needs the URL and the cause
            if attempt < 3 and any(race in str(e) for race in _RACES):
                time.sleep(random.uniform(0.1, 0.5))
                continue
            cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StorageError(f"hydra.sweeper.storage={url!r}: cannot be opened ({cause})") from None


def fail_stale_trials(storage: Any, study_id: int) -> list[int]:
    """Fail the RUNNING trials of killed workers (no heartbeat within the grace), saying why; their numbers."""
    import optuna

    _, grace = heartbeat_timing()
    reason = f"worker lost: no heartbeat for over {grace} s (killed, or its machine went away)"
    failed = []
    for tid in storage._get_stale_trial_ids(study_id):  # Optuna's own check, which records no reason
        try:
            storage.set_trial_user_attr(tid, STATUS, "failed")
            storage.set_trial_user_attr(tid, "reason", reason)
            if storage.set_trial_state(tid, optuna.trial.TrialState.FAIL):
                failed.append(storage.get_trial_number_from_id(tid))
        except RuntimeError:  # another worker failed it first
            continue
    if failed:
        log.warning(f"failed stale trial(s) {', '.join(f'#{n}' for n in failed)}: {reason}")
    return failed


def beat_while_running(storage: Any, trial_ids: Callable[[], Sequence[int]], stop: threading.Event) -> None:
    """Record a heartbeat for each of trial_ids() every interval until stop is set (a thread's target)."""
    while not stop.wait(storage.heartbeat_interval):
        for tid in trial_ids():
            try:
                storage.record_heartbeat(tid)
            except Exception as e:  # a busy or briefly unreachable database: the next beat may get through
                log.warning(f"heartbeat of trial id {tid} not recorded: {' '.join(str(e).split())[:200]}")


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
    raise ConfigError(f"hydra.sweeper.pruner.name={cfg.name!r}: must be one of median, halving, none")


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
        beat_while_running(self.storage, lambda: [self.trial._trial_id], self._stop)

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
