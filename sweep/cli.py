"""Shared entry-point behaviour: user mistakes become one line on stderr and exit code 2."""
from __future__ import annotations

import sys
from typing import Any, Callable

EXIT_USER_ERROR = 2


def one_line(e: BaseException) -> str:
    """A one-line description of a user-facing error, with the cause's key when there is one."""
    from omegaconf.errors import OmegaConfBaseException

    text = " ".join(str(e).split()).split(" Config search path:")[0]
    cause = e.__cause__
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None)
        msg = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        text = f"{text}: {key + ': ' if key else ''}{msg}"
    return text


def report_errors(entry: Callable[[], Any]) -> Any:
    """Run an entry point; print user errors as one line and exit non-zero instead of a traceback."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from sweep.errors import ArchSearchError

    try:
        return entry()
    except ArchSearchError as e:
        print(f"error: {e}", file=sys.stderr)
    except (HydraException, OmegaConfBaseException) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
    except PermissionError as e:
        print(f"error: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)
