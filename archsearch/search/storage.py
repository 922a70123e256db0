"""The Optuna storage: opened for a sweep and its jobs (with heartbeats, waiting for a busy SQLite file) or
read-only for the review, confirm.py, results.py and the dashboard; an old schema is explained in one line.
"""
from __future__ import annotations

import logging
import os
import random
import re
import shlex
import time
from pathlib import Path
from typing import Any, Callable, Optional

from archsearch.core.errors import ConfigError, StorageError

log = logging.getLogger(__name__)

# A RUNNING trial with no heartbeat for the grace period belongs to a killed worker and is failed
# when a sweep starts. The grace is an environment setting, not a config key: it is a property of
# the machines (how long a live worker may go silent), it must be the same for every process that
# touches the study (sweeper, local or cluster jobs, other workers), and the environment reaches all
# of them without being threaded through each job's config. Tests shorten it to a few seconds.
GRACE_ENV = "ARCHSEARCH_HEARTBEAT_GRACE_S"
DEFAULT_GRACE_SECONDS = 60
SQLITE_BUSY_SECONDS = 60  # concurrent workers on one SQLite file wait for its lock instead of failing at 5 s


def heartbeat_timing() -> tuple[int, int]:
    """(interval, grace) in whole seconds; the grace comes from $ARCHSEARCH_HEARTBEAT_GRACE_S (default 60)."""
    text = os.environ.get(GRACE_ENV, str(DEFAULT_GRACE_SECONDS))
    if not text.strip().isdigit() or int(text) < 2:
        raise ConfigError(f"{GRACE_ENV}={text!r}: must be a whole number of seconds >= 2")
    grace = int(text)
    return max(1, min(10, grace // 4)), grace  # several beats per grace period, so one slow write is not a death


# Errors of two processes creating the same fresh storage at once (tables, alembic's version row)
# or meeting a busy SQLite file; the second try finds the storage ready.
_RACES = ("already exists", "UNIQUE constraint failed", "duplicate key", "database is locked")


def with_busy_timeout(url: str) -> str:
    """The URL, for SQLite made to wait for a lock held by another worker (the driver gives up after 5 s)."""
    if url.startswith("sqlite:") and "timeout=" not in url:
        return f"{url}{'&' if '?' in url else '?'}timeout={SQLITE_BUSY_SECONDS}"
    return url


def open_storage(url: str, on_stale: Optional[Callable[[Any, Any], None]] = None) -> Any:
    """An RDB storage with heartbeats, so that trials of killed workers can be failed later (on_stale is told of
    each, as Optuna's heartbeat_stale_trial_callback)."""
    import optuna

    from archsearch.search.optuna_compat import quiet_heartbeat_warnings

    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///"):].split("?")[0])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"hydra.sweeper.storage={url!r}: cannot create {e.filename} ({e.strerror})") from None
    quiet_heartbeat_warnings()
    interval, grace = heartbeat_timing()
    for attempt in range(4):
        try:
            return optuna.storages.RDBStorage(with_busy_timeout(url), heartbeat_interval=interval, grace_period=grace,
                                              heartbeat_stale_trial_callback=on_stale)
        except Exception as e:  # SQLAlchemy raises many types; the user needs the URL and the cause
            if attempt < 3 and any(race in str(e) for race in _RACES):
                time.sleep(random.uniform(0.1, 0.5))
                continue
            hint = schema_upgrade_hint(url, e)
            if hint:
                raise StorageError(hint) from None
            cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StorageError(f"hydra.sweeper.storage={url!r}: cannot be opened ({cause})") from None


def close_storage(storage: Any) -> None:
    """Close an RDB storage's session and its engine's pooled connections now (Optuna never disposes the engine,
    so its connections outlive the storage until the garbage collector finds the engine)."""
    storage.remove_session()
    storage.engine.dispose()


def schema_upgrade_hint(url: str, exc: BaseException) -> str | None:
    """One line naming the command that upgrades `url`, when `exc` is Optuna refusing tables an older Optuna set
    up (results/optuna.db came from optuna 2.10.1); None for any other error."""
    text = " ".join(str(exc).split())
    if not isinstance(exc, RuntimeError) or "optuna storage upgrade" not in text:
        return None  # Optuna's other refusal, a schema newer than this Optuna, asks for `pip install -U optuna`
    import optuna

    found = re.search(r"set up by optuna ([^\s)]+)", text)
    writer = f"optuna {found.group(1)}" if found else "an older optuna"
    return (f"{url} was written by {writer}; optuna {optuna.__version__} reads it after a one-time upgrade "
            f"(older optuna versions cannot read it afterwards): optuna storage upgrade --storage {shlex.quote(url)}")


def readonly_url(url: str) -> str:
    """The URL opened read-only: an sqlite file as a mode=ro URI (never created when missing)."""
    from urllib.parse import quote

    if not url.startswith("sqlite:///"):
        return url  # a server database: we only ever read, but cannot make the connection read-only
    path, _, query = url[len("sqlite:///"):].partition("?")
    if path.startswith("file:"):
        return url
    if path in ("", ":memory:"):
        raise StorageError(f"--storage={url!r}: an in-memory storage holds no study to review")
    if not Path(path).is_file():
        raise StorageError(f"--storage={url!r}: {path} does not exist; run a sweep first "
                           "(python sweep/run.py -m) or point --storage at its database")
    return f"sqlite:///file:{quote(str(Path(path).resolve()))}?mode=ro&uri=true" + (f"&{query}" if query else "")


def open_readonly(url: str) -> Any:
    """An Optuna RDB storage on `url` that this process never writes to."""
    readonly = readonly_url(url)  # before importing Optuna: a missing file answers at once
    import optuna

    from archsearch.search.optuna_compat import quiet_deprecated_distributions

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet_deprecated_distributions()  # studies of Optuna 2.x warn once per trial about data that converts exactly
    try:
        return optuna.storages.RDBStorage(with_busy_timeout(readonly))  # a sweep may hold the write lock a while
    except Exception as e:  # SQLAlchemy and Optuna raise many types; the user needs the URL and the cause
        hint = schema_upgrade_hint(url, e)
        if hint:
            raise StorageError(hint) from None
        cause = " ".join(str(e).split()) or type(e).__name__
        if "readonly database" in cause:
            cause = "it has no Optuna tables; is it an Optuna storage?"
        raise StorageError(f"--storage={url!r}: cannot be read ({cause[:200]})") from None


def load_study(storage: Any, name: str, url: str) -> Any:
    """The study `name`, which must hold at least one trial."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = ", ".join(optuna.get_all_study_names(storage)) or "none"
        raise StorageError(f"--study={name!r}: no such study in {url} (studies there: {names})") from None
    if not study.get_trials(deepcopy=False):
        raise StorageError(f"--study={name!r} in {url} has no trials yet; wait for the sweep's first trial")
    return study
