"""The main job (`make sweep`): the search, then the confirmation of that search's own best, ending with the verdict.

    python sweep/main.py [--confirm "CONFIRM OPTIONS"] [hydra overrides...]

1. Composes the sweep's config with the overrides (Hydra's compose API), so that the study, its storage and its
   budget are the ones the search will use, whatever the overrides select (sweep=small, study_name, storage).
2. Runs the search, `python sweep/run.py -m <overrides> hydra.sweeper.budget.confirm_seeds=<seeds>`, so that its
   progress line's ETA counts the confirmation's epochs too.
3. Confirms the study's best complete trial, `sweep/confirm.py --study S --storage U --top 1 <CONFIRM OPTIONS>`
   (archsearch/workflow/confirm.py), which prints the verdict, then writes RESULTS.md.

--confirm takes confirm.py's options and training overrides as one string (--seeds, --lanes, --pick, ...), checked
before the search starts; the study, storage and --top are the main job's. A user error (bad overrides or options,
an epoch budget smaller than one trial, no complete trial after the search) is one line and exit 2; Ctrl-C,
SIGTERM and SIGHUP are passed on to the search or the seeds, which record how far they got.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from typing import Any, Optional, Sequence

from archsearch.core.defaults import CONF
from archsearch.core.errors import EXIT_USER_ERROR, ConfigError
from archsearch.search.signals import JOBS_GRACE_S
from archsearch.workflow import confirm
from archsearch.workflow.seeds import RUN, lanes_for, pass_on

SET_HERE = ("--study", "--storage", "--top", "--trials")  # confirm.py options the main job sets itself
SEARCH_GRACE_S = 2 * JOBS_GRACE_S  # a stopping search fails its trials in the storage, then its own jobs'


def parse_args(argv: Optional[Sequence[str]] = None) -> tuple[argparse.Namespace, list[str]]:
    """(the main job's arguments, confirm.py's as tokens); main() checks those too before anything runs."""
    p = confirm.Parser(description="Search, then confirm the search's best over seeds: the verdict in one command.")
    p.add_argument("--confirm", default="", help="confirm.py's options and training overrides, as one string "
                   "(e.g. \"--lanes auto --seeds 101,102,103\"); not --study, --storage, --top, --trials")
    p.add_argument("overrides", nargs="*", help="the search's Hydra overrides, as for python sweep/run.py -m")
    args = p.parse_intermixed_args(argv)
    try:
        tokens = shlex.split(args.confirm)
    except ValueError as e:
        raise ConfigError(f"--confirm={args.confirm!r}: {e}") from None
    for token in tokens:
        if token.split("=", 1)[0] in SET_HERE:
            raise ConfigError(f"--confirm: {token.split('=', 1)[0]} is set by the main job: it confirms the best "
                              "trial of the study its overrides select (hydra.sweeper.study_name, .storage)")
    return args, tokens


def compose_sweep(overrides: Sequence[str]) -> Any:
    """The config `python sweep/run.py -m <overrides>` composes, with its hydra node (the sweeper's settings). A
    sweep override (optim.lr=interval(0.01,0.1): a searched key) is left out: composing allows none, and the
    study, its storage and its budget are never swept."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from archsearch.search import register

    register()
    fixed = [o.input_line for o in OverridesParser.create().parse_overrides(list(overrides))
             if not o.is_sweep_override()]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=fixed, return_hydra_config=True)


def trial_epochs(cfg: Any) -> Optional[int]:
    """The epochs one trial trains: the command line's train.epochs, else the sweep's fixed one, else the config's;
    None when it is searched. In that order, as the sweeper puts the command line after its params."""
    given = any(o.split("=", 1)[0].lstrip("+") == "train.epochs" for o in cfg.hydra.overrides.task)
    value = cfg.train.epochs if given else cfg.hydra.sweeper.get("params", {}).get("train.epochs", cfg.train.epochs)
    try:
        return int(str(value))
    except ValueError:  # choice(...), range(...): searched
        return None


def check_budget(cfg: Any) -> None:
    """Refuse an epoch budget smaller than one trial: no trial could complete, so nothing could be confirmed."""
    budget, epochs = cfg.hydra.sweeper.budget.epochs, trial_epochs(cfg)
    if budget is not None and epochs is not None and budget < epochs:
        raise ConfigError(f"hydra.sweeper.budget.epochs={budget}: less than one trial's {epochs} epochs "
                          f"(train.epochs), so no trial could complete and nothing could be confirmed; give at "
                          f"least {epochs}")


def job_size(cfg: Any, seeds: int) -> str:
    """What the job will train, in epochs: the search's budget, then the confirmation's (60k epochs weigh 60/50)."""
    sweeper, epochs = cfg.hydra.sweeper, trial_epochs(cfg)
    search = (f"{sweeper.budget.epochs} trained epochs" if sweeper.budget.epochs is not None
              else f"{sweeper.n_trials} trials")
    if sweeper.budget.minutes is not None:
        search += f" or {sweeper.budget.minutes:g} min"
    then = f"{seeds} seed(s)" + (f" x {epochs} epochs on 60k images" if epochs is not None else "")
    return (f"the search ({search}), then the confirmation of its best ({then}); the ETA follows from the first "
            "trial's measured speed, on each trial's line")


def run_search(overrides: Sequence[str], seeds: int) -> None:
    """python sweep/run.py -m <overrides>, its output as it comes; a signal here is passed on to it."""
    given = any(o.split("=", 1)[0].lstrip("+") == "hydra.sweeper.budget.confirm_seeds" for o in overrides)
    command = [sys.executable, str(RUN), "-m", *overrides,
               *([] if given else [f"hydra.sweeper.budget.confirm_seeds={seeds}"])]
    proc = subprocess.Popen(command, start_new_session=True)  # a signal reaches it once, through this process
    try:
        code = proc.wait()
    except BaseException as e:
        pass_on([proc], e, SEARCH_GRACE_S)
        raise
    if code == EXIT_USER_ERROR:
        raise SystemExit(code)  # the search said why, in one line
    if code in (129, 130, 143):
        raise SystemExit(code)  # it was signalled by itself; its trials are failed and kept
    if code != 0:  # a crash: its own traceback is above; its exit code, not a user error's 2
        print(f"the search (python sweep/run.py -m ...) exited {code}; nothing confirmed", file=sys.stderr)
        raise SystemExit(code)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args, confirm_tokens = parse_args(argv)
    cfg = compose_sweep(args.overrides)
    sweeper = cfg.hydra.sweeper
    confirm_argv = ["--study", str(sweeper.study_name), "--storage", str(sweeper.storage), "--top", "1",
                    *confirm_tokens]
    options = confirm.parse_args(confirm_argv)  # bad options fail now, not after the search
    lanes_for(options.lanes, len(options.seeds))
    check_budget(cfg)
    print(f"main job: study {sweeper.study_name!r} in {sweeper.storage}: {job_size(cfg, len(options.seeds))}",
          flush=True)
    run_search(args.overrides, len(options.seeds))
    print(f"main job: the search is done; confirming the best trial of {sweeper.study_name!r}", flush=True)
    confirm.main(confirm_argv)
