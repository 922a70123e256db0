"""Which selection rule would have picked what confirmed best? `python bench/selection.py`

For each v2 study (results/search.db) and its finalists that were confirmed over 3 seeds on all 60k images
(results/confirm/<study>_t<N>), compares three ways to rank them on the validation split:
- today's objective: seed 1's mean validation accuracy over the last 3 epochs (the study's value);
- the confirmation rule's shape on validation: seed 1's minimum over the last 3 epochs;
- two seeds (hydra.sweeper.reseed): the mean of seed 1's objective and seed 2's, seed 2 retrained on the same
  split (results/selection/<study>_t<N>/seed_2, made by confirm.py --seeds 2 data.val_size=10000).
Prints each finalist's numbers, then each rule's pick and its rank correlation with the confirmed test mean.
Never trains."""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from scipy.stats import spearmanr

from archsearch.core.records import OBJECTIVE_EPOCHS as LAST


def confirmed(run_dirs: list[Path]) -> tuple[float, float]:
    """(mean over seeds of each seed's last-3 test mean, the lowest of those epochs)."""
    lasts = [[e["test_acc"] for e in json.loads((d / "metrics.json").read_text())["epochs"]][-LAST:]
             for d in run_dirs]
    return statistics.mean(statistics.mean(x) for x in lasts), min(min(x) for x in lasts)


def main() -> None:
    import optuna

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storage", default="sqlite:///results/search.db")
    p.add_argument("--confirm-dir", type=Path, default=Path("results/confirm"))
    p.add_argument("--selection-dir", type=Path, default=Path("results/selection"))
    p.add_argument("--study", action="append", default=[])
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rules = {"seed 1, mean of last 3 (v2)": lambda f: f["mean1"], "seed 1, min of last 3": lambda f: f["min1"],
             "seeds 1-2, mean (v3)": lambda f: f["mean2"]}
    for name in args.study or ["small6k", "tiny4k"]:
        trials = {t.number: t for t in optuna.load_study(study_name=name, storage=args.storage).trials}
        finalists = []
        for folder in sorted(args.confirm_dir.glob(f"{name}_t*")):
            number = int(folder.name.rsplit("_t", 1)[1])
            second = args.selection_dir / folder.name / "seed_2" / "metrics.json"
            seeds = sorted(folder.glob("seed_*"))
            if len(seeds) < 3 or not second.is_file():
                continue
            val = trials[number].user_attrs["val_acc_per_epoch"][-LAST:]
            objective2 = json.loads(second.read_text())["objective"]
            test_mean, test_min = confirmed(seeds)
            finalists.append({"trial": number, "mean1": trials[number].value, "min1": min(val),
                              "seed2": objective2, "mean2": (trials[number].value + objective2) / 2,
                              "test_mean": test_mean, "test_min": test_min})
        print(f"## {name}: {len(finalists)} confirmed finalists\n")
        print("| trial | seed 1 val, mean of last 3 | seed 1 val, min of last 3 | seed 2 val, mean of last 3 | "
              "seeds 1-2 mean | confirmed test mean (3 seeds) | confirmed min |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for f in sorted(finalists, key=lambda f: -f["test_mean"]):
            print(f"| #{f['trial']} | {f['mean1']:.2%} | {f['min1']:.2%} | {f['seed2']:.2%} | {f['mean2']:.3%} | "
                  f"{f['test_mean']:.3%} | {f['test_min']:.2%} |")
        print("\n| rule | picks | its confirmed test mean | best confirmed | Spearman rho with the confirmed mean |")
        print("| --- | --- | ---: | ---: | ---: |")
        best = max(finalists, key=lambda f: f["test_mean"])
        for rule, key in rules.items():
            pick = max(finalists, key=key)
            rho = spearmanr([key(f) for f in finalists], [f["test_mean"] for f in finalists]).statistic
            print(f"| {rule} | #{pick['trial']} | {pick['test_mean']:.3%} | #{best['trial']} {best['test_mean']:.3%} "
                  f"| {rho:+.2f} |")
        print()


if __name__ == "__main__":
    main()
