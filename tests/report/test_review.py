"""sweep/review.py on small studies built with Optuna: ranking, labels, savings, formats, plots, errors."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

from conftest import ROOT, SMALL, compose, free_port, run_entry, run_in_process, sigint_as_at_a_terminal
from archsearch.report import review as review_cli
from archsearch.core.errors import ConfigError
from archsearch.report.experiment import pick, save_experiment
from archsearch.report.plots import PLOTS, plot_importances
from archsearch.report.ranking import Review, review_study
from archsearch.core.records import first_epoch_at
from archsearch.report.rows import state_label, trial_state
from archsearch.search.storage import load_study, open_readonly, schema_upgrade_hint
from archsearch.report.tables import render, run_command, summary_lines, table_rows, to_markdown

MAX_EPOCHS = 10
FIXED = {"train.epochs": str(MAX_EPOCHS), "constraints.max_params": "20000", "model": "fcfree"}
WINNER_OVERRIDES = [
    "model.widths.c1=8", "model.widths.c2=16", "model.widths.t=8", "model.widths.c3=12", "model.widths.c4=16",
    "model.dropout=0.05", "optim.lr=0.05", "train.batch_size=128", "sched=onecycle", "data.rotation=7.5",
    "model=fcfree", "constraints.allow_fc=False", "constraints.max_params=20000", "constraints.max_epochs=20",
    "train.epochs=10", "data.val_size=5000", "data.root=/tmp/my data"]  # a value that needs shell quoting


def curve(final: float, n: int = MAX_EPOCHS) -> list[float]:
    return [round(final - 0.002 * (n - i), 4) for i in range(1, n + 1)]


def trial(state: str, value=None, values=None, c1: int = 8, lr: float = 0.05,
          steps: dict | None = None, **attrs):
    """A finished trial with the records a job writes (see archsearch/core/train.py)."""
    import optuna
    from optuna.distributions import FloatDistribution, IntDistribution

    return optuna.trial.create_trial(
        state=getattr(optuna.trial.TrialState, state), value=value, values=values,
        params={"model.widths.c1": c1, "optim.lr": lr},
        distributions={"model.widths.c1": IntDistribution(4, 16, step=2),
                       "optim.lr": FloatDistribution(0.01, 0.3, log=True)},
        user_attrs={**FIXED, **attrs}, intermediate_values=steps or {})


def done(final_test: float, val: float, params: int, **attrs) -> dict:
    test = curve(final_test)
    return dict(status="complete", n_params=params, macs=params * 40, fc_free=True, epochs_trained=MAX_EPOCHS,
                test_acc_per_epoch=test, val_acc_per_epoch=curve(val), wall_time_s=100.0,
                first_epoch_at_target=first_epoch_at(test, 0.994), overrides=["model=fcfree"], **attrs)


# number: (state, value, c1, lr, intermediate values, user attrs)
TRIALS = [
    ("COMPLETE", 0.9930, 6, 0.02, None, done(0.9938, 0.9935, 15000)),
    ("COMPLETE", 0.9960, 10, 0.2, {1: 0.99, 4: 0.9960},  # pruned with a higher value: never the winner
     dict(status="pruned", pruned_at_epoch=4, n_params=12000, epochs_trained=4, test_acc_per_epoch=curve(0.9950, 4),
          val_acc_per_epoch=curve(0.9960, 4), wall_time_s=40.0, overrides=["pruned=1"])),
    ("COMPLETE", 0.9950, 8, 0.05, None, {**done(0.9945, 0.9952, 18000), "overrides": WINNER_OVERRIDES}),
    ("PRUNED", None, 14, 0.1, None, dict(status="rejected", reason="model has 21,000 params; "
                                       "constraints.max_params=20000 requires fewer", n_params=21000, macs=1)),
    ("FAIL", None, 4, 0.3, {1: 0.5, 2: 0.3}, dict(status="failed", reason="non-finite loss at epoch 3")),
    ("FAIL", None, 4, 0.01, None, {}),  # a killed worker's trial, failed by heartbeat: no status
    ("COMPLETE", 0.9940, 12, 0.03, None, done(0.9941, 0.9942, 9000)),
    ("COMPLETE", 0.9800, 16, 0.25, {2: 0.98}, dict(status="pruned", pruned_at_epoch=2, n_params=16000,
                                                     epochs_trained=2, test_acc_per_epoch=[0.97, 0.98])),
]
RANKED = [  # (trial number, label)
    (2, "complete"), (6, "complete"), (0, "complete"), (1, "pruned at epoch 4"), (7, "pruned at epoch 2"),
    (3, "rejected: model has 21,000 params; constraints.max_params=20000 requires fewer"),
    (4, "failed: non-finite loss at epoch 3"), (5, "failed (stale/killed)")]
BASELINE = {"status": "complete", "params": 19642, "macs": 3_000_000, "fc_free": False,
            "fc_layers": ["fc2.0: Linear 16->10"], "wall_time_s": 300.0,
            "epochs": [{"epoch": i, "val_acc": None, "test_acc": a} for i, a in enumerate(curve(0.9935, 20), 1)],
            "first_epoch_at_target": None, "config": {"constraints": {"target_acc": 0.994}, "train": {"epochs": 20}}}


def make_study(path: Path, name: str, trials: list = TRIALS, directions=("maximize",)) -> str:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{path}"
    study = optuna.create_study(storage=url, study_name=name, directions=list(directions))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # create_trial, add_trial
        for state, value, c1, lr, steps, attrs in trials:
            kw = {"values": value} if isinstance(value, tuple) else {"value": value}
            study.add_trial(trial(state, c1=c1, lr=lr, steps=steps, **kw, **attrs))
    return url


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cwd like the project's: outputs/optuna.db with study 'demo', an empty study, a baseline run."""
    import optuna

    root = tmp_path_factory.mktemp("lab")
    (root / "outputs").mkdir()
    url = make_study(root / "outputs" / "optuna.db", "demo")
    optuna.create_study(storage=url, study_name="empty")
    seed = root / "outputs" / "confirm" / "baseline" / "seed_1"
    seed.mkdir(parents=True)
    (seed / "metrics.json").write_text(json.dumps(BASELINE))
    return root


@pytest.fixture(scope="module")
def review(lab: Path) -> Review:
    url = f"sqlite:///{lab / 'outputs' / 'optuna.db'}"
    study = load_study(open_readonly(url), "demo", url)
    return review_study(study, url, lab / "outputs" / "confirm" / "baseline" / "seed_1" / "metrics.json")


def test_ranking_and_state_labels(review: Review) -> None:
    assert [(r.number, r.label) for r in review.rows] == RANKED
    assert [r.rank for r in review.rows] == list(range(1, len(TRIALS) + 1))


def test_summary_counts_and_savings(review: Review) -> None:
    s = review.summary
    assert s.counts == {"complete": 3, "pruned": 2, "running": 0, "rejected": 1, "duplicate": 0, "failed": 2}
    # 10+4+10+0+2+0+10+2: the diverged trial counts its reported epochs, rejected ones none
    assert (s.epochs_trained, s.epochs_budget, s.max_epochs) == (38, 8 * MAX_EPOCHS, MAX_EPOCHS)
    assert s.saving == pytest.approx(1 - 38 / 80)
    assert s.rejected_fraction == pytest.approx(1 / 8)
    assert "epochs trained: 38 of 8 x 10 = 80: 52.5% saved" in "\n".join(summary_lines(review))


def test_pareto_front_and_winner(review: Review) -> None:
    assert [r.number for r in review.front] == [6, 2]  # #0 has more params and less accuracy than #6
    assert review.winner.number == 2  # not #1, pruned with a higher value
    command = run_command(review.winner.overrides)
    assert "'data.root=/tmp/my data'" in command
    assert shlex.split(command)[2:] == WINNER_OVERRIDES


def test_baseline_row(review: Review) -> None:
    b = review.baseline
    assert (b.label, b.params, b.test_acc, b.best_val, b.epochs_trained) == (
        "baseline (documented Net)", 19642, 0.9935, None, 20)
    headers, cells = table_rows(review, top=3)
    assert cells[0][:3] == ["ref", "-", "baseline (documented Net)"] and len(cells) == 4
    assert "test acc (final epoch)" in headers and "first epoch >=99.4% test" in headers


def test_multi_objective_ranks_pareto_layers(tmp_path: Path) -> None:
    trials = [("COMPLETE", values, 8, 0.05, None, {"status": "complete", "n_params": int(values[1])})
              for values in [(0.995, 15000.0), (0.990, 5000.0), (0.989, 6000.0), (0.993, 16000.0)]]
    url = make_study(tmp_path / "mo.db", "mo", trials, directions=("maximize", "minimize"))
    study = load_study(open_readonly(url), "mo", url)
    review = review_study(study, url, None)
    assert [r.number for r in review.rows] == [0, 1, 3, 2]  # front {0, 1} by accuracy, then {3, 2}


@pytest.mark.parametrize("fmt, check", [
    ("csv", lambda out: [r["rank"] for r in csv.DictReader(io.StringIO(out))] == ["ref", *map(str, range(1, 9))]),
    ("json", lambda out: json.loads(out)["winner"]["trial"] == 2 and json.loads(out)["pareto_front"] == [6, 2]),
    ("md", lambda out: "| ref | - | baseline (documented Net) |" in out and "| 1 | #2 | complete |" in out),
    ("table", lambda out: "winner: trial #2" in out and "failed (stale/killed)" in out),
])
def test_formats(review: Review, tmp_path: Path, fmt: str, check) -> None:
    assert check(render(review, fmt, 10, {}, tmp_path))


def test_report_folder_and_readonly_storage(lab: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    db = lab / "outputs" / "optuna.db"
    before = hashlib.md5(db.read_bytes()).hexdigest()
    monkeypatch.chdir(lab)
    review_cli.main(["--study", "demo", "--format", "json"])  # defaults: storage and baseline found from the cwd
    out = json.loads(capsys.readouterr().out)
    report = lab / "outputs" / "review" / "demo"
    assert out["baseline"]["path"].endswith("seed_1/metrics.json") and out["plots"] == dict.fromkeys(PLOTS)
    for name in ["leaderboard.csv", "report.md", *PLOTS]:
        assert (report / name).stat().st_size > 0, name
    for name in PLOTS:
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"![{name}]({name})" in (report / name).with_name("report.md").read_text()
    assert hashlib.md5(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in db.parent.iterdir() if p.name.startswith("optuna")) == ["optuna.db"]


def test_importances_skipped_without_two_complete_trials(tmp_path: Path) -> None:
    url = make_study(tmp_path / "one.db", "one", [TRIALS[2], TRIALS[3]])
    review = review_study(load_study(open_readonly(url), "one", url), url, None)
    note = plot_importances(review, tmp_path / "importances.png")
    assert note.startswith("needs 2 or more complete trials") and not (tmp_path / "importances.png").exists()
    assert "- `importances.png` skipped: needs 2" in to_markdown(review, 10, {"importances.png": note})


@pytest.mark.parametrize("args, message", [
    (["--storage", "sqlite:///missing/optuna.db"], "missing/optuna.db does not exist"),
    (["--study", "nope"], "--study='nope': no such study in sqlite:///outputs/optuna.db (studies there: demo, empty)"),
    (["--study", "empty"], "--study='empty' in sqlite:///outputs/optuna.db has no trials yet"),
])
def test_cli_errors_are_one_line(lab: Path, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_in_process("review.py", args, lab, monkeypatch, capsys)
    assert code == 2, err
    assert err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (lab / "missing").exists()  # a missing sqlite file is never created


@pytest.fixture
def saved(review: Review, tmp_path: Path) -> list[str]:
    """The winner saved as experiment 'best_demo' in tmp_path/experiment; returns the overrides that find it."""
    save_experiment(review.winner, "best_demo", review, tmp_path / "experiment")
    return ["+experiment=best_demo", f"hydra.searchpath=[file://{tmp_path}]"]


def test_saved_experiment_composes(review: Review, saved: list[str], tmp_path: Path) -> None:
    text = (tmp_path / "experiment" / "best_demo.yaml").read_text()
    assert text.startswith("# @package _global_") and "python sweep/run.py -m +experiment=best_demo seed=101,102,103" in text
    assert "override /sweep: none" in text and "seed_${seed}" in text
    cfg = compose(saved)
    assert (cfg.model.name, cfg.model.widths.c1, cfg.optim.lr, cfg.sched.name, cfg.data.val_size) == (
        "best_demo", 8, 0.05, "onecycle", 0)
    assert (cfg.data.root, cfg.data.train_subset, cfg.trial, cfg.constraints.allow_fc) == ("data", 0, None, False)
    with pytest.raises(ConfigError, match="exists"):
        save_experiment(review.winner, "best_demo", review, tmp_path / "experiment")
    with pytest.raises(ConfigError, match="pruned at epoch 4; only a complete trial"):
        pick(review, 1)


@pytest.mark.slow
def test_saved_experiment_trains(saved: list[str]) -> None:
    from archsearch.core.train import train

    assert train(compose([*saved, *SMALL])).status == "complete"


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.slow  # starts optuna-dashboard's server
def test_dashboard_serves_the_study(lab: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "sweep" / "review.py"), "--dashboard", "--port", str(port),
                             "--study", "demo"], cwd=lab, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=sigint_as_at_a_terminal)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                studies = get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.2)
        study_id = next(s["study_id"] for s in studies if s["study_name"] == "demo")
        assert len(get_json(f"http://127.0.0.1:{port}/api/studies/{study_id}")["trials"]) == len(TRIALS)
        proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert f"http://127.0.0.1:{port}/dashboard/studies/{study_id}" in proc.stdout.read()


WORKER_LOST = "worker lost: no heartbeat for over 60 s (killed, or its machine went away)"


@pytest.mark.parametrize("state, attrs, expected, label", [
    # Optuna 2.10 studies (results/optuna.db): pruned trials COMPLETE, rejections FAIL, later PRUNED
    ("COMPLETE", {"status": "pruned", "pruned_at_epoch": 4}, "pruned", "pruned at epoch 4"),
    ("FAIL", {"status": "rejected", "reason": "over budget"}, "rejected", "rejected: over budget"),
    ("PRUNED", {"status": "rejected", "reason": "over budget"}, "rejected", "rejected: over budget"),
    # the Optuna 5 sweeper
    ("PRUNED", {"status": "pruned", "pruned_at_epoch": 3}, "pruned", "pruned at epoch 3"),
    ("FAIL", {"status": "failed", "reason": "non-finite loss"}, "failed", "failed: non-finite loss"),
    ("FAIL", {"status": "duplicate", "reason": "same configuration as #2"}, "duplicate",
     "duplicate: same configuration as #2"),
    ("FAIL", {"status": "running", "reason": WORKER_LOST}, "failed", f"failed: {WORKER_LOST}"),
    # a worker that died in a further seed: Optuna failed it stale after the first seed's `complete`
    ("FAIL", {"status": "complete", "reason": f"{WORKER_LOST} while training seed 2"}, "failed",
     f"failed: {WORKER_LOST} while training seed 2"),
    ("WAITING", {}, "running", "queued"),
    # no record, or a record Optuna has not caught up with: Optuna's state decides
    ("FAIL", {}, "failed", "failed (stale/killed)"),
    ("RUNNING", {"status": "complete"}, "running", "running"),
    ("PRUNED", {}, "pruned", "pruned at epoch ?"),
    ("COMPLETE", {"status": "complete"}, "complete", "complete"),
])
def test_trial_state_reads_the_status_record_first(state: str, attrs: dict, expected: str, label: str) -> None:
    t = trial(state, value=0.99 if state == "COMPLETE" else None, **attrs)
    assert (trial_state(t), state_label(t)) == (expected, label)


@pytest.mark.parametrize("state, attrs, label", [
    ("WAITING", {}, "queued, retry of #15"),
    ("COMPLETE", {"status": "complete"}, "complete, retry of #15"),
])
def test_a_retry_of_a_lost_trial_says_which(state: str, attrs: dict, label: str) -> None:
    t = trial(state, value=0.99 if state == "COMPLETE" else None, **attrs)
    t.system_attrs = {"failed_trial": 15, "retry_history": [15]}  # as the sweeper queues it
    assert state_label(t) == label


# As the Optuna 5 sweeper tells them: pruned and rejected trials PRUNED, failed and duplicate ones FAIL.
NEW_TRIALS = [
    ("COMPLETE", 0.9950, 8, 0.05, None, done(0.9945, 0.9952, 18000)),
    ("PRUNED", 0.9970, 10, 0.2, {1: 0.99, 3: 0.9970},  # a higher value than any complete trial: never the winner
     dict(status="pruned", pruned_at_epoch=3, n_params=12000, epochs_trained=3, test_acc_per_epoch=curve(0.996, 3))),
    ("PRUNED", None, 14, 0.1, None, dict(status="rejected", reason="model has 21,000 params", n_params=21000)),
    ("FAIL", None, 8, 0.05, None, dict(status="duplicate", reason="same configuration as #0")),
    ("FAIL", None, 4, 0.3, {1: 0.5}, dict(status="failed", reason="non-finite loss at epoch 2", epochs_trained=1)),
    ("COMPLETE", 0.9940, 12, 0.03, None, done(0.9941, 0.9942, 9000)),
]


def test_new_states_rank_and_count(tmp_path: Path) -> None:
    url = make_study(tmp_path / "new.db", "new", NEW_TRIALS)
    review = review_study(load_study(open_readonly(url), "new", url), url, None)
    # The duplicate ask (#3) is no row: it trained nothing and holds nothing, so it is counted, never ranked.
    assert [(r.number, r.label) for r in review.rows] == [
        (0, "complete"), (5, "complete"), (1, "pruned at epoch 3"), (2, "rejected: model has 21,000 params"),
        (4, "failed: non-finite loss at epoch 2")]
    assert review.winner.number == 0 and review.rows[2].objective == [0.9970]
    s = review.summary
    assert s.counts == {"complete": 2, "pruned": 1, "running": 0, "rejected": 1, "duplicate": 1, "failed": 1}
    assert s.n_trials == 5 and (s.epochs_trained, s.epochs_budget) == (10 + 3 + 0 + 1 + 10, 5 * MAX_EPOCHS)
    text = render(review, "table", 10, {}, tmp_path)
    assert "5 trials: 2 complete, 1 pruned, 1 rejected, 1 failed" in text and "failed: non-finite" in text
    assert "saved by pruning and rejection" in text and "duplicate asks, skipped: 1" in text
    assert "#3" not in text.split("duplicate asks")[1]  # in no table row
    csv_rows = list(csv.DictReader(io.StringIO(review_cli.to_csv(review))))
    assert [r["trial"] for r in csv_rows] == ["0", "5", "1", "2", "4"]
    assert review_cli.write_report(review, tmp_path / "report", 10) == dict.fromkeys(PLOTS)


def test_a_reseeded_trials_further_seeds_are_counted_apart(tmp_path: Path) -> None:
    """A reseeded trial trained 2 x 10 epochs: the saving compares first seeds with n x max, so a sweep that
    rejected one trial of three still says it saved a third; the 10 further epochs are named, not hidden."""
    reseeded = {**done(0.9945, 0.9952, 18000, seeds=[1, 2], seed_objectives=[0.9952, 0.9948]),
                "epochs_trained": 2 * MAX_EPOCHS}
    url = make_study(tmp_path / "reseed.db", "reseed", [
        ("COMPLETE", 0.9950, 8, 0.05, None, reseeded),
        ("COMPLETE", 0.9940, 12, 0.03, None, done(0.9941, 0.9942, 9000)),
        ("PRUNED", None, 14, 0.1, None, dict(status="rejected", reason="model has 21,000 params", n_params=21000))])
    s = review_study(load_study(open_readonly(url), "reseed", url), url, None).summary
    assert (s.epochs_trained, s.further_seed_epochs, s.epochs_budget) == (30, 10, 3 * MAX_EPOCHS)
    assert round(s.saving, 4) == round(1 / 3, 4)
    assert summary_lines(review_study(load_study(open_readonly(url), "reseed", url), url, None))[1] == (
        "epochs trained: 30: 20 by first seeds, of 3 x 10 = 30 (33.3% saved by pruning and rejection), "
        "and 10 by the further seeds of top trials")


def test_a_trial_short_of_seeds_ranks_after_every_trial_that_holds_them_all(tmp_path: Path) -> None:
    """#1's first seed beats every 2-seed mean, but the budget ran out before its second: it is no finalist and
    no winner on one seed, and says so. #3 was never in the top, so never reseeded: it ranks by its value."""
    from archsearch.workflow.confirm import finalists

    def seeded(val: float, *seed_objectives: float, **attrs) -> dict:
        return done(val, val, 9000, seeds=list(range(1, len(seed_objectives) + 1)),
                    seed_objectives=list(seed_objectives), **attrs)

    url = make_study(tmp_path / "reseed.db", "reseed", [
        ("COMPLETE", 0.9950, 8, 0.05, None, seeded(0.9950, 0.9952, 0.9948)),
        ("COMPLETE", 0.9970, 10, 0.05, None, seeded(0.9970, 0.9970, reseed_note="no further seed: the sweep's "
                                                                               "epoch budget ran out")),
        ("COMPLETE", 0.9940, 12, 0.05, None, seeded(0.9940, 0.9941, 0.9939)),
        ("COMPLETE", 0.9930, 14, 0.05, None, done(0.9930, 0.9930, 9000))])
    review = review_study(load_study(open_readonly(url), "reseed", url), url, None)
    assert [(r.number, r.label) for r in review.rows] == [
        (0, "complete"), (2, "complete"), (1, "complete, 1 of 2 seeds"), (3, "complete")]
    assert review.winner.number == 0
    assert [f.row.number for f in finalists(review, 2, [], set())] == [0, 2]


def test_the_committed_v3_study_names_no_finalist_on_one_seed_of_two() -> None:
    """small6k_v3's #39 ran out of budget before its second seed; its first alone would have ranked second."""
    from archsearch.workflow.confirm import finalists

    url = f"sqlite:///{ROOT / 'results' / 'search_v3.db'}"
    review = review_study(load_study(open_readonly(url), "small6k_v3", url), url, None)
    [short] = [r for r in review.rows if r.number == 39]
    assert short.trial.user_attrs["seeds"] == [1] and short.label == "complete, 1 of 2 seeds"
    top = [f.row for f in finalists(review, 3, [], set())]
    assert 39 not in [r.number for r in top] and all(len(r.trial.user_attrs["seeds"]) == 2 for r in top)


def test_the_front_ranks_on_validation_never_on_test(tmp_path: Path) -> None:
    trials = [("COMPLETE", 0.9940, 12, 0.03, None, done(0.9941, 0.9942, 9000)),
              # the best test accuracy of the study, but a lower validation objective and more params
              ("COMPLETE", 0.9900, 8, 0.05, None, done(0.9990, 0.9900, 10000))]
    url = make_study(tmp_path / "front.db", "front", trials)
    review = review_study(load_study(open_readonly(url), "front", url), url, None)
    assert [r.number for r in review.front] == [0]
    assert review.accuracy(review.rows[1]) == 0.9900
    assert "#0 (9,000 params, 99.40%; 99.41% test, recorded)" in to_markdown(review, 10)


# Trials #0, #1, #4, #19 and #35 of study mnist_6k in results/optuna.db, as optuna 2.10.1 wrote them: the file
# copied and the other trials and study deleted with SQL, its schema untouched (alembic revision v2.6.0.a).
OLD_DB = ROOT / "tests" / "data" / "optuna-2.10.db"
OLD_STATES = [(1, "complete"), (35, "pruned"), (0, "rejected"), (19, "rejected"), (4, "failed")]


@pytest.fixture(scope="module")
def old_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, subprocess.CompletedProcess]:
    """A copy of the 2.10 fixture and the review's answer to it."""
    path = tmp_path_factory.mktemp("old") / "optuna 2.10.db"  # a space: the command must quote the URL
    shutil.copyfile(OLD_DB, path)
    url = f"sqlite:///{path}"
    return url, run_entry("review.py", ["--storage", url, "--study", "mnist_6k"], cwd=path.parent, timeout=60)


def test_old_storage_names_the_upgrade_command(old_db: tuple[str, subprocess.CompletedProcess]) -> None:
    url, result = old_db
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(f"error: {url} was written by optuna 2.10.1;")
    assert result.stderr.rstrip().endswith(f"optuna storage upgrade --storage {shlex.quote(url)}")


@pytest.mark.slow  # the storage upgrade chain; the quick case above checks the one-line error
def test_old_storage_in_dashboard_mode(old_db: tuple[str, subprocess.CompletedProcess]) -> None:
    url, _ = old_db
    result = run_entry("review.py", ["--storage", url, "--dashboard", "--port", str(free_port())],
                       cwd=Path(url[len("sqlite:///"):]).parent, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"optuna storage upgrade --storage {shlex.quote(url)}" in result.stderr


@pytest.fixture(scope="module")
def upgraded(old_db: tuple[str, subprocess.CompletedProcess]) -> str:
    """The copy, upgraded by the very command the review named (with the venv's optuna)."""
    url, result = old_db
    command = shlex.split(result.stderr.rsplit(": ", 1)[1])
    assert command[:3] == ["optuna", "storage", "upgrade"]
    done = subprocess.run([str(Path(sys.executable).with_name("optuna")), *command[1:]], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return url


@pytest.mark.slow  # the storage upgrade chain
def test_upgraded_old_study_reviews_quietly(upgraded: str) -> None:
    cwd = Path(upgraded[len("sqlite:///"):]).parent
    result = run_entry("review.py", ["--storage", upgraded, "--study", "mnist_6k", "--format", "json"], cwd=cwd,
                       timeout=120)
    assert result.returncode == 0, result.stderr
    assert "FutureWarning" not in result.stderr and "Warning" not in result.stderr
    out = json.loads(result.stdout)
    assert [(r["trial"], r["state"]) for r in out["leaderboard"]] == OLD_STATES
    assert out["winner"]["trial"] == 1  # not #35, pruned with a higher value (0.9864 against 0.9842)
    assert out["leaderboard"][1]["label"] == "pruned at epoch 11"
    assert out["summary"]["counts"] == {"complete": 1, "pruned": 1, "running": 0, "rejected": 2, "duplicate": 0,
                                        "failed": 1}


@pytest.mark.parametrize("exc", [
    RuntimeError("The runtime optuna version 5.0.0 is no longer compatible with the table schema (set up by optuna "
                 "9.0.0). Please try updating optuna to the latest version by `$ pip install -U optuna`."),
    ValueError("Please execute `$ optuna storage upgrade --storage $STORAGE_URL` for upgrading the storage."),
    RuntimeError("database is locked"),
])
def test_upgrade_hint_only_for_an_older_schema(exc: BaseException) -> None:
    assert schema_upgrade_hint("sqlite:///x.db", exc) is None


def test_the_baseline_reference_is_a_complete_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from archsearch.report.rows import find_baseline

    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "outputs" / "runs"
    for name, status, mtime in (("a_baseline", "complete", 1), ("b_baseline", "failed", 2)):
        (runs / name).mkdir(parents=True)
        (runs / name / "metrics.json").write_text(json.dumps({"status": status}))
        os.utime(runs / name / "metrics.json", (mtime, mtime))
    assert find_baseline() == Path("outputs/runs/a_baseline/metrics.json")  # the newer one was interrupted


@pytest.mark.parametrize("rules, label", [((None, None), "mean of the last 3 epochs"),
                                          (("min", "min"), "worst of the last 3 epochs"),
                                          (("min", None), "mean or worst of the last 3 epochs")])
def test_the_objective_is_named_by_the_rule_its_trials_ran_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 rules: tuple, label: str) -> None:
    """A study searched with train.objective_rule=min ranks on the worst of the last epochs: its plots say so."""
    from archsearch.report import plots

    saved = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, ax, path: saved.append(ax.get_ylabel()))
    def attrs(rule, val):
        return {**done(0.9940, val, 5000), "overrides": ["model=fcfree", *([f"train.objective_rule={rule}"] if rule
                                                                         else [])]}

    url = make_study(tmp_path / "rule.db", "rule", [("COMPLETE", 0.9930, 8, 0.05, None, attrs(rules[0], 0.9930)),
                                                    ("COMPLETE", 0.9920, 10, 0.1, None, attrs(rules[1], 0.9920))])
    review = review_study(load_study(open_readonly(url), "rule", url), url, None)
    assert review.objective_label == label
    plots.plot_history(review, tmp_path / "history.png")
    plots.plot_acc_vs_params(review, tmp_path / "params.png")
    assert saved == [f"val acc ({label})", f"validation objective ({label})"]
