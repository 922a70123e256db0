"""sweep/results.py on fabricated seed confirmations and tiny studies: verdicts, arithmetic, RESULTS.md and the
plots, the searches read from several storages, hand-queued winners."""
from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path

import pytest

from conftest import ROOT, run_entry, run_in_process
from archsearch.report import acceptance as ac
from archsearch.report import results as rs
from archsearch.report import searches as ss
from archsearch.core.errors import StorageError
from archsearch.core.records import first_epoch_at
from test_review import MAX_EPOCHS, NEW_TRIALS, TRIALS, done, make_study, trial

EPOCHS = 20
# experiment: (params, FC layers, the last 3 test accuracies of seeds 1, 2, 3)
RUNS = {
    "baseline": (19642, ["fc2.0: Linear 16->10"], [[0.9941, 0.9944, 0.9942], [0.9940, 0.9946, 0.9943],
                                                  [0.9945, 0.9944, 0.9947]]),
    "good": (14210, [], [[0.9945, 0.9950, 0.9948], [0.9941, 0.9944, 0.9947], [0.9952, 0.9949, 0.9951]]),
    "shaky": (9000, [], [[0.9946, 0.9948, 0.9950], [0.9942, 0.9938, 0.9945], [0.9944, 0.9947, 0.9949]]),
}


def write_run(root: Path, name: str, seed: int, params: int, fc_layers: list[str], last: list[float],
              teacher: dict | None = None) -> None:
    """A run directory as `python sweep/run.py -m +experiment=<name> seed=<seed>` leaves it (archsearch/core/train.py)."""
    test = [round(0.985 + 0.0005 * e, 4) for e in range(1, EPOCHS - 2)] + last
    run = root / name / f"seed_{seed}"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(f"- +experiment={name}\n- seed={seed}\n")
    (run / "metrics.json").write_text(json.dumps({
        "status": "complete", "params": params, "macs": params * 50, "fc_free": not fc_layers,
        "fc_layers": fc_layers, "epochs_trained": EPOCHS, "wall_time_s": 600.0 + seed, "teacher": teacher,
        "first_epoch_at_target": first_epoch_at(test, 0.994),
        "epochs": [{"epoch": e, "val_acc": None, "test_acc": a} for e, a in enumerate(test, 1)],
        "config": {"seed": seed, "model": {"name": name},
                   "constraints": {"max_params": 20000, "max_epochs": 20, "target_acc": 0.994}}}))


@pytest.fixture(scope="module")
def confirm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("confirm")
    for name, (params, fc, lasts) in RUNS.items():
        for seed, last in enumerate(lasts, 1):
            write_run(root, name, seed, params, fc, last)
    return root


@pytest.fixture(scope="module")
def experiments(confirm: Path) -> dict[str, ac.Experiment]:
    return {e.name: e for e in ac.find_experiments(confirm)}


@pytest.mark.parametrize("name, confirmed, says", [
    ("good", True, "**CONFIRMED**: FC-free, 14,210 < 20,000 params, 20 <= 20 epochs; every seed reaches 99.4%"),
    ("shaky", False, "**NOT CONFIRMED**: accuracy rule fails: seed 2 has 99.38% at epoch 19, under 99.4%."),
    ("baseline", False, "**NOT CONFIRMED**: it has a fully connected layer (fc2.0: Linear 16->10), which the rules "
                        "forbid. Accuracy alone passes: every seed reaches 99.4% in each of the last 3 epochs "
                        "(min 99.40%)."),
])
def test_verdicts(experiments: dict[str, ac.Experiment], name: str, confirmed: bool, says: str) -> None:
    e = experiments[name]
    assert e.confirmed is confirmed
    assert says in e.verdict()


@pytest.mark.parametrize("name", RUNS)
def test_mean_and_min_over_seeds(experiments: dict[str, ac.Experiment], name: str) -> None:
    lasts = RUNS[name][2]
    e = experiments[name]
    assert [r.last for r in e.runs] == lasts
    assert e.mean == pytest.approx(statistics.mean(statistics.mean(last) for last in lasts))
    assert e.min == min(min(last) for last in lasts)


def test_order_and_reproduce_commands(experiments: dict[str, ac.Experiment], confirm: Path) -> None:
    assert [e.name for e in ac.find_experiments(confirm)] == ["baseline", "shaky", "good"]  # baseline, then params
    assert experiments["good"].commands() == ["python sweep/run.py -m +experiment=good seed=1,2,3"]


def test_targets_name_what_meets_them_and_what_only_tried(experiments: dict[str, ac.Experiment]) -> None:
    rows = rs.targets_table(list(experiments.values())).splitlines()[2:]
    assert rows == [  # the baseline is never a candidate: it has a Linear head
        "| required | < 20,000 | <= 20 | good (14,210 params) | good (14,210 params) | shaky (min 99.38%, 3 seed(s)) |",
        "| goal | < 6,000 | <= 19 | **not met** | **not met** | - |",
        "| stretch | < 4,000 | <= 19 | **not met** | **not met** | - |",
    ]


def test_a_distilled_result_says_so_with_its_teacher_its_cost_and_its_images(tmp_path: Path) -> None:
    teacher = {"checkpoint": "results/confirm/good/seed_1/model.pt", "params": 14210, "name": "good", "seed": 1,
               "epochs": 20, "wall_time_s": 390.0, "test_acc": 0.995,
               "trained_on": {"split_seed": 0, "val_size": 10000, "train_subset": 0, "images": 50000}}
    for seed in (1, 2, 3):
        write_run(tmp_path, "student", seed, 5000, [], [0.9945, 0.9944, 0.9946], teacher=teacher)
    (e,) = ac.find_experiments(tmp_path)
    assert e.confirmed and e.recipe() == ("distilled from good seed 1 (14,210 params; trained 20 epochs in 6.5 min; "
                                          "it trained on 50,000 training images, the 10,000 validation images of "
                                          "split 0 held out)")
    assert rs.targets_table([e]).splitlines()[2] == (
        "| required | < 20,000 | <= 20 | student (5,000 params, distilled) | **not met** | - |")
    assert "Recipe: distilled from good seed 1" in "\n".join(rs.experiment_section(e))


@pytest.mark.parametrize("checkpoint, images", [
    ("results/confirm/fcfree_8k/seed_1/model.pt", "it trained on all 60,000 training images"),
    ("results/teachers/fcfree_8k_50k/seed_1/model.pt",
     "it trained on 50,000 training images, the 10,000 validation images of split 0 held out"),
    ("nowhere/model.pt", "its training images unrecorded")])
def test_a_teacher_without_its_own_record_is_read_from_its_run(checkpoint: str, images: str) -> None:
    assert ac.teacher_images({"checkpoint": str(ROOT / checkpoint)}) == images


def test_fewer_seeds_and_over_budget_are_not_confirmed(tmp_path: Path) -> None:
    write_run(tmp_path, "big", 1, 20000, [], [0.996, 0.996, 0.996])
    (e,) = ac.find_experiments(tmp_path)
    assert not e.confirmed and e.rule_misses() == ["20,000 params, not under the assignment's 20,000",
                                                   "1 seed(s); confirmation needs 3"]


def with_own_constraints(run_dirs: list[Path], **constraints) -> None:
    """Rewrite each run's metrics.json as if its config had set other constraints."""
    for run in run_dirs:
        m = json.loads((run / "metrics.json").read_text())
        m["config"]["constraints"].update(constraints)
        (run / "metrics.json").write_text(json.dumps(m))


def test_a_run_is_judged_against_the_assignment_never_its_own_target(tmp_path: Path) -> None:
    """fcfree_5k5's worst seed reached 99.33%: a config that asked for 99.0% does not make it confirmed."""
    import shutil

    confirm = tmp_path / "confirm"
    shutil.copytree(ROOT / "results" / "confirm" / "fcfree_5k5", confirm / "fcfree_5k5",
                    ignore=shutil.ignore_patterns("*.pt"))
    with_own_constraints(sorted(confirm.glob("fcfree_5k5/seed_*")), target_acc=0.99)
    (e,) = ac.find_experiments(confirm)
    assert not e.confirmed and "under 99.4%" in "; ".join(e.accuracy_misses())
    assert e.verdict().startswith("**NOT CONFIRMED**") and "its config asked target 99.0%" in e.verdict()
    done = run_entry("results.py", ["--confirm-dir", str(confirm), "--out", str(tmp_path / "R.md"),
                                    "--plot", str(tmp_path / "p.png")], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "fcfree_5k5: not confirmed" in done.stdout and "Confirmed: none yet." in (tmp_path / "R.md").read_text()


def test_a_raised_max_params_in_a_runs_config_does_not_let_it_over_20k(tmp_path: Path) -> None:
    for seed in (1, 2, 3):
        write_run(tmp_path, "big", seed, 24000, [], [0.996, 0.996, 0.996])
    with_own_constraints(sorted(tmp_path.glob("big/seed_*")), max_params=30000)
    (e,) = ac.find_experiments(tmp_path)
    assert not e.confirmed and e.rule_misses() == ["24,000 params, not under the assignment's 20,000"]
    assert "its config asked max_params 30,000" in e.verdict()
    assert rs.targets_table([e]).splitlines()[2].startswith("| required | < 20,000 | <= 20 | **not met** |")


def test_writes_results_md_plot_and_sweep_cost(confirm: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = make_study(tmp_path / "optuna.db", "demo", TRIALS)
    out, plot = tmp_path / "RESULTS.md", tmp_path / "results" / "acc_vs_params.png"
    rs.main(["--confirm-dir", str(confirm), "--out", str(out), "--plot", str(plot), "--storage", url,
             "--study", "demo"])
    text = out.read_text()
    assert "Confirmed: good." in text and "cores" in text
    assert "![test accuracy vs params](results/acc_vs_params.png)" in text
    assert "| baseline (documented Net) | 19,642 | 0.98M | no | 20 | 1, 2, 3 |" in text
    assert "| demo | 8 | 3 | 2 | 0 | 1 | 2 | 38 | 80 | 52.5% |" in text  # the review's arithmetic
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert "## The frontier" in text and "![the frontier](results/frontier.png)" in text
    assert plot.with_name("frontier.png").read_bytes()[:4] == b"\x89PNG"
    assert "good: CONFIRMED" in capsys.readouterr().out


def test_the_frontier_places_each_experiment_at_its_worst_seed_and_the_public_runs_as_such(
        experiments: dict[str, ac.Experiment], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from archsearch.report import frontier

    drawn = []
    real_plot = frontier.pyplot().Axes.plot

    def record(ax, xs, ys, *args, **kwargs):  # what each marker group is drawn at
        drawn.append((kwargs.get("label"), list(xs), list(ys)))
        return real_plot(ax, xs, ys, *args, **kwargs)

    monkeypatch.setattr(frontier.pyplot().Axes, "plot", record)
    frontier.plot_frontier(list(experiments.values()), tmp_path / "frontier.png")
    by_label = {label: (xs, ys) for label, xs, ys in drawn}
    good, shaky = experiments["good"], experiments["shaky"]
    assert by_label["confirmed (3 seeds x last 3 epochs)"] == ([good.first.params], [good.min])
    assert by_label["tried, not confirmed"] == ([shaky.first.params], [shaky.min])  # the baseline is left out
    assert by_label["public: one run, its best epoch"] == ([p.params for p in frontier.PUBLIC],
                                                          [p.accuracy for p in frontier.PUBLIC])


def test_frontier_labels_of_neighbouring_points_neither_overlap_nor_leave_the_axes() -> None:
    from archsearch.report import frontier

    fig, ax = frontier.pyplot().subplots(figsize=(8, 5))
    points = [(3_796, 0.9935), (3_796, 0.9934), (5_300, 0.9935), (19_000, 0.9948)]  # as the shipped ones crowd
    ax.plot(*zip(*points), "o")
    ax.set_xscale("log")
    ax.set_xlim(2_000, 20_000)
    frontier.place_labels(ax, [(f"experiment_{i} (1 seed)", x, y, "black") for i, (x, y) in enumerate(points)], points)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    inside = ax.get_window_extent(renderer)
    assert len(boxes) == 4 and all(inside.contains(b.x0, b.y0) and inside.contains(b.x1, b.y1) for b in boxes)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    frontier.pyplot().close(fig)


def test_section_gives_the_evaluate_command_for_the_shipped_checkpoints(tmp_path: Path) -> None:
    for seed in (1, 2, 3):
        write_run(tmp_path, "kept", seed, 9000, [], [0.9945, 0.9946, 0.9947])
        if seed != 2:  # a seed without weights is left out, not named
            (tmp_path / "kept" / f"seed_{seed}" / "model.pt").write_bytes(b"")
    write_run(tmp_path, "bare", 1, 9000, [], [0.9945, 0.9946, 0.9947])
    found = {e.name: e for e in ac.find_experiments(tmp_path)}
    kept = (tmp_path / "kept").as_posix()
    want = f"python sweep/evaluate.py {kept}/seed_1/model.pt {kept}/seed_3/model.pt"
    assert want in rs.experiment_section(found["kept"])
    assert not any("evaluate.py" in line for line in rs.experiment_section(found["bare"]))


def test_no_runs_is_one_line_error(tmp_path: Path) -> None:
    result = run_entry("results.py", ["--confirm-dir", str(tmp_path), "--out", str(tmp_path / "R.md")], cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "no */seed_*/metrics.json there" in result.stderr and not (tmp_path / "R.md").exists()


def test_sweep_cost_counts_duplicate_asks_apart_from_the_trials(tmp_path: Path) -> None:
    url = make_study(tmp_path / "optuna.db", "new", NEW_TRIALS)
    header, _, row = ss.sweep_cost(ss.load_searches([url], ["new"]))[4].splitlines()
    assert header.startswith("| study | trials | complete | pruned | running | rejected | failed | "
                             "duplicate asks (skipped) |")
    # 5 trials (the duplicate ask is none of them), 5 x 10 epochs; 2 complete trials' wall_time_s of 100 s each
    assert row.startswith("| new | 5 | 2 | 1 | 0 | 1 | 1 | 1 | 24 | 50 | 52.0% | 3.3 min |")


def test_machine_line_names_the_cpu_as_cpuinfo_does() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)
    if not model:
        pytest.skip("no model name in /proc/cpuinfo here")
    assert rs.machine() == f"{model}, {os.cpu_count()} cores, {platform.system()}"


# ---------------------------------------------------------------- the searches

def queued_study(path: Path, name: str, queued_value: float, run_dir: Path | None = None) -> str:
    """A study as a sweep with one hand-queued starting point leaves it: #0 queued with study.enqueue_trial, asked
    and told COMPLETE (value `queued_value`); #1 sampled, complete at 99.50%; #2 sampled, pruned at epoch 4."""
    import optuna
    from optuna.distributions import FloatDistribution, IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{path}"
    study = optuna.create_study(storage=url, study_name=name, direction="maximize")
    study.enqueue_trial({"model.widths.c1": 8, "optim.lr": 0.1})
    asked = study.ask({"model.widths.c1": IntDistribution(4, 16, step=2),
                       "optim.lr": FloatDistribution(0.01, 0.3, log=True)})
    record = {**done(0.9940, queued_value, 5000), "train.threads": "1", "data.val_size": "10000"}
    if run_dir:
        record["run_dir"] = str(run_dir)
    for key, value in record.items():
        asked.set_user_attr(key, value)
    study.tell(asked, queued_value)
    study.add_trial(trial("COMPLETE", 0.9950, c1=10, lr=0.05, **done(0.9945, 0.9950, 5500, **{"train.threads": "1"})))
    study.add_trial(trial("PRUNED", 0.97, c1=12, lr=0.2, steps={4: 0.97},
                          **dict(status="pruned", pruned_at_epoch=4, epochs_trained=4, n_params=5900)))
    return url


def test_each_study_is_read_from_the_storage_that_holds_it(tmp_path: Path) -> None:
    old = make_study(tmp_path / "old.db", "demo", TRIALS)
    new = queued_study(tmp_path / "new.db", "small", 0.9930)
    searches = ss.load_searches([old, new], ["small", "demo"])
    assert [(s.name, s.storage) for s in searches] == [("small", new), ("demo", old)]
    header, _, small, demo = ss.sweep_cost(searches)[4].splitlines()
    assert "mnist" not in header and "duplicate" not in header  # no duplicate ask anywhere: no column of zeros
    assert demo.startswith("| demo | 8 | 3 | 2 | 0 | 1 | 2 | 38 | 80 | 52.5% | 5.7 min |")  # 3 x 100 s + 40 s
    assert small.startswith(f"| small | 3 | 2 | 1 | 0 | 0 | 0 | {2 * MAX_EPOCHS + 4} | {3 * MAX_EPOCHS} | 20.0% |")
    assert "demo from `" + old + "`; small from `" + new + "`" not in ss.sweep_cost(searches)[2]  # in study order
    assert f"small from `{new}`; demo from `{old}`" in ss.sweep_cost(searches)[2]
    with pytest.raises(StorageError, match=r"--study='nowhere': no such study in any --storage \(.*old.db has demo;"):
        ss.load_searches([old, new], ["demo", "nowhere"])


def test_a_study_in_no_storage_is_one_line_exit_2(confirm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    url = make_study(tmp_path / "a.db", "demo", TRIALS)
    args = ["--confirm-dir", str(confirm), "--out", str(tmp_path / "R.md"), "--storage", url, "--study", "demo",
            "--study", "gone"]
    code, _, err = run_in_process("results.py", args, tmp_path, monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "--study='gone': no such study in any --storage" in err and not (tmp_path / "R.md").exists()


@pytest.mark.parametrize("queued_value, found_by", [(0.9960, "hand-queued starting point"),
                                                     (0.9930, "found by the search")])
def test_hand_queued_trials_are_told_from_their_system_attrs(tmp_path: Path, queued_value: float,
                                                             found_by: str) -> None:
    url = queued_study(tmp_path / "q.db", "q", queued_value)
    (s,) = ss.load_searches([url], ["q"])
    assert s.hand_queued == [0]  # the enqueued trial only: add_trial leaves no fixed_params
    assert s.winner.number == (0 if queued_value > 0.995 else 1) and s.found_by() == found_by
    _, _, row = ss.searches_section([s], None, tmp_path / "RESULTS.md")[4].splitlines()
    assert f"| {found_by} | #0 |" in row


def test_machine_and_threads_show_what_the_runs_recorded(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"machine": {"cpu": "Test CPU", "cores": 2, "torch_threads": 1}}))
    url = queued_study(tmp_path / "q.db", "q", 0.9930, run_dir=run)
    (s,) = ss.load_searches([url], ["q"])
    assert ss.machine_cell(s) == "Test CPU, 2 cores (1 of 3 trials)"
    assert ss.threads_cell(s) == "torch_threads=1 (1 of 3 trials); train.threads=1 (2 of 3 trials)"
    (old,) = ss.load_searches([make_study(tmp_path / "o.db", "o", TRIALS)], ["o"])
    assert ss.machine_cell(old) == "not recorded (none of the 8 runs' metrics.json here)"
    assert ss.threads_cell(old) == "not recorded"


def test_best_so_far_follows_the_epochs_trained_in_trial_order(tmp_path: Path) -> None:
    (s,) = ss.load_searches([make_study(tmp_path / "o.db", "o", TRIALS)], ["o"])
    xs, ys, records = ss.best_so_far(s)
    # epochs per trial: 10, 4 (pruned), 10, 0 (rejected), 2 and 0 (failed), 10, 2 (pruned): the summary's 38
    assert xs == [10, 14, 24, 24, 26, 26, 36, 38]
    assert ys == [0.9930, 0.9930, 0.9950, 0.9950, 0.9950, 0.9950, 0.9950, 0.9950]  # pruned #1's 99.60% never counts
    assert records == [(10, 0.9930, 0), (24, 0.9950, 2)]
    assert ss.pruning_text(s) == ("2 pruned, at epochs 2-4; most at epoch 2 (1): too few complete trials that "
                                  "reported it for a rank correlation")


def test_writes_the_searches_section_and_progress_plot(confirm: Path, tmp_path: Path) -> None:
    old = make_study(tmp_path / "old.db", "demo", TRIALS)
    new = queued_study(tmp_path / "new.db", "small", 0.9960)
    out, plot = tmp_path / "RESULTS.md", tmp_path / "results" / "acc_vs_params.png"
    rs.main(["--confirm-dir", str(confirm), "--out", str(out), "--plot", str(plot), "--storage", old,
             "--storage", new, "--study", "demo", "--study", "small"])
    text = out.read_text()
    assert "## Sweep cost" in text and "## What the searches found" in text
    assert "![best objective vs epochs trained](results/best_vs_epochs.png)" in text
    assert "- **small**: best trial #0 (hand-queued starting point): model.widths.c1=8, optim.lr=0.1." in text
    assert (tmp_path / "results" / "best_vs_epochs.png").read_bytes()[:4] == b"\x89PNG"


def shipped_experiments() -> list[Path]:
    return sorted(p for p in (ROOT / "conf" / "experiment").glob("*.yaml") if p.stem != ac.BASELINE)


@pytest.fixture(scope="module")
def committed() -> dict[str, ac.Experiment]:
    """The experiments of the runs committed under results/confirm, read once for every shipped file."""
    return {e.name: e for e in ac.find_experiments(ROOT / "results" / "confirm")}


@pytest.mark.parametrize("path", shipped_experiments(), ids=lambda p: p.stem)
def test_shipped_experiments_say_what_the_committed_runs_show(path: Path, committed: dict[str, ac.Experiment]) -> None:
    """Line 2 of conf/experiment/NAME.yaml (Hydra needs `# @package` first) says CONFIRMED only when the runs
    under results/confirm confirm NAME, and a confirmed one ships every seed's checkpoint for evaluate.py."""
    mark = path.read_text().splitlines()[1]
    e = committed.get(path.stem)
    if e is not None and e.confirmed:
        assert mark.startswith("# CONFIRMED"), mark
        assert all((r.path / "model.pt").is_file() for r in e.runs), [str(r.path) for r in e.runs]
    else:
        assert mark.startswith("# NOT CONFIRMED"), mark


@pytest.mark.parametrize("overrides, text", [
    (["model=stages"], "[4,4]p pool [8,8]p pool [16,16]p"),  # the 4,838-param public net, as conf/model/stages.yaml
    (["model=stages", "model.stages.pools=1", "model.stages.s2.transition=8", "model.stages.s2.pad=0"],
     "[4,4]p pool 1x1:8 [8,8]"),
    (["model=fcfree", "model.arch.pre=1", "model.arch.post=5", "model.widths.c1=6", "model.widths.c3=8",
      "model.widths.c4=12", "model.widths.t=12", "model.arch.pad_pre=1"], "[6]p pool 1x1:12 [8,8,12,12,12]"),
    (["optim.lr=0.1"], None),  # no model named
])
def test_the_winners_network_in_one_line(overrides: list[str], text: str | None) -> None:
    from archsearch.report.shape import shape_text

    assert shape_text(overrides) == text


# ---------------------------------------------------------------- a section per study with a stated budget

def test_a_study_section_gives_budget_progress_winner_and_each_finalists_seeds(tmp_path: Path) -> None:
    (s,) = ss.load_searches([make_study(tmp_path / "o.db", "demo", TRIALS)], ["demo"])
    confirm = tmp_path / "confirm"
    for seed in (1, 2, 3):  # #2, the winner, confirms; #6 misses on its first seed and stops there
        write_run(confirm, "demo_t2", seed, 18000, [], [0.9945, 0.9950, 0.9948])
    write_run(confirm, "demo_t6", 1, 9000, [], [0.9941, 0.9938, 0.9942])
    write_run(confirm, "other_t0", 1, 9000, [], [0.9941, 0.9938, 0.9942])  # another study's: not a finalist here
    plot, out = tmp_path / "results" / "best_vs_epochs_demo.png", tmp_path / "RESULTS.md"
    text = "\n".join(ss.study_section(s, 50, ac.find_experiments(confirm), plot, out))

    assert text.startswith("## Study demo\n")
    assert ("Fewer than 20,000 params. Budget: 50 trained epochs. Spent: 38 (12 left), over 8 trials: 3 complete, "
            "2 pruned, 1 rejected, 2 failed.") in text
    assert "![demo: best objective vs epochs trained](results/best_vs_epochs_demo.png)" in text
    assert plot.read_bytes()[:4] == b"\x89PNG"
    # the trials that raised the best: #0 after its own 10 epochs, #2 after 10 + 4 + 10
    assert "| 10 | #0 | 99.30% | 15,000 | [8,16] pool" in text and "| 24 | #2 | 99.50% | 18,000 | [8,16] pool" in text
    assert ("Winner: **#2** (found by the search), 18,000 params, 0.72M MACs, validation objective 99.50%, one seed. "
            "Network `[8,16] pool 1x1:8 [12,12,16,16]`: 2 stages of 3x3 convolutions, widths in brackets "
            "(p: padded), 1 max-pool. Recipe: optim.lr=0.05.") in text
    assert ("| #2 (18,000 params) | 99.50% | 1 | 99.45% / 99.50% / 99.48% | 99.45% | CONFIRMED | no teacher |\n"
            "|  |  | 2 | 99.45% / 99.50% / 99.48% | 99.45% |  |  |\n"
            "|  |  | 3 | 99.45% / 99.50% / 99.48% | 99.45% |  |  |\n"
            "| #6 (9,000 params) | 99.40% | 1 | 99.41% / 99.38% / 99.42% | 99.38% | not confirmed, min 99.38% | "
            "no teacher |\n") in text
    assert "other_t0" not in text and "#0 (" not in text
    assert "First configuration that confirms: #2, after 24 of the study's trained epochs" in text


def test_a_study_section_without_a_confirmed_finalist_says_so(tmp_path: Path) -> None:
    (s,) = ss.load_searches([make_study(tmp_path / "o.db", "demo", TRIALS)], ["demo"])
    write_run(tmp_path / "confirm", "demo_t6", 1, 9000, [], [0.9941, 0.9938, 0.9942])
    text = "\n".join(ss.study_section(s, 38, ac.find_experiments(tmp_path / "confirm"), tmp_path / "p.png",
                                      tmp_path / "RESULTS.md"))
    assert "Spent: 38 (all of it)" in text
    assert "No configuration of this study confirms yet: none within its 38 trained epochs." in text


def test_budget_gives_a_study_its_own_section_and_plot(confirm: Path, tmp_path: Path) -> None:
    url = make_study(tmp_path / "o.db", "demo", TRIALS)
    out, plot = tmp_path / "RESULTS.md", tmp_path / "results" / "acc_vs_params.png"
    rs.main(["--confirm-dir", str(confirm), "--out", str(out), "--plot", str(plot), "--storage", url,
             "--study", "demo", "--budget", "demo=40"])
    assert "## Study demo\n" in out.read_text()
    assert (tmp_path / "results" / "best_vs_epochs_demo.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("budget", ["gone=40", "demo=forty", "demo=0", "demo"])
def test_a_bad_budget_is_one_line_exit_2(tmp_path: Path, budget: str, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    args = ["--confirm-dir", str(tmp_path), "--out", str(tmp_path / "R.md"), "--study", "demo", "--budget", budget]
    code, _, err = run_in_process("results.py", args, tmp_path, monkeypatch, capsys)
    assert code == 2 and f"--budget={budget!r}: want STUDY=EPOCHS" in err
    assert "a study named by --study (demo) and a whole number of trained epochs >= 1" in err
    assert not (tmp_path / "R.md").exists()
