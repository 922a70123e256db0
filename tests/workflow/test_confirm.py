"""sweep/confirm.py on a real tiny study: finalists retrained over seeds, verdicts, resuming, one-line errors."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import DATA, ROOT, TINY, compose, run_entry, run_in_process, sigint_as_at_a_terminal
from archsearch.workflow.confirm import training_overrides
from archsearch.workflow.seeds import pass_on
from archsearch.report.acceptance import find_experiments
from archsearch.report.rows import Row

# Confirmation runs shrunk to seconds: overrides given to confirm.py win over the trial's (its 1,000 images and
# 1 epoch here, the search's validation split...). 2 epochs: fewer than the rule's last 3, so it fails.
QUICK = ["data.train_subset=500", "data.test_subset=200", f"data.root={DATA}", "train.threads=1", "train.epochs=2"]


def confirm_here(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture) -> subprocess.CompletedProcess:
    """confirm.py run in this process (conftest.run_in_process), as run_entry's result."""
    code, out, err = run_in_process("confirm.py", args, cwd, monkeypatch, capsys)
    return subprocess.CompletedProcess(args, code, out, err)


def one_line_error(result: subprocess.CompletedProcess, *says: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and all(s in result.stderr for s in says), result.stderr


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cwd with a real 2-trial study 't' in outputs/optuna.db, from a tiny sweep."""
    root = tmp_path_factory.mktemp("confirm")
    result = run_entry("run.py", ["-m", "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=t", *TINY,
                                  "train.epochs=1"], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def best_trial(lab: Path) -> int:
    """The finalist as Optuna alone says: the complete trial of highest value, the lower number on a tie."""
    import optuna

    study = optuna.load_study(study_name="t", storage=f"sqlite:///{lab / 'outputs' / 'optuna.db'}")
    done = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and all(t.user_attrs.get("status") == "complete" for t in done)
    return max(done, key=lambda t: (t.value, -t.number)).number


@pytest.fixture(scope="module")
def failed(lab: Path) -> tuple[Path, str, subprocess.CompletedProcess]:
    """confirm.py --top 1 --seeds 1,2 on the study: (cwd, finalist name, the run)."""
    args = ["--study", "t", "--top", "1", "--seeds", "101,102", "--experiment-dir", str(lab / "experiment"), *QUICK]
    return lab, f"t_t{best_trial(lab)}", run_entry("confirm.py", args, cwd=lab, timeout=120)


@pytest.mark.slow
def test_trains_each_seed_and_fails_the_target(failed: tuple[Path, str, subprocess.CompletedProcess]) -> None:
    lab, name, result = failed
    assert result.returncode == 0, result.stderr[-3000:]
    for seed in (101, 102):
        run = lab / "outputs" / "confirm" / name / f"seed_{seed}"
        m = json.loads((run / "metrics.json").read_text())
        cfg = m["config"]
        assert (m["status"], len(m["epochs"]), cfg["model"]["name"], cfg["seed"]) == ("complete", 2, name, seed)
        # the command line's subsets and epochs won; the search's validation split is gone: all images train
        assert (cfg["data"]["train_subset"], cfg["data"]["val_size"], cfg["train"]["epochs"]) == (500, 0, 2)
        assert cfg["model"]["name"] == name and cfg["trial"] is None and (run / "model.pt").is_file()
        overrides = (run / ".hydra" / "overrides.yaml").read_text()
        assert "sweep=none" in overrides and "data.val_size" not in overrides and "trial=" not in overrides
        assert f"  {name} seed {seed}: training in outputs/confirm/{name}/seed_{seed}" in result.stdout
        assert f"  {name} seed {seed}: complete, 2 epochs, last 2 test" in result.stdout
    verdict = next(line for line in result.stdout.splitlines() if line.startswith(f"{name} "))
    assert verdict.split()[-1] == "FAIL" and "1: " in verdict and "2: " in verdict
    assert f"{name}: FAIL: 2 seed(s); confirmation needs 3; seed 101 trained 2 epochs, fewer than 3" in result.stdout
    assert not (lab / "experiment").exists()  # nothing confirmed, nothing saved
    # results.py read the same runs: one experiment named after the trial, and wrote the confirm dir's RESULTS.md
    assert [(e.name, len(e.runs), e.confirmed) for e in find_experiments(lab / "outputs" / "confirm")] == [
        (name, 2, False)]
    assert f"| {name} |" in (lab / "outputs" / "confirm" / "RESULTS.md").read_text()
    # The answer: the verdict and the worst seed, the checkpoints, the command that re-measures them; printed
    # before the files are written (RESULTS.md, the experiment), so that a failure there cannot hide it
    lines = result.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("NOT CONFIRMED: "))
    verdict, where, command = lines[at:at + 3]
    assert at < next(i for i, line in enumerate(lines) if line.startswith("wrote "))
    assert verdict.startswith(f"NOT CONFIRMED: {name}, ") and ", 2 seeds; worst seed " in verdict
    assert where == f"checkpoints: outputs/confirm/{name}/seed_*/model.pt"
    assert command == (f"re-measure them: python sweep/evaluate.py outputs/confirm/{name}/seed_101/model.pt "
                       f"outputs/confirm/{name}/seed_102/model.pt")


@pytest.mark.slow
def test_resumes_finished_seeds_and_reruns_incomplete_ones(failed: tuple[Path, str, subprocess.CompletedProcess],
                                                           tmp_path: Path) -> None:
    lab, name, _ = failed
    confirm = tmp_path / "confirm"
    shutil.copytree(lab / "outputs" / "confirm", confirm)
    (confirm / "RESULTS.md").unlink()
    seed_102 = confirm / name / "seed_102" / "metrics.json"
    m = json.loads(seed_102.read_text())
    seed_102.write_text(json.dumps({**m, "status": "pruned", "epochs": m["epochs"][:1]}))  # as if cut short
    args = ["--study", "t", "--top", "1", "--seeds", "101,102", "--confirm-dir", str(confirm), "--results", "none",
            "--experiment-dir", str(tmp_path / "experiment"), *QUICK[:3], "train.threads=2",  # threads: no matter
            "train.epochs=2"]
    again = run_entry("confirm.py", args, cwd=lab, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{name} seed 101: done already (2 epochs, last 2 test" in again.stdout
    assert "seed 101: training" not in again.stdout
    assert f"{name} seed 102: re-training (the run there is incomplete)" in again.stdout
    assert json.loads(seed_102.read_text())["status"] == "complete"

    started = time.monotonic()
    third = run_entry("confirm.py", args, cwd=lab, timeout=60)
    assert third.returncode == 0 and time.monotonic() - started < 20, third.stderr[-3000:]
    assert third.stdout.count("done already") == 2 and "training" not in third.stdout
    assert not (confirm / "RESULTS.md").exists()  # --results none

    # a finished run of other overrides is never reused nor overwritten
    other = run_entry("confirm.py", [*args[:-1], "train.epochs=3"], cwd=lab, timeout=60)
    one_line_error(other, f"{confirm / name / 'seed_101'} holds a complete run of other overrides",
                   "-train.epochs=2 +train.epochs=3")


@pytest.mark.slow
def test_passing_finalist_is_saved_as_a_confirmed_experiment(lab: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture) -> None:
    from archsearch.report import acceptance

    name = f"t_t{best_trial(lab)}"
    confirm, experiments = tmp_path / "confirm", tmp_path / "experiment"
    # A target any trained net meets (500 images, 3 epochs do not even promise 10%): the PASS path, 3 seeds. Runs
    # are judged against the assignment whatever their config sets, so the assignment itself is lowered here.
    monkeypatch.setattr(acceptance, "assignment_limits", lambda: (0.01, 20_000, 20))
    args = ["--study", "t", "--top", "1", "--seeds", "101,102,103", "--confirm-dir", str(confirm),
            "--experiment-dir", str(experiments), *QUICK[:-1], "train.epochs=3"]
    code, out, err = run_in_process("confirm.py", args, lab, monkeypatch, capsys)
    assert code == 0, err[-3000:]
    verdict = next(line for line in out.splitlines() if line.startswith(f"{name} "))
    assert verdict.split()[-1] == "PASS"
    saved = experiments / f"{name}.yaml"
    assert f"{name}: PASS; wrote {saved}: python sweep/run.py -m +experiment={name} seed=101,102,103" in out
    low = min(a for e in find_experiments(confirm) for r in e.runs for a in r.last)
    lines = saved.read_text().splitlines()
    assert lines[0] == "# @package _global_"  # Hydra reads the package only from the first lines
    assert lines[1].startswith("# CONFIRMED by sweep/confirm.py: seeds 101, 102, 103 each >= 1.00% test in each of the "
                               f"last 3 epochs (min {low:.2%})")
    cfg = compose([f"+experiment={name}", f"hydra.searchpath=[file://{tmp_path}]"])
    assert (cfg.model.name, cfg.data.val_size, cfg.data.train_subset, cfg.train.epochs, cfg.trial) == (
        name, 0, 0, 3, None)  # what was confirmed (3 epochs), without the search's split and subsets
    assert f"Confirmed: {name}." in (confirm / "RESULTS.md").read_text()

    # again: nothing trains; our own file is rewritten, someone else's is left alone
    saved.write_text("# @package _global_\n# mine\n")
    code, out, err = run_in_process("confirm.py", args, lab, monkeypatch, capsys)
    assert code == 0 and out.count("done already") == 3, err[-3000:]
    assert f"{saved} exists and was not written by confirm.py; left as is" in out
    assert saved.read_text() == "# @package _global_\n# mine\n"


def test_stop_at_first_miss_trains_no_seed_after_one_that_misses(lab: Path, tmp_path: Path) -> None:
    """QUICK's 2 epochs are fewer than the rule's last 3, so seed 101 misses: seeds 102 and 103 are never trained.
    Then the verdict is printed even where the results cannot be written."""
    args = ["--study", "t", "--top", "1", "--seeds", "101,102,103", "--stop-at-first-miss", "--lanes", "1",
            "--confirm-dir", str(tmp_path / "c"), "--experiment-dir", str(tmp_path / "e"), "--results", "none", *QUICK]
    result = run_entry("confirm.py", args, cwd=lab, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    name = f"t_t{best_trial(lab)}"
    assert (tmp_path / "c" / name / "seed_101" / "metrics.json").is_file()
    assert not (tmp_path / "c" / name / "seed_102").exists() and not (tmp_path / "c" / name / "seed_103").exists()
    assert (f"  {name}: seed 101 trained 2 epochs, fewer than 3, so it cannot pass; seed(s) 102, 103 not run "
            "(--stop-at-first-miss)") in result.stdout
    assert f"NOT CONFIRMED: {name}" in result.stdout and ", 1 seeds; worst seed 101" in result.stdout

    # Again, where RESULTS.md cannot be written: seed 101 is done already, and the verdict is printed all the same
    (tmp_path / "blocked").write_text("a file, so no directory can be made under it")
    blocked = ["--results", str(tmp_path / "blocked" / "RESULTS.md")]
    again = run_entry("confirm.py", ["--study", "t", "--top", "1", "--seeds", "101", "--confirm-dir",
                                     str(tmp_path / "c"), *blocked, *QUICK], cwd=lab, timeout=60)
    assert again.returncode != 0 and "done already" in again.stdout
    assert f"NOT CONFIRMED: {name}, " in again.stdout, again.stdout


def test_trials_names_the_finalists_by_number(lab: Path) -> None:
    from archsearch.workflow.confirm import finalists
    from archsearch.core.errors import ConfigError
    from archsearch.report.ranking import review_study
    from archsearch.search.storage import load_study, open_readonly

    url = f"sqlite:///{lab / 'outputs' / 'optuna.db'}"
    review = review_study(load_study(open_readonly(url), "t", url), url, None)
    other = 1 - best_trial(lab)  # the study's other complete trial: never the top 1
    assert [f.name for f in finalists(review, 1, [], set(), [other])] == [f"t_t{other}"]
    with pytest.raises(ConfigError, match=r"--trials: #7 of study 't': no such trial"):
        finalists(review, 1, [], set(), [7])


def test_training_overrides_drop_what_only_the_search_used() -> None:
    row = Row(number=4, state="complete", label="complete", target=0.994, overrides=[
        "model=fcfree", "model.widths.c1=8", "train.epochs=15", "data.val_size=10000", "data.train_subset=30000",
        "data.test_subset=0", "data.root=/elsewhere", "train.threads=1", "train.progress=False", "trial=4",
        "trial_budget.epochs=30", "sweep=small", "train.checkpoint=False", "optim.lr=0.1"])
    extras = ["train.epochs=20", "+train.foo=1"]
    assert training_overrides(row, extras, {"train.epochs", "train.foo"}) == [
        "model=fcfree", "model.widths.c1=8", "optim.lr=0.1", "sweep=none", "train.epochs=20", "+train.foo=1"]


def test_a_run_that_cannot_start_is_one_line(lab: Path, tmp_path: Path) -> None:
    result = run_entry("confirm.py", ["--study", "t", "--top", "1", "--confirm-dir", str(tmp_path),
                                      "optim.lrr=0.1", *QUICK], cwd=lab, timeout=60)
    # Seeds 101 and 102 start at once on 2 cores (--lanes auto): whichever ends first is named.
    one_line_error(result, ": python sweep/run.py exited 2 without a metrics.json:", "optim.lrr")


@pytest.mark.parametrize("sig, code, says", [
    pytest.param(signal.SIGINT, 130, "interrupted (SIGINT)", marks=pytest.mark.slow),
    (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_a_signal_reaches_the_running_seed_which_records_its_epoch(lab: Path, tmp_path: Path, sig: int, code: int,
                                                                   says: str) -> None:
    """Ctrl-C or SIGTERM to confirm.py alone (the seed runs in a session of its own): the seed gets it too, writes
    metrics.json with the epoch it reached, and is gone before confirm.py exits."""
    args = ["--study", "t", "--top", "1", "--seeds", "101", "--confirm-dir", str(tmp_path), *QUICK[:-1],
            "train.epochs=20", "constraints.max_epochs=20"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "sweep" / "confirm.py"), *args], cwd=lab, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=sigint_as_at_a_terminal,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in proc.stdout:
            if "seed 101: training" in line:
                break
        deadline = time.monotonic() + 90  # signalled once it trains its first epochs, not while it starts
        while time.monotonic() < deadline and " 2/20" not in "".join(
                p.read_text() for p in tmp_path.glob("*/seed_101/run.log")):
            time.sleep(0.1)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    [metrics] = tmp_path.glob("*/seed_101/metrics.json")
    m = json.loads(metrics.read_text())
    assert m["status"] == "failed" and m["reason"].startswith(f"{says} during epoch "), m.get("reason")
    assert 2 <= int(m["reason"].split()[-1]) < 20
    left = subprocess.run(["pgrep", "-f", f"hydra.run.dir={tmp_path}"], capture_output=True, text=True)
    assert left.returncode == 1, f"the run is left running: {left.stdout}"


def test_a_seed_that_ignores_the_signal_is_killed_after_the_grace(tmp_path: Path) -> None:
    from archsearch.search.signals import Terminated

    ignores = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert ignores.stdout.readline().strip() == "ready"
    started = time.monotonic()
    pass_on([ignores], Terminated(signal.SIGTERM), grace_s=1.0)
    assert 1.0 <= time.monotonic() - started < 10 and ignores.returncode == -signal.SIGKILL
    with pytest.raises(ChildProcessError):  # reaped: neither running nor a zombie left to this process
        os.waitpid(ignores.pid, os.WNOHANG)


@pytest.fixture(scope="module")
def storages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cwd with outputs/optuna.db holding 'nocomplete' (a pruned and a failed trial), and an optuna 2.10 copy."""
    import optuna

    root = tmp_path_factory.mktemp("storages")
    (root / "outputs").mkdir()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{root / 'outputs' / 'optuna.db'}", study_name="nocomplete")
    trial = study.ask()
    trial.set_user_attr("status", "pruned")  # told COMPLETE, as Optuna 2.10 studies hold pruned trials
    study.tell(trial, 0.99)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    shutil.copyfile(ROOT / "tests" / "data" / "optuna-2.10.db", root / "old.db")
    return root


@pytest.mark.parametrize("args, says", [
    (["--study", "nope"], ["--study='nope': no such study in sqlite:///outputs/optuna.db (studies there: nocomplete)"]),
    (["--study", "nocomplete"], ["--study='nocomplete'", "no complete trial (1 pruned, 1 failed); nothing to confirm"]),
    (["--study", "nocomplete", "--top", "0"], ["--top=0: must be >= 1"]),
    (["--study", "nocomplete", "--seeds", "1,x"], ["--seeds='1,x': must be comma-separated whole numbers"]),
    (["--study", "nocomplete", "--trials", "1,x"], ["--trials='1,x': must be comma-separated trial numbers"]),
    (["--study", "t", "--storage", "sqlite:///missing.db"], ["--storage='sqlite:///missing.db'", "does not exist"]),
    (["--study", "mnist_6k", "--storage", "sqlite:///old.db"], ["was written by optuna 2.10.1",
                                                                "optuna storage upgrade --storage sqlite:///old.db"]),
    (["--study", "nocomplete", "seed=4"], ["seed=4: seed is set by confirm.py (--seeds)"]),
    (["--study", "nocomplete", "--lanes", "0"], ["--lanes='0': must be a whole number >= 1 or auto"]),
    (["--study", "nocomplete", "--pick", "cheapest"], ["--pick", "invalid choice: 'cheapest'"]),
    (["--top", "1"], ["--study='mnist_20k_v2': no such study in sqlite:///outputs/optuna.db"]),  # the default
])
def test_bad_input_is_one_line(storages: Path, args: list[str], says: list[str], monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture) -> None:
    one_line_error(confirm_here(args, storages, monkeypatch, capsys), *says)
    assert not (storages / "missing.db").exists() and not (storages / "outputs" / "confirm").exists()


@pytest.mark.parametrize("seeds, says", [("1", "trained seed(s) 1 in the search"),
                                         ("101,1,2", "trained seed(s) 1 in the search")])
def test_seeds_the_search_trained_are_refused(lab: Path, tmp_path: Path, seeds: str, says: str,
                                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    result = confirm_here(["--study", "t", "--top", "1", "--seeds", seeds, "--confirm-dir", str(tmp_path / "c"),
                           *QUICK], lab, monkeypatch, capsys)
    one_line_error(result, f"--seeds={seeds}: trial #{best_trial(lab)}", says, "e.g. 101,102,103")
    assert not (tmp_path / "c").exists()


def test_the_search_trained_its_seed_or_its_reseeds() -> None:
    from types import SimpleNamespace

    from archsearch.workflow.confirm import trained_seeds

    def row(overrides: list[str], **attrs: Any) -> Row:
        return Row(number=0, state="complete", label="complete", target=0.994, overrides=overrides,
                   trial=SimpleNamespace(user_attrs=attrs))

    assert trained_seeds(row(["model=fcfree"])) == {1}  # conf/config.yaml's seed
    assert trained_seeds(row(["model=fcfree", "seed=7"])) == {7}
    assert trained_seeds(row(["model=fcfree"], seeds=[1, 2])) == {1, 2}


@pytest.mark.parametrize("cores, seeds, lanes", [(1, 3, 1), (2, 3, 2), (4, 3, 3), (16, 3, 3), (2, 1, 1), (4, 2, 2)])
def test_auto_lanes_runs_a_seed_per_core(cores: int, seeds: int, lanes: int) -> None:
    from archsearch.workflow.seeds import auto_lanes, lanes_for

    assert auto_lanes(cores, seeds) == lanes == lanes_for("auto", seeds, cores)
    assert lanes_for("5", seeds, cores) == seeds  # never more lanes than seeds


@pytest.mark.slow
def test_two_lanes_train_the_same_seeds_as_one(lab: Path, tmp_path: Path) -> None:
    """The same seeds in 2 lanes and in 1, each run on one thread: the same accuracies. (A seed's sums, and so
    its last digits, depend on its thread count: lanes of other thread counts differ there, docs/BENCHMARKS.md.)"""
    def confirm(lanes: str) -> dict[int, dict]:
        out = tmp_path / lanes
        result = run_entry("confirm.py", ["--study", "t", "--top", "1", "--seeds", "101,102", "--lanes", lanes,
                                          "--confirm-dir", str(out), "--results", "none", *QUICK[:-2],
                                          "train.threads=1"], cwd=lab, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"in {lanes} lane(s)" in result.stdout
        return {m["config"]["seed"]: m for m in (json.loads(p.read_text()) for p in out.glob("*/seed_*/metrics.json"))}

    one, two = confirm("1"), confirm("2")
    assert sorted(one) == sorted(two) == [101, 102]
    for seed in (101, 102):
        assert [e["test_acc"] for e in one[seed]["epochs"]] == [e["test_acc"] for e in two[seed]["epochs"]]
        assert one[seed]["config"]["train"]["threads"] == two[seed]["config"]["train"]["threads"] == 1


