"""Where trials run: parallel local processes (joblib), submitit jobs (the local stand-in for Slurm,
conf/hydra/launcher/cluster.yaml), and why it does not matter for the result: the same seed and
config give the same per-epoch metrics in any process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf

from conftest import ROOT, TINY, run_entry

SWEEP = ["-m", "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=t", *TINY]


def assert_distinct_finished_trials(cwd: Path, n: int) -> None:
    trials = optuna.load_study(study_name="t", storage=f"sqlite:///{cwd}/outputs/optuna.db").get_trials()
    assert [t.number for t in trials] == list(range(n))
    assert len({tuple(sorted(t.params.items())) for t in trials}) == n  # each job got its own trial's params
    for t in trials:
        assert t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs["status"] == "complete"
        assert {"n_params", "macs", "run_dir", "overrides", "val_acc_per_epoch"} <= set(t.user_attrs)
        assert len(t.intermediate_values) == 1  # the job reported its epoch to its own trial
        metrics = json.loads((Path(t.user_attrs["run_dir"]) / "metrics.json").read_text())
        assert metrics["config"]["trial"] == t.number and metrics["objective"] == t.value
        assert all(f"{k}={v}" in t.user_attrs["overrides"] for k, v in t.params.items())


@pytest.mark.slow
def test_joblib_runs_a_batch_of_trials_in_parallel_processes(tmp_path: Path) -> None:
    # train.threads=0: each job takes its share of the cores, not a thread per core (oversubscription).
    done = run_entry("run.py", [*SWEEP, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
                                "train.threads=0"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2," in done.stdout  # one batch of two jobs, in two worker processes
    assert_distinct_finished_trials(tmp_path, 2)
    for metrics in tmp_path.glob("outputs/sweeps/t/*/trial_*/metrics.json"):
        assert json.loads(metrics.read_text())["machine"]["torch_threads"] == max(1, os.cpu_count() // 2)


@pytest.mark.slow
def test_submitit_local_runs_the_sweep_end_to_end(tmp_path: Path) -> None:
    done = run_entry("run.py", [*SWEEP, "hydra/launcher=submitit_local", "hydra.sweeper.n_jobs=2"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_distinct_finished_trials(tmp_path, 2)
    assert list(tmp_path.glob("outputs/sweeps/t/*/.submitit/*/*_result.pkl"))  # they really were submitit jobs


def test_cluster_launcher_is_submitit_slurm_with_project_defaults(tmp_path: Path) -> None:
    done = run_entry("run.py", ["hydra/launcher=cluster", "--cfg", "hydra", "--package", "hydra.launcher"],
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    launcher = OmegaConf.create(done.stdout)  # the launcher node itself
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.cpus_per_task == 4 and launcher.timeout_min >= 60 and launcher.max_num_timeout == 0


@pytest.mark.slow
def test_same_seed_and_config_give_the_same_metrics_in_two_processes(tmp_path: Path) -> None:
    # Dropout, rotation, shift and zoom all draw from the seeded generators; both runs at once.
    args = [*TINY, "model=fcfree", "train.epochs=2", "data.rotation=10", "data.translate=0.1", "data.scale=0.1"]
    procs = [subprocess.Popen([sys.executable, str(ROOT / "sweep" / "run.py"), *args, f"hydra.run.dir={name}"],
                              cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]

    def epochs(name: str) -> list[dict]:
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        return [{k: v for k, v in e.items() if k != "seconds"} for e in metrics["epochs"]]

    assert len(epochs("a")) == 2 and epochs("a") == epochs("b")
