"""Seeds one after another or side by side? `python bench/confirm_lanes.py [--quick]`

Times the same shrunk but real confirmation, fcfree_8k on all 60k training images for 2 epochs over seeds 101-103,
through confirm.py's own runner (archsearch/workflow/confirm.py, train_seeds), with 1, 2 and 3 lanes of
cores // lanes torch threads each, in one run so that all see the same machine. Prints each one's wall time and
training images per second; the rule of --lanes auto (auto_lanes) is set from these figures. Run it on an idle
machine: anything else running skews the comparison. --quick shrinks it to seconds (a smoke test, not a figure)."""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    from archsearch.core.defaults import ROOT
    from archsearch.report.tables import text_table
    from archsearch.workflow.seeds import Finalist, train_seeds

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", default="fcfree_8k", help="conf/experiment/NAME (default: %(default)s)")
    p.add_argument("--seeds", default="101,102,103", help="default: %(default)s")
    p.add_argument("--lanes", default="1,2,3", help="lane counts to compare (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=2, help="default: %(default)s")
    p.add_argument("--quick", action="store_true", help="2,000 images, 1 epoch, seeds 101,102, lanes 1,2: a smoke test")
    p.add_argument("overrides", nargs="*", help="key=value overrides for every run (e.g. data.root=...)")
    args = p.parse_args()
    seeds = [int(s) for s in ("101,102" if args.quick else args.seeds).split(",")]
    lane_counts = [int(n) for n in ("1,2" if args.quick else args.lanes).split(",")]
    epochs = 1 if args.quick else args.epochs
    shrink = ["data.train_subset=2000", "data.test_subset=200"] if args.quick else []
    images = 2_000 if args.quick else 60_000  # OneCycle needs more than the 4 steps of 500 images
    overrides = [f"+experiment={args.experiment}", "sweep=none", f"train.epochs={epochs}", "train.progress=false",
                 "train.checkpoint=false", *shrink, *args.overrides]
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory(dir=ROOT / "outputs" if (ROOT / "outputs").is_dir() else None) as tmp:
        for lanes in lane_counts:
            finalist = Finalist(row=None, name=f"lanes_{lanes}", overrides=overrides)
            started = time.perf_counter()
            experiment = train_seeds(finalist, seeds, Path(tmp), False, lanes, max(1, cores // lanes))
            wall = time.perf_counter() - started
            if len(experiment.runs) != len(seeds) or any(r.status != "complete" for r in experiment.runs):
                raise SystemExit(f"lanes={lanes}: not every seed completed; see the runs' run.log")
            rows.append([str(lanes), str(max(1, cores // lanes)), f"{wall:.1f}",
                         f"{len(seeds) * epochs * images / wall:,.0f}"])
    print(f"{args.experiment}, {len(seeds)} seeds x {epochs} epoch(s) of {images:,} images, {cores} cores")
    print(text_table(["lanes", "threads each", "wall s", "images/s"], rows))


if __name__ == "__main__":
    main()
