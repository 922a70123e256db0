"""bench.py runs end to end and prints its tables. Nothing here asserts a speed: that is what the
benchmark is for, on an idle machine."""
from __future__ import annotations

import os
import re
import statistics
from pathlib import Path

import pytest

from conftest import DATA, compose, run_entry, run_in_process

TINY = ["data.train_subset=1000", "data.val_size=200", "data.test_subset=200", f"data.root={DATA}"]
# --search shrunk to almost nothing: 1-epoch trials of TINY (the proxy's 5 epochs lose to these), one thread.
SEARCH_TINY = [*TINY, "train.epochs=1", "constraints.max_epochs=1", "hydra.sweeper.warmup_epochs=1",
               "train.threads=1"]
STRATEGIES = {"default (tpe + median)": "default", "random without pruning": "random"}  # row -> study name prefix


def table_rows(stdout: str) -> dict[str, list[str]]:
    """First cell -> the other cells of each Markdown table row below the header."""
    rows = [line.strip("|").split("|") for line in stdout.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


@pytest.mark.slow
def test_loop_bench_times_the_tutorial_loop_the_trainer_and_the_bare_loop(tmp_path: Path) -> None:
    done = run_entry("bench/bench.py", ["--images", "256", "--repeats", "2", "--workers", "0,1", "train.threads=1",
                                  f"data.root={DATA}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = table_rows(done.stdout)
    assert [name[:3] for name in rows] == ["(a)", "(a)", "(b)", "(c)"]
    assert "num_workers=1" in list(rows)[1]  # its worker runs apart, in a forkserver
    order = [line.split()[2][:3] for line in done.stderr.splitlines() if line.startswith("repeat ")]
    assert order == ["(a)", "(a)", "(b)", "(c)", "(c)", "(b)", "(a)", "(a)"]  # the second in reverse: drifts cancel
    assert all(float(cells[0].replace(",", "")) > 0 for cells in rows.values())  # img/s
    assert re.search(r"^\(b\)/\(a\) = \d+\.\d\dx", done.stdout, re.M)
    assert "per-trial overhead" in done.stdout


@pytest.mark.slow
def test_parts_bench_times_each_part_both_ways_and_the_allocator_setting(tmp_path: Path) -> None:
    done = run_entry("bench/bench.py", ["--parts", "--repeats", "1", "--images", "256", "train.threads=1",
                                  f"data.root={DATA}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = table_rows(done.stdout)
    for part in ("Dropout(0.05)", "Dropout's keep mask", "MaxPool2d(2)", "sgd step", "2,048 training images"):
        cells = next(cells for name, cells in rows.items() if name.startswith(part))
        assert float(cells[0]) > 0 and float(cells[1]) > 0 and cells[2].endswith("x")
    assert rows["glibc's defaults"][0] and rows["keep_freed_memory()"][0]


def test_modes_are_one_at_a_time(tmp_path: Path) -> None:
    done = run_entry("bench/bench.py", ["--parts", "--search"], cwd=tmp_path)
    assert done.returncode == 2 and "choose one" in done.stderr


@pytest.mark.parametrize("threads, layout, want_channels_last", [
    (1, "null", True), (2, "null", False), (1, "false", False), (2, "true", True)])
def test_bare_loop_uses_the_trainers_memory_layout(threads: int, layout: str, want_channels_last: bool) -> None:
    """(c) is only a ceiling for (b) on the same layout: input and weights follow train()'s rule when
    train.channels_last is null (channels_last with one thread), or the setting when it is given."""
    import torch

    from bench_loops import bare_setup

    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # as bench() does from train.threads
    try:
        model, _, _ = bare_setup(compose(["model=fcfree", f"train.channels_last={layout}", f"data.root={DATA}"]),
                                 256)
    finally:
        torch.set_num_threads(before)
    # One input channel is contiguous in both layouts, so the convs on several channels tell.
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1]
    fmt = torch.channels_last if want_channels_last else torch.contiguous_format
    assert convs and all(conv.weight.is_contiguous(memory_format=fmt) for conv in convs)


@pytest.mark.slow
def test_launcher_bench_times_a_sweep_under_each_launcher(tmp_path: Path) -> None:
    done = run_entry("bench/bench.py", ["--launchers", "--trials", "1", "--repeats", "1", *TINY], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = table_rows(done.stdout)
    cores = os.cpu_count()
    assert list(rows) == ["sequential, 1 thread", f"sequential, {cores} threads", f"joblib, {cores} processes x 1 thread"]
    assert all(float(cells[0].replace(",", "")) > 0 for cells in rows.values())  # trials/h
    assert not list(tmp_path.glob("outputs/**/optuna.db"))  # the studies were throw-away


def test_launcher_bench_reports_a_bad_override_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    args = ["--launchers", "--trials", "1", "--repeats", "1", "model.dropout=7", *TINY]
    assert run_in_process("bench/bench.py", args, tmp_path, monkeypatch, capsys) == (
        2, "", "error: bench --launchers: the sweep failed: model.dropout=7.0: must be in [0, 1)\n")


def search_verdict(stdout: str, budget: int, seeds: int) -> re.Match:
    last = stdout.strip().splitlines()[-1]
    found = re.fullmatch(rf"default \(tpe \+ median\) vs random without pruning at 100% of {budget} epochs: "
                         rf"(\S+) vs (\S+) \(median of {seeds} seeds?\): (even|(default|random) ahead by "
                         r"(\d+\.\d\d) points)", last)
    assert found, last
    return found


@pytest.mark.slow
def test_search_bench_compares_the_strategies_at_an_equal_epoch_budget(tmp_path: Path) -> None:
    import optuna

    kept = tmp_path / "studies"
    done = run_entry("bench/bench.py", ["--search", "--repeats", "1", "--budget-epochs", "2", "--keep-studies", str(kept),
                                  *SEARCH_TINY], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = table_rows(done.stdout)
    assert list(rows) == list(STRATEGIES)
    assert "1-epoch trials" in done.stdout and "hydra/sweeper/sampler=random hydra/sweeper/pruner=none" in done.stdout
    best = {}
    for row, prefix in STRATEGIES.items():
        trials = optuna.load_study(study_name=f"{prefix}_1", storage=f"sqlite:///{kept}/bench.db").trials
        trained = [t.user_attrs.get("epochs_trained", 0) for t in trials]  # a rejected candidate trains none
        assert [e for e in trained if e] == [1, 1]  # the budget exactly, in trials of the shrunk proxy's epochs
        values = [t.value for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        at25, at50, at100, n_trials, pruned, runs = rows[row]
        assert at25 == "-"  # half an epoch: no trial had completed
        assert at50 == f"{values[0]:.4f}"  # one epoch: the first trial
        assert at100 == runs == f"{max(values):.4f}"  # the best complete trial of the study
        assert (n_trials, pruned) == ("2", str(sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)))
        best[prefix] = max(values)
    found = search_verdict(done.stdout, budget=2, seeds=1)
    assert found.group(1, 2) == (rows["default (tpe + median)"][2], rows["random without pruning"][2])
    if best["default"] == best["random"]:
        assert found.group(3) == "even"
    else:
        lead = max(best, key=best.get)
        assert found.group(4, 5) == (lead, f"{abs(best['default'] - best['random']) * 100:.2f}")
    assert not (tmp_path / "outputs").exists()  # all of it went to the kept directory


@pytest.mark.slow
def test_search_bench_takes_the_median_over_seeds_in_throwaway_studies(tmp_path: Path) -> None:
    done = run_entry("bench/bench.py", ["--search", "--repeats", "3", "--budget-epochs", "2", *SEARCH_TINY], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = table_rows(done.stdout)
    for cells in rows.values():
        runs = [float(v) for v in cells[5].split()]
        assert len(runs) == 3 and float(cells[2]) == statistics.median(runs)
    assert search_verdict(done.stdout, budget=2, seeds=3)
    assert [line.split(":")[0] for line in done.stderr.splitlines() if line.startswith("seed ")] == [
        f"seed {s}  {row}" for s in (1, 2, 3) for row in STRATEGIES]  # interleaved
    assert not list(tmp_path.rglob("*.db"))


def test_search_bench_reports_bad_input_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "bench.db").write_text("")
    cases = {("--budget-epochs", "0"): "error: --budget-epochs=0: must be >= 1",
             ("--keep-studies", "studies"): "error: --keep-studies=studies: already holds bench.db; a sweep there "
                                            "would go on with its study instead of starting afresh: choose another "
                                            "directory",
             ("--repeats", "1", "model.dropout=7"): "error: bench --search: the sweep failed: model.dropout=7.0: "
                                                    "must be in [0, 1)"}
    for args, error in cases.items():
        code, out, err = run_in_process("bench/bench.py", ["--search", *args, *SEARCH_TINY], tmp_path, monkeypatch,
                                        capsys)
        assert (code, err.strip(), out) == (2, error, "")


def test_median_ranks_a_missing_best_below_every_value() -> None:
    from bench_search import median_or_none

    assert median_or_none([None, 0.99, 0.98]) == 0.98
    assert median_or_none([None, None, 0.99]) is None
    assert median_or_none([0.99, 0.98]) == statistics.mean([0.99, 0.98])
    assert median_or_none([0.99, None]) is None


@pytest.mark.slow
def test_confirm_lanes_times_each_lane_count_on_the_same_seeds(tmp_path: Path) -> None:
    done = run_entry("bench/confirm_lanes.py", ["--quick", f"data.root={DATA}"], cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if re.fullmatch(r"\d+ +\d+ +[\d.]+ +[\d,]+", line)]
    assert [r[0] for r in rows] == ["1", "2"] and all(float(r[2]) > 0 for r in rows), done.stdout
    assert rows[0][1] == str(os.cpu_count()) and rows[1][1] == str(max(1, (os.cpu_count() or 1) // 2))


def test_pick_rule_prints_each_rules_pick_for_the_committed_studies(tmp_path: Path) -> None:
    from conftest import ROOT

    done = run_entry("bench/pick_rule.py", ["--confirm-dir", str(ROOT / "results" / "confirm"), "--storages",
                                            *(str(ROOT / "results" / db) for db in ("search.db", "search_v3.db"))],
                     cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    for study in ("small6k", "tiny4k", "small6k_v3", "tiny4k_v3"):
        picks = [line for line in lines if f" {study} " in line]
        assert [("best" in p.split()[2]) for p in picks] == [True, False], picks
    assert any("not confirmed: 3 seeds" in line for line in lines)  # small6k's best was confirmed over 3 seeds
