"""sweep/review.py on small studies built with Optuna: ranking, labels, savings, formats, plots, errors."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

from conftest import ROOT, SMALL, compose, free_port, run_entry, sigint_as_at_a_terminal
from sweep import review as rv

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
    """A finished trial with the records a job writes (see sweep/train.py)."""
    import optuna
    from optuna.distributions import IntUniformDistribution, LogUniformDistribution

    return optuna.trial.create_trial(
        state=getattr(optuna.trial.TrialState, state), value=value, values=values,
        params={"model.widths.c1": c1, "optim.lr": lr},
        distributions={"model.widths.c1": IntUniformDistribution(4, 16, 2),
                       "optim.lr": LogUniformDistribution(0.01, 0.3)},
        user_attrs={**FIXED, **attrs}, intermediate_values=steps or {})


def done(final_test: float, val: float, params: int, **attrs) -> dict:
    test = curve(final_test)
    return dict(status="complete", n_params=params, macs=params * 40, fc_free=True, epochs_trained=MAX_EPOCHS,
                test_acc_per_epoch=test, val_acc_per_epoch=curve(val), wall_time_s=100.0,
                first_epoch_at_target=rv.first_epoch_at(test, 0.994), overrides=["model=fcfree"], **attrs)


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
def review(lab: Path) -> rv.Review:
    url = f"sqlite:///{lab / 'outputs' / 'optuna.db'}"
    study = rv.load_study(rv.open_readonly(url), "demo", url)
    return rv.review_study(study, url, lab / "outputs" / "confirm" / "baseline" / "seed_1" / "metrics.json")


def test_ranking_and_state_labels(review: rv.Review) -> None:
    assert [(r.number, r.label) for r in review.rows] == RANKED
    assert [r.rank for r in review.rows] == list(range(1, len(TRIALS) + 1))


def test_summary_counts_and_savings(review: rv.Review) -> None:
    s = review.summary
    assert s.counts == {"complete": 3, "pruned": 2, "running": 0, "rejected": 1, "failed": 2}
    # 10+4+10+0+2+0+10+2: the diverged trial counts its reported epochs, rejected ones none
    assert (s.epochs_trained, s.epochs_budget, s.max_epochs) == (38, 8 * MAX_EPOCHS, MAX_EPOCHS)
    assert s.saving == pytest.approx(1 - 38 / 80)
    assert s.rejected_fraction == pytest.approx(1 / 8)
    assert "epochs trained: 38 of 8 x 10 = 80: 52.5% saved" in "\n".join(rv.summary_lines(review))


def test_pareto_front_and_winner(review: rv.Review) -> None:
    assert [r.number for r in review.front] == [6, 2]  # #0 has more params and less accuracy than #6
    assert review.winner.number == 2  # not #1, pruned with a higher value
    command = rv.run_command(review.winner.overrides)
    assert "'data.root=/tmp/my data'" in command
    assert shlex.split(command)[2:] == WINNER_OVERRIDES


def test_baseline_row(review: rv.Review) -> None:
    b = review.baseline
    assert (b.label, b.params, b.test_acc, b.best_val, b.epochs_trained) == (
        "baseline (documented Net)", 19642, 0.9935, None, 20)
    headers, cells = rv.table_rows(review, top=3)
    assert cells[0][:3] == ["ref", "-", "baseline (documented Net)"] and len(cells) == 4
    assert "test acc (final epoch)" in headers and "first epoch >=99.4% test" in headers


def test_multi_objective_ranks_pareto_layers(tmp_path: Path) -> None:
    trials = [("COMPLETE", values, 8, 0.05, None, {"status": "complete", "n_params": int(values[1])})
              for values in [(0.995, 15000.0), (0.990, 5000.0), (0.989, 6000.0), (0.993, 16000.0)]]
    url = make_study(tmp_path / "mo.db", "mo", trials, directions=("maximize", "minimize"))
    study = rv.load_study(rv.open_readonly(url), "mo", url)
    review = rv.review_study(study, url, None)
    assert [r.number for r in review.rows] == [0, 1, 3, 2]  # front {0, 1} by accuracy, then {3, 2}


@pytest.mark.parametrize("fmt, check", [
    ("csv", lambda out: [r["rank"] for r in csv.DictReader(io.StringIO(out))] == ["ref", *map(str, range(1, 9))]),
    ("json", lambda out: json.loads(out)["winner"]["trial"] == 2 and json.loads(out)["pareto_front"] == [6, 2]),
    ("md", lambda out: "| ref | - | baseline (documented Net) |" in out and "| 1 | #2 | complete |" in out),
    ("table", lambda out: "winner: trial #2" in out and "failed (stale/killed)" in out),
])
def test_formats(review: rv.Review, tmp_path: Path, fmt: str, check) -> None:
    assert check(rv.render(review, fmt, 10, {}, tmp_path))


def test_report_folder_and_readonly_storage(lab: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    db = lab / "outputs" / "optuna.db"
    before = hashlib.md5(db.read_bytes()).hexdigest()
    monkeypatch.chdir(lab)
    rv.main(["--study", "demo", "--format", "json"])  # defaults: storage and baseline found from the cwd
    out = json.loads(capsys.readouterr().out)
    report = lab / "outputs" / "review" / "demo"
    assert out["baseline"]["path"].endswith("seed_1/metrics.json") and out["plots"] == dict.fromkeys(rv.PLOTS)
    for name in ["leaderboard.csv", "report.md", *rv.PLOTS]:
        assert (report / name).stat().st_size > 0, name
    for name in rv.PLOTS:
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"![{name}]({name})" in (report / name).with_name("report.md").read_text()
    assert hashlib.md5(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in db.parent.iterdir() if p.name.startswith("optuna")) == ["optuna.db"]


def test_importances_skipped_without_two_complete_trials(tmp_path: Path) -> None:
    url = make_study(tmp_path / "one.db", "one", [TRIALS[2], TRIALS[3]])
    review = rv.review_study(rv.load_study(rv.open_readonly(url), "one", url), url, None)
    note = rv.plot_importances(review, tmp_path / "importances.png")
    assert note.startswith("needs 2 or more complete trials") and not (tmp_path / "importances.png").exists()
    assert "- `importances.png` skipped: needs 2" in rv.to_markdown(review, 10, {"importances.png": note})


@pytest.mark.parametrize("args, message", [
    (["--storage", "sqlite:///missing/optuna.db"], "missing/optuna.db does not exist"),
    (["--study", "nope"], "--study='nope': no such study in sqlite:///outputs/optuna.db (studies there: demo, empty)"),
    (["--study", "empty"], "--study='empty' in sqlite:///outputs/optuna.db has no trials yet"),
])
def test_cli_errors_are_one_line(lab: Path, args: list[str], message: str) -> None:
    result = run_entry("review.py", args, cwd=lab, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (lab / "missing").exists()  # a missing sqlite file is never created


@pytest.fixture
def saved(review: rv.Review, tmp_path: Path) -> list[str]:
    """The winner saved as experiment 'best_demo' in tmp_path/experiment; returns the overrides that find it."""
    rv.save_experiment(review.winner, "best_demo", review, tmp_path / "experiment")
    return ["+experiment=best_demo", f"hydra.searchpath=[file://{tmp_path}]"]


def test_saved_experiment_composes(review: rv.Review, saved: list[str], tmp_path: Path) -> None:
    text = (tmp_path / "experiment" / "best_demo.yaml").read_text()
    assert text.startswith("# @package _global_") and "python sweep/run.py -m +experiment=best_demo seed=1,2,3" in text
    assert "override /sweep: none" in text and "seed_${seed}" in text
    cfg = compose(saved)
    assert (cfg.model.name, cfg.model.widths.c1, cfg.optim.lr, cfg.sched.name, cfg.data.val_size) == (
        "best_demo", 8, 0.05, "onecycle", 0)
    assert (cfg.data.root, cfg.data.train_subset, cfg.trial, cfg.constraints.allow_fc) == ("data", 0, None, False)
    with pytest.raises(rv.ConfigError, match="exists"):
        rv.save_experiment(review.winner, "best_demo", review, tmp_path / "experiment")
    with pytest.raises(rv.ConfigError, match="pruned at epoch 4; only a complete trial"):
        rv.pick(review, 1)


@pytest.mark.slow
def test_saved_experiment_trains(saved: list[str]) -> None:
    from sweep.train import train

    assert train(compose([*saved, *SMALL])).status == "complete"


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


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


def test_rejected_trials_of_older_studies_are_still_rejected():
    # Studies written before rejections were told PRUNED hold them as FAIL (results/optuna.db does).
    assert rv.trial_state(trial("FAIL", status="rejected", reason="model has 21,000 params")) == "rejected"
