"""Reading an Optuna storage without ever writing to it: open it, explain an old schema, load a study.

The review, results.py and the dashboard read through here; the sweeper reuses schema_upgrade_hint.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from sweep.errors import StorageError
from sweep.study import with_busy_timeout


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

    from sweep.optuna_compat import quiet_deprecated_distributions

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
