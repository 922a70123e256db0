"""Shared helpers: compose the real configs, shrink them, and run the real entry points."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
DATA = ROOT / "data"  # prepared once, shared by every test (and by the user's runs)

# The real configs, shrunk: a few thousand images, one epoch, no progress bar, no checkpoint.
SMALL = ["data.train_subset=2000", "data.test_subset=500", "train.epochs=1", "train.progress=false",
         "train.checkpoint=false", "train.threads=1", f"data.root={DATA}"]
# Smaller still, with a validation split: for sweeps, whose trials need an objective.
TINY = [*SMALL, "data.train_subset=1000", "data.val_size=200", "data.test_subset=200"]


# The test files that take longest, slowest first. `make test` gives each worker a whole file (pytest-xdist's
# --dist loadfile, --no-loadscope-reorder); with these first, the workers end together instead of one of them
# running the main job's test alone at the end. The other files keep their order.
SLOWEST_FILES = ("workflow/test_confirm.py", "search/test_sweep.py", "workflow/test_main_job.py",
                 "search/test_errors.py", "core/test_train.py", "report/test_results.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {ROOT / "tests" / name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path, len(rank)))  # stable: a file's tests stay in order, together


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compose(overrides: list[str] = (), config_name: str = "config", hydra_config: bool = False):
    """The composed job config, exactly as `python sweep/run.py <overrides>` would see it (with its
    hydra node when asked: the sweeper's settings)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from archsearch.search import register

    register()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=hydra_config)


def sigint_as_at_a_terminal() -> None:
    """preexec_fn for a child that the test will Ctrl-C. A test run started in the background (`make test &`,
    nohup) ignores SIGINT, children inherit that, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def entry_path(script: str) -> Path:
    """sweep/<script>, or <folder>/<script> when it names one (bench/bench.py)."""
    return ROOT / script if "/" in script else ROOT / "sweep" / script


def run_entry(script: str, args: list[str], cwd: Path, timeout: float = 300,
              env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python sweep/<script> args` (or `python <folder>/<script>`, e.g. bench/bench.py) from `cwd` (so
    outputs/ lands there) and capture its output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, str(entry_path(script)), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST, prepared under the project's data/ once per session."""
    from archsearch.core.data import load_mnist

    return load_mnist(DATA)


def run_in_process(script: str, args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """`python sweep/<script> args` (or bench/bench.py) run in this process, through its real __main__ block:
    (exit code, stdout, stderr). For the one-line error paths, at a tenth of a fresh interpreter's start-up; what
    the entry point changes process-wide (signal handlers, HYDRA_FULL_ERROR, Hydra's global state) is put back
    after."""
    import runpy

    from hydra.core.global_hydra import GlobalHydra

    from archsearch.search import signals

    path = entry_path(script)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [str(path), *args])
    monkeypatch.setattr(signals, "_at_entry", False)
    monkeypatch.setenv("HYDRA_FULL_ERROR", os.environ.get("HYDRA_FULL_ERROR", "0"))  # restored after
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    code = 0
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        GlobalHydra.instance().clear()
    captured = capsys.readouterr()
    return code, captured.out, captured.err
