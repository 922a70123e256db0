"""The pruner that hydra.sweeper.pruner describes (a `_target_` node of conf/hydra/sweeper/pruner/)."""
from __future__ import annotations

from typing import Any

from archsearch.core.errors import ConfigError


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
