"""Bad input: one line naming the key, the value and the limit, exit code 2, no training, nothing half-written.

Each distinct path (Hydra composition, value ranges, the model builder, the budget, the output directory,
the storage, the study's direction) runs through the real entry point, for a single run and for the sweep
(-m): in this process (conftest.run_in_process), and a few as real processes, the way users start them; the
remaining value ranges are checked on the composed config.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, TINY, compose, run_entry, run_in_process
from archsearch.core.errors import ConfigError

SWEEP = ["-m", "hydra.sweeper.n_trials=1", "hydra.sweeper.study_name=t", *TINY]
TOP_WIDTHS = ["model.widths.c1=16", "model.widths.c2=24", "model.widths.t=16", "model.widths.c3=20",
              "model.widths.c4=20"]  # the top of the default space: 18.1k params
DEFAULT_ARCH = ["model.arch.pre=2", "model.arch.post=4", "model.arch.transition=true", "model.arch.pad_pre=0",
                "model.arch.pad_post=0"]  # fixed, so that the model is not searched


def assert_one_line_error(done: subprocess.CompletedProcess | tuple[int, str, str], pattern: str) -> None:
    code, out, err = done if isinstance(done, tuple) else (done.returncode, done.stdout, done.stderr)
    assert code == 2, (code, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith("error: ") and re.search(pattern, last), last
    assert "epoch " not in out + err  # nothing was trained


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


RUN_CASES = {  # the overrides, then a pattern the one-line error must match: key, value, limit or remedy
    "unknown-key": (["foo=1"], r"Could not override 'foo'.*Key 'foo' not in 'Config'"),
    "unknown-nested-key": (["optim.lrr=0.1"], r"optim\.lrr: Key 'lrr' not in 'OptimConfig'"),
    "unknown-group-option": (["model=nope"], r"Could not find 'model/nope'.*Available options in 'model': baseline"),
    "wrong-type": (["optim.lr=abc"], r"optim\.lr: Value 'abc' of type 'str' could not be converted to Float"),
    "value-range": (["optim.lr=0"], r"^error: optim\.lr=0\.0: must be > 0 and <= 10$"),
    "over-budget": (["model=baseline", "constraints.max_params=10000"],
                    r"model has 19,642 params; constraints\.max_params=10000 requires fewer"),
    "arch-key-of-baseline": (["model.arch.pre=1"], r"^error: model\.arch\.pre=1: the chosen model has no arch .*"
                                                    r"model=fcfree$"),
    "output-dir": (["hydra.run.dir=/proc/forbidden"], r"hydra\.run\.dir='/proc/forbidden': cannot create"),
    "output-dir-is-a-file": (["hydra.run.dir=/dev/null/run"], r"hydra\.run\.dir='/dev/null/run'.*Not a directory"),
}


@pytest.mark.parametrize("overrides, pattern", RUN_CASES.values(), ids=RUN_CASES.keys())
def test_run_rejects_bad_input_in_one_line(tmp_path: Path, monkeypatch, capsys, overrides: list[str],
                                           pattern: str) -> None:
    assert_one_line_error(run_in_process("run.py", [*TINY, *overrides], tmp_path, monkeypatch, capsys), pattern)
    assert files_under(tmp_path) == []  # a rejected run leaves no run directory behind


SWEEP_CASES = {
    "unknown-key": (["optim.lrr=0.1"], r"optim\.lrr: Key 'lrr' not in 'OptimConfig'"),
    "fixed-value": (["optim.lr=0"], r"^error: optim\.lr=0\.0: must be > 0 and <= 10$"),
    "searched-value": (["optim.lr=interval(0.0,1.0)"], r"hydra\.sweeper\.params: the candidate .*optim\.lr=0\.0 .*"
                                                        r"fails: optim\.lr=0\.0: must be > 0"),
    "space-does-not-fit-model": (["model=baseline"],
                                 r"^error: hydra\.sweeper\.params: model\.arch\.pre cannot be searched: model\.arch is "
                                 r"null in this config$"),
    "arch-key-of-baseline": (["+model.arch.post=3"], r"^error: \+model\.arch\.post=3: the chosen model has no arch"),
    "no-candidate-fits": (["constraints.max_params=1000"],
                          r"none of the \d+ candidates tried .* fits: .*constraints\.max_params=1000"),
    "fixed-model-over-budget": (["model=fcfree", *TOP_WIDTHS, *DEFAULT_ARCH, "model.dropout=0.1",
                                 "constraints.max_params=10000"],
                                r"^error: model has 18,\d{3} params; constraints\.max_params=10000"),
    "sweeper-option": (["hydra.sweeper.n_jobs=0"], r"^error: hydra\.sweeper\.n_jobs=0: must be >= 1$"),
    "output-dir": (["hydra.sweep.dir=/proc/forbidden"], r"hydra\.sweep\.dir='/proc/forbidden': cannot create"),
    "reseed-floor-out-of-range": (["hydra.sweeper.reseed.top=1", "hydra.sweeper.reseed.min_objective=99.4"],
                                  r"^error: hydra\.sweeper\.reseed\.min_objective=99\.4: must be in \[0, 1\] or null$"),
    "reseed-floor-when-minimizing": (["hydra.sweeper.reseed.top=1", "hydra.sweeper.reseed.min_objective=0.99",
                                      "hydra.sweeper.direction=minimize", "objectives=[params]"],
                                     r"^error: hydra\.sweeper\.reseed\.min_objective=0\.99: a floor for a maximized "
                                     r"objective; this sweep is minimize \(set it to null\)$"),
    "retry-lost-negative": (["hydra.sweeper.retry_lost=-1"],
                            r"^error: hydra\.sweeper\.retry_lost=-1: must be a whole number >= 0 \(0: never run a "
                            r"lost trial again\)$"),
    "storage-unreachable": (["hydra.sweeper.storage=postgresql://nobody@127.0.0.1:1/x"],
                            r"hydra\.sweeper\.storage='postgresql://nobody@127\.0\.0\.1:1/x': cannot be opened"),
}


@pytest.mark.parametrize("overrides, pattern", SWEEP_CASES.values(), ids=SWEEP_CASES.keys())
def test_sweep_rejects_bad_input_before_any_trial(tmp_path: Path, monkeypatch, capsys, overrides: list[str],
                                                  pattern: str) -> None:
    assert_one_line_error(run_in_process("run.py", [*SWEEP, *overrides], tmp_path, monkeypatch, capsys), pattern)
    assert list(tmp_path.iterdir()) == []  # no storage file, no study, no sweep directory


@pytest.mark.parametrize("full_error", [None, "0", "1"], ids=["unset", "0", "1"])
@pytest.mark.parametrize("mode", [[], SWEEP], ids=["run", "sweep"])
def test_one_line_whatever_hydra_full_error_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                                 full_error: str | None, mode: list[str]) -> None:
    # Hydra prints its own stack trace and exits 1 unless HYDRA_FULL_ERROR is exactly "1"; 0 is its documented "off".
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    if full_error is not None:
        monkeypatch.setenv("HYDRA_FULL_ERROR", full_error)
    done = run_in_process("run.py", [*(mode or TINY), "optim.lr=-1"], tmp_path, monkeypatch, capsys)
    assert_one_line_error(done, r"^error: optim\.lr=-1\.0: must be > 0 and <= 10$")
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("args", [[*TINY, "optim.lr=0"], [*SWEEP, "hydra.sweeper.n_jobs=0"]], ids=["run", "sweep"])
def test_a_real_process_prints_one_line_and_exits_2(tmp_path: Path, args: list[str]) -> None:
    """The same path as users take it: a fresh interpreter, Hydra's own error handling, the exit code."""
    done = run_entry("run.py", args, cwd=tmp_path, env={"HYDRA_FULL_ERROR": "0"})
    assert_one_line_error(done, r"^error: (optim\.lr=0\.0: must be > 0 and <= 10|hydra\.sweeper\.n_jobs=0: must be >= 1)$")
    assert files_under(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("root, cause", [
    ("/proc/no_such_dir", "/proc/no_such_dir: No such file or directory"),  # /proc cannot be written, even by root
    ("/dev/null/data", "/dev/null/data/MNIST/raw: Not a directory"),
])
def test_unusable_data_root_is_one_line_naming_it(tmp_path: Path, root: str, cause: str) -> None:
    done = run_entry("run.py", [*TINY, f"data.root={root}"], cwd=tmp_path)
    assert_one_line_error(done, rf"^error: data\.root='{re.escape(root)}': cannot prepare MNIST there "
                                rf"\({re.escape(cause)}\)$")


@pytest.mark.slow
def test_a_good_run_after_a_rejected_one(tmp_path: Path) -> None:
    assert_one_line_error(run_entry("run.py", [*TINY, "optim.lr=0"], cwd=tmp_path), r"optim\.lr")
    done = run_entry("run.py", TINY, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    [metrics] = (tmp_path / "outputs" / "runs").glob("*/metrics.json")
    assert json.loads(metrics.read_text())["status"] == "complete"


@pytest.mark.slow
def test_a_study_with_another_direction_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path}/outputs/optuna.db"
    (tmp_path / "outputs").mkdir()
    optuna.create_study(study_name="t", storage=url, direction="minimize")
    done = run_entry("run.py", [*SWEEP, f"hydra.sweeper.storage={url}"], cwd=tmp_path)
    assert_one_line_error(done, r"hydra\.sweeper\.study_name='t': .*direction \['minimize'\], this sweep asks "
                                r"\['maximize'\]; choose another study name")
    assert files_under(tmp_path) == ["outputs/optuna.db"]  # its sweep directory was removed again

    done = run_entry("run.py", [*SWEEP, f"hydra.sweeper.storage={url}", "hydra.sweeper.study_name=t2"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]  # the next sweep, on the same storage, runs
    assert optuna.load_study(study_name="t", storage=url).trials == []
    [trial] = optuna.load_study(study_name="t2", storage=url).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.user_attrs["status"] == "complete"


@pytest.mark.parametrize("overrides, message", [
    (["optim.lr=-0.1"], "optim.lr=-0.1: must be > 0 and <= 10"),
    (["optim.lr=10.5"], "optim.lr=10.5: must be > 0 and <= 10"),
    (["optim.momentum=1.0"], "optim.momentum=1.0: must be in [0, 1), or null for 0.9"),
    (["model.dropout=1.0"], "model.dropout=1.0: must be in [0, 1)"),
    (["train.ema=1.0"], "train.ema=1.0: must be in [0, 1) (0: off)"),
    (["train.distill.teacher=no/such/model.pt"], f"train.distill.teacher='no/such/model.pt': must be a checkpoint "
                                                 f"file (model.pt) this tool wrote; none at {Path.cwd()}/no/such/model.pt"),
    ([f"train.distill.teacher={ROOT}/results/confirm/fcfree_8k/seed_1/model.pt", "train.distill.weight=1.5"],
     "train.distill.weight=1.5: must be in [0, 1]"),
    (["model=stages", "model.stages.s2.depth=0"], "model.stages.s2.depth=0: must be >= 1"),
    (["model.dropout=-0.1"], "model.dropout=-0.1: must be in [0, 1)"),
    (["train.epochs=0"], "train.epochs=0: must be in [1, constraints.max_epochs=20]"),
    (["train.epochs=21"], "train.epochs=21: must be in [1, constraints.max_epochs=20]"),
    (["train.batch_size=0"], "train.batch_size=0: must be > 0"),
    (["data.val_size=1000"], "data.val_size=1000: must be < data.train_subset=1000"),
    (["model=fcfree", "model.widths.c1=0"], "model.widths.c1=0: must be > 0"),
    (["model=fcfree", "model.widths.c3=-2"], "model.widths.c3=-2: must be > 0"),
    (["model.blocks.1.convs=[8,8,8,8,8,8]"], "model.blocks.1.convs.5: input is 1x1, too small for a 3x3 conv; "
                                             "the spatial size collapses (use fewer convs, padding=1 or fewer pools)"),
    (["model=baseline", "model.blocks.1.pool=true", "model.blocks.1.convs=[8,8,8,8,8]"],
     "model.blocks.1.convs.4: input is 1x1; a 2x2 max-pool collapses it"),
])
def test_value_out_of_range_names_key_value_and_limit(overrides: list[str], message: str) -> None:
    from archsearch.core.config import check_config

    with pytest.raises(ConfigError) as e:
        check_config(compose([*TINY, *overrides]))
    assert str(e.value) == message


def test_storage_that_cannot_be_opened_names_the_url() -> None:
    from archsearch.core.errors import StorageError
    from archsearch.search.storage import open_storage

    with pytest.raises(StorageError, match=r"^hydra\.sweeper\.storage='sqlite:////proc/x\.db': cannot be opened "
                                           r"\(\(sqlite3\.OperationalError\) unable to open database file\)$"):
        open_storage("sqlite:////proc/x.db")


def test_unknown_pruner_is_a_config_error() -> None:
    from archsearch.search.pruners import make_pruner

    with pytest.raises(ConfigError, match=r"^hydra\.sweeper\.pruner: cannot be built \(.*Bogus"):
        make_pruner(OmegaConf.create({"_target_": "optuna.pruners.BogusPruner"}))


def test_heartbeat_grace_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from archsearch.search.storage import GRACE_ENV, heartbeat_timing

    monkeypatch.delenv(GRACE_ENV, raising=False)
    assert heartbeat_timing() == (10.0, 60)
    monkeypatch.setenv(GRACE_ENV, "4")
    assert heartbeat_timing() == (1.0, 4)
    monkeypatch.setenv(GRACE_ENV, "1s")
    with pytest.raises(ConfigError, match=f"{GRACE_ENV}='1s': must be a whole number of seconds >= 2"):
        heartbeat_timing()


@pytest.mark.parametrize("params, expected", [
    ({}, [[]]),
    ({"a": "choice(x, y, z)", "b": "range(4, 16, 2)"}, [["a=x", "b=4"], ["a=y", "b=16"], ["a=z", "b=4"]]),
    ({"lr": "tag(log, interval(0.01, 0.3))", "c": "choice(1, 2)"}, [["lr=0.01", "c=1"], ["lr=0.01", "c=2"]]),
])
def test_preflight_candidates_take_every_choice_and_range_end(params: dict[str, str], expected: list) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from archsearch.search.preflight import _candidates

    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    assert _candidates(parsed) == expected


def test_a_missing_sweeper_plugin_is_one_line_naming_the_install(tmp_path: Path) -> None:
    # What `pip install -e .` alone leaves: the plugin is not listed in pyproject.toml (its optuna<3 pin).
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith('hydra_plugins.hydra_optuna_sweeper'):\n"
        "            raise ModuleNotFoundError(f\"No module named '{name}'\", name=name)\n"
        "sys.meta_path.insert(0, Hide())\n")
    done = run_entry("run.py", TINY, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert_one_line_error(done, r"^error: hydra-optuna-sweeper is not installed; .*"
                                r"pip install --no-deps hydra-optuna-sweeper==1\.3\.0")
