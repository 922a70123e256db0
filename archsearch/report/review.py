"""Review an Optuna study: leaderboard, pruning savings, plots and the winner as a command.

    python sweep/review.py [--study mnist_20k] [--format table|md|csv|json] [--top 10]
    python sweep/review.py --save-experiment NAME   # the winner as conf/experiment/NAME.yaml
    python sweep/review.py --dashboard [--port 8080]

Reads the storage (read-only for sqlite, so it is safe while a sweep runs) and the jobs' records;
never trains and never writes to the storage. The report goes to outputs/review/<study>/.
The work is done by archsearch/search/storage.py (storage), rows.py and ranking.py (the leaderboard),
tables.py, plots.py, experiment.py and dashboard.py; this file is the command line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from archsearch.report.dashboard import serve_dashboard
from archsearch.core.defaults import CONF, sweep_defaults
from archsearch.core.errors import ConfigError
from archsearch.report.experiment import pick, save_experiment
from archsearch.report.plots import PLOTS
from archsearch.report.ranking import Review, review_study
from archsearch.report.rows import BASELINE_GLOBS, find_baseline
from archsearch.search.storage import load_study, open_readonly
from archsearch.report.tables import render, to_csv, to_markdown


def write_report(review: Review, out: Path, top: int) -> dict[str, Optional[str]]:
    """leaderboard.csv, the plots and report.md in `out`; returns each plot's skip note (None: written)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "leaderboard.csv").write_text(to_csv(review))
    plots = {}
    for name, plot in PLOTS.items():
        (out / name).unlink(missing_ok=True)  # a skipped plot must not leave an older one behind
        plots[name] = plot(review, out / name)
    (out / "report.md").write_text(to_markdown(review, top, plots))
    return plots


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    sweeper = sweep_defaults()
    p = argparse.ArgumentParser(description="Review an Optuna study of the sweep (never writes to it).")
    p.add_argument("--storage", default=sweeper.storage, help="storage URL (default: %(default)s, cwd-relative)")
    p.add_argument("--study", default=sweeper.study_name, help="study name (default: %(default)s)")
    p.add_argument("--top", type=int, default=10, help="leaderboard rows shown (default: %(default)s)")
    p.add_argument("--format", choices=("table", "md", "csv", "json"), default="table", help="stdout format")
    p.add_argument("--out", type=Path, help="report folder (default: outputs/review/<study>)")
    p.add_argument("--baseline", type=Path, help="metrics.json of a baseline run (default: the newest of "
                   + ", ".join(BASELINE_GLOBS) + ")")
    p.add_argument("--save-experiment", metavar="NAME", help="write the winner as conf/experiment/NAME.yaml")
    p.add_argument("--trial", type=int, help="with --save-experiment: save this complete trial, not the winner")
    p.add_argument("--experiment-dir", type=Path, default=CONF / "experiment",
                   help="where --save-experiment writes (default: conf/experiment)")
    p.add_argument("--pruning", action="store_true",
                   help="how well each epoch's objective ranks the complete trials by their final one (Spearman)")
    p.add_argument("--dashboard", action="store_true", help="serve optuna-dashboard on 127.0.0.1 until Ctrl-C")
    p.add_argument("--port", type=int, default=8080, help="dashboard port (default: %(default)s)")
    args = p.parse_args(argv)
    if args.top < 1:
        p.error(f"--top={args.top}: must be >= 1")
    if args.trial is not None and not args.save_experiment:
        p.error("--trial needs --save-experiment NAME")
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    storage = open_readonly(args.storage)
    if args.dashboard:
        return serve_dashboard(storage, args.storage, args.study, args.port)
    study = load_study(storage, args.study, args.storage)
    if args.pruning:
        from archsearch.report.pruning_evidence import evidence_table, pruning_evidence

        return print(evidence_table(pruning_evidence(study.get_trials(deepcopy=False))))
    if args.baseline and not args.baseline.is_file():
        raise ConfigError(f"--baseline={args.baseline}: no such file")
    baseline = args.baseline or find_baseline()
    review = review_study(study, args.storage, baseline)
    if args.save_experiment:  # before the plots: a name that is taken fails at once
        path = save_experiment(pick(review, args.trial), args.save_experiment, review, args.experiment_dir)
        print(f"wrote {path}; confirm: python sweep/run.py -m +experiment={args.save_experiment} seed=101,102,103",
              file=sys.stderr)
    out = args.out or Path("outputs") / "review" / args.study
    plots = write_report(review, out, args.top)
    sys.stdout.write(render(review, args.format, args.top, plots, out))
    print(f"report: {out}/report.md", file=sys.stderr)
