"""Training images/second of three loops on the same model, measured side by side in one process.

(a) the tutorial-style loop of the seed code: torchvision.datasets.MNIST + DataLoader(shuffle=True) +
    per-sample PIL transforms, plain torch.nn.Dropout, SGD, fp32, NCHW;
(b) this project's trainer: `train()` itself, one epoch on --images images;
(c) the bare eager ceiling: pre-normalized batches already in memory, no augmentation.

    python bench/bench.py [--images N] [--repeats R] [--workers 0,2] [hydra overrides]

Defaults: the documented Net (model=baseline), batch 64, data.rotation=7 (the seed's
RandomRotation(7)), 7 repeats. Measurements are interleaved (a, b, c, c, b, a, a, b, c, ...) and the
median is kept, because this machine's speed drifts and other processes share the cores. Prints a
Markdown table for docs/BENCHMARKS.md. A benchmark, not a test: nothing here asserts a speed.

    python bench/bench.py --launchers [--trials N] [--repeats R] [hydra overrides]

times whole sweeps instead (`run.py -m`, N one-epoch trials of 10k images into a throw-away study):
one process with one thread, one process with a thread per core, and a joblib process per core
with one thread each. That is the choice between `train.threads` and `hydra/launcher=joblib`.

    python bench/bench.py --search [--repeats R] [--budget-epochs B] [--keep-studies DIR] [hydra overrides]

measures search quality instead: the project's default sampler and pruner (TPE + median) against random
sampling without pruning, each for R seeds (1..R) of real sweeps (`run.py -m`, interleaved) with the same budget
of B trained epochs (hydra.sweeper.budget.epochs), on a cheap proxy of sweep=default: 5-epoch trials on 8,000
training and 2,000 validation images. Prints, per strategy, the best validation objective of the trials
completed within 25/50/100% of the budget (median over the seeds), and a line comparing the two. The studies
are throw-away unless --keep-studies keeps their database (DIR/bench.db) to look at.

    python bench/bench.py --parts [--repeats R] [--images N] [hydra overrides]

times the parts of a CPU step that the trainer does its own way, each against torch's plain way, on
fcfree_5k5's shapes (median ms per call over R interleaved rounds), and the bare loop (c) on N images with and
without train()'s allocator setting, each in a fresh process (system time and page faults).

Each mode is a module named for it: bench_loops.py, bench_launchers.py, bench_search.py, bench_parts.py (what they
share: bench_utils.py). This file parses the command line and runs the one asked for.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench_launchers import bench_launchers
from bench_loops import bench_loops
from bench_parts import bench_parts
from bench_search import SEARCH_BUDGET, bench_search


# The loops' per-repeat ratios scattered by up to 10% here (the machine's speed drifts by tens of percent
# within minutes), too much for a median of 3; a repeat of the loops takes about 15 s, one of the sweeps minutes.
LOOP_REPEATS, SWEEP_REPEATS = 7, 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12_800, help="training images per timed run (default 12800)")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"interleaved runs per loop or strategy, the median is kept (default {LOOP_REPEATS} for "
                             f"the loops, {SWEEP_REPEATS} with --launchers or --search)")
    parser.add_argument("--workers", type=lambda s: [int(w) for w in s.split(",")], default=[0, 2],
                        help="DataLoader num_workers values to time for (a), comma-separated (default 0,2)")
    parser.add_argument("--launchers", action="store_true", help="time whole sweeps under each launcher set-up")
    parser.add_argument("--trials", type=int, default=4, help="with --launchers: trials per sweep (default 4)")
    parser.add_argument("--search", action="store_true",
                        help="compare the default sampler + pruner with random sampling at an equal epoch budget")
    parser.add_argument("--budget-epochs", type=int, default=SEARCH_BUDGET,
                        help=f"with --search: trained epochs per sweep (default {SEARCH_BUDGET})")
    parser.add_argument("--parts", action="store_true",
                        help="time the trainer's own CPU parts against torch's plain ones, and its allocator setting")
    parser.add_argument("--keep-studies", type=Path, default=None,
                        help="with --search: keep the studies in DIR/bench.db (default: throw-away)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=fcfree train.batch_size=128")
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = SWEEP_REPEATS if args.search or args.launchers else LOOP_REPEATS
    if args.repeats < 1 or args.trials < 1 or any(w < 0 for w in args.workers):
        parser.error("--repeats and --trials must be >= 1 and --workers values >= 0")
    if args.search + args.launchers + args.parts > 1:
        parser.error("--search, --launchers and --parts: choose one")

    from archsearch.cli import report_errors

    mode = (bench_search if args.search else bench_launchers if args.launchers else bench_parts if args.parts
            else bench_loops)
    report_errors(lambda: mode(args))


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    main()
