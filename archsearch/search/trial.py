"""A job's link to its Optuna trial: report epochs, ask the pruner, write records, keep a heartbeat.

The sweeper asks for trials and tells their final state; everything in between (per-epoch values,
pruning, records, failure reasons) is written here by the job itself, through Optuna's public
storage and pruner API, so that a job on another machine needs nothing but the storage URL.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Sequence

from archsearch.search.pruners import make_pruner
from archsearch.search.storage import close_storage, heartbeat_timing, open_storage

log = logging.getLogger(__name__)

STATUS = "status"  # user attr, set when a job ends: complete | pruned | rejected | failed | duplicate
REASON = "reason"


def lost_reason() -> str:
    """What a trial whose worker died says: written when it starts, overwritten by every normal end."""
    return f"worker lost: no heartbeat for over {heartbeat_timing()[1]} s (killed, or its machine went away)"


RETRY_OF = "failed_trial"  # system attr of a retry: the lost trial it runs again, as Optuna's retry callback names it
LOST_REASONS = ("interrupted", "terminated", "worker lost", "the sweep stopped")  # signals.describe, lost_reason


def was_lost(trial: Any) -> bool:
    """Whether a trial failed through no fault of its configuration: a stop, or a worker that died (a trial
    Optuna failed for want of heartbeats keeps whatever status its job last wrote, never `failed`)."""
    import optuna

    if trial.state != optuna.trial.TrialState.FAIL:
        return False
    status = trial.user_attrs.get(STATUS)
    if status == "failed":
        return str(trial.user_attrs.get(REASON, "")).startswith(LOST_REASONS)
    return status != "duplicate"


def report_stale(study: Any, trial: Any) -> None:
    """Optuna's callback for a trial it fails for want of heartbeats: say which, and why."""
    log.warning(f"failed stale trial #{trial.number}: {trial.user_attrs.get(REASON) or lost_reason()}")


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


class TrialLink:
    """The job's handle on its trial: report epochs, ask the pruner, write records, keep a heartbeat."""

    def __init__(self, storage_url: str, study_name: str, number: int, pruner_cfg: Any) -> None:
        import optuna

        self.storage = open_storage(storage_url, on_stale=report_stale)
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
        """How many other complete trials of the study rank ahead of `value` (one objective), as the review ranks
        them: a trial short of its seeds counts at most as the lowest of those holding them all (search/reseed.py)."""
        import optuna

        from archsearch.search.reseed import rank_keys

        sign = 1 if self.study.direction == optuna.study.StudyDirection.MAXIMIZE else -1
        done = self.study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
        keys = rank_keys([(t.value, t.user_attrs) for t in done if t.number != self.number], sign)
        return sum(-score > sign * value for score, _ in keys)

    def record(self, **attrs: Any) -> None:
        for key, value in attrs.items():
            self.storage.set_trial_user_attr(self.trial_id, key, value)

    def fail(self, reason: str) -> None:
        """Fail the trial now, with its reason: the sweeper is being stopped too and will not tell it."""
        import optuna

        self.record(**{STATUS: "failed", REASON: reason})
        self.study.tell(self.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)

    def close(self) -> None:
        """Stop the heartbeat, then close the storage it writes to."""
        self._stop.set()
        self._beat.join(timeout=heartbeat_timing()[0])  # a beat waiting on a locked database must not hold up a stop
        try:
            close_storage(self.storage)
        except Exception as error:  # noqa: BLE001 - in run_job's finally: must never replace the job's own end
            log.warning(f"trial #{self.number}: could not close its storage: {' '.join(str(error).split())[:200]}")
