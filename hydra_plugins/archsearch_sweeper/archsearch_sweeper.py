"""Hydra's Optuna sweeper plus what a long architecture search needs.

- each job is told its trial number (`trial=N`), so it can report per-epoch values and be pruned;
- a configurable pruner (hydra.sweeper.pruner), which the jobs build for their trial;
- a pre-flight check: bad config values, an over-budget fixed model, an unopenable storage or a
  study with other directions fail in one line before any trial is asked or any directory made;
- trials of killed workers (stale heartbeat) are failed on start, so none stays RUNNING forever;
- pruned trials never become the reported winner in optimization_results.yaml.
"""

import logging
from dataclasses import dataclass, field
from typing import Any, List, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import OmegaConf

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


class _TrialNumberImpl(OptunaSweeperImpl):
    def _configure_trials(self, trials: List[Any], *args: Any) -> Sequence[Sequence[str]]:
        overrides = super()._configure_trials(trials, *args)
        for trial in trials:  # a first heartbeat, so a worker killed before its job starts is caught too
            trial.study._storage.record_heartbeat(trial._trial_id)
        return [(*o, f"trial={t.number}") for t, o in zip(trials, overrides)]


class ArchSearchSweeper(OptunaSweeper):
    def __init__(self, pruner: Any, **kwargs: Any) -> None:
        # Same arguments as the stock sweeper; only the implementation class differs.
        self.sweeper = _TrialNumberImpl(**kwargs)
        self.pruner = pruner

    def sweep(self, arguments: List[str]) -> None:
        impl = self.sweeper
        if impl.storage is None:
            from sweep.errors import ConfigError

            raise ConfigError("hydra.sweeper.storage=null: pruning and resuming need a storage URL")
        self._preflight(arguments)
        try:
            super().sweep(arguments)
        finally:
            self._write_results()

    def _preflight(self, arguments: List[str]) -> None:
        """Fail fast, before any trial exists, on what would make every trial fail."""
        import optuna

        from sweep.study import make_pruner, open_storage
        from sweep.train import check_config

        impl = self.sweeper
        overrides = [f"{k}={v}" for k, v in (impl.params or {}).items()] + list(arguments)
        parsed = OverridesParser.create().parse_overrides(overrides)
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        searched = {o.get_key_element() for o in parsed if o.is_sweep_override()} - {
            o.get_key_element() for o in parsed if not o.is_sweep_override()}
        cfg = impl.hydra_context.config_loader.load_sweep_config(impl.config, fixed)
        make_pruner(self.pruner)
        check_config(cfg, model=not any(k == "model" or k.startswith("model.") for k in searched))
        if cfg.objectives and len(cfg.objectives) != len(impl._get_directions()):
            from sweep.errors import ConfigError

            raise ConfigError(f"objectives={list(cfg.objectives)} has {len(cfg.objectives)} values but "
                              f"hydra.sweeper.direction={impl._get_directions()}")
        storage = open_storage(impl.storage)
        directions = [d.lower() for d in impl._get_directions()]
        try:
            study = optuna.load_study(study_name=impl.study_name, storage=storage)
        except KeyError:
            return  # a new study
        found = [d.name.lower() for d in study.directions]
        if found != directions:
            from sweep.errors import StorageError

            raise StorageError(f"hydra.sweeper.study_name={impl.study_name!r}: the study in {impl.storage} "
                               f"was created with direction {found}, this sweep asks {directions}; "
                               "choose another study name")
        optuna.storages.fail_stale_trials(study)

    def _write_results(self) -> None:
        """Rewrite optimization_results.yaml so that it names the best *unpruned* trial(s)."""
        import optuna
        from pathlib import Path

        from sweep.study import STATUS, pareto_front

        impl = self.sweeper
        out = Path(str(impl.config.hydra.sweep.dir)) / "optimization_results.yaml"
        if not out.parent.exists():
            return
        study = optuna.load_study(study_name=impl.study_name, storage=impl.storage)
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

