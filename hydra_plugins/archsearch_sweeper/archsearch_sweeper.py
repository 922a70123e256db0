"""The sweeper as Hydra's plugin discovery needs it: a class defined in the hydra_plugins package, found by
Hydra's scan. Its logic is archsearch/search/sweeper.py, which never imports this module."""
from archsearch.search.sweeper import SweeperLogic


class ArchSearchSweeper(SweeperLogic):
    """hydra/sweeper=archsearch (ArchSearchSweeperConf in archsearch/search/sweeper_config.py)."""
