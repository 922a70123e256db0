"""One error type per kind of user-facing failure; entry points print them as one line."""
from __future__ import annotations

EXIT_USER_ERROR = 2  # the exit code of a user mistake, after its one line on stderr


class ArchSearchError(Exception):
    """Base class: a mistake or condition the user can fix, reported without a traceback."""


class ConfigError(ArchSearchError):
    """A config value is out of range or inconsistent."""


class BudgetError(ArchSearchError):
    """A model violates a constraint (parameter budget, FC head, output classes)."""


class DataError(ArchSearchError):
    """The dataset is missing, corrupt or cannot be rebuilt."""


class StorageError(ArchSearchError):
    """The Optuna storage cannot be opened or holds an incompatible study."""


class DivergedError(ArchSearchError):
    """Training produced a non-finite loss."""


class CheckpointError(ArchSearchError):
    """A checkpoint file is missing, not a checkpoint, corrupt, or does not fit the model its config describes."""


def one_line(e: BaseException) -> str:
    """A one-line description of a user-facing error (ours, Hydra's or OmegaConf's), with the cause's key when
    there is one."""
    from omegaconf.errors import OmegaConfBaseException

    text = " ".join(str(e).split()).split(" Config search path:")[0]
    cause = e.__cause__
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None)
        msg = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        text = f"{text}: {key + ': ' if key else ''}{msg}"
    return text
