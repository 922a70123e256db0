"""Which selection rule predicts best what a trial does on fresh seeds? `python bench/selection.py`

A confirmation on all 60k images cannot judge a rule on validation: its validation images are training images.
So the rules are judged against VAL-CONFIRMATIONS: the same trials re-run with fresh seeds on the search's own
split (50k training images, the 10k held out), whose last epochs' validation accuracies are clean. For each study
and each of its trials with val-confirmations under --val-confirm-dir (<study>_t<N>/seed_<k>) and a second seed
under --selection-dir (<study>_t<N>/seed_2), compares four ways to rank them at search time:
- seed 1's mean validation accuracy over the last 3 epochs (the v2 objective, the study's value);
- seed 1's minimum over the last 3 epochs (train.objective_rule=min);
- the mean of seed 1's and seed 2's means (hydra.sweeper.reseed, v3);
- the lower of seed 1's and seed 2's minima (the robust objective over two seeds);
and prints each rule's pick and its rank correlation with the val-confirmed worst seed's minimum over its last 3
epochs (the confirmation rule's shape) and with the val-confirmed mean. The runs it needs (seed 2 is one of the
rules' own inputs, so the judges' seeds are others):

    T="--storage sqlite:///results/search.db --results none --study small6k --trials 35,79,34,37"
    M="train.threads=1 train.progress=false data.val_size=10000 data.split_seed=0"
    python sweep/confirm.py $T --seeds 2 --confirm-dir results/selection $M
    python sweep/confirm.py $T --seeds 201,202,203 --confirm-dir results/val_confirm $M

A run without a validation split, or on another split than the trial's, is refused, naming it. Never trains."""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from scipy.stats import spearmanr

from archsearch.core.records import OBJECTIVE_EPOCHS as LAST

RULES = {"seed 1, mean of last 3 (v2)": lambda f: f["mean1"], "seed 1, min of last 3": lambda f: f["min1"],
         "seeds 1-2, mean (v3)": lambda f: (f["mean1"] + f["mean2"]) / 2,
         "seeds 1-2, min of last 3": lambda f: min(f["min1"], f["min2"])}


def last_val(path: Path, split: tuple[int, int]) -> list[float]:
    """A run's last 3 validation accuracies; SystemExit naming it when it is not on `split` (val_size, split_seed)."""
    m = json.loads(path.read_text())
    data = m["config"]["data"]
    if (data["val_size"], data["split_seed"]) != split or data.get("train_subset"):
        raise SystemExit(f"{path}: data.val_size={data['val_size']}, data.split_seed={data['split_seed']}, "
                         f"data.train_subset={data.get('train_subset')}: not the search's split (val_size={split[0]}, "
                         f"split_seed={split[1]}, all images), so its validation accuracies are not held out alike")
    return [e["val_acc"] for e in m["epochs"]][-LAST:]


def main() -> None:
    import optuna

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storage", default="sqlite:///results/search.db")
    p.add_argument("--val-confirm-dir", type=Path, default=Path("results/val_confirm"))
    p.add_argument("--selection-dir", type=Path, default=Path("results/selection"))
    p.add_argument("--seeds", default="201,202,203", help="the val-confirmations' seeds (default: %(default)s)")
    p.add_argument("--study", action="append", default=[])
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in args.study or ["small6k", "tiny4k"]:
        trials = {t.number: t for t in optuna.load_study(study_name=name, storage=args.storage).trials}
        finalists = []
        for folder in sorted(args.val_confirm_dir.glob(f"{name}_t*")):
            number = int(folder.name.rsplit("_t", 1)[1])
            runs = [folder / f"seed_{k}" / "metrics.json" for k in seeds]
            second = args.selection_dir / folder.name / "seed_2" / "metrics.json"
            if not all(r.is_file() for r in [*runs, second]):
                continue
            attrs = trials[number].user_attrs
            split = (int(attrs["data.val_size"]), int(attrs.get("data.split_seed", 0)))  # stored as text
            val1 = attrs["val_acc_per_epoch"][-LAST:]
            val2 = last_val(second, split)
            judged = [last_val(r, split) for r in runs]
            finalists.append({"trial": number, "mean1": statistics.mean(val1), "min1": min(val1),
                              "mean2": statistics.mean(val2), "min2": min(val2),
                              "judged_min": min(min(v) for v in judged),
                              "judged_mean": statistics.mean(statistics.mean(v) for v in judged)})
        print(f"## {name}: {len(finalists)} trials val-confirmed over seeds {args.seeds}\n")
        if len(finalists) < 2:
            print("Too few to rank; the runs it needs are listed at the top of bench/selection.py.\n")
            continue
        print("| trial | seed 1 val, mean of last 3 | seed 1 min | seed 2 val, mean of last 3 | seed 2 min | "
              "val-confirmed mean | val-confirmed worst seed's min |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for f in sorted(finalists, key=lambda f: -f["judged_min"]):
            print(f"| #{f['trial']} | {f['mean1']:.2%} | {f['min1']:.2%} | {f['mean2']:.2%} | {f['min2']:.2%} | "
                  f"{f['judged_mean']:.3%} | {f['judged_min']:.2%} |")
        best = max(finalists, key=lambda f: f["judged_min"])
        print(f"\nThe best val-confirmed worst min: #{best['trial']} {best['judged_min']:.2%}.\n")
        print(f"| rule | picks | its val-confirmed worst min | Spearman rho with the worst min (n={len(finalists)}) | "
              "with the mean |")
        print("| --- | --- | ---: | ---: | ---: |")
        for rule, key in RULES.items():
            pick = max(finalists, key=key)
            ranks = [key(f) for f in finalists]
            rho_min = spearmanr(ranks, [f["judged_min"] for f in finalists]).statistic
            rho_mean = spearmanr(ranks, [f["judged_mean"] for f in finalists]).statistic
            print(f"| {rule} | #{pick['trial']} | {pick['judged_min']:.2%} | {rho_min:+.2f} | {rho_mean:+.2f} |")
        print()


if __name__ == "__main__":
    main()
