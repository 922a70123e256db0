"""The pruning evidence: rank correlation of each epoch's objective with the final one, on real Optuna trials."""
import optuna
import pytest

from archsearch.report.pruning_evidence import evidence_table, pruning_evidence

COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED


def trial(curve, state=COMPLETE, **attrs):
    values = dict(enumerate(curve, start=1))
    return optuna.trial.create_trial(state=state, value=curve[-1], intermediate_values=values,
                                     user_attrs={"status": state.name.lower(), **attrs})


def test_early_epochs_that_misrank_show_a_low_correlation():
    # Epoch 1 ranks the four complete trials backwards (high LR warms up slowly), epoch 2 ranks them right.
    trials = [trial([0.90, 0.97, 0.990]), trial([0.92, 0.96, 0.985]), trial([0.94, 0.95, 0.980]),
              trial([0.96, 0.94, 0.975]), trial([0.80], PRUNED, pruned_at_epoch=1)]
    rows = pruning_evidence(trials)
    assert [(r.epoch, r.trials, r.pruned_here) for r in rows] == [(1, 4, 1), (2, 4, 0), (3, 4, 0)]
    assert rows[0].rho == pytest.approx(-1.0) and rows[1].rho == pytest.approx(1.0)
    assert "| 1 | 4 | -1.00 | 1 |" in evidence_table(rows)


def test_too_few_trials_give_no_figure():
    assert pruning_evidence([trial([0.9, 0.95]), trial([0.8, 0.9])])[0].rho is None
