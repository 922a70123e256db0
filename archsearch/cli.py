"""What every command in sweep/ shares: user mistakes become one line on stderr and exit code 2; Ctrl-C, SIGTERM
and SIGHUP end the run cleanly with exit code 128 + the signal's number. Above the layers: it may use them all."""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional

from hydra.experimental.callback import Callback

from archsearch.core.errors import EXIT_USER_ERROR

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C; SIGTERM 143, SIGHUP 129 (archsearch/search/signals.py)


def report_errors(entry: Callable[[], Any], setup: Optional[Callable[[], None]] = None) -> Any:
    """Run setup() then an entry point; print user errors as one line and exit non-zero instead of a traceback.
    SIGTERM and SIGHUP raise like Ctrl-C (archsearch/search/signals.py), so that a running trial fails at once."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from archsearch.core.errors import ArchSearchError, one_line
    from archsearch.search import signals

    signals.install()

    # Hydra's own handler prints a stack trace and exits 1 for any error raised under hydra.main unless
    # HYDRA_FULL_ERROR is exactly "1"; only then does the error reach the handlers below. So it is set
    # whatever the user exported (unset, 0, 1): user errors get one line, a real crash its full traceback.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        if setup is not None:
            setup()
        return entry()
    except ArchSearchError as e:
        print(f"error: {e}", file=sys.stderr)
    except (HydraException, OmegaConfBaseException) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
    except OSError as e:
        key = _output_dir_key(e)
        if key is None and not isinstance(e, PermissionError):
            raise
        where = f"{key}={e.filename!r}: cannot create the directory" if key else f"cannot write {e.filename}"
        print(f"error: {where} ({e.strerror})", file=sys.stderr)
    except AssertionError as e:  # OmegaConf asserts, past Hydra's error handling, on a key under a null node
        override = _override_under_null_arch(e)
        if override is None:
            raise
        print(f"error: {override}: the chosen model has no arch (model.arch is null); "
              "the model.arch keys belong to model=fcfree", file=sys.stderr)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM/SIGHUP as signals.Terminated
        try:
            print(signals.stderr_line(e), file=sys.stderr)
        except OSError:  # a terminal that hung up (SIGHUP) takes no more output; the exit code still tells
            pass
        sys.exit(signals.exit_code(e))
    sys.exit(EXIT_USER_ERROR)


def _override_under_null_arch(e: AssertionError) -> Optional[str]:
    """The command line's model.arch.* override when e is OmegaConf refusing it because model.arch is null
    (model=baseline has no arch), else None. model.arch is the only null node of the configs with keys."""
    if "Unexpected type for root: NoneType" not in str(e):
        return None
    return next((a for a in sys.argv[1:] if a.lstrip("+").startswith("model.arch.")), None)


class OutputDirs(Callback):
    """A Hydra callback (conf/config.yaml, hydra.callbacks) that remembers the run's output directory
    before Hydra tries to create it, so that a failure there can be reported with its key."""

    dirs: dict[str, str] = {}

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        OutputDirs.dirs = {"hydra.run.dir": os.path.abspath(str(config.hydra.run.dir))}

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        OutputDirs.dirs = {"hydra.sweep.dir": os.path.abspath(str(config.hydra.sweep.dir))}


def _output_dir_key(e: OSError) -> Optional[str]:
    """hydra.run.dir or hydra.sweep.dir when e is Hydra failing to create a job's directory, else None."""
    if e.filename is None:
        return None
    failed = os.path.abspath(str(e.filename))
    return next((key for key, d in OutputDirs.dirs.items() if d.startswith(failed) or failed.startswith(d)), None)
