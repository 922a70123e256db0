"""One error type per kind of user-facing failure; entry points print them as one line."""


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
