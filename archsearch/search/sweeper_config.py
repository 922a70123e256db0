"""The sweeper's config schema (hydra/sweeper=archsearch), its seeded samplers, and their registration with Hydra."""

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from omegaconf import MISSING, OmegaConf


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
