"""The recipe measurements of search v3, side by side: `python bench/recipe.py [--dir results/recipe]`.

Reads runs of one configuration under several recipes (one folder per recipe, each holding confirm.py's
<name>/seed_<k>/metrics.json or single runs' <name>/metrics.json) and prints, per recipe and seed, the last 3 epochs' test accuracy of the weights
as trained and, where the run kept an average of them (train.ema), of the average, and the median seconds per
epoch (wall time on the machine that ran it, under whatever else ran there); then each recipe's mean and minimum
over its seeds. Never trains."""
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=Path("results/recipe"))
    args = p.parse_args()
    print("| recipe | run | seed | epochs | raw weights, last 3 test | min | average (EMA), last 3 test | min | "
          "s/epoch (median) |")
    print("| --- | --- | --- | ---: | --- | ---: | --- | ---: | ---: |")
    summary = []
    for recipe in sorted(d for d in args.dir.iterdir() if d.is_dir()):
        for path in sorted([*recipe.glob("*/seed_*/metrics.json"), *recipe.glob("*/metrics.json")]):
            m = json.loads(path.read_text())
            if m["status"] != "complete":
                continue
            ep = m["epochs"]
            ema = m["config"]["train"].get("ema")
            raw = last3(ep, "raw_test_acc") if ema else last3(ep, "test_acc")
            avg = last3(ep, "test_acc") if ema else None
            summary.append((recipe.name, raw, avg))
            run = path.parts[-3] if path.parent.name.startswith("seed_") else path.parts[-2]
            print(f"| {recipe.name} | {run} | {m['config']['seed']} | {len(ep)} | {fmt(raw)} | "
                  f"{min(raw):.2%} | {fmt(avg)} | {'-' if avg is None else f'{min(avg):.2%}'} | "
                  f"{statistics.median(e['seconds'] for e in ep):.1f} |")
    print()
    print("| recipe | seeds | raw: mean of last 3 | raw: min | average: mean of last 3 | average: min |")
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
