"""The sweep's pre-flight: fail in one line, before any trial exists, on what would make every trial fail."""

from pathlib import Path
from typing import Any, Dict, List, Tuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from omegaconf import OmegaConf

from archsearch.core.errors import BudgetError, ConfigError, StorageError


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


def _positive(key: str, value: Any, kind: type) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
                              or (kind is int and not isinstance(value, int))):
        raise ConfigError(f"hydra.sweeper.{key}={value!r}: must be a {'whole ' if kind is int else ''}number > 0"
                          " (or null for no limit)")


class Preflight:
    """The sweeper's checks before its first trial (mixed into SweeperLogic, whose settings they read)."""

    def _search_space(self, arguments: List[str]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        from archsearch.search.optuna_compat import search_space

        return search_space([f"{k}={v}" for k, v in self.params.items()] + list(arguments))

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
