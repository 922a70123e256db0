"""The sweeper as Hydra's plugin discovery needs it: a class defined in the hydra_plugins package. Its logic is
archsearch/search/sweeper.py; archsearch.search.register() registers it by hand too, for editable installs."""
from archsearch.search.sweeper import SweeperLogic


class ArchSearchSweeper(SweeperLogic):
    """hydra/sweeper=archsearch (ArchSearchSweeperConf in archsearch/search/sweeper.py)."""
