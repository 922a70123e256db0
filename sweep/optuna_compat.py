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
