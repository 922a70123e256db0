"""SIGTERM and SIGHUP end a run or a sweep as cleanly as Ctrl-C does.

Python turns SIGINT into KeyboardInterrupt, which fails the running trial with its reason. SIGTERM
(Slurm at a time limit or on preemption, `timeout`, `kill`, `docker stop`, systemd) and SIGHUP (a closed
terminal) would kill the process outright and leave the trial RUNNING until a later sweep noticed its
missing heartbeat. Here they raise Terminated, a KeyboardInterrupt, so that every `except
KeyboardInterrupt` that fails a trial or stops the sweep handles them the same way.

Two places install the handler:
- the entry point (cli.report_errors), for the whole process: a single run, a sweep and the jobs it runs
  in its own process. The process fails what is running and exits 128 + the signal's number.
- train(), for its own duration, where the entry point did not: a job in another process (a joblib
  worker, a submitit job). The job fails its trial and ends as a failed job (JobStopped), so that a
  sweeper that was not signalled itself (a Slurm job at its time limit) tells the trial FAIL and goes on.
  In a submitit job it also takes over submitit's warning signal (SIGUSR2 unless SUBMITIT_PREEMPT_SIGNAL
  says otherwise), which Slurm sends before a job's time limit and on preemption: submitit would requeue
  the job or end it without a word, and a trial does not resume from a checkpoint.
A signal that is ignored (SIG_IGN: SIGHUP under nohup, SIGINT in a background job) stays ignored.

The interruption is never raised inside a database call: it would leave the call's transaction open
and SQLite locked, and every later write (the trial's own failure, other workers) waited 60 s for the
lock. It is raised 50 ms later instead, once the call has returned. Ctrl-C gets the same care and
otherwise behaves as it always did (KeyboardInterrupt, exit code 130).

While the sweeper waits for jobs in other processes (jobs_elsewhere), a signal that stops the sweep is
first passed on to its child processes and the jobs get a few seconds to fail their own trials, with
the epoch reached: joblib's shutdown kills its workers with SIGKILL at once, so without the wait a
worker's trial was failed by the sweeper's safety net, which knows less.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from types import FrameType
from typing import Any, Callable, Iterator, Optional

TERMINATING = (signal.SIGTERM, signal.SIGHUP)
JOBS_GRACE_S = 5.0  # how long a stopping sweeper waits for its jobs to fail their trials (docker stop: 10 s)
RETRY_S = 0.05  # a signal that lands inside a database call is raised this much later
# Code that holds a database transaction open while it runs: an exception raised there leaks its lock.
_DATABASE_CODE = tuple(f"{os.sep}{name}{os.sep}" for name in ("sqlalchemy", "sqlite3", "psycopg2", "alembic")) + (
    f"{os.sep}optuna{os.sep}storages{os.sep}",)

_fired = False  # a signal was turned into Terminated and is being handled: repeats are not raised again
_at_entry = False  # the process's entry point installed the handler: a Terminated stops the whole process
_warnings: set[int] = set()  # signals taken over from submitit: a scheduler's warning of the end


class Terminated(KeyboardInterrupt):
    """SIGTERM, SIGHUP or a scheduler's warning signal, raised where the process is, like Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(int(signum))
        self.signum = int(signum)


class JobStopped(Exception):
    """A job in another process than the sweeper's failed its trial on a signal and ends as a failed job.

    An Exception, not a KeyboardInterrupt: Hydra's run_job returns it as the job's failure, the launcher
    hands it back like any failed job, and the sweeper (if it was not signalled too) goes on."""


def signal_name(e: BaseException) -> str:
    return signal.Signals(e.signum).name if isinstance(e, Terminated) else "SIGINT"


def describe(e: BaseException) -> str:
    """What a trial's reason says: `interrupted (SIGINT)`, `terminated (SIGTERM)`, `terminated (SIGHUP)`, ..."""
    if not isinstance(e, Terminated):
        return "interrupted (SIGINT)"
    if e.signum in _warnings:
        return f"terminated ({signal_name(e)}: the job's time limit or preemption)"
    return f"terminated ({signal_name(e)})"


def exit_code(e: BaseException) -> int:
    """128 + the signal's number, what a shell reports for a process that a signal ended: 130, 143, 129."""
    return 128 + (e.signum if isinstance(e, Terminated) else signal.SIGINT)


def stderr_line(e: BaseException) -> str:
    """The entry point's last line: `interrupted` for Ctrl-C, as it always was; `terminated (SIGTERM)` ..."""
    return describe(e) if isinstance(e, Terminated) else "interrupted"


def _in_database(frame: Optional[FrameType]) -> bool:
    while frame is not None:
        if any(part in frame.f_code.co_filename for part in _DATABASE_CODE):
            return True
        frame = frame.f_back
    return False


def _retry_later(signum: int) -> None:
    """The same signal to this process again in RETRY_S, when the database call has returned."""
    timer = threading.Timer(RETRY_S, os.kill, (os.getpid(), signum))
    timer.daemon = True
    timer.start()


def _raise(signum: int, frame: Optional[FrameType]) -> None:
    global _fired
    if _in_database(frame):
        _retry_later(signum)
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt  # as Python's own handler: every Ctrl-C raises
    if _fired:  # `timeout` sends SIGTERM to its child and again to its process group: one is enough
        return
    _fired = True
    raise Terminated(signum)


def _between_jobs(signum: int, frame: Optional[FrameType]) -> None:
    """SIGTERM and SIGHUP in a worker process between jobs (loky reuses its processes): outlived. Such a signal
    is one its stopping sweeper passed on, a hang-up of the whole process group, or a retry (_retry_later) that
    fired after the job ended; its sweeper ends the worker. Had the worker died of it, loky would call its
    executor broken and SIGKILL the jobs still training on the other workers before they failed their trials."""


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _takes_over(sig: int, current: Any) -> bool:
    """Whether _raise replaces the handler `current` of `sig`: Python's defaults, not an ignored signal."""
    if sig == signal.SIGINT:
        return current is signal.default_int_handler
    return current == signal.SIG_DFL


def install() -> None:
    """For the whole process (an entry point): Ctrl-C, SIGTERM and SIGHUP raise, unless ignored."""
    global _at_entry
    if not _in_main_thread():
        return
    for sig in (signal.SIGINT, *TERMINATING):
        current = signal.getsignal(sig)
        if current is _raise or _takes_over(sig, current):
            signal.signal(sig, _raise)
            _at_entry = _at_entry or sig != signal.SIGINT


def _submitit_warning() -> Optional[int]:
    """The signal submitit's job handler waits for (it requeues or ends the job on it), if it has one here."""
    for sig in (getattr(signal, "SIGUSR2", None), getattr(signal, "SIGUSR1", None)):
        handler = signal.getsignal(sig) if sig is not None else None
        owner = getattr(handler, "__self__", None)
        if owner is not None and type(owner).__module__.startswith("submitit"):
            return sig
    return None


@contextlib.contextmanager
def job_scope() -> Iterator[bool]:
    """While a job trains: Ctrl-C, SIGTERM, SIGHUP (and submitit's warning signal) raise in this process,
    unless its entry point already made them do so. Yields True when this scope handles SIGTERM or
    SIGHUP itself, that is, the job runs in another process than the sweeper's: after failing its trial
    it then ends as a failed job (JobStopped). The handlers in place before are put back after, but for
    SIGTERM's and SIGHUP's default (the process dies), which becomes _between_jobs; submitit's handler for
    SIGTERM (it logs and ignores it) is replaced too."""
    global _fired
    if _at_entry or not _in_main_thread():
        yield False
        return
    warning = _submitit_warning()
    previous = {}
    for sig in (signal.SIGINT, *TERMINATING, *([warning] if warning is not None else [])):
        current = signal.getsignal(sig)
        if current is _raise or current is None or current == signal.SIG_IGN:
            continue
        if sig == signal.SIGINT and not _takes_over(sig, current):
            continue
        previous[sig] = signal.signal(sig, _raise)
    if warning in previous:
        _warnings.add(warning)
    try:
        yield any(sig != signal.SIGINT for sig in previous)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, _between_jobs if sig in TERMINATING and handler == signal.SIG_DFL else handler)
        _warnings.discard(warning)
        _fired = False  # a worker that lives on (loky reuses its processes) handles the next job's signal


def _children(parent: Optional[int] = None) -> list[int]:
    """Process ids of this process's children (or, on Linux, parent's) that a signal should reach: joblib's
    workers, submitit_local's job controllers; not a helper that ignores SIGTERM to outlive the others (loky's
    resource tracker)."""
    me = os.getpid() if parent is None else parent
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:  # not Linux
        return [p.pid for p in multiprocessing.active_children() if p.pid is not None]
    found = []
    for entry in entries:
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            ppid, ignored = int(fields["PPid"]), int(fields["SigIgn"], 16)
        except (OSError, ValueError, KeyError):
            continue  # gone meanwhile
        if ppid == me and not ignored & (1 << (signal.SIGTERM - 1)):
            found.append(int(entry))
    return found


@contextlib.contextmanager
def jobs_elsewhere(settled: Callable[[], bool], grace_s: float = JOBS_GRACE_S) -> Iterator[None]:
    """While a launcher waits for jobs in other processes: Ctrl-C, SIGTERM and SIGHUP are first passed on
    to this process's children (a job only reached through its parent, by `kill` or `docker stop`, gets
    it too), and the jobs get up to grace_s seconds to fail their own trials (settled() says when), before
    the interruption is raised here and the launcher's shutdown kills them. A second Ctrl-C stops at once.
    Only around a launch: settled() reads the database from the main thread, which must not be inside a
    database call then."""
    if not _in_main_thread():
        yield
        return

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        global _fired
        if _in_database(frame):
            _retry_later(signum)
            return
        if _fired:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # Ctrl-C again: no more waiting
            return
        _fired = True
        passed_on = 0
        for pid in _children():
            try:
                os.kill(pid, signum)
                passed_on += 1
            except OSError:
                continue
        deadline = time.monotonic() + grace_s
        while passed_on and time.monotonic() < deadline:
            try:
                if settled():
                    break
            except Exception:  # noqa: BLE001 - an unreadable storage: stop waiting, the sweeper's net remains
                break
            time.sleep(0.05)
        raise Terminated(signum) if signum != signal.SIGINT else KeyboardInterrupt()

    previous = {}
    for sig in (signal.SIGINT, *TERMINATING):
        if signal.getsignal(sig) is _raise:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
