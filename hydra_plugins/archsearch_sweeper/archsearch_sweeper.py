"""Hydra's Optuna sweeper plus what a long architecture search needs.

- each job is told its trial number (`trial=N`), so it can report per-epoch values and be pruned;
- a configurable pruner (hydra.sweeper.pruner), which the jobs build for their trial;
- a pre-flight check: bad config values (fixed, and the corners of the search space), an
  over-budget fixed model (or a space where no candidate tried fits), an unwritable sweep dir, an
  unopenable storage or a study with other directions fail in one line before any trial is asked;
  then no study, storage file or sweep directory is left behind;
- trials of killed workers (stale heartbeat) are failed, with a reason, on start, so none stays
  RUNNING forever; while a batch of jobs runs the sweeper keeps its trials' heartbeats too, so a
  job waiting in a cluster queue is not taken for dead; Ctrl-C fails the unfinished trials at once;
- over-budget candidates are told to Optuna as pruned, so that TPE learns to avoid them;
- pruned trials never become the reported winner in optimization_results.yaml.
"""

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Sequence, Tuple

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import OmegaConf

from sweep.errors import BudgetError, ConfigError, StorageError

log = logging.getLogger(__name__)


@dataclass
class PrunerConf:
    name: str = "median"  # median | halving | none
    n_startup_trials: int = 5  # median: complete this many trials before pruning any
    n_warmup_epochs: int = 4  # never prune before this epoch (halving: its min_resource)
    reduction_factor: int = 3  # halving: keep the top 1/reduction_factor at each rung


@dataclass
class ArchSearchSweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.archsearch_sweeper.archsearch_sweeper.ArchSearchSweeper"
    pruner: PrunerConf = field(default_factory=PrunerConf)


ConfigStore.instance().store(group="hydra/sweeper", name="archsearch", node=ArchSearchSweeperConf,
                             provider="archsearch")


def _impl_class() -> type:
    """The stock implementation plus trial numbers and heartbeats; built on first use because importing
    it imports optuna (seconds), and Hydra imports every plugin module on every start, even for --help."""
    from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl

    class _TrialNumberImpl(OptunaSweeperImpl):
        batch: List[Any] = []  # the trials of the batch being launched
        records: Any = None  # an uncached storage: the plugin's own caches its writes, not the jobs'

        def _configure_trials(self, trials: List[Any], *args: Any) -> Sequence[Sequence[str]]:
            overrides = super()._configure_trials(trials, *args)
            self.batch = list(trials)
            study = trials[0].study
            if "tell" not in vars(study):  # once per sweep: the plugin tells every trial through this study
                study.tell = _rejected_as_pruned(study, self.records)
            for trial in trials:  # a first heartbeat, so a worker killed before its job starts is caught too
                trial.study._storage.record_heartbeat(trial._trial_id)
            return [(*o, f"trial={t.number}") for t, o in zip(trials, overrides)]

    return _TrialNumberImpl


def _rejected_as_pruned(study: Any, records: Any) -> Any:
    """study.tell, except that a trial its job rejected (over budget, before training) is told PRUNED, not
    FAIL. TPE ignores failed trials, so it would keep proposing the same over-budget widths; a pruned
    trial with no reported epoch ranks below every trained one, so TPE learns to avoid it (optuna#566)."""
    import optuna

    from sweep.study import STATUS

    tell = study.tell
    failed, pruned = optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED

    def tell_rejected_as_pruned(trial: Any, values: Any = None, state: Any = optuna.trial.TrialState.COMPLETE) -> None:
        if state == failed and records.get_trial(trial._trial_id).user_attrs.get(STATUS) == "rejected":
            state = pruned
        tell(trial=trial, values=values, state=state)

    return tell_rejected_as_pruned


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
    from sweep.train import check_config

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


class ArchSearchSweeper(OptunaSweeper):
    def __init__(self, pruner: Any, **kwargs: Any) -> None:
        # Same arguments as the stock sweeper; only the implementation class differs.
        self.sweeper = _impl_class()(**kwargs)
        self.pruner = pruner

    def sweep(self, arguments: List[str]) -> None:
        from sweep.study import beat_while_running, with_busy_timeout

        impl, url = self.sweeper, self.sweeper.storage
        if url is None:
            raise ConfigError("hydra.sweeper.storage=null: pruning and resuming need a storage URL")
        storage = self._preflight(arguments)
        impl.records = storage
        stop = threading.Event()
        beat = threading.Thread(target=beat_while_running, args=(storage, lambda: [t._trial_id for t in impl.batch],
                                                                 stop), daemon=True, name="sweeper-heartbeat")
        beat.start()
        impl.storage = with_busy_timeout(url)  # the plugin opens its own storage from this URL
        try:
            self._run_trials(arguments, storage)
        except BaseException as e:  # Ctrl-C, or a launcher that lost a job (e.g. a Slurm timeout)
            self._fail_unfinished(storage, "interrupted (SIGINT) before its job finished"
                                  if isinstance(e, KeyboardInterrupt) else
                                  f"the sweep stopped before its job finished ({type(e).__name__})")
            log.warning("stopped: finished trials are kept; run the same command again to go on")
            raise
        finally:
            stop.set()
            impl.storage = url
            self._write_results(storage)

    def _run_trials(self, arguments: List[str], storage: Any) -> None:
        """The plugin's loop. A study in which no trial has finished (all rejected, diverged or failed, each
        with its reason) is a result, not a crash: the plugin's closing summary would raise on it."""
        import optuna

        try:
            super().sweep(arguments)
        except ValueError:
            study = optuna.load_study(study_name=self.sweeper.study_name, storage=storage)
            if study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE]):
                raise
            log.warning("no trial of this study has finished yet, so there is no best trial; "
                        "the user attributes status and reason of each trial say why")

    def _preflight(self, arguments: List[str]) -> Any:
        """Fail fast, before any trial exists, on what would make every trial fail; return the open storage.

        Cheapest first: values need no torch, so a typo answers before the model checks load it."""
        from sweep.study import make_pruner

        impl = self.sweeper
        for key in ("n_trials", "n_jobs"):
            if getattr(impl, key) < 1:
                raise ConfigError(f"hydra.sweeper.{key}={getattr(impl, key)}: must be >= 1")
        cfg, candidates, model_searched = self._check_values(arguments)
        directions = [d.lower() for d in impl._get_directions()]
        if cfg.objectives and len(cfg.objectives) != len(directions):
            raise ConfigError(f"objectives={list(cfg.objectives)} has {len(cfg.objectives)} values but "
                              f"hydra.sweeper.direction={directions}")
        if model_searched:
            _check_candidate_models(candidates)
        else:
            from sweep.train import check_config

            check_config(cfg)  # one fixed model: over budget or unbuildable fails every trial
        make_pruner(self.pruner)
        made = self._make_sweep_dir()
        try:
            return self._open_study(directions)
        except BaseException:
            _remove_empty(made)
            raise

    def _check_values(self, arguments: List[str]) -> Tuple[Any, List[Any], bool]:
        """Compose the fixed config and the search space's candidates and validate their values."""
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        from sweep.cli import one_line
        from sweep.config import validate

        impl = self.sweeper
        overrides = [f"{k}={v}" for k, v in (impl.params or {}).items()] + list(arguments)
        parsed = OverridesParser.create().parse_overrides(overrides)
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        fixed_keys = {o.get_key_element() for o in parsed if not o.is_sweep_override()}
        searched = [o for o in parsed if o.is_sweep_override() and o.get_key_element() not in fixed_keys]
        load = impl.hydra_context.config_loader.load_sweep_config
        cfg = load(impl.config, fixed)  # errors here are the user's own overrides: reported as they are

        def value_error(c: Any) -> str:
            try:
                validate(c)
            except ConfigError as e:
                return str(e)
            return ""

        candidates = []
        for sample in _candidates(searched):
            try:
                candidates.append(load(impl.config, fixed + sample))
                validate(candidates[-1])
            except (HydraException, OmegaConfBaseException, ConfigError) as e:
                if str(e) == value_error(cfg):
                    raise  # the fixed values alone are wrong, whatever is sampled
                raise ConfigError(f"hydra.sweeper.params: the candidate {' '.join(sample)} fails: "
                                  f"{one_line(e)}") from None
        model_searched = any(o.get_key_element().split(".")[0] == "model" for o in searched)
        return cfg, candidates, model_searched

    def _open_study(self, directions: List[str]) -> Any:
        """Open the storage, check an existing study's directions and fail its stale trials."""
        import optuna

        from sweep.study import fail_stale_trials, open_storage

        impl = self.sweeper
        storage = open_storage(impl.storage)
        try:
            study = optuna.load_study(study_name=impl.study_name, storage=storage)
        except KeyError:
            return storage  # a new study
        found = [d.name.lower() for d in study.directions]
        if found != directions:
            raise StorageError(f"hydra.sweeper.study_name={impl.study_name!r}: the study in {impl.storage} "
                               f"was created with direction {found}, this sweep asks {directions}; "
                               "choose another study name")
        fail_stale_trials(storage, study._study_id)
        return storage

    def _make_sweep_dir(self) -> List[Path]:
        """Create hydra.sweep.dir now, so that an unwritable one fails before any study exists; the dirs made."""
        path = Path(str(self.sweeper.config.hydra.sweep.dir)).absolute()
        made = [p for p in (path, *path.parents) if not p.exists()]
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"hydra.sweep.dir={str(self.sweeper.config.hydra.sweep.dir)!r}: cannot create "
                              f"{e.filename or path} ({e.strerror})") from None
        return made

    def _fail_unfinished(self, storage: Any, reason: str) -> None:
        """Fail the trials of the current batch that no job finished, so that none stays RUNNING."""
        import optuna

        from sweep.study import STATUS

        for trial in self.sweeper.batch:
            try:
                if storage.get_trial(trial._trial_id).state == optuna.trial.TrialState.RUNNING:
                    storage.set_trial_user_attr(trial._trial_id, STATUS, "failed")
                    storage.set_trial_user_attr(trial._trial_id, "reason", reason)
                    storage.set_trial_state(trial._trial_id, optuna.trial.TrialState.FAIL)
                    log.warning(f"trial #{trial.number} failed: {reason}")
            except RuntimeError:  # finished meanwhile (its job failed it itself)
                continue

    def _write_results(self, storage: Any) -> None:
        """Rewrite optimization_results.yaml so that it names the best *unpruned* trial(s)."""
        import optuna

        from sweep.study import STATUS, pareto_front

        impl = self.sweeper
        out = Path(str(impl.config.hydra.sweep.dir)) / "optimization_results.yaml"
        if not out.parent.exists():
            return
        study = optuna.load_study(study_name=impl.study_name, storage=storage)
        complete = [t for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
                    if t.user_attrs.get(STATUS) == "complete"]
        if not complete:
            return
        if len(study.directions) == 1:
            sign = 1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1
            best = max(complete, key=lambda t: sign * t.value)
            results = {"name": "optuna", "best_trial": best.number, "best_params": best.params,
                       "best_value": best.value}
            log.info(f"Best unpruned trial: #{best.number} value={best.value:.5f} params={best.params}")
        else:
            signs = [1 if d == optuna.study.StudyDirection.MAXIMIZE else -1 for d in study.directions]
            front = pareto_front(complete, key=lambda t: [s * v for s, v in zip(signs, t.values)])
            results = {"name": "optuna", "solutions": [
                {"trial": t.number, "params": t.params, "values": t.values} for t in front]}
        OmegaConf.save(OmegaConf.create(results), out)

