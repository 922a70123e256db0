"""Confirm a study's best trials over seeds, as one command: retrain, judge, save what passes, report.

    python sweep/confirm.py --study NAME [--storage URL] [--top 3 | --trials N,M] [--pick best|smallest-within-noise]
                            [--seeds 101,102,103] [--lanes N|auto] [--confirm-dir DIR] [--stop-at-first-miss]
                            [--experiment-dir DIR] [--results PATH|none] [--notes FILE] [overrides...]

1. Reads the study read-only (the default storage is the sweep's, conf/sweep/default.yaml). The finalists are
   its top --top COMPLETE trials by the validation objective, in the review's order
   (archsearch/report/ranking.py), or the complete trials that --trials names; pruned, rejected, duplicate and
   failed trials never count, and test accuracy plays no part in the choice. --pick smallest-within-noise puts
   first the complete trials within one standard error of the best, fewest params first (workflow/pick.py).
2. Trains each finalist from scratch on all 60k training images, once per seed, each as
   `python sweep/run.py <the trial's overrides> sweep=none <overrides> model.name=NAME seed=K
   hydra.run.dir=<confirm-dir>/NAME/seed_K`, where NAME is <study>_t<trial number>. The trial's own
   overrides lose what only the search used (validation split, data subsets, per-machine settings, trial
   bookkeeping, the sweep=); overrides given here win over the trial's for the same key (e.g.
   train.threads=1, or data.train_subset=2000 train.epochs=3 for a quick look). sweep=none makes the
   recorded overrides a command that reproduces the runs with -m (RESULTS.md's "Reproduce"). The seeds
   (default 101-103) must be ones the finalist's trial never trained in the search (it trained `seed`, and
   seed + 1, ... when reseeded). They run in --lanes parallel subprocesses with cores // lanes torch threads
   each (train.threads, unless given here); auto is auto_lanes's rule. A signal here (Ctrl-C, SIGTERM, SIGHUP)
   is passed on to the running seeds, which get a few seconds to record the epoch they reached.
3. Resumable: a seed whose metrics.json says complete with all its epochs is not trained again; any other
   is (re)trained. A complete run made with other overrides (per-machine ones aside) is an error, never
   overwritten: use another --confirm-dir or remove that run. With --stop-at-first-miss, a finalist's seeds
   stop at the first one that misses the accuracy rule (it can no longer pass): no seed starts after it, those
   running finish; it is judged on those it ran.
4. Verdict, printed before anything is written: sweep/results.py's rule (Experiment.confirmed): every seed at or
   above the assignment's target_acc (never a run's own constraints) in each of its last 3 epochs, at least 3 seeds, FC-free, under the parameter and epoch limits. A
   finalist that passes is written to <experiment-dir>/NAME.yaml (default conf/experiment), its first
   comment line (right under `# @package _global_`, which Hydra needs first) saying it is confirmed and the
   lowest test accuracy of the seeds' last 3 epochs. A file of that name not written by this command is
   left alone.
5. Results: sweep/results.py then rewrites --results (default <confirm-dir>/RESULTS.md, the plot next to it
   as acc_vs_params.png) from every run under --confirm-dir, with this study's sweep cost. --results none
   skips it. The project's RESULTS.md is only written when asked (--results RESULTS.md; its plot then stays
   results/acc_vs_params.png); the full command for it is in results/NOTES.md.

Prints a line per finalist and per seed as it goes, then a table: finalist, params, validation objective,
each seed's lowest test accuracy in its last 3 epochs, PASS/FAIL. Exit 0 whatever the verdicts; a user
error (unknown study, no complete trial, --top 0, an unreadable or old storage, a run that cannot start)
is one line on stderr and exit 2; Ctrl-C exits 130.
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn, Optional, Sequence

from archsearch.core.defaults import CONF, sweep_defaults
from archsearch.core.errors import ConfigError
from archsearch.report.acceptance import LAST, Experiment
from archsearch.report.experiment import RUNTIME_KEYS, experiment_yaml, finalist_name, save_experiment
from archsearch.report.ranking import Review, review_study
from archsearch.report.rows import Row
from archsearch.report.tables import fmt_int, fmt_pct, objective_text, text_table
from archsearch.search.storage import load_study, open_readonly
from archsearch.workflow.pick import PICKS, ordered
from archsearch.workflow.seeds import Finalist, check_finished_runs, lanes_for, parse_overrides, train_seeds

DEFAULT_CONFIRM_DIR = Path("outputs/confirm")
SET_HERE = {"seed": "--seeds", "model.name": "the finalist's name", "hydra.run.dir": "--confirm-dir"}
CONFIRMED_MARK = "CONFIRMED by sweep/confirm.py"
# Seeds no search trains: a search trains `seed` (1) and, reseeding, seed + 1, ...; the shipped results kept 1-3.
CONFIRM_SEEDS = (101, 102, 103)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations: the main job refuses --study and the like in --confirm, and "--stu" must not pass.
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str) -> NoReturn:  # one line and exit 2 through report_errors, not usage + error
        raise ConfigError(message)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    sweeper = sweep_defaults()
    p = Parser(description="Retrain a study's best complete trials over seeds and say which are confirmed.")
    p.add_argument("--study", default=sweeper.study_name, help="the study whose trials to confirm (default: the "
                   "default sweep's, %(default)s)")
    p.add_argument("--storage", default=sweeper.storage, help="storage URL (default: %(default)s, cwd-relative)")
    p.add_argument("--top", default="3", help="how many complete trials, best first (default: %(default)s)")
    p.add_argument("--trials", help="comma-separated trial numbers to confirm instead of the top ones (each complete)")
    p.add_argument("--seeds", default=",".join(map(str, CONFIRM_SEEDS)),
                   help="comma-separated seeds, none of them one the search trained (default: %(default)s)")
    p.add_argument("--lanes", default="auto", help="seeds trained at once, each with cores // lanes torch threads: "
                   "N, or auto (a rule from the core count; default: %(default)s)")
    p.add_argument("--pick", choices=PICKS, default="best",
                   help="which complete trials come first: best by objective, or smallest-within-noise (the fewest "
                   "params, then MACs, among those within one standard error of the best; default: %(default)s)")
    p.add_argument("--confirm-dir", type=Path, default=DEFAULT_CONFIRM_DIR,
                   help="runs go to <dir>/<study>_t<trial>/seed_<k> (default: %(default)s, cwd-relative)")
    p.add_argument("--experiment-dir", type=Path, default=CONF / "experiment",
                   help="where a confirmed finalist's <name>.yaml goes (default: conf/experiment)")
    p.add_argument("--stop-at-first-miss", action="store_true",
                   help="train no more seeds of a finalist once one seed misses the accuracy rule: it cannot pass")
    p.add_argument("--results", help="results file to regenerate, or 'none' (default: <confirm-dir>/RESULTS.md)")
    p.add_argument("--notes", type=Path, help="with the results: a markdown file included as written")
    p.add_argument("overrides", nargs="*", help="key=value overrides for every run; they win over the trial's")
    args = p.parse_intermixed_args(argv)
    args.top = _whole(args.top, "--top")
    if args.top < 1:
        raise ConfigError(f"--top={args.top}: must be >= 1")
    if args.trials is not None:
        try:
            args.trials = list(dict.fromkeys(int(n) for n in args.trials.split(",")))
        except ValueError:
            raise ConfigError(f"--trials={args.trials!r}: must be comma-separated trial numbers, e.g. 12,7") from None
    try:
        args.seeds = list(dict.fromkeys(int(s) for s in args.seeds.split(",")))
    except ValueError:
        raise ConfigError(f"--seeds={args.seeds!r}: must be comma-separated whole numbers, e.g. 101,102,103") from None
    if min(args.seeds) < 0:
        raise ConfigError(f"--seeds={','.join(map(str, args.seeds))}: seeds must be >= 0")
    if args.notes and not args.notes.is_file():
        raise ConfigError(f"--notes={args.notes}: no such file")
    return args


def _whole(text: str, key: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{key}={text!r}: must be a whole number >= 1") from None


# ---------------------------------------------------------------- overrides

def searched_only(key: str) -> bool:
    """A key only the search used: split, subsets, per-machine settings (save_experiment's list), trial records."""
    return key in RUNTIME_KEYS or key == "sweep" or key.startswith("trial")


def check_extras(extras: Sequence[str]) -> set[str]:
    """The keys of the command line's overrides (parsed, so a malformed one fails here); refuses those set here."""
    keys = set()
    for o in parse_overrides(extras):
        key = o.key_or_group
        if key in SET_HERE:
            raise ConfigError(f"{o.input_line}: {key} is set by confirm.py ({SET_HERE[key]}); leave it out")
        keys.add(key)
    return keys


def training_overrides(row: Row, extras: Sequence[str], extra_keys: set[str]) -> list[str]:
    """What every seed of `row` runs with: the trial's overrides without what only the search used or what the
    command line sets again, then sweep=none, then the command line's."""
    kept = [o.input_line for o in parse_overrides(row.overrides)
            if not searched_only(o.key_or_group) and o.key_or_group not in extra_keys]
    return [*kept, *([] if "sweep" in extra_keys else ["sweep=none"]), *extras]


# ---------------------------------------------------------------- finalists and their runs

def finalists(review: Review, top: int, extras: Sequence[str], extra_keys: set[str],
              numbers: Optional[Sequence[int]] = None) -> list[Finalist]:
    """The top complete trials by objective, or the trials `numbers`; each must be complete and savable as an
    experiment (checked before training)."""
    complete = [r for r in review.rows if r.state == "complete" and r.objective]
    if not complete:
        counts = ", ".join(f"{n} {s}" for s, n in review.summary.counts.items() if n) or "no trials"
        raise ConfigError(f"--study={review.study!r} in {review.storage}: no complete trial ({counts}); "
                          "nothing to confirm")
    if numbers is not None:
        by_number = {r.number: r for r in review.rows}
        for n in numbers:
            if n not in by_number or by_number[n].state != "complete":
                why = "no such trial" if n not in by_number else by_number[n].label
                raise ConfigError(f"--trials: #{n} of study {review.study!r}: {why}; only complete trials can be "
                                  "confirmed")
        complete = [by_number[n] for n in numbers]
    chosen = []
    for row in complete[:top] if numbers is None else complete:
        name = finalist_name(review.study, row.number)
        experiment_yaml(row, name, review)  # no overrides record, or an +experiment= trial: fails now, not later
        chosen.append(Finalist(row, name, training_overrides(row, extras, extra_keys)))
    return chosen


# ---------------------------------------------------------------- verdicts

def why_not(e: Experiment) -> str:
    """Experiment.rule_misses, then its accuracy misses folded to one clause per seed."""
    misses = e.rule_misses()
    for r in e.runs:
        own = [m for m in e.accuracy_misses() if m.startswith(f"seed {r.seed} ")]
        low = [a for a in r.last if a < r.target]
        if r.status == "complete" and len(r.test) >= LAST and own:  # each own miss is one low epoch
            misses.append(f"seed {r.seed}: {len(low)} of its last {LAST} epochs under {r.target:.2%} "
                          f"(min {fmt_pct(min(low))})")
        else:
            misses += own
    return "; ".join(misses)


def verdict_table(chosen: Sequence[Finalist], experiments: Sequence[Experiment], review: Review) -> str:
    rows = [[f.name, f"#{f.row.number}", fmt_int(e.first.params), objective_text(f.row, review),
             ", ".join(f"{r.seed}: {fmt_pct(min(r.last, default=None))}" for r in e.runs),
             "PASS" if e.confirmed else "FAIL"]
            for f, e in zip(chosen, experiments)]
    return text_table(["finalist", "trial", "params", f"val objective ({', '.join(review.objective_names)})",
                       f"min of last {LAST} test, per seed", "verdict"], rows)


def save_confirmed(f: Finalist, e: Experiment, review: Review, confirm_dir: Path, directory: Path,
                   argv_text: str) -> Optional[Path]:
    """<directory>/<name>.yaml for a finalist that passed; an older one of ours is replaced, anyone else's kept."""
    path = directory / f"{f.name}.yaml"
    if path.exists():
        if CONFIRMED_MARK not in "".join(path.read_text().splitlines(keepends=True)[:2]):
            print(f"{path} exists and was not written by confirm.py; left as is", flush=True)
            return None
        path.unlink()
    seeds = ", ".join(str(r.seed) for r in e.runs)
    note = (f"{CONFIRMED_MARK}: seeds {seeds} each >= {e.first.target:.2%} test in each of the last {LAST} "
            f"epochs (min {fmt_pct(e.min)}); runs in {confirm_dir / f.name}")
    # The overrides the seeds trained with (the command line's included), so the file says what was confirmed.
    row = dataclasses.replace(f.row, overrides=list(f.overrides))
    return save_experiment(row, f.name, review, directory, note=note, written_by=argv_text)


def write_results(args: argparse.Namespace) -> None:
    """sweep/results.py on the whole confirm dir, into --results (see the module docstring)."""
    from archsearch.report import results

    if args.results == "none":
        return
    out = Path(args.results) if args.results else args.confirm_dir / "RESULTS.md"
    default_out = results.parse_args([]).out
    plot = results.parse_args([]).plot if out.resolve() == Path(default_out).resolve() else out.with_name(
        "acc_vs_params.png")
    argv = ["--confirm-dir", str(args.confirm_dir), "--out", str(out), "--plot", str(plot),
            "--storage", args.storage, "--study", args.study]
    results.main([*argv, *(["--notes", str(args.notes)] if args.notes else [])])


def trained_seeds(row: Row) -> set[int]:
    """The seeds the search trained for the trial: its reseeded `seeds`, else its `seed=` override, else the
    config's default seed."""
    from omegaconf import OmegaConf

    attrs = row.trial.user_attrs if row.trial is not None else {}
    if attrs.get("seeds"):
        return {int(s) for s in attrs["seeds"]}
    given = [o.value() for o in parse_overrides(row.overrides) if o.key_or_group == "seed"]
    return {int(given[-1]) if given else int(OmegaConf.load(CONF / "config.yaml").seed)}


def check_unseen_seeds(chosen: Sequence[Finalist], seeds: Sequence[int]) -> None:
    """Refuse seeds that a finalist's trial trained in the search: its confirmation would repeat what selected it."""
    for f in chosen:
        seen = sorted(trained_seeds(f.row) & set(seeds))
        if seen:
            raise ConfigError(f"--seeds={','.join(map(str, seeds))}: trial #{f.row.number} ({f.name}) trained seed(s) "
                              f"{', '.join(map(str, seen))} in the search; confirm with seeds it never trained, "
                              f"e.g. {','.join(map(str, CONFIRM_SEEDS))}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    import os

    args = parse_args(argv)
    extra_keys = check_extras(args.overrides)
    lanes = lanes_for(args.lanes, len(args.seeds))
    threads = None if "train.threads" in extra_keys else max(1, (os.cpu_count() or 1) // lanes)
    storage = open_readonly(args.storage)
    review = review_study(load_study(storage, args.study, args.storage), args.storage, None)
    review = dataclasses.replace(review, rows=ordered(review.rows, args.pick, review.directions))
    chosen = finalists(review, args.top, args.overrides, extra_keys, args.trials)
    check_unseen_seeds(chosen, args.seeds)
    check_finished_runs(chosen, args.seeds, args.confirm_dir)
    n_complete = sum(r.state == "complete" for r in review.rows)
    which = ("chosen by number" if args.trials is not None else
             f"the top of {n_complete} complete trial(s) by {', '.join(review.objective_names)} "
             f"({', '.join(review.directions)}{'' if args.pick == 'best' else ', ' + args.pick})")
    print(f"study {args.study!r} ({args.storage}): {len(chosen)} finalist(s), {which}; "
          f"seeds {', '.join(map(str, args.seeds))} in {lanes} lane(s)"
          f"{'' if threads is None else f' of {threads} thread(s)'}; runs in {args.confirm_dir}", flush=True)
    experiments = []
    for i, f in enumerate(chosen, 1):
        print(f"finalist {i}/{len(chosen)} {f.name}: trial #{f.row.number}, objective "
              f"{objective_text(f.row, review)}, {fmt_int(f.row.params)} params", flush=True)
        experiments.append(train_seeds(f, args.seeds, args.confirm_dir, args.stop_at_first_miss, lanes, threads))
    print()
    print(verdict_table(chosen, experiments, review))
    # The answer first: what follows writes files, and a failure there must not hide it.
    for f, e in zip(chosen, experiments):
        print("\n".join(verdict_lines(f, e, args.confirm_dir)), flush=True)
    print(flush=True)
    written_by = " ".join(["python sweep/confirm.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    for f, e in zip(chosen, experiments):
        if not e.confirmed:
            print(f"{f.name}: FAIL: {why_not(e)}")
            continue
        path = save_confirmed(f, e, review, args.confirm_dir, args.experiment_dir, written_by)
        if path is not None:
            print(f"{f.name}: PASS; wrote {path}: python sweep/run.py -m +experiment={f.name} "
                  f"seed={','.join(map(str, args.seeds))}")
    write_results(args)


def verdict_lines(f: Finalist, e: Experiment, confirm_dir: Path) -> list[str]:
    """The answer for one finalist: the verdict with the worst seed, its checkpoints, the command that re-measures."""
    worst = min((r for r in e.runs if r.last), key=lambda r: min(r.last), default=None)
    if worst is None:
        low = "no seed finished its last epochs"
    else:
        low = (f"worst seed {worst.seed}: min {fmt_pct(min(worst.last))} over its last {LAST} epochs "
               f"({(min(worst.last) - worst.target) * 100:+.2f} points against {worst.target:.1%})")
    distilled = f", {e.recipe()}" if e.teacher else ""
    lines = [f"{'CONFIRMED' if e.confirmed else 'NOT CONFIRMED'}: {f.name}, {fmt_int(e.first.params)} params"
             f"{distilled}, {len(e.runs)} seeds; {low}"]
    weights = [r.path / "model.pt" for r in e.runs if (r.path / "model.pt").is_file()]
    if weights:
        lines += [f"checkpoints: {confirm_dir / f.name}/seed_*/model.pt",
                  f"re-measure them: python sweep/evaluate.py {' '.join(str(p) for p in weights)}"]
    return lines
