"""sweep/main.py, shrunk: the search, then the confirmation of that search's own best, then the verdict."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import optuna
import pytest

from conftest import DATA, TINY, run_entry

SEARCH = ["hydra.sweeper.n_trials=2", *TINY, "train.epochs=1"]
# The confirmation shrunk to seconds; 1 epoch and 1 seed: NOT CONFIRMED, whatever the accuracy.
CONFIRM = (f"--seeds 101 --lanes 1 --results none data.train_subset=500 data.test_subset=200 data.root={DATA} "
           "train.threads=1 train.epochs=1")


def main_job(cwd: Path, *overrides: str, confirm: str = CONFIRM, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_entry("main.py", ["--confirm", f"{confirm} --experiment-dir {cwd / 'experiment'}", *overrides],
                     cwd=cwd, timeout=timeout)


def trials(cwd: Path, study: str) -> list[tuple]:
    found = optuna.load_study(study_name=study, storage=f"sqlite:///{cwd / 'outputs' / 'optuna.db'}").trials
    return [(t.params, t.values, t.state) for t in found]


def verdict(result: subprocess.CompletedProcess) -> str:
    return next(line for line in result.stdout.splitlines() if "CONFIRMED: " in line)


def test_one_command_searches_then_confirms_its_own_best(tmp_path: Path) -> None:
    # a searched key on the command line, as sweep/run.py -m takes it: the search's, not the composed config's
    result = main_job(tmp_path, "hydra.sweeper.study_name=t", *SEARCH, "optim.lr=interval(0.05,0.1)")
    assert result.returncode == 0, result.stderr[-3000:]
    best = max((t for t in optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path}/outputs/optuna.db").trials
                if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: (t.value, -t.number))
    out = result.stdout
    assert out.index("main job: study 't'") < out.index("main job: the search is done")
    assert "study 't' (sqlite:///outputs/optuna.db): 1 finalist(s)" in out
    assert verdict(result).startswith(f"NOT CONFIRMED: t_t{best.number}, ")
    assert (tmp_path / "outputs" / "confirm" / f"t_t{best.number}" / "seed_101" / "metrics.json").is_file()
    lrs = [t.params["optim.lr"] for t in optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path}/outputs/"
                                                           "optuna.db").trials]
    assert len(lrs) == 2 and all(0.05 <= lr <= 0.1 for lr in lrs)
    assert re.search(r"trial 2/2 #\d .* ETA \S+ with the confirmation", out), out  # the ETA counts the seeds too


@pytest.mark.slow
def test_the_same_seed_gives_the_same_trials_and_verdict_in_two_places(tmp_path: Path) -> None:
    runs = {}
    for place in ("a", "b"):
        (tmp_path / place).mkdir()
        runs[place] = main_job(tmp_path / place, "hydra.sweeper.study_name=t", *SEARCH, "hydra.sweeper.n_trials=3")
        assert runs[place].returncode == 0, runs[place].stderr[-3000:]
    assert trials(tmp_path / "a", "t") == trials(tmp_path / "b", "t") and len(trials(tmp_path / "a", "t")) == 3
    assert verdict(runs["a"]).split(";")[0] == verdict(runs["b"]).split(";")[0]


@pytest.mark.slow
def test_sweep_small_confirms_the_small_study(tmp_path: Path) -> None:
    result = main_job(tmp_path, "sweep=small", "hydra.sweeper.reseed.top=0", *SEARCH, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "study 'small6k_v4' (sqlite:///outputs/optuna.db): 1 finalist(s)" in result.stdout
    assert verdict(result).startswith("NOT CONFIRMED: small6k_v4_t")
    assert [p.name for p in (tmp_path / "outputs" / "confirm").iterdir()][0].startswith("small6k_v4_t")


def one_line_error(result: subprocess.CompletedProcess, *says: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert all(s in result.stderr for s in says), result.stderr


@pytest.mark.parametrize("overrides, confirm, says", [
    (["hydra.sweeper.budget.epochs=1", "train.epochs=2"], CONFIRM,
     ["hydra.sweeper.budget.epochs=1: less than one trial's 2 epochs", "give at least 2"]),
    ([], "--lanes 0", ["--lanes='0': must be a whole number >= 1 or auto"]),
    ([], "--seeds 1,x", ["--seeds='1,x'"]),
    ([], "--study other", ["--confirm: --study is set by the main job"]),
    ([], "--top=3", ["--confirm: --top is set by the main job"]),
    (["-m"], CONFIRM, ["unrecognized arguments: -m"]),
    (["optim.lrr=0.1"], CONFIRM, ["optim.lrr"]),
])
def test_bad_input_is_one_line_before_the_search(tmp_path: Path, overrides: list[str], confirm: str,
                                                 says: list[str]) -> None:
    one_line_error(main_job(tmp_path, "hydra.sweeper.study_name=t", *TINY, *overrides, confirm=confirm, timeout=60),
                   *says)
    assert not (tmp_path / "outputs").exists()  # nothing searched


@pytest.mark.slow  # confirm.py's own test has the same line (tests/workflow/test_confirm.py); this one, its way through
def test_a_search_with_no_complete_trial_is_one_line(tmp_path: Path) -> None:
    """A deadline that ends the only trial before it completes: nothing to confirm."""
    result = main_job(tmp_path, "hydra.sweeper.study_name=t", *SEARCH, "hydra.sweeper.n_trials=1", "train.epochs=3",
                      "hydra.sweeper.budget.minutes=0.001")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (  # after the search's own output
        "error: --study='t' in sqlite:///outputs/optuna.db: no complete trial (1 pruned); nothing to confirm")


@pytest.mark.slow
def test_sigterm_reaches_the_search_which_fails_its_trial_saying_so(tmp_path: Path) -> None:
    import os
    import signal
    import sys

    from conftest import ROOT

    proc = subprocess.Popen([sys.executable, str(ROOT / "sweep" / "main.py"), "hydra.sweeper.study_name=t", *TINY,
                             "train.epochs=20", "constraints.max_epochs=20"], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in proc.stdout:
            if "epoch  2/20" in line:
                break
        proc.send_signal(signal.SIGTERM)  # to the main job alone: the search runs in a session of its own
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143
    [trial] = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path}/outputs/optuna.db").trials
    assert trial.state == optuna.trial.TrialState.FAIL and "terminated (SIGTERM)" in trial.user_attrs["reason"]
