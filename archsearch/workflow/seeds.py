"""A finalist's seeds, trained from scratch as `python sweep/run.py` runs, in lanes that share the cores: which runs are
finished (resumable), one line before and after each, and a Ctrl-C or SIGTERM passed on to the running seeds."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from archsearch.core.config import MACHINE_KEYS
from archsearch.core.defaults import ROOT
from archsearch.core.errors import ConfigError
from archsearch.report.acceptance import LAST, Experiment, read_run
from archsearch.report.rows import Row, read_metrics
from archsearch.report.tables import fmt_duration, fmt_pct
from archsearch.search.signals import JOBS_GRACE_S

RUN = ROOT / "sweep" / "run.py"


def parse_overrides(overrides: Sequence[str]) -> list[Any]:
    """Hydra override strings, parsed (a malformed one fails here)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(overrides))


def hydra_value(text: str) -> str:
    """A path as a Hydra override value: quoted when it holds anything but plain path characters."""
    if re.fullmatch(r"[\w./-]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def compared(overrides: Sequence[str]) -> list[str]:
    """Overrides as a finished run is matched against: per-machine keys aside, order aside."""
    return sorted(o.input_line for o in parse_overrides(overrides) if o.key_or_group not in MACHINE_KEYS)


@dataclass
class Finalist:
    row: Row
    name: str  # <study>_t<number>: model.name, run directory, experiment name
    overrides: list[str]  # without model.name and seed

    def run_dir(self, confirm_dir: Path, seed: int) -> Path:
        return confirm_dir / self.name / f"seed_{seed}"

    def command(self, confirm_dir: Path, seed: int) -> list[str]:
        return [sys.executable, str(RUN), *self.overrides, f"model.name={self.name}", f"seed={seed}",
                f"hydra.run.dir={hydra_value(str(self.run_dir(confirm_dir, seed)))}"]


def finished(metrics_path: Path) -> Optional[dict[str, Any]]:
    """The run's metrics when it is complete with all its epochs, else None (missing, partial, failed)."""
    if not metrics_path.is_file():
        return None
    try:
        m = read_metrics(metrics_path)
    except ConfigError:
        return None
    return m if m["status"] == "complete" and len(m["epochs"]) == m["config"]["train"]["epochs"] else None


def recorded_overrides(run_dir: Path) -> Optional[list[str]]:
    from omegaconf import OmegaConf

    path = run_dir / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(path)] if path.is_file() else None


def check_finished_runs(chosen: Sequence[Finalist], seeds: Sequence[int], confirm_dir: Path) -> None:
    """Refuse, before training anything, to reuse or overwrite a complete run of other overrides."""
    for f in chosen:
        for seed in seeds:
            run_dir = f.run_dir(confirm_dir, seed)
            if finished(run_dir / "metrics.json") is None:
                continue
            before = recorded_overrides(run_dir)
            now = [*f.overrides, f"model.name={f.name}", f"seed={seed}"]
            if before is not None and compared(before) != compared(now):
                old, new = set(compared(before)), set(compared(now))
                diff = " ".join([*(f"-{o}" for o in sorted(old - new)), *(f"+{o}" for o in sorted(new - old))])
                raise ConfigError(f"--confirm-dir={confirm_dir}: {run_dir} holds a complete run of other overrides "
                                  f"({diff}); use another --confirm-dir or remove that run")


def last_text(m: dict[str, Any]) -> str:
    last = [e["test_acc"] for e in m["epochs"]][-LAST:]
    return f"last {len(last)} test {' / '.join(fmt_pct(a) for a in last)}, min {fmt_pct(min(last, default=None))}"


def auto_lanes(cores: int, seeds: int) -> int:
    """How many seeds train at once for --lanes auto: as many as there are cores, up to one per seed, each with
    cores // lanes threads. Nets this small scale poorly with threads: on 2 cores, 3 seeds in 2 one-thread lanes
    took 81 s against 111 s one after another on two threads (bench/confirm_lanes.py, docs/BENCHMARKS.md)."""
    return max(1, min(cores, seeds))


def lanes_for(text: str, seeds: int, cores: Optional[int] = None) -> int:
    """--lanes N|auto as a number of lanes, at most one per seed."""
    import os

    cores = cores or os.cpu_count() or 1
    if text == "auto":
        return auto_lanes(cores, seeds)
    try:
        lanes = int(text)
    except ValueError:
        lanes = 0
    if lanes < 1:
        raise ConfigError(f"--lanes={text!r}: must be a whole number >= 1 or auto")
    return min(lanes, seeds)


@dataclass
class Lane:
    """A seed training in a subprocess of its own session: a signal reaches it through this process alone."""
    seed: int
    proc: subprocess.Popen
    output: Any  # its stdout and stderr, for the error line of a run that wrote no metrics.json
    started: float


def start_seed(f: Finalist, seed: int, confirm_dir: Path, threads: Optional[int]) -> Lane:
    import tempfile

    command = f.command(confirm_dir, seed) + ([f"train.threads={threads}"] if threads else [])
    output = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return Lane(seed, proc, output, time.monotonic())


def pass_on(procs: Sequence[subprocess.Popen], e: BaseException, grace_s: float = JOBS_GRACE_S) -> None:
    """Pass an interruption on to each running subprocess and give them grace_s seconds to record how far they got
    (a run writes the epoch it reached in metrics.json, archsearch/core/train.py) before they are killed; wait for
    each, so that none outlives this process."""
    import signal

    signum = getattr(e, "signum", signal.SIGINT)  # signals.Terminated carries SIGTERM or SIGHUP
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signum)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def end_seed(f: Finalist, lane: Lane, confirm_dir: Path) -> None:
    """The line after a seed's run, or a one-line error for a run that wrote no metrics.json."""
    metrics_path = f.run_dir(confirm_dir, lane.seed) / "metrics.json"
    took = fmt_duration(time.monotonic() - lane.started)
    if lane.proc.returncode in (130, 143, 129):  # signalled by itself, not through this process: stop as it did
        from archsearch.search.signals import Terminated

        raise KeyboardInterrupt if lane.proc.returncode == 130 else Terminated(lane.proc.returncode - 128)
    if not metrics_path.is_file():
        lane.output.seek(0)
        tail = (lane.output.read().strip() or "no output").splitlines()[-1].removeprefix("error: ")
        raise ConfigError(f"{f.name} seed {lane.seed}: python sweep/run.py exited {lane.proc.returncode} without a "
                          f"metrics.json: {tail}")
    m = read_metrics(metrics_path)
    reason = f" ({m['reason']})" if m.get("reason") else ""
    print(f"  {f.name} seed {lane.seed}: {m['status']}{reason}, {len(m['epochs'])} epochs, {last_text(m)}, {took}",
          flush=True)


def begin_seed(f: Finalist, seed: int, confirm_dir: Path) -> bool:
    """Whether the seed needs training (it is not finished); one line either way."""
    run_dir = f.run_dir(confirm_dir, seed)
    metrics_path = run_dir / "metrics.json"
    done = finished(metrics_path)
    if done is not None:
        print(f"  {f.name} seed {seed}: done already ({len(done['epochs'])} epochs, {last_text(done)}); "
              "not run again", flush=True)
        return False
    again = "re-training (the run there is incomplete)" if metrics_path.exists() else "training"
    metrics_path.unlink(missing_ok=True)  # so that a run that dies before writing one cannot pass for finished
    print(f"  {f.name} seed {seed}: {again} in {run_dir} (log: {run_dir / 'run.log'})", flush=True)
    return True


def train_seeds(f: Finalist, seeds: Sequence[int], confirm_dir: Path, stop_at_first_miss: bool, lanes: int = 1,
                threads: Optional[int] = None) -> Experiment:
    """The seeds in `lanes` parallel subprocesses, each with `threads` torch threads (None: the run's own setting),
    judged on the runs it has; with stop_at_first_miss, no seed is started after one misses the accuracy rule (the
    finalist can no longer pass), while those already running finish."""
    waiting, running, runs = list(seeds), [], []
    missed = False

    def judge(seed: int) -> None:
        nonlocal missed
        runs.append(read_run(f.run_dir(confirm_dir, seed) / "metrics.json"))
        misses = Experiment(f.name, runs[-1:]).accuracy_misses() if stop_at_first_miss and not missed else []
        missed = missed or bool(misses)
        if misses and waiting:
            print(f"  {f.name}: {misses[0]}, so it cannot pass; seed(s) {', '.join(map(str, waiting))} not run "
                  "(--stop-at-first-miss)", flush=True)

    try:
        while running or (waiting and not missed):
            while waiting and not missed and len(running) < lanes:
                seed = waiting.pop(0)
                if begin_seed(f, seed, confirm_dir):
                    running.append(start_seed(f, seed, confirm_dir, threads))
                else:
                    judge(seed)
            ended = [lane for lane in running if lane.proc.poll() is not None]
            if not ended:
                time.sleep(0.1)
            for lane in ended:
                running.remove(lane)
                try:
                    end_seed(f, lane, confirm_dir)
                finally:
                    lane.output.close()
                judge(lane.seed)
    except BaseException as e:  # Ctrl-C, SIGTERM, SIGHUP, or a run that could not start
        pass_on([lane.proc for lane in running], e)
        for lane in running:
            lane.output.close()
        raise
    return Experiment(f.name, sorted(runs, key=lambda r: r.seed))
