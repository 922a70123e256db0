"""How the sweep asks for its trials: first the retries of lost trials, then the sampler's asks, never one whose
configuration the study already holds."""

import logging
from typing import Any, Dict, List, Optional

log = logging.getLogger("archsearch.search.sweeper")  # the sweep's log, which <sweep dir>/sweep.log copies
CONFIG_KEY = "config_key"  # user attr: what the trial trains (archsearch/core/config.py, configuration_key)
MAX_RESAMPLES = 50  # asks in a row that all hit configurations the study holds: the space is used up
SPACE_USED_UP = f"every configuration tried was already in the study ({MAX_RESAMPLES} asks in a row)"


class Asking:
    """The sweeper's asks (mixed into SweeperLogic, whose study name, trial ids and Hydra context they use)."""

    def _ask_new(self, study: Any, storage: Any, distributions: Dict[str, Any], fixed: Dict[str, Any]) -> Any:
        """A trial whose configuration no earlier trial of the study holds (finished, running, or failed
        by its own fault); None after MAX_RESAMPLES asks in a row that all repeat one.

        An ask that repeats one is never trained. It is closed as FAIL, with status `duplicate` and the
        holder's number, because FAIL is the one state that every Optuna sampler leaves out of its model
        (TPE, GP, NSGA-II, CMA-ES, random): the configuration then counts once, through the trial that holds
        it. PRUNED would count it again, as worse than every trained trial (TPE ranks a PRUNED trial without
        a reported epoch last), and COMPLETE with the holder's value would count it twice. The review shows
        duplicates apart, never as failures, and leaves them out of every count, table and plot."""
        import optuna

        from archsearch.search.trial import REASON, STATUS, lost_reason, trial_id

        for _ in range(MAX_RESAMPLES):
            try:
                trial = study.ask(fixed_distributions=distributions)
            except BaseException:  # a stop while the sampler draws: the trial is in the storage, RUNNING
                asking = getattr(study.sampler, "asking", None)
                if asking is not None:  # for _fail_unfinished, which only knows the trials in self.ids
                    self.ids.setdefault(asking, trial_id(storage, self.study_name, asking))
                raise
            tid = trial_id(storage, self.study_name, trial.number)
            self.ids[trial.number] = tid  # from now on a stop fails it (_fail_unfinished), duplicate or not
            overrides = sorted(self._overrides(trial.params, fixed))
            config_key = self._config_key(overrides)
            same = self._holder(study, trial.number, overrides, config_key)
            for name, value in fixed.items():  # as the plugin does: fixed values show with each trial
                trial.set_user_attr(name, value)
            trial.set_user_attr(CONFIG_KEY, config_key)
            if same is None:
                storage.record_heartbeat(tid)  # a first beat, so that a worker killed before its job starts is caught
                # What the trial says if its worker dies: Optuna fails a stale trial without a word, and a
                # finished trial's attributes can no longer be written. Every normal end overwrites it.
                trial.set_user_attr("overrides", overrides)
                trial.set_user_attr(REASON, lost_reason())
                return trial
            trial.set_user_attr(STATUS, "duplicate")
            trial.set_user_attr("duplicate_of", same)
            trial.set_user_attr(REASON, f"same configuration as #{same}")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            log.info(f"trial #{trial.number}: same configuration as #{same}; not trained, asking again")
        return None

    def _queue_retries(self, study: Any, storage: Any, distributions: Dict[str, Any]) -> None:
        """Queue, ahead of the sampler's asks, each trial that a stop or a lost worker failed and that has no
        retry yet, up to retry_lost times per configuration. Queued as Optuna's RetryHeartbeatStaleTrialCallback
        does (a WAITING trial with the params and system attrs failed_trial and retry_history), so that Optuna's
        own helpers read it; not with study.enqueue_trial, which marks a trial queued by hand. Only a trial of
        this search space: another space's params would not fit its distributions. Workers starting together
        queue one retry per lost trial (_yields_retry)."""
        import optuna

        from archsearch.search.trial import RETRY_OF, was_lost

        if not self.retry_lost:
            return
        study_id = storage.get_study_id_from_name(study.study_name)
        trials = study.get_trials(deepcopy=False)
        retried = {t.system_attrs["retry_history"][-1] for t in trials if t.system_attrs.get("retry_history")}
        for t in trials:
            if not was_lost(t) or t.number in retried:
                continue
            history = [*t.system_attrs.get("retry_history", []), t.number]
            if len(history) > self.retry_lost:
                continue
            if t.distributions != distributions:
                log.info(f"trial #{t.number} was lost, but not run again: its search space is not this sweep's")
                continue
            # What study.add_trial does, keeping the new trial's id for _yields_retry.
            retry = storage.create_new_trial(study_id, template_trial=optuna.trial.create_trial(
                state=optuna.trial.TrialState.WAITING, params=t.params, distributions=t.distributions,
                system_attrs={RETRY_OF: history[0], "retry_history": history}))
            if self._yields_retry(study, storage, retry, t.number):
                continue
            log.info(f"trial #{t.number} was lost ({t.user_attrs.get('reason') or 'no heartbeat'}): "
                     "queued to run again first")

    @staticmethod
    def _yields_retry(study: Any, storage: Any, retry: int, lost: int) -> bool:
        """Whether the retry just queued (storage id `retry`) of trial #lost yields to an earlier-numbered one
        that another worker queued meanwhile; it is then withdrawn, told FAIL as a duplicate.

        Race-free without a compare-and-set on study attrs: Optuna numbers a new trial under a lock on the study
        row, held until the trial is committed, so the later-numbered retry's worker reads after the earlier one
        is committed and sees it, and every worker keeps only the lowest number. (Optuna's
        RetryFailedTrialCallback runs once per stale trial, for the worker whose RUNNING -> FAIL update wins,
        but only on trials it fails for want of heartbeats, never on the FAIL trials queued here.)"""
        import optuna

        from archsearch.search.trial import REASON, STATUS

        number = storage.get_trial_number_from_id(retry)
        first = min(t.number for t in study.get_trials(deepcopy=False)
                    if (t.system_attrs.get("retry_history") or [None])[-1] == lost)
        if first == number:
            return False
        # Taken the way an ask takes a WAITING trial, so that no worker starts it meanwhile.
        if storage.set_trial_state_values(retry, state=optuna.trial.TrialState.RUNNING):
            storage.set_trial_user_attr(retry, STATUS, "duplicate")
            storage.set_trial_user_attr(retry, "duplicate_of", first)
            storage.set_trial_user_attr(retry, REASON, f"same retry of #{lost} as #{first}")
            storage.set_trial_state_values(retry, state=optuna.trial.TrialState.FAIL)
        else:
            log.warning(f"trial #{number}, a second retry of #{lost} after #{first}, was started before it could "
                        "be withdrawn")
        return True

    def _config_key(self, overrides: List[str]) -> Optional[str]:
        """What the trial would train (archsearch/core/config.py, configuration_key), from its composed config; None where
        it does not compose or build (its job then rejects it)."""
        from archsearch.core.config import configuration_key

        try:
            return configuration_key(self.hydra_context.config_loader.load_sweep_config(self.config, overrides))
        except Exception:  # noqa: BLE001 - a candidate's own error is for its job to report
            return None

    @staticmethod
    def _holder(study: Any, number: int, overrides: List[str], config_key: Optional[str]) -> Optional[int]:
        """The earliest trial before `number` that holds the same configuration, if any: the same network and
        recipe (config_key), or, for trials from before config keys, the same overrides. Trials that ended
        through no fault of their configuration (interrupted, worker lost, duplicates) hold nothing."""
        import optuna

        for t in study.get_trials(deepcopy=False):
            theirs = t.user_attrs.get(CONFIG_KEY)
            same = (theirs == config_key if theirs and config_key
                    else sorted(t.user_attrs.get("overrides") or []) == overrides)
            if t.number >= number or not same:
                continue
            if t.state != optuna.trial.TrialState.FAIL or str(t.user_attrs.get("reason", "")).startswith("diverged"):
                return t.number
        return None

    @staticmethod
    def _overrides(params: Dict[str, Any], fixed: Dict[str, Any]) -> List[str]:
        return [f"{name}={value}" for name, value in {**params, **fixed}.items()]
