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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from omegaconf import MISSING, DictConfig, OmegaConf

from archsearch.core.errors import BudgetError, ConfigError, StorageError

log = logging.getLogger(__name__)
CONFIG_KEY = "config_key"  # user attr: what the trial trains (archsearch/core/config.py, configuration_key)
MAX_RESAMPLES = 50  # asks in a row that all hit configurations the study holds: the space is used up
SPACE_USED_UP = f"every configuration tried was already in the study ({MAX_RESAMPLES} asks in a row)"


@dataclass
class BudgetConf:
    epochs: Optional[int] = None  # trained epochs, summed over this run's trials: the same trials on any machine
    minutes: Optional[float] = None  # wall time of this run: an option for a deadline, machine-dependent
    # The confirmation of the best trial over this many seeds on all 60k images that follows (sweep/main.py sets
    # it): its epochs count in the ETA and, with minutes, its time (from that trial's own time per epoch) is kept
    # out of them, so that both fit. 0: no confirmation follows.
    confirm_seeds: int = 0


@dataclass
class ReseedConf:
    """A trial whose first seed would rank among the study's `top` complete trials trains `seeds` seeds in all,
    and is told their mean (archsearch/search/job.py): the study's best is then never one lucky seed. 0: off.
    A first seed below min_objective trains no more: early in a study every trial is in the top, however poor."""
    top: int = 0
    seeds: int = 2
    min_objective: Optional[float] = None


@dataclass
class ArchSearchSweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.archsearch_sweeper.archsearch_sweeper.ArchSearchSweeper"
    _recursive_: bool = False  # the sweeper builds the sampler (seeded per trial) and the pruner itself
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])
    sampler: Any = MISSING  # a `_target_` node from conf/hydra/sweeper/sampler/
    pruner: Any = MISSING  # a `_target_` node from conf/hydra/sweeper/pruner/
    warmup_epochs: int = 1  # no trial is pruned before this epoch (the pruners' configs read it)
    budget: BudgetConf = field(default_factory=BudgetConf)
    reseed: ReseedConf = field(default_factory=ReseedConf)
    # How many times a trial failed by a stop or a lost worker is run again (each retry then counts as one
    # more such trial): the next sweep of the study queues its parameters before asking the sampler.
    retry_lost: int = 1
    direction: Any = "maximize"


# The samplers, `hydra/sweeper/sampler=NAME`, each seeded. They replace the plugin's nodes of the same
# names, written for Optuna 2 (its tpe lacks constant_liar; its nsgaii lacks nothing but is unseeded
# here). Defined here, not as YAML in conf/, because Hydra would validate such a YAML against the
# plugin's node of the same name and reject every new key.


@dataclass
class TPEConf:
    """The default: multivariate, so that it models widths, depths and LR jointly rather than one at a
    time; constant_liar, so that parallel workers do not propose the point a running trial holds.
    For 20-200 trials of a mixed space like this one; random start-up first, then the model."""

    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = 1234
    n_startup_trials: int = 10
    multivariate: bool = True
    constant_liar: bool = True


@dataclass
class RandomConf:
    """Uniform random: the baseline every other sampler must beat (bench/bench.py --search), and the right
    choice for very short sweeps (under ~10 trials), where a model has nothing to learn from."""

    _target_: str = "optuna.samplers.RandomSampler"
    seed: Optional[int] = 1234


@dataclass
class GPConf:
    """Gaussian-process Bayesian optimization: the most sample-efficient for small budgets (10-60
    trials) of mostly numeric parameters; an ask costs seconds (it fits a GP), nothing next to a trial."""

    _target_: str = "optuna.samplers.GPSampler"
    seed: Optional[int] = 1234
    n_startup_trials: int = 10


@dataclass
class NSGAIIConf:
    """NSGA-II, a genetic algorithm for several objectives (sweep=pareto: accuracy up, params down).
    Small generations: a sweep here is tens of trials, not thousands."""

    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: Optional[int] = 1234
    population_size: int = 10


def register() -> None:
    """Make Hydra know this sweeper's config and its samplers (archsearch.search.register calls it).

    The plugin class itself (hydra_plugins/archsearch_sweeper) is found by Hydra's scan of the hydra_plugins
    namespace, in an installed package or a checkout on sys.path (the Makefile's editable install is compat
    mode for this); it is not imported here, since it imports this module. The scan also re-imports every
    plugin module, which would put the plugin's sampler nodes back over these: it runs first."""
    from archsearch.search import SetupError

    if ArchSearchSweeperConf._target_ not in {f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover()}:
        raise SetupError("Hydra's plugin scan does not find hydra_plugins.archsearch_sweeper: install the project "
                         "with `pip install .`, or editable with `pip install -e . --config-settings "
                         "editable_mode=compat` (make does this)")
    store = ConfigStore.instance()
    store.store(group="hydra/sweeper", name="archsearch", node=ArchSearchSweeperConf, provider="archsearch")
    for name, node in {"tpe": TPEConf, "random": RandomConf, "gp": GPConf, "nsgaii": NSGAIIConf}.items():
        store.store(group="hydra/sweeper/sampler", name=name, node=node, provider="archsearch")


def make_sampler(cfg: Any) -> Any:
    """The sampler that hydra.sweeper.sampler describes; with a seed, seeded per trial (archsearch/search/sampling.py)."""
    from hydra.utils import instantiate

    from archsearch.search.sampling import PerTrialSeed

    node = OmegaConf.to_container(cfg, resolve=True)
    if node.get("seed") is None:
        return instantiate(node)
    return PerTrialSeed(lambda seed: instantiate({**node, "seed": seed}), node["seed"])


def _candidates(searched: List[Override]) -> List[List[str]]:
    """Override lists that between them take every choice and each end of every range (only the start
    of a float interval, whose end Optuna never samples): the corners where a bad space shows."""
    values = {}
    for o in searched:
        v = o.value()
        if o.is_choice_sweep() or (o.is_range_sweep() and v.shuffle):
            values[o.get_key_element()] = list(o.sweep_iterator(transformer=Transformer.encode))
        elif o.is_range_sweep():
            values[o.get_key_element()] = [v.start, v.stop]  # the plugin includes stop
        else:
            values[o.get_key_element()] = [v.start]
    n = max((len(v) for v in values.values()), default=1)
    return [[f"{k}={v[i % len(v)]}" for k, v in values.items()] for i in range(n)]


def _check_candidate_models(cfgs: List[Any]) -> None:
    """Build each candidate's model; an error only if none fits (a sampled misfit is rejected in milliseconds)."""
    from archsearch.core.config import check_config

    rejected = []
    for cfg in cfgs:
        try:
            check_config(cfg)
        except (ConfigError, BudgetError) as e:
            rejected.append(e)
    if len(rejected) == len(cfgs):
        raise type(rejected[0])(f"none of the {len(cfgs)} candidates tried before the sweep fits: {rejected[0]}")


def _remove_empty(dirs: List[Path]) -> None:
    """Remove the directories a failed pre-flight made, deepest first, unless something was put there."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:  # not empty: another worker of the same second uses it
            return


def _count(value: Any) -> int:
    """A count as a trial's user attrs hold it: the fixed override's value, an int or a string ("0", "2000")."""
    try:
        return int(float(value))
    except (TypeError, ValueError):  # None, null
        return 0


def _positive(key: str, value: Any, kind: type) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
                              or (kind is int and not isinstance(value, int))):
        raise ConfigError(f"hydra.sweeper.{key}={value!r}: must be a {'whole ' if kind is int else ''}number > 0"
                          " (or null for no limit)")


class SweeperLogic(Sweeper):
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
            overrides = sorted(self._overrides(trial.params, fixed))
            config_key = self._config_key(overrides)
            same = self._holder(study, trial.number, overrides, config_key)
            tid = trial_id(storage, self.study_name, trial.number)
            for name, value in fixed.items():  # as the plugin does: fixed values show with each trial
                trial.set_user_attr(name, value)
            trial.set_user_attr(CONFIG_KEY, config_key)
            if same is None:
                storage.record_heartbeat(tid)  # a first beat, so that a worker killed before its job starts is caught
                # What the trial says if its worker dies: Optuna fails a stale trial without a word, and a
                # finished trial's attributes can no longer be written. Every normal end overwrites it.
                trial.set_user_attr("overrides", overrides)
                trial.set_user_attr(REASON, lost_reason())
                self.ids[trial.number] = tid
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

    def _search_space(self, arguments: List[str]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        from archsearch.search.optuna_compat import search_space

        return search_space([f"{k}={v}" for k, v in self.params.items()] + list(arguments))

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

    def _preflight(self, arguments: List[str]) -> Any:
        """Fail fast, before any trial exists, on what would make every trial fail; return the open storage.
        Cheapest first: values need no torch."""
        from archsearch.search.pruners import make_pruner

        for key in ("n_trials", "n_jobs"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ConfigError(f"hydra.sweeper.{key}={getattr(self, key)}: must be >= 1")
        if not isinstance(self.retry_lost, int) or self.retry_lost < 0:
            raise ConfigError(f"hydra.sweeper.retry_lost={self.retry_lost!r}: must be a whole number >= 0 "
                              "(0: never run a lost trial again)")
        _positive("budget.epochs", self.budget_cfg.epochs, int)
        _positive("budget.minutes", self.budget_cfg.minutes, float)
        if not isinstance(self.budget_cfg.confirm_seeds, int) or self.budget_cfg.confirm_seeds < 0:
            raise ConfigError(f"hydra.sweeper.budget.confirm_seeds={self.budget_cfg.confirm_seeds!r}: must be a whole "
                              "number >= 0 (0: keep no time for a confirmation)")
        if self.reseed.top < 0 or self.reseed.seeds < 1:
            key, value = ("top", self.reseed.top) if self.reseed.top < 0 else ("seeds", self.reseed.seeds)
            raise ConfigError(f"hydra.sweeper.reseed.{key}={value}: must be >= {0 if key == 'top' else 1}")
        if self.reseed.top and len(self.directions) > 1:
            raise ConfigError(f"hydra.sweeper.reseed.top={self.reseed.top}: reseeding ranks one objective; this "
                              f"sweep has {len(self.directions)} (set it to 0)")
        floor = self.reseed.min_objective
        if floor is not None and not 0 <= floor <= 1:
            raise ConfigError(f"hydra.sweeper.reseed.min_objective={floor}: must be in [0, 1] or null")
        if self.reseed.top and floor is not None and self.directions != ["maximize"]:
            raise ConfigError(f"hydra.sweeper.reseed.min_objective={floor}: a floor for a "
                              f"maximized objective; this sweep is {self.directions[0]} (set it to null)")
        cfg, candidates, model_searched = self._check_values(arguments)
        if "val_acc" in cfg.objectives and not cfg.data.val_size:
            raise ConfigError("data.val_size=0: a sweep selects on a validation split held out of the training "
                              "set; set data.val_size > 0")
        if cfg.objectives and len(cfg.objectives) != len(self.directions):
            raise ConfigError(f"objectives={list(cfg.objectives)} has {len(cfg.objectives)} values but "
                              f"hydra.sweeper.direction={self.directions}")
        if model_searched:
            _check_candidate_models(candidates)
        else:
            from archsearch.core.config import check_config

            check_config(cfg)  # one fixed model: over budget or unbuildable fails every trial
        make_pruner(self.pruner_cfg)
        self._search_space(arguments)
        made = self._make_sweep_dir()
        try:
            return self._open_study()
        except BaseException:
            _remove_empty(made)
            raise

    def _check_values(self, arguments: List[str]) -> Tuple[Any, List[Any], bool]:
        """Compose the fixed config and the search space's candidates and validate their values."""
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        from archsearch.core.errors import one_line
        from archsearch.core.config import validate

        overrides = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        parsed = OverridesParser.create().parse_overrides(overrides)
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        fixed_keys = {o.get_key_element() for o in parsed if not o.is_sweep_override()}
        searched = [o for o in parsed if o.is_sweep_override() and o.get_key_element() not in fixed_keys]
        load = self.hydra_context.config_loader.load_sweep_config
        cfg = load(self.config, fixed)  # errors here are the user's own overrides: reported as they are
        for o in searched:  # e.g. model.arch.* with model=baseline, which has no arch: OmegaConf would assert
            parent = o.get_key_element().rpartition(".")[0]
            if parent and OmegaConf.select(cfg, parent, default=0) is None:
                raise ConfigError(f"hydra.sweeper.params: {o.get_key_element()} cannot be searched: {parent} "
                                  "is null in this config")

        def value_error(c: Any) -> str:
            try:
                validate(c)
            except ConfigError as e:
                return str(e)
            return ""

        candidates = []
        for sample in _candidates(searched):
            try:
                candidates.append(load(self.config, fixed + sample))
                validate(candidates[-1])
            except (HydraException, OmegaConfBaseException, ConfigError) as e:
                if str(e) == value_error(cfg):
                    raise  # the fixed values alone are wrong, whatever is sampled
                raise ConfigError(f"hydra.sweeper.params: the candidate {' '.join(sample)} fails: "
                                  f"{one_line(e)}") from None
        model_searched = any(o.get_key_element().split(".")[0] == "model" for o in searched)
        return cfg, candidates, model_searched

    def _open_study(self) -> Any:
        """Open the storage and check an existing study's directions; the storage."""
        import optuna

        from archsearch.search.storage import open_storage
        from archsearch.search.trial import report_stale

        storage = open_storage(self.storage_url, on_stale=report_stale)
        try:
            study = optuna.load_study(study_name=self.study_name, storage=storage)
        except KeyError:
            return storage  # a new study
        found = [d.name.lower() for d in study.directions]
        if found != self.directions:
            raise StorageError(f"hydra.sweeper.study_name={self.study_name!r}: the study in {self.storage_url} "
                               f"was created with direction {found}, this sweep asks {self.directions}; "
                               "choose another study name")
        return storage

    def _make_sweep_dir(self) -> List[Path]:
        """Create hydra.sweep.dir now, so that an unwritable one fails before any study exists; the dirs made."""
        path = Path(str(self.config.hydra.sweep.dir)).absolute()
        made = [p for p in (path, *path.parents) if not p.exists()]
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"hydra.sweep.dir={str(self.config.hydra.sweep.dir)!r}: cannot create "
                              f"{e.filename or path} ({e.strerror})") from None
        return made
