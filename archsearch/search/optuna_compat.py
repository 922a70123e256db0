"""The one place that reaches past Optuna's and the plugin's public API; each reach-in says why.

Everything else in the project uses public API only, so an upgrade that breaks a reach-in breaks here.
"""
from __future__ import annotations

import warnings

# Studies written by Optuna 2.x store the distribution classes that Optuna 3 deprecated
# (LogUniformDistribution, IntUniformDistribution, ...); every load of such a study warns once per
# trial. The data converts exactly, so these warnings say nothing to a user; all others still show.
_DEPRECATED_DISTRIBUTIONS = r"(Uniform|LogUniform|DiscreteUniform|IntUniform|IntLogUniform)Distribution has been deprecated"


def quiet_deprecated_distributions() -> None:
    """Filter exactly the FutureWarnings of the deprecated distribution classes, process-wide."""
    warnings.filterwarnings("ignore", message=_DEPRECATED_DISTRIBUTIONS, category=FutureWarning)


def quiet_heartbeat_warnings() -> None:
    """Optuna warns that heartbeats are "supposed to be used with Study.optimize" on every ask, and that
    heartbeat_interval is experimental. This project keeps the heartbeats itself, through the storage's
    public record_heartbeat, because its trials run in other processes: neither warning applies."""
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    warnings.filterwarnings("ignore", message="Argument ``heartbeat_interval`` is an experimental feature")
    warnings.filterwarnings("ignore", message=r"optuna.storages._heartbeat.fail_stale_trials is experimental")


def search_space(overrides: list[str]) -> tuple[dict, dict]:
    """(distributions, fixed values) of hydra.sweeper.params plus the command line, in the plugin's
    grammar (choice, range, interval, tag(log, ...)), as Optuna's current distribution classes.

    Reach-in: the plugin's parser lives in its private `_impl` module (it has no public one), and it
    builds the distribution classes that Optuna 3 deprecated; they convert exactly."""
    import optuna.distributions as od
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATED_DISTRIBUTIONS, category=FutureWarning)
        distributions, fixed = create_params_from_overrides(overrides)

    def current(d: od.BaseDistribution) -> od.BaseDistribution:
        if isinstance(d, od.FloatDistribution):
            return od.FloatDistribution(d.low, d.high, log=d.log, step=d.step)
        if isinstance(d, od.IntDistribution):
            return od.IntDistribution(d.low, d.high, log=d.log, step=d.step)
        return d

    return {name: current(d) for name, d in distributions.items() if name not in fixed}, fixed
