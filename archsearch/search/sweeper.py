"""A Hydra sweeper for long architecture searches, on the Optuna sweeper plugin's config and grammar.

It keeps hydra-optuna-sweeper's schema (hydra.sweeper.sampler, direction, storage, study_name,
n_trials, n_jobs, params with its choice/range/interval grammar) and runs its own ask-launch-tell
loop on Optuna's public API, because the plugin's loop cannot:
- tell each job its trial number (`trial=N`), so that the job reports epochs and can be pruned;
- tell a pruned or rejected trial PRUNED (the plugin only knows COMPLETE and FAIL);
- skip a configuration the study already holds (a resumed sweep, a second worker);
- stop on a budget of trained epochs or minutes, and print the sweep's progress;
- fail, before any trial, on what would make every trial fail (the pre-flight below);
- keep the heartbeats of queued jobs, fail stale trials, and fail its own on Ctrl-C, SIGTERM or SIGHUP;
- run again, first, a trial that a stop or a lost worker failed (its configuration was never judged).
"""

import logging
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

from archsearch.core.errors import ConfigError
from archsearch.search.asking import SPACE_USED_UP, Asking
from archsearch.search.preflight import Preflight
from archsearch.search.sweeper_config import ReseedConf, make_sampler

log = logging.getLogger(__name__)


def _count(value: Any) -> int:
    """A count as a trial's user attrs hold it: the fixed override's value, an int or a string ("0", "2000")."""
    try:
        return int(float(value))
    except (TypeError, ValueError):  # None, null
        return 0


class SweeperLogic(Preflight, Asking, Sweeper):
    """The sweeper; Hydra instantiates it as hydra_plugins.archsearch_sweeper's ArchSearchSweeper, since it only
    accepts plugin classes defined in the hydra_plugins package."""

    def __init__(self, sampler: Any, pruner: Any, direction: Any, storage: Optional[str], study_name: Optional[str],
                 n_trials: int, n_jobs: int, max_failure_rate: float, params: Optional[DictConfig], budget: Any,
                 reseed: Any = None, retry_lost: int = 1, warmup_epochs: int = 1, search_space: Any = None,
                 custom_search_space: Optional[str] = None) -> None:
        # warmup_epochs is read by the pruner configs, through interpolation
        if search_space is not None or custom_search_space is not None:
            raise ConfigError("hydra.sweeper.search_space / custom_search_space: not supported here; "
                              "describe the space in hydra.sweeper.params")
        self.sampler_cfg, self.pruner_cfg = sampler, pruner
        self.directions = [str(d).lower() for d in (direction if isinstance(direction, Sequence)
                                                    and not isinstance(direction, str) else [direction])]
        self.storage_url, self.study_name = storage, study_name
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.params = params or {}
        self.budget_cfg = budget
        self.reseed = reseed if reseed is not None else OmegaConf.structured(ReseedConf)
        self.retry_lost = retry_lost
        self.batch: List[int] = []  # storage ids of the trials being run, for heartbeats
        self.ids: Dict[int, int] = {}  # trial number -> storage id, for the trials this run asked
        self.job_idx = 0

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)

    # --- the sweep -------------------------------------------------------------------------------------

    def sweep(self, arguments: List[str]) -> None:
        from archsearch.search.budget import Budget, SweepBar
        from archsearch.search.trial import beat_while_running

        if self.storage_url is None:
            raise ConfigError("hydra.sweeper.storage=null: pruning and resuming need a storage URL")
        storage = self._preflight(arguments)
        study = self._create_study(storage)
        distributions, fixed = self._search_space(arguments)
        self._queue_retries(study, storage, distributions)
        budget = Budget(self.n_trials, self.budget_cfg.epochs, self.budget_cfg.minutes,
                        confirm_seeds=self.budget_cfg.confirm_seeds)
        sampler = getattr(study.sampler, "wrapped", study.sampler)
        seeding = f" seeded per trial from {self.sampler_cfg.seed}" if sampler is not study.sampler else ""
        log.info(f"Study {self.study_name!r} in {self.storage_url}: {type(sampler).__name__}{seeding}, "
                 f"{type(study.pruner).__name__}, directions {self.directions}; budget: {budget.describe()}")
        self._log_to_sweep_dir()
        stop = threading.Event()
        beat = threading.Thread(target=beat_while_running, args=(storage, lambda: list(self.batch), stop),
                                daemon=True, name="sweeper-heartbeat")
        beat.start()
        bar = SweepBar(self.n_trials)
        try:
            reason = self._loop(study, storage, distributions, fixed, budget, bar)
        except BaseException as e:  # Ctrl-C, SIGTERM, SIGHUP, or a launcher that lost a job
            from archsearch.search.signals import describe

            self._fail_unfinished(study, storage, describe(e) if isinstance(e, KeyboardInterrupt) else
                                  f"the sweep stopped ({type(e).__name__})")
            log.warning("stopped: finished trials are kept; run the same command again to go on")
            raise
        finally:
            stop.set()
            bar.close()
        self._finish(study, reason)

    def _loop(self, study: Any, storage: Any, distributions: Dict[str, Any], fixed: Dict[str, Any],
              budget: Any, bar: Any) -> str:
        """Ask, launch and tell batches of n_jobs trials until a limit of the budget is reached; why it stopped."""
        from archsearch.search.budget import trial_line

        while not (reason := budget.exhausted()):
            size = min(self.n_jobs, budget.n_trials - budget.trials)
            epochs, deadline = budget.allowance(size)
            trials = []
            for _ in range(size):
                trial = self._ask_new(study, storage, distributions, fixed)
                if trial is None:  # the space is used up: launch what was asked, then stop
                    break
                trials.append(trial)
            if not trials:
                return SPACE_USED_UP
            overrides = [self._job_overrides(t, epochs, deadline) for t in trials]
            self.batch = [self.ids[t.number] for t in trials]
            with self._jobs_may_fail_themselves(storage):
                returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            failures = 0
            for trial, ret in zip(trials, returns):
                frozen = self._tell(study, storage, trial, ret)
                failures += frozen.user_attrs.get("status") == "failed"
                budget.spent(1, frozen.user_attrs.get("epochs_trained") or 0)
                budget.reserve_s = self._confirm_reserve(study)
                budget.confirm_epochs = self._confirm_epochs(self._best(study)) if budget.confirm_seeds else 0.0
                state = frozen.user_attrs.get("status", frozen.state.name.lower())
                line = trial_line(budget, frozen, state, self._best(study))
                log.info(line)
                bar.update(1, line.split(" | ", 1)[1])
            self.batch = []
            if failures / len(returns) > self.max_failure_rate:
                return f"{failures} of {len(returns)} trials failed, over max_failure_rate={self.max_failure_rate}"
            if len(trials) < size:
                return SPACE_USED_UP
        return reason

    def _job_overrides(self, trial: Any, epochs: Optional[int], deadline: Optional[float]) -> List[str]:
        extra = [f"trial={trial.number}"]
        if epochs is not None:
            extra.append(f"trial_budget.epochs={epochs}")
        if deadline is not None:
            extra.append(f"trial_budget.deadline={deadline:.0f}")
        if self.reseed.top:
            extra += [f"reseed.top={self.reseed.top}", f"reseed.seeds={self.reseed.seeds}"]
            if self.reseed.min_objective is not None:
                extra.append(f"reseed.min_objective={self.reseed.min_objective}")
        return [*trial.user_attrs["overrides"], *extra]

    def _tell(self, study: Any, storage: Any, trial: Any, ret: Any) -> Any:
        """Tell the trial's end from what its job recorded: complete, pruned (also a rejected candidate:
        TPE ignores FAIL, so it would propose the same misfit again, while it ranks a PRUNED trial with
        no epoch below every trained one), or failed, with its reason."""
        import optuna
        from hydra.core.utils import JobStatus

        from archsearch.search.trial import REASON, STATUS

        state = optuna.trial.TrialState
        tid = self.ids[trial.number]
        status = storage.get_trial(tid).user_attrs.get(STATUS)
        if ret.status == JobStatus.COMPLETED and status == "complete":
            result = ret.return_value
            values = [float(v) for v in (result if isinstance(result, (list, tuple)) else [result])]
            return study.tell(trial, values=values, skip_if_finished=True)
        if status in ("pruned", "rejected"):
            return study.tell(trial, state=state.PRUNED, skip_if_finished=True)
        if status != "failed":  # the job died before it could say why
            try:
                ret.return_value  # raises the job's exception
                reason = "the job returned no result"
            except Exception as error:  # noqa: BLE001 - any error of the job is the trial's failure
                reason = f"{type(error).__name__}: {error}"
            if storage.get_trial(tid).state == state.RUNNING:
                storage.set_trial_user_attr(tid, STATUS, "failed")
                storage.set_trial_user_attr(tid, REASON, " ".join(reason.split())[:500])
            log.warning(f"trial #{trial.number} failed: {reason}")
        return study.tell(trial, state=state.FAIL, skip_if_finished=True)

    def _confirm_reserve(self, study: Any) -> float:
        """Seconds that confirming the best trial over budget.confirm_seeds seeds would take: its own seconds per
        epoch (startup included) times _confirm_epochs."""
        best = self._best(study) if self.budget_cfg.confirm_seeds else None
        if best is None or not best.user_attrs.get("wall_time_s"):
            return 0.0
        epochs = len(best.user_attrs.get("val_acc_per_epoch") or []) or 1  # the first seed's (a reseeded trial trained more)
        return best.user_attrs["wall_time_s"] / epochs * self._confirm_epochs(best)

    def _confirm_epochs(self, trial: Any) -> float:
        """Confirming `trial` over budget.confirm_seeds seeds, in epochs of the size it trained on: its epochs times
        the seeds, each on all 60k images where it trained on fewer (60/50 for the default split)."""
        if trial is None:
            return 0.0
        a = trial.user_attrs
        images = (_count(a.get("data.train_subset")) or 60_000) - _count(a.get("data.val_size"))
        epochs = _count(a.get("train.epochs")) or len(a.get("val_acc_per_epoch") or []) or 1
        return epochs * self.budget_cfg.confirm_seeds * 60_000 / max(1, images)

    def _best(self, study: Any) -> Any:
        """The best complete trial so far (single objective), else None; in a study that reseeds, ranked as the
        review ranks it: a trial short of seeds after those that hold them all (archsearch/search/reseed.py)."""
        import optuna

        from archsearch.search.reseed import rank_keys

        if len(self.directions) != 1:
            return None
        done = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
        done = [t for t in done if t.user_attrs.get("status", "complete") == "complete"]
        if not done:
            return None
        keys = rank_keys([(t.value, t.user_attrs) for t in done], 1 if self.directions[0] == "maximize" else -1)
        return done[min(range(len(done)), key=keys.__getitem__)]

    def _finish(self, study: Any, reason: str) -> None:
        """Write optimization_results.yaml (best trial(s), never a pruned one) and say how it ended."""
        out = Path(str(self.config.hydra.sweep.dir)) / "optimization_results.yaml"
        log.info(f"Sweep stopped: {reason}")
        best = self._best(study)
        if len(self.directions) == 1:
            if best is None:
                log.warning("no trial of this study has finished yet, so there is no best trial; "
                            "the user attributes status and reason of each trial say why")
                return
            results = {"name": "optuna", "best_trial": best.number, "best_params": best.params,
                       "best_value": best.value}
            log.info(f"Best trial: #{best.number} value={best.value:.5f} params={best.params}")
            log.info(f"Confirm it: python sweep/confirm.py --study {self.study_name} --storage {self.storage_url} "
                     "--top 1")
        else:
            front = study.best_trials  # Optuna's Pareto front of the complete trials
            results = {"name": "optuna", "solutions": [
                {"trial": t.number, "params": t.params, "values": t.values} for t in front]}
            log.info(f"Pareto front: {', '.join(f'#{t.number} {t.values}' for t in front) or 'empty'}")
        OmegaConf.save(OmegaConf.create(results), out)

    def _jobs_may_fail_themselves(self, storage: Any) -> Any:
        """Around a launch whose jobs run in other processes (joblib, submitit): on Ctrl-C, SIGTERM or SIGHUP,
        give them a moment to fail their own trials, with the epoch reached, before they are killed."""
        import contextlib

        import optuna

        from archsearch.search.signals import jobs_elsewhere
        from archsearch.search.trial import STATUS

        if str(self.config.hydra.launcher._target_).endswith(".BasicLauncher"):  # jobs run in this process:
            return contextlib.nullcontext()  # train() handles the signal itself
        running = optuna.trial.TrialState.RUNNING

        def settled() -> bool:  # every job of the batch has ended its trial or recorded how it ended
            trials = [storage.get_trial(tid) for tid in self.batch]
            return all(t.state != running or t.user_attrs.get(STATUS) in ("complete", "pruned", "rejected")
                       for t in trials)

        return jobs_elsewhere(settled)

    def _fail_unfinished(self, study: Any, storage: Any, why: str) -> None:
        """End every trial this run asked that is still RUNNING, so that none is left for a heartbeat to find:
        a job that finished but was not told yet keeps its result (COMPLETE, PRUNED, or FAIL with its own
        reason); any other is failed with `why` and how far it got (jobs in other processes may have been
        killed before they could fail their trials themselves), a trial training a further seed too: it is
        never COMPLETE on fewer seeds than asked, and the next sweep runs it again."""
        import optuna

        from archsearch.search.reseed import TRAINING_SEED
        from archsearch.search.trial import REASON, STATUS

        state = optuna.trial.TrialState
        for number, tid in self.ids.items():
            try:
                trial = storage.get_trial(tid)
                if trial.state != state.RUNNING:
                    continue
                status, attrs = trial.user_attrs.get(STATUS), trial.user_attrs
                if status == "complete" and attrs.get("objective") is not None:
                    values = attrs["objective"]
                    study.tell(number, values=values if isinstance(values, list) else [values], skip_if_finished=True)
                    continue
                if status in ("pruned", "rejected"):
                    study.tell(number, state=state.PRUNED, skip_if_finished=True)
                    continue
                if status != "failed":
                    if attrs.get(TRAINING_SEED):  # its first seed is in, not the others: never COMPLETE on it
                        reason = f"{why} while training seed {attrs[TRAINING_SEED]}"
                    elif "run_dir" not in attrs:
                        reason = f"{why} before its job started"
                    elif trial.intermediate_values:
                        reason = f"{why} before its job finished, after epoch {max(trial.intermediate_values)}"
                    else:
                        reason = f"{why} before its job finished"
                    storage.set_trial_user_attr(tid, STATUS, "failed")
                    storage.set_trial_user_attr(tid, REASON, reason)
                study.tell(number, state=state.FAIL, skip_if_finished=True)
                log.warning(f"trial #{number} failed: {storage.get_trial(tid).user_attrs.get(REASON)}")
            except optuna.exceptions.UpdateFinishedTrialError:  # finished meanwhile (its job failed it itself)
                continue
            except Exception as e:  # noqa: BLE001 - one trial's database error must not keep the others RUNNING
                log.warning(f"trial #{number} could not be ended: {' '.join(str(e).split())[:200]}")

    # --- set-up ----------------------------------------------------------------------------------------

    def _log_to_sweep_dir(self) -> None:
        """The progress lines also go to <sweep dir>/sweep.log (and no longer to an earlier sweep's)."""
        for earlier in [h for h in log.handlers if isinstance(h, logging.FileHandler)
                        and Path(h.baseFilename).name == "sweep.log"]:
            # An earlier sweep in this process (a test, a notebook): its lines end, and its file is closed.
            log.removeHandler(earlier)
            earlier.close()
        handler = logging.FileHandler(Path(str(self.config.hydra.sweep.dir)) / "sweep.log")
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s"))
        log.addHandler(handler)

    def _create_study(self, storage: Any) -> Any:
        """Create or load the study, with the sampler seeded per trial (archsearch/search/sampling.py): a resumed sweep or
        a second worker gets trials of new numbers, and so new random draws, while one worker on a fresh
        study stays reproducible from its seed."""
        import optuna

        from archsearch.search.pruners import make_pruner

        study = optuna.create_study(study_name=self.study_name, storage=storage, sampler=make_sampler(self.sampler_cfg),
                                    pruner=make_pruner(self.pruner_cfg), directions=self.directions,
                                    load_if_exists=True)
        optuna.storages.fail_stale_trials(study)
        return study
