"""Each pruner config builds the pruner its comment names, and none prunes before hydra.sweeper.warmup_epochs."""
from __future__ import annotations

from typing import Optional

import optuna
import pytest

from conftest import CONF, compose
from archsearch.search.pruners import make_pruner

WARMUP = 5  # not the sweeps' 7, so that a default that ignored the setting would show
EPOCHS = 15

PRUNERS = {  # config -> (the pruner it builds, the first epoch a hopeless trial is pruned at; None: never)
    "median": (optuna.pruners.MedianPruner, WARMUP),
    "percentile": (optuna.pruners.PercentilePruner, WARMUP),
    "halving": (optuna.pruners.SuccessiveHalvingPruner, WARMUP),  # its first rung is min_resource
    "hyperband": (optuna.pruners.HyperbandPruner, None),  # a bracket's first rung is min_resource * 2^k
    "patient": (optuna.pruners.PatientPruner, WARMUP),
    "none": (optuna.pruners.NopPruner, None),
}


def test_every_pruner_config_is_in_the_table() -> None:
    assert sorted(PRUNERS) == sorted(p.stem for p in (CONF / "hydra" / "sweeper" / "pruner").glob("*.yaml"))


def first_pruned_epoch(pruner: optuna.pruners.BasePruner) -> Optional[int]:
    """The epoch at which a trial far below six finished ones is first pruned."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for _ in range(6):  # through the pruner, which records their rungs for successive halving
        trial = study.ask()
        for epoch in range(1, EPOCHS + 1):
            trial.report(0.9, epoch)
            trial.should_prune()
        study.tell(trial, 0.9)
    trial = study.ask()
    for epoch in range(1, EPOCHS + 1):
        trial.report(0.1 - epoch / 1000, epoch)  # falling: PatientPruner judges only a trial that stopped improving
        if trial.should_prune():
            return epoch
    return None


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # PatientPruner
@pytest.mark.parametrize("name", PRUNERS)
def test_the_pruner_waits_for_the_warmup(name: str) -> None:
    cls, first = PRUNERS[name]
    cfg = compose(["sweep=small", f"hydra/sweeper/pruner={name}", f"hydra.sweeper.warmup_epochs={WARMUP}"],
                  hydra_config=True)
    pruner = make_pruner(cfg.hydra.sweeper.pruner)
    assert type(pruner) is cls
    pruned = first_pruned_epoch(pruner)
    if name == "hyperband":
        assert pruned is not None and pruned >= WARMUP and pruned % WARMUP == 0
    else:
        assert pruned == first
