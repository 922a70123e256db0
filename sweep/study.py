"""The link between a training job and its Optuna trial: storage, pruner, heartbeat, records.

The sweeper asks for trials and tells their final state; everything in between (per-epoch values,
pruning, records, failure reasons) is written here by the job itself, through Optuna's public
storage and pruner API, so that a job on another machine needs nothing but the storage URL.
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
STATUS = "status"  # user attr, set when a job ends: complete | pruned | rejected | failed | duplicate
REASON = "reason"

T = TypeVar("T")


def pareto_front(items: Sequence[T], key: Callable[[T], Sequence[float]]) -> list[T]:
    """Items that no other item dominates, where key gives scores to maximize."""
    scores = [list(key(item)) for item in items]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [item for item, s in zip(items, scores) if not any(dominates(o, s) for o in scores if o is not s)]


def heartbeat_timing() -> tuple[int, int]:
    """(interval, grace) in whole seconds; the grace comes from $ARCHSEARCH_HEARTBEAT_GRACE_S (default 60)."""
    text = os.environ.get(GRACE_ENV, str(DEFAULT_GRACE_SECONDS))
    if not text.strip().isdigit() or int(text) < 2:
        raise ConfigError(f"{GRACE_ENV}={text!r}: must be a whole number of seconds >= 2")
    grace = int(text)
    return max(1, min(10, grace // 4)), grace  # several beats per grace period, so one slow write is not a death


def lost_reason() -> str:
    """What a trial whose worker died says: written when it starts, overwritten by every normal end."""
    return f"worker lost: no heartbeat for over {heartbeat_timing()[1]} s (killed, or its machine went away)"


# Errors of two processes creating the same fresh storage at once (tables, alembic's version row)
# or meeting a busy SQLite file; the second try finds the storage ready.
_RACES = ("already exists", "UNIQUE constraint failed", "duplicate key", "database is locked")


def with_busy_timeout(url: str) -> str:
    """The URL, for SQLite made to wait for a lock held by another worker (the driver gives up after 5 s)."""
    if url.startswith("sqlite:") and "timeout=" not in url:
        return f"{url}{'&' if '?' in url else '?'}timeout={SQLITE_BUSY_SECONDS}"
    return url


def _report_stale(study: Any, trial: Any) -> None:
    log.warning(f"failed stale trial #{trial.number}: {trial.user_attrs.get(REASON) or lost_reason()}")


def open_storage(url: str) -> Any:
    """An RDB storage with heartbeats, so that trials of killed workers can be failed later."""
    import optuna

    from sweep.optuna_compat import quiet_heartbeat_warnings
    from sweep.studyread import schema_upgrade_hint

    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///"):].split("?")[0])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"hydra.sweeper.storage={url!r}: cannot create {e.filename} ({e.strerror})") from None
    quiet_heartbeat_warnings()
    interval, grace = heartbeat_timing()
    for attempt in range(4):
        try:
            return optuna.storages.RDBStorage(with_busy_timeout(url), heartbeat_interval=interval, grace_period=grace,
                                              heartbeat_stale_trial_callback=_report_stale)
        except Exception as e:  # SQLAlchemy raises many types; the user needs the URL and the cause
            if attempt < 3 and any(race in str(e) for race in _RACES):
                time.sleep(random.uniform(0.1, 0.5))
                continue
            hint = schema_upgrade_hint(url, e)
            if hint:
                raise StorageError(hint) from None
            cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StorageError(f"hydra.sweeper.storage={url!r}: cannot be opened ({cause})") from None


def trial_id(storage: Any, study_name: str, number: int) -> int:
    """The storage id of trial `number` of a study (jobs are told numbers; storages speak ids)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def beat_while_running(storage: Any, trial_ids: Callable[[], Sequence[int]], stop: threading.Event) -> None:
    """Record a heartbeat for each of trial_ids() every interval until stop is set (a thread's target)."""
    interval, _ = heartbeat_timing()
    while not stop.wait(interval):
        for tid in trial_ids():
            try:
                storage.record_heartbeat(tid)
            except Exception as e:  # a busy or briefly unreachable database: the next beat may get through
                log.warning(f"heartbeat of trial id {tid} not recorded: {' '.join(str(e).split())[:200]}")


def make_pruner(cfg: Any) -> Any:
    """The pruner that hydra.sweeper.pruner describes (a `_target_` node of conf/hydra/sweeper/pruner/)."""
    import optuna
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        pruner = instantiate(cfg)
    except InstantiationException as e:
        cause = e.__cause__ or e
        raise ConfigError(f"hydra.sweeper.pruner: cannot be built ({' '.join(str(cause).split())})") from None
    if not isinstance(pruner, optuna.pruners.BasePruner):
        raise ConfigError(f"hydra.sweeper.pruner._target_={cfg.get('_target_')!r}: not an Optuna pruner")
    return pruner


class TrialLink:
    """The job's handle on its trial: report epochs, ask the pruner, write records, keep a heartbeat."""

    def __init__(self, storage_url: str, study_name: str, number: int, pruner_cfg: Any) -> None:
        import optuna

        self.storage = open_storage(storage_url)
        self.pruner = make_pruner(pruner_cfg)
        # The pruner judges a trial against the others through a Study; Hyperband also reads its sampler.
        self.study = optuna.load_study(study_name=study_name, storage=self.storage, pruner=self.pruner)
        self.number = number
        self.trial_id = trial_id(self.storage, study_name, number)
        self._stop = threading.Event()
        self.storage.record_heartbeat(self.trial_id)
        self._beat = threading.Thread(target=beat_while_running, args=(self.storage, lambda: [self.trial_id],
                                                                       self._stop), daemon=True, name="heartbeat")
        self._beat.start()

    def report(self, value: float, epoch: int) -> bool:
        """Record the epoch's objective; True when the pruner says stop."""
        self.storage.set_trial_intermediate_value(self.trial_id, epoch, value)
        return self.pruner.prune(self.study, self.storage.get_trial(self.trial_id))

    def ahead_of(self, value: float) -> int:
        """How many other complete trials of the study have a better value than `value` (one objective)."""
        import optuna

        sign = 1 if self.study.direction == optuna.study.StudyDirection.MAXIMIZE else -1
        done = self.study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
        return sum(sign * t.value > sign * value for t in done if t.number != self.number)

    def record(self, **attrs: Any) -> None:
        for key, value in attrs.items():
            self.storage.set_trial_user_attr(self.trial_id, key, value)

    def fail(self, reason: str) -> None:
        """Fail the trial now, with its reason: the sweeper is being stopped too and will not tell it."""
        import optuna

        self.record(**{STATUS: "failed", REASON: reason})
        self.study.tell(self.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)

    def close(self) -> None:
        self._stop.set()
