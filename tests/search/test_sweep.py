"""The Optuna sweep through the real sweeper, shrunk: trials, resume without duplicates, rejection,
pruning, budgets, progress, samplers."""
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf

from conftest import ROOT, TINY, run_entry, run_in_process

STUDY = "t"
SWEEP = ["-m", "hydra.sweeper.n_trials=2", f"hydra.sweeper.study_name={STUDY}", *TINY]
COMPLETE, PRUNED, FAIL = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL


def load(tmp_path, name=STUDY):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/outputs/optuna.db")


def sweep(tmp_path, *extra):
    proc = run_entry("run.py", [*SWEEP, *extra], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Warning" not in proc.stderr, proc.stderr[-3000:]  # no FutureWarning, ExperimentalWarning, ...
    return proc


def sweep_here(tmp_path, monkeypatch, capsys, *extra) -> str:
    """sweep(), in this process (a fresh interpreter's start-up saved): its stdout."""
    code, out, err = run_in_process("run.py", [*SWEEP, *extra], tmp_path, monkeypatch, capsys)
    assert code == 0, err[-3000:]
    return out


def test_two_trials_twice_gives_four_distinct_configurations(tmp_path, mnist, monkeypatch, capsys):
    first = sweep(tmp_path)
    study = load(tmp_path)
    assert len(study.trials) == 2 and study.direction == optuna.study.StudyDirection.MAXIMIZE
    t = study.trials[0]
    assert t.state == COMPLETE and t.user_attrs["status"] == "complete" and t.user_attrs["reason"] is None
    assert {"n_params", "macs", "fc_free", "val_acc_per_epoch", "test_acc_per_epoch", "first_epoch_at_target",
            "wall_time_s", "overrides", "run_dir"} <= set(t.user_attrs)
    assert t.user_attrs["fc_free"] is True and t.intermediate_values  # per-epoch objective reported
    assert "model=fcfree" in t.user_attrs["overrides"] and not any(o.startswith("trial") for o in t.user_attrs["overrides"])
    assert "Sweep stopped: n_trials reached (2/2)" in first.stdout
    assert "python sweep/confirm.py --study t" in first.stdout

    second = sweep_here(tmp_path, monkeypatch, capsys)  # the same command continues the study: new trial numbers,
    assert "TPESampler seeded per trial from 1234" in second  # so new draws
    study = load(tmp_path)
    assert [t.number for t in study.trials] == list(range(4))
    assert len({tuple(t.params.items()) for t in study.trials}) == 4
    sweep_dirs = sorted((tmp_path / "outputs" / "sweeps" / STUDY).iterdir())
    assert len(sweep_dirs) == 2
    results = OmegaConf.load(sweep_dirs[1] / "optimization_results.yaml")
    assert results.best_value == max(t.value for t in study.trials if t.state == COMPLETE)
    assert (sweep_dirs[1] / "sweep.log").read_text().count("trial ") >= 2


def test_a_duplicate_ask_is_told_fail_and_asked_again_untrained(tmp_path, mnist, monkeypatch, capsys):
    # Two configurations, two trials; seed 2's random draws are 0.05, 0.05, 0.1: the second ask repeats the first.
    space = ["optim.lr=choice(0.05,0.1)", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=2"]
    code, _, err = run_in_process("run.py", [*SWEEP, "hydra.sweeper.params=null", "model=fcfree", "data.val_size=200",
                                             *space], tmp_path, monkeypatch, capsys)
    assert code == 0, err[-3000:]
    trials = load(tmp_path).trials
    assert [(t.params["optim.lr"], t.user_attrs["status"]) for t in trials] == [
        (0.05, "complete"), (0.05, "duplicate"), (0.1, "complete")]
    assert trials[1].state == FAIL and trials[1].user_attrs["reason"] == "same configuration as #0"
    assert "epochs_trained" not in trials[1].user_attrs and "run_dir" not in trials[1].user_attrs


@pytest.mark.slow  # 50 duplicate asks in a row before the space counts as used up: a minute on 2 cores
def test_a_configuration_the_study_holds_is_never_trained_again(tmp_path, mnist):
    # A space of two configurations and a fixed seed: the third ask can only repeat one of them.
    space = ["optim.lr=choice(0.05,0.1)", "hydra.sweeper.n_trials=3", "hydra/sweeper/sampler=random"]
    done = sweep(tmp_path, "hydra.sweeper.params=null", "model=fcfree", "data.val_size=200", *space)
    trials = load(tmp_path).trials
    trained = [t for t in trials if t.user_attrs["status"] != "duplicate"]
    assert sorted(t.params["optim.lr"] for t in trained) == [0.05, 0.1]
    duplicates = [t for t in trials if t.user_attrs["status"] == "duplicate"]
    assert duplicates and all(t.state == FAIL and "epochs_trained" not in t.user_attrs for t in duplicates)
    holders = {f"same configuration as #{t.number}" for t in trained}
    assert all(t.user_attrs["reason"] in holders for t in duplicates)
    assert "every configuration tried was already in the study" in done.stdout


@pytest.mark.slow
def test_a_batch_cut_short_by_a_used_up_space_launches_what_it_asked(tmp_path, mnist):
    # Two configurations, three trials a batch: the third ask only finds duplicates. The two asked trials are
    # still trained and told, never left RUNNING for a later sweep's heartbeat check.
    done = sweep(tmp_path, "hydra.sweeper.params=null", "model=fcfree", "data.val_size=200",
                 "optim.lr=choice(0.05,0.1)", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=3")
    trials = load(tmp_path).trials
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    trained = [t for t in trials if t.user_attrs["status"] != "duplicate"]
    assert [t.state for t in trained] == [COMPLETE, COMPLETE] and len(trials) == 2 + 50
    assert "every configuration tried was already in the study (50 asks in a row)" in done.stdout


def test_workers_started_together_ask_different_configurations(tmp_path):
    """Three workers' samplers on one fresh study, each asking before any has told: as three sweeps started at
    the same moment would. Seeded per trial, their first asks already differ."""
    from omegaconf import OmegaConf

    from archsearch.search.sweeper_config import make_sampler
    from optuna.distributions import FloatDistribution, IntDistribution

    space = {"model.widths.c1": IntDistribution(4, 16, step=2), "optim.lr": FloatDistribution(0.01, 0.3, log=True)}
    url = f"sqlite:///{tmp_path}/optuna.db"
    node = OmegaConf.create({"_target_": "optuna.samplers.TPESampler", "seed": 1234, "constant_liar": True})
    workers = [optuna.create_study(study_name="t", storage=url, sampler=make_sampler(node), load_if_exists=True)
               for _ in range(3)]
    asked = [w.ask(space) for _ in range(3) for w in workers]  # 9 asks, the workers taking turns
    assert len({tuple(sorted(t.params.items())) for t in asked}) == 9

    # One worker alone stays reproducible from its seed.
    again = optuna.create_study(sampler=make_sampler(node))
    assert [again.ask(space).params for _ in range(3)] == [t.params for t in asked[:3]]


@pytest.mark.slow
def test_three_workers_started_at_once_never_ask_the_same_configuration(tmp_path, mnist):
    url = f"sqlite:///{tmp_path}/outputs/optuna.db"
    args = ["-m", "hydra.sweeper.n_trials=3", f"hydra.sweeper.study_name={STUDY}", f"hydra.sweeper.storage={url}",
            *TINY]  # the default sampler seed for all three, as a user would start them
    procs = [subprocess.Popen([sys.executable, str(ROOT / "sweep" / "run.py"), *args], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[-2000:] for o in outputs]
    trials = load(tmp_path).trials
    assert len(trials) == 9 and all(t.user_attrs["status"] == "complete" for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 9


@pytest.mark.slow
def test_over_budget_candidate_is_rejected_as_pruned(tmp_path, mnist):
    # A 600-param budget: most sampled candidates are over it, but the smallest corner of the space fits, so
    # the pre-flight lets the sweep start.
    sweep(tmp_path, "constraints.max_params=600", "model=fcfree", "model.arch.pre=1", "model.arch.post=2",
          "model.widths.c1=range(2,16,2)", "model.widths.c3=range(2,18,2)", "model.widths.c4=range(2,18,2)",
          "model.arch.transition=false", "hydra.sweeper.sampler.seed=3")
    rejected = [t for t in load(tmp_path).trials if t.user_attrs["status"] == "rejected"]
    assert rejected  # this sampler seed draws at least one candidate over 600 params
    for t in rejected:
        # PRUNED, not FAIL: TPE ignores failed trials and would propose the same widths again, while it
        # ranks pruned ones (these with no epoch reported) below every trained trial.
        assert t.state == PRUNED and not t.intermediate_values and t.value is None
        assert t.user_attrs["n_params"] >= 600
        assert "constraints.max_params=600 requires fewer" in t.user_attrs["reason"]
        assert "epochs_trained" not in t.user_attrs  # never trained


@pytest.mark.slow
def test_pruned_trial_ends_pruned_with_its_last_value(tmp_path, mnist):
    prune = ["hydra.sweeper.n_trials=1", "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.warmup_epochs=1",
             "train.epochs=3", "hydra.sweeper.params=null", "model=fcfree", "data.val_size=200"]
    sweep(tmp_path, *prune, "optim.lr=0.1")  # a good first trial sets the median
    sweep(tmp_path, *prune, "optim.lr=0.00001", "sched=none")  # then one that barely learns
    good, bad = load(tmp_path).trials
    assert good.state == COMPLETE and good.user_attrs["epochs_trained"] == 3
    assert bad.state == PRUNED and bad.user_attrs["status"] == "pruned"
    assert bad.user_attrs["pruned_at_epoch"] == bad.user_attrs["epochs_trained"] == 1  # stopped at once
    assert bad.value == bad.intermediate_values[1]  # Optuna keeps the last reported value
    assert bad.user_attrs["reason"] == "pruned at epoch 1 by MedianPruner"


@pytest.mark.slow
def test_epoch_budget_stops_the_sweep_and_a_resume_adds_trials(tmp_path, mnist):
    budget = ["hydra.sweeper.n_trials=10", "hydra.sweeper.budget.epochs=3", "train.epochs=2",
              "hydra/sweeper/pruner=none"]
    done = sweep(tmp_path, *budget)
    trials = load(tmp_path).trials
    # 2 + 1: the second trial may use only what is left of the budget, and ends pruned saying so.
    assert [t.state for t in trials] == [COMPLETE, PRUNED]
    assert trials[1].user_attrs["reason"] == "pruned at epoch 1: the sweep's epoch budget ran out"
    assert "Sweep stopped: epoch budget spent (3/3 trained epochs)" in done.stdout
    best = trials[0]
    assert re.search(rf"trial 2/10 #1 pruned value \S+ params \S+ \| best #0 {best.value:.4f} \| 3/3 epochs",
                     done.stdout), done.stdout[-2000:]

    sweep(tmp_path, *budget)  # a fresh budget for the same command
    assert len(load(tmp_path).trials) == 4


@pytest.mark.slow
def test_time_budget_stops_on_time(tmp_path, mnist):
    started = time.monotonic()
    done = sweep(tmp_path, "hydra.sweeper.n_trials=50", "hydra.sweeper.budget.minutes=0.1", "train.epochs=30",
                 "constraints.max_epochs=30")
    assert time.monotonic() - started < 60  # 6 s of budget, plus start-up and one epoch past it
    trials = load(tmp_path).trials
    assert trials and trials[-1].state == PRUNED
    assert trials[-1].user_attrs["reason"].endswith("the sweep's time budget ran out")
    assert "Sweep stopped: time budget spent" in done.stdout


@pytest.mark.parametrize("bad", ["hydra.sweeper.budget.epochs=0", "hydra.sweeper.budget.minutes=-1",
                                 "hydra.sweeper.budget.epochs=1.5"])
def test_bad_budget_is_one_line(tmp_path, monkeypatch, capsys, bad):
    code, _, err = run_in_process("run.py", [*SWEEP, bad], tmp_path, monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err
    key = bad.split("=")[0].removeprefix("hydra.sweeper.")
    assert err.strip().count("\n") == 0 and key in err, err


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["gp", "random", "tpe"])
def test_samplers_run(tmp_path, mnist, sampler):
    sweep(tmp_path, f"hydra/sweeper/sampler={sampler}", "hydra.sweeper.n_trials=3", "train.epochs=1",
          "data.train_subset=3000")
    assert len(load(tmp_path).trials) == 3


@pytest.mark.slow
@pytest.mark.parametrize("sweep_name,directions", [("small", ["maximize"]), ("small_v3", ["maximize"]),
                                                   ("tiny", ["maximize"]), ("small_v2", ["maximize"]),
                                                   ("tiny_v2", ["maximize"]), ("pareto", ["maximize", "minimize"])])
def test_ready_sweeps_run(tmp_path, mnist, sweep_name, directions):
    teacher = [f"train.distill.teacher={ROOT}/results/teachers/fcfree_8k_50k/seed_1/model.pt"] if sweep_name in (
        "small_v3", "tiny") else []  # the sweeps name it relative to the repository root
    sweep(tmp_path, f"sweep={sweep_name}", f"hydra.sweeper.study_name={STUDY}", "data.val_size=200", *teacher)
    study = load(tmp_path)
    assert [d.name.lower() for d in study.directions] == directions
    assert len(study.trials) == 2


@pytest.mark.slow
def test_a_terminal_shows_one_bar_across_the_sweep(tmp_path, mnist):
    # `script` gives the sweep a pseudo-terminal, sized as a user's would be.
    command = " ".join(["stty cols 150 rows 40;", sys.executable, str(ROOT / "sweep" / "run.py"), *SWEEP,
                        "train.progress=true"])
    done = subprocess.run(["script", "-qec", command, "/dev/null"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    assert re.search(r"sweep: 100%\S* 2/2 \[.*best #\d", done.stdout), done.stdout[-3000:]  # the sweep's bar
    assert "batch/s" in done.stdout or "s/batch" in done.stdout  # and each trial's own bar below it


@pytest.mark.slow
def test_two_parameter_sets_that_build_the_same_net_are_one_configuration(tmp_path, mnist):
    # With the transition off, the transition's width changes nothing that is trained: one configuration.
    done = sweep(tmp_path, "hydra.sweeper.params=null", "model=fcfree", "data.val_size=200",
                 "model.arch.transition=false", "model.widths.t=choice(8,12)", "hydra.sweeper.n_trials=2")
    trials = load(tmp_path).trials
    trained = [t for t in trials if t.user_attrs["status"] != "duplicate"]
    assert len(trained) == 1 and all(t.user_attrs["reason"] == f"same configuration as #{trained[0].number}"
                                     for t in trials if t not in trained)
    assert {t.user_attrs["config_key"] for t in trials} == {trained[0].user_attrs["config_key"]}
    assert "every configuration tried was already in the study" in done.stdout


def test_a_trial_in_the_top_trains_more_seeds_and_is_told_their_mean(tmp_path, mnist, monkeypatch, capsys):
    sweep_here(tmp_path, monkeypatch, capsys, "hydra.sweeper.reseed.top=1", "hydra.sweeper.reseed.seeds=2",
               "train.checkpoint=true")
    first, second = load(tmp_path).trials
    assert first.user_attrs["seeds"] == [1, 2] and first.user_attrs["epochs_trained"] == 2  # the first is the top
    assert first.value == pytest.approx(sum(first.user_attrs["seed_objectives"]) / 2)
    run_dir = Path(first.user_attrs["run_dir"])
    again = json.loads((run_dir / "seed_2" / "metrics.json").read_text())
    assert again["config"]["seed"] == 2 and again["objective"] == first.user_attrs["seed_objectives"][1]
    assert (run_dir / "seed_2" / "model.pt").is_file()
    if second.user_attrs.get("seeds"):  # it trained a second seed only if its first ranked above the first's mean
        assert second.user_attrs["seed_objectives"][0] >= first.value
    else:
        assert second.value <= first.value and second.user_attrs["epochs_trained"] == 1


def test_a_first_seed_below_the_floor_trains_no_more_seeds(tmp_path, mnist, monkeypatch, capsys):
    """Early in a study every complete trial is in the top; reseed.min_objective keeps the poor ones at one seed."""
    sweep_here(tmp_path, monkeypatch, capsys, "hydra.sweeper.reseed.top=1", "hydra.sweeper.reseed.seeds=2",
               "hydra.sweeper.n_trials=1", "hydra.sweeper.reseed.min_objective=0.9999")
    [only] = load(tmp_path).trials
    assert only.value < 0.9999 and "seeds" not in only.user_attrs and only.user_attrs["epochs_trained"] == 1


def test_the_search_keeps_the_time_its_best_trial_needs_to_be_confirmed():
    from hydra_plugins.archsearch_sweeper.archsearch_sweeper import ArchSearchSweeper
    from optuna.distributions import FloatDistribution

    from archsearch.search.budget import Budget

    budget_cfg = OmegaConf.create({"epochs": None, "minutes": 56, "confirm_seeds": 3})
    sweeper = ArchSearchSweeper(sampler=None, pruner=None, direction="maximize", storage=None, study_name="t",
                                n_trials=40, n_jobs=1, max_failure_rate=1.0, params=None, budget=budget_cfg)
    study = optuna.create_study(direction="maximize")
    assert sweeper._confirm_reserve(study) == 0  # nothing to confirm yet
    # 15 epochs of 50k images in 150 s: 12 s an epoch on 60k, 15 epochs, 3 seeds
    study.add_trial(optuna.trial.create_trial(
        value=0.99, params={"optim.lr": 0.1}, distributions={"optim.lr": FloatDistribution(0.01, 0.3)},
        user_attrs={"status": "complete", "wall_time_s": 150.0, "val_acc_per_epoch": [0.9] * 15,
                    "data.val_size": "10000", "train.epochs": "15"}))
    assert sweeper._confirm_reserve(study) == pytest.approx(540.0)

    budget = Budget(40, minutes=56, confirm_seeds=3, started=time.time() - 47 * 60)
    assert budget.exhausted() is None
    budget.reserve_s = 540.0  # 56 - 9 = 47 minutes for the search, all spent
    assert budget.exhausted() == "time budget spent (47.0/56 min, 9.0 min kept to confirm the best)"
    assert budget.allowance(1)[1] == pytest.approx(budget.started + 47 * 60)
    assert "56 min (less the time to confirm the best over 3 seeds)" in budget.describe()


@pytest.mark.parametrize("subset, val_size, reserve", [
    ("0", "10000", 540.0),  # "0" is all 60k images, as an override that arrives as a string says it
    (0, 10000, 540.0),
    ("2000", "200", 150 / 15 * 60_000 / 1_800 * 15 * 3),  # a shrunk search: 1,800 images an epoch
    (None, "10000", 540.0),
])
def test_the_confirmation_reserve_reads_counts_given_as_strings(subset, val_size, reserve):
    from hydra_plugins.archsearch_sweeper.archsearch_sweeper import ArchSearchSweeper
    from optuna.distributions import FloatDistribution

    budget_cfg = OmegaConf.create({"epochs": None, "minutes": 56, "confirm_seeds": 3})
    sweeper = ArchSearchSweeper(sampler=None, pruner=None, direction="maximize", storage=None, study_name="t",
                                n_trials=40, n_jobs=1, max_failure_rate=1.0, params=None, budget=budget_cfg)
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        value=0.99, params={"optim.lr": 0.1}, distributions={"optim.lr": FloatDistribution(0.01, 0.3)},
        user_attrs={"status": "complete", "wall_time_s": 150.0, "val_acc_per_epoch": [0.9] * 15,
                    "data.train_subset": subset, "data.val_size": val_size, "train.epochs": "15"}))
    assert sweeper._confirm_reserve(study) == pytest.approx(reserve)


def test_the_default_cpu_sweep_spends_epochs_not_minutes():
    """The same commit and seed give the same trials on any machine: no wall-clock limit by default, and n_trials
    high enough that the epoch budget binds first (each trial trains at least one epoch or is rejected)."""
    from conftest import compose

    sweeper = compose(["sweep=default", "hydra/sweeper=archsearch"], hydra_config=True).hydra.sweeper
    assert sweeper.budget.minutes is None and sweeper.budget.confirm_seeds == 0
    assert sweeper.budget.epochs == 130 and sweeper.n_trials >= sweeper.budget.epochs


def test_the_eta_counts_the_confirmation_epochs_at_the_measured_speed():
    from archsearch.search.budget import Budget

    # 30 of 150 search epochs in 600 s: 20 s an epoch; 120 left, then 3 seeds x 15 epochs x 60/50
    budget = Budget(1000, epochs=150, started=time.time() - 600)
    budget.spent(2, 30)
    assert budget.eta_s() == pytest.approx(120 * 20, abs=2)
    budget.confirm_epochs = 3 * 15 * 1.2
    assert budget.eta_s() == pytest.approx((120 + 54) * 20, abs=2)
    assert Budget(1000, epochs=150, confirm_seeds=3).describe() == (
        "1000 trials, 150 trained epochs, then a confirmation over 3 seeds, counted in the ETA")


@pytest.mark.slow
def test_the_epoch_budget_stops_at_the_same_trial_however_slow_the_machine(tmp_path, monkeypatch, capsys):
    """The default budget (epochs, no minutes) with each training slowed by 2 s: the same trials, the same end."""
    from conftest import run_in_process
    from archsearch.core import train as core_train
    from archsearch.search import job

    args = ["-m", f"hydra.sweeper.study_name={STUDY}", "hydra.sweeper.n_trials=1000", "hydra.sweeper.budget.epochs=4",
            *TINY, "train.epochs=2", "hydra/sweeper/pruner=none"]

    def trials(cwd):
        return [(t.params, t.values, t.state) for t in load(cwd).trials]

    (tmp_path / "fast").mkdir()
    (tmp_path / "slow").mkdir()
    code, fast, _ = run_in_process("run.py", args, tmp_path / "fast", monkeypatch, capsys)
    assert code == 0
    train = core_train.train

    def slow_train(*a, **k):
        time.sleep(2)
        return train(*a, **k)

    monkeypatch.setattr(job, "train", slow_train)
    code, slow, _ = run_in_process("run.py", args, tmp_path / "slow", monkeypatch, capsys)
    assert code == 0
    assert trials(tmp_path / "fast") == trials(tmp_path / "slow") and len(trials(tmp_path / "fast")) == 2
    assert "Sweep stopped: epoch budget spent (4/4 trained epochs)" in fast + slow
