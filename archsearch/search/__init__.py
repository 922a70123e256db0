"""The Optuna search: the Hydra sweeper, its storage, a job's link to its trial, the budget and the signals."""
from __future__ import annotations

from archsearch.core.errors import ArchSearchError

PLUGIN = "hydra-optuna-sweeper==1.3.0"


class SetupError(ArchSearchError):
    """The environment lacks something that pyproject.toml cannot install."""


def register() -> None:
    """Make Hydra know the schema, the sweeper and its samplers, before a command composes its config."""
    from archsearch.core.config import register_schema

    register_schema()
    try:
        from archsearch.search.sweeper_config import register as register_sweeper
    except ModuleNotFoundError as e:
        if "hydra_optuna_sweeper" not in str(e):
            raise
        # pyproject.toml cannot list the plugin: it pins optuna<3 (README, "Dependencies").
        raise SetupError(f"hydra-optuna-sweeper is not installed; install it without its stale optuna<3 pin: "
                         f"pip install --no-deps {PLUGIN} (make does this)") from None
    register_sweeper()
