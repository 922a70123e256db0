"""The Optuna sweep through the real plugin, shrunk: trials, resume, rejection, pruning."""
import optuna
import pytest
from omegaconf import OmegaConf

from conftest import SMALL, run_entry

STUDY = "t"
SWEEP = ["-m", "hydra.sweeper.n_trials=3", "data.val_size=500", f"hydra.sweeper.study_name={STUDY}", *SMALL]


def load(tmp_path, name=STUDY):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/outputs/optuna.db")


def sweep(tmp_path, *extra):
    proc = run_entry("run.py", [*SWEEP, *extra], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_three_trials_then_resume_to_six(tmp_path, mnist):
    sweep(tmp_path)
    study = load(tmp_path)
    assert len(study.trials) == 3 and study.direction == optuna.study.StudyDirection.MAXIMIZE
    t = study.trials[0]
    assert t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs["status"] == "complete"
    assert {"n_params", "macs", "fc_free", "val_acc_per_epoch", "test_acc_per_epoch", "first_epoch_at_target",
            "wall_time_s", "overrides", "run_dir"} <= set(t.user_attrs)
    assert t.user_attrs["fc_free"] is True and t.intermediate_values  # per-epoch objective reported
    assert "model=fcfree" in t.user_attrs["overrides"] and not any(o.startswith("trial=") for o in t.user_attrs["overrides"])
    first_dirs = sorted((tmp_path / "outputs" / "sweeps" / STUDY).iterdir())

    sweep(tmp_path)  # the same command continues the study
    study = load(tmp_path)
    assert [t.number for t in study.trials] == list(range(6))
    sweep_dirs = sorted((tmp_path / "outputs" / "sweeps" / STUDY).iterdir())
    assert len(sweep_dirs) == 2 and sweep_dirs[0] == first_dirs[0]  # earlier job directories kept
    results = OmegaConf.load(sweep_dirs[1] / "optimization_results.yaml")
    assert results.best_value == max(t.value for t in study.trials if t.user_attrs["status"] == "complete")


def test_over_budget_candidate_is_rejected_without_training(tmp_path, mnist):
    # With a 3k budget the first two candidates this sampler seed draws (12.3k, 8.7k params) are over it;
    # the smallest corner of the space (2.9k) fits, so the pre-flight lets the sweep start.
    sweep(tmp_path, "constraints.max_params=3000", "hydra.sweeper.n_trials=2")
    study = load(tmp_path)
    assert len(study.trials) == 2
    for t in study.trials:
        # PRUNED, not FAIL: TPE ignores failed trials and would propose the same widths again, while it
        # ranks pruned ones (these with no epoch reported) below every trained trial.
        assert t.state == optuna.trial.TrialState.PRUNED and not t.intermediate_values
        assert t.user_attrs["status"] == "rejected" and t.user_attrs["n_params"] >= 3000
        assert "constraints.max_params=3000 requires fewer" in t.user_attrs["reason"]
        assert "epochs_trained" not in t.user_attrs  # never trained


def test_pruning_stops_a_trial_that_is_clearly_behind(tmp_path, mnist):
    prune = ["hydra.sweeper.n_trials=1", "hydra.sweeper.pruner.n_startup_trials=1",
             "hydra.sweeper.pruner.n_warmup_epochs=1", "train.epochs=3", "sched=none"]
    sweep(tmp_path, *prune, "optim.lr=0.1")  # a good first trial sets the median
    sweep(tmp_path, *prune, "optim.lr=0.00001")  # then one that barely learns
    good, bad = load(tmp_path).trials
    assert good.user_attrs["status"] == "complete" and good.user_attrs["epochs_trained"] == 3
    assert bad.user_attrs["status"] == "pruned"
    assert bad.user_attrs["pruned_at_epoch"] == bad.user_attrs["epochs_trained"] == 1  # stopped at once
    assert len(bad.intermediate_values) == 1


@pytest.mark.parametrize("sweep_name,directions", [("small", ["maximize"]), ("pareto", ["maximize", "minimize"])])
def test_ready_sweeps_run(tmp_path, mnist, sweep_name, directions):
    sweep(tmp_path, f"sweep={sweep_name}", "hydra.sweeper.n_trials=2")
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{tmp_path}/outputs/optuna.db")
    assert [d.name.lower() for d in study.directions] == directions
    assert len(study.trials) == 2
