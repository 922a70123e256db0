"""Recipe variants x seeds of one configuration, on the search's split: `python bench/recipe_grid.py
(+experiment=NAME | --study S --trial N [--storage URL]) [--name BASE] [--variants a,b] [--seeds 201,202,203]
[--threads 1] [--lanes 2] [--out results/recipe_v4] [overrides...]`

Trains every variant (VARIANTS) of the base configuration once per seed, as `python sweep/run.py <base> <variant>
sweep=none data.val_size=10000 data.split_seed=0 seed=K hydra.run.dir=<out>/<base>/<variant>/seed_K`: 50k
training images, the 10k that the search holds out for validation, so that `python bench/recipe.py --dir
<out>/<base>` compares the variants on validation. The default seeds 201-203 are neither the search's (1, 2) nor
the confirmation's (101-103). A base from a study trial is the trial's overrides without what only the search used
(confirm.py's rule); a variant's keys replace the base's (a schedule group, all of its keys). Resumable: a run
that finished all its epochs with the same overrides is not trained again; one with other overrides is an error.
--lanes runs that many at once, each with --threads torch threads (two 1-thread lanes share 2 cores).
Extra overrides go to every run (e.g. data.train_subset=2000 train.epochs=1 for a quick look)."""
from __future__ import annotations

import argparse
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# The public tiny recipe's parts (3.7k params at 99.52%, one run), one at a time and whole.
LINEAR = ["optim.name=sgd", "optim.momentum=0", "optim.lr=0.1", "sched=linear", "sched.pct_start=0.25",
          "sched.start_factor=0.5", "sched.end_factor=0"]  # 0.05 -> 0.1 -> 0, stepped per batch
AUG = ["data.rotation=7", "data.translate=0.09", "data.scale=0.09", "data.aug_p=0.5"]
VARIANTS = {
    "today": [],
    "conv_bn_relu": ["model.block=conv_bn_relu"],
    "batch32": ["train.batch_size=32"],
    "aug_p05": AUG,
    "sgd0_linear": LINEAR,
    "public": ["model.block=conv_bn_relu", "train.batch_size=32", *AUG, *LINEAR],
}
SPLIT = ["data.val_size=10000", "data.split_seed=0"]  # the search's split (conf/sweep/small.yaml, tiny.yaml)
DEFAULT_SEEDS = "201,202,203"


def trial_overrides(storage: str, study: str, number: int) -> list[str]:
    """A trial's overrides without what only the search used (archsearch/workflow/confirm.py, searched_only)."""
    from archsearch.core.errors import ConfigError
    from archsearch.workflow.confirm import searched_only
    from archsearch.workflow.seeds import parse_overrides
    from archsearch.search.storage import load_study, open_readonly

    trials = {t.number: t for t in load_study(open_readonly(storage), study, storage).trials}
    if number not in trials or "overrides" not in trials[number].user_attrs:
        raise ConfigError(f"--trial={number}: study {study!r} in {storage} has no such trial with its overrides")
    return [o.input_line for o in parse_overrides(trials[number].user_attrs["overrides"])
            if not searched_only(o.key_or_group)]


def merged(base: list[str], variant: list[str]) -> list[str]:
    """The base's overrides under the variant's: a key the variant sets, or a group it chooses with every key of
    that group, is the variant's."""
    from archsearch.workflow.seeds import parse_overrides

    keys = {o.key_or_group for o in parse_overrides(variant)}
    kept = [o.input_line for o in parse_overrides(base)
            if o.key_or_group not in keys and o.key_or_group.split(".")[0] not in keys]
    return [*kept, *variant]


def plan(base: list[str], name: str, variants: list[str], seeds: list[int], out: Path,
         extras: list[str]) -> list[tuple[Path, list[str]]]:
    """(run directory, overrides) of every run, in the order they are trained: seed by seed, then variant."""
    return [(out / name / v / f"seed_{seed}",
             [*merged(base, VARIANTS[v]), "sweep=none", *SPLIT, *extras, f"seed={seed}"])
            for seed in seeds for v in variants]


def done_already(run_dir: Path, overrides: list[str]) -> bool:
    """Whether run_dir holds this run, finished; a finished run of other overrides there is an error."""
    from archsearch.core.errors import ConfigError
    from archsearch.workflow.seeds import compared, finished, recorded_overrides

    if finished(run_dir / "metrics.json") is None:
        return False
    before = recorded_overrides(run_dir)
    if before is not None and compared(before) != compared(overrides):
        raise ConfigError(f"{run_dir} holds a complete run of other overrides; use another --out or remove it")
    return True


def run_one(run_dir: Path, overrides: list[str], running: list[subprocess.Popen]) -> str:
    """Train one run that has not finished; a line saying so. Its process is in `running` while it trains, for
    main() to pass a signal on to (a lane's thread never receives one)."""
    from archsearch.core.errors import ConfigError
    from archsearch.workflow.seeds import RUN, finished, hydra_value

    metrics = run_dir / "metrics.json"
    metrics.unlink(missing_ok=True)  # a run that dies before writing one cannot pass for finished
    command = [sys.executable, str(RUN), *overrides, f"hydra.run.dir={hydra_value(str(run_dir))}"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        running.append(proc)
        try:
            out, err = proc.communicate()
        finally:
            running.remove(proc)
    if proc.returncode in (129, 130, 143):  # signalled: the grid stops too
        raise KeyboardInterrupt
    if finished(metrics) is None:
        tail = (err.strip() or out.strip() or "no output").splitlines()[-1].removeprefix("error: ")
        raise ConfigError(f"{run_dir}: python sweep/run.py exited {proc.returncode} without finishing: {tail}")
    return f"{run_dir}: trained"


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    from archsearch.core.errors import ConfigError

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study")
    p.add_argument("--trial", type=int)
    p.add_argument("--storage", default="sqlite:///results/search_v3.db")
    p.add_argument("--name", help="the base's folder (default: the experiment's name, or <study>_t<trial>)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated (default: %(default)s)")
    p.add_argument("--seeds", default=DEFAULT_SEEDS, help="comma-separated (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default: %(default)s)")
    p.add_argument("--lanes", type=int, default=2, help="runs at once (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("results/recipe_v4"))
    args, overrides = p.parse_known_args(argv)
    experiments = [o.split("=", 1)[1] for o in overrides if o.startswith("+experiment=")]
    if (args.study is None) == (not experiments) or (args.study is None) != (args.trial is None):
        raise ConfigError("base: give +experiment=NAME, or --study S and --trial N (one of them)")
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"--variants={args.variants}: {unknown[0]!r} is not one of {', '.join(VARIANTS)}")
    args.variants = args.variants.split(",")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds={args.seeds!r}: must be comma-separated whole numbers") from None
    for key in ("threads", "lanes"):
        if getattr(args, key) < 1:
            raise ConfigError(f"--{key}={getattr(args, key)}: must be >= 1")
    args.name = args.name or (experiments[0] if experiments else f"{args.study}_t{args.trial}")
    return args, overrides


def main(argv: list[str] | None = None) -> None:
    args, overrides = parse_args(argv)
    base = [o for o in overrides if o.startswith("+experiment=")]
    if args.study is not None:
        base = trial_overrides(args.storage, args.study, args.trial)
    extras = [o for o in overrides if o not in base]
    extras += [f"train.threads={args.threads}", "train.progress=false", "train.checkpoint=false"]
    runs = plan(base, args.name, args.variants, args.seeds, args.out, extras)
    print(f"{len(runs)} runs of {args.name} ({len(args.variants)} variants x {len(args.seeds)} seeds) in "
          f"{args.out / args.name}, {args.lanes} at a time", flush=True)
    todo = []
    for run_dir, run_overrides in runs:  # every clash is found before anything trains
        if done_already(run_dir, run_overrides):
            print(f"  {run_dir}: done already", flush=True)
        else:
            todo.append((run_dir, run_overrides))
    from archsearch.workflow.seeds import pass_on

    running: list[subprocess.Popen] = []
    with ThreadPoolExecutor(args.lanes) as pool:
        try:
            for line in pool.map(lambda r: run_one(*r, running), todo):
                print(f"  {line}", flush=True)
        except BaseException as e:  # Ctrl-C, SIGTERM: each run records the epoch it reached, then stops
            pool.shutdown(wait=False, cancel_futures=True)
            pass_on(list(running), e)
            raise
    print(f"python bench/recipe.py --dir {args.out / args.name}")


if __name__ == "__main__":
    from archsearch.cli import report_errors

    report_errors(main)
