"""Recipes compared on validation, side by side: `python bench/recipe.py [--dir results/recipe_v4/BASE]`.

Reads runs of one configuration under several recipes (a folder per recipe, holding <recipe>/seed_<k>/metrics.json
as bench/recipe_grid.py writes them, or confirm.py's <recipe>/<name>/seed_<k>/metrics.json, or single runs'
<recipe>/<name>/metrics.json) and prints, per recipe and seed, the last 3 epochs' VALIDATION accuracy of the weights
as trained and, where the run kept an average of them (train.ema), of the average, and the median seconds per
epoch (wall time on the machine that ran it, under whatever else ran there); then each recipe's mean and minimum
over its seeds. A recipe is a choice, so it is compared on images held out of training (data.val_size), never on
the test set: a run without a validation split is refused, naming it. Never trains."""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from archsearch.core.records import OBJECTIVE_EPOCHS as LAST


def last3(epochs: list[dict], key: str) -> list[float] | None:
    values = [e.get(key) for e in epochs][-LAST:]
    return None if None in values or not values else values


def fmt(values: list[float] | None) -> str:
    return "-" if values is None else " / ".join(f"{v:.2%}" for v in values)


def runs(folder: Path) -> list[tuple[str, Path, dict]]:
    """(recipe, metrics path, metrics) of every complete run under folder; SystemExit naming a run that has no
    validation split (its only accuracies would be test accuracies)."""
    found = []
    for path in sorted(folder.rglob("metrics.json")):
        m = json.loads(path.read_text())
        if m["status"] != "complete":
            continue
        data = m["config"]["data"]
        if not data["val_size"]:
            raise SystemExit(f"{path}: data.val_size=0, no validation split; recipes are compared on validation "
                             "only (train them with data.val_size=10000, e.g. by bench/recipe_grid.py)")
        recipe = path.parent.relative_to(folder).parts[0]
        found.append((recipe, path, m))
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=Path("results/recipe_v4"),
                   help="a folder of recipe folders (default: %(default)s/<base> as recipe_grid.py writes it)")
    args = p.parse_args()
    if not args.dir.is_dir():
        raise SystemExit(f"--dir {args.dir}: no such folder")
    found = runs(args.dir)
    if not found:
        raise SystemExit(f"--dir {args.dir}: no complete run (metrics.json) under it")
    splits = sorted({(m["config"]["data"]["val_size"], m["config"]["data"]["split_seed"]) for _, _, m in found})
    print("Validation accuracy: " + "; ".join(f"{n:,} images held out of the training set (split_seed {s})"
                                              for n, s in splits) + ". Test accuracy is not read.\n")
    print("| recipe | run | seed | epochs | raw weights, last 3 val | min | average (EMA), last 3 val | min | "
          "s/epoch (median) |")
    print("| --- | --- | --- | ---: | --- | ---: | --- | ---: | ---: |")
    summary = []
    for recipe, path, m in found:
        ep = m["epochs"]
        ema = m["config"]["train"].get("ema")
        raw = last3(ep, "raw_val_acc") if ema else last3(ep, "val_acc")
        avg = last3(ep, "val_acc") if ema else None
        summary.append((recipe, raw, avg))
        run = path.parts[-3] if path.parent.name.startswith("seed_") else path.parts[-2]
        print(f"| {recipe} | {run} | {m['config']['seed']} | {len(ep)} | {fmt(raw)} | "
              f"{min(raw):.2%} | {fmt(avg)} | {'-' if avg is None else f'{min(avg):.2%}'} | "
              f"{statistics.median(e['seconds'] for e in ep):.1f} |")
    print()
    print("| recipe | seeds | raw: mean of last 3 val | raw: min | average: mean of last 3 val | average: min |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in dict.fromkeys(r for r, _, _ in summary):
        rows = [(raw, avg) for r, raw, avg in summary if r == name]
        raws = [a for raw, _ in rows for a in raw]
        avgs = [a for _, avg in rows if avg for a in avg]
        cells = [f"{statistics.mean(raws):.2%}", f"{min(raws):.2%}",
                 f"{statistics.mean(avgs):.2%}" if avgs else "-", f"{min(avgs):.2%}" if avgs else "-"]
        print(f"| {name} | {len(rows)} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
