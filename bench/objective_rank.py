"""Today's objective against the seed-robust one, on the committed studies: `python bench/objective_rank.py`

For each study, ranks its complete trials by two rules: today's objective (the study's value: the mean of the
last 3 validation epochs, averaged over the trial's seeds when it was reseeded) and the robust one (the minimum
of the last 3 validation epochs over the trial's seeds, train.objective_rule=min; a reseeded trial's later seeds
count where their run's metrics.json can still be read, and the seeds counted are shown). Prints each rule's top
5, then, for the trials confirmed under --confirm-dir (<study>_t<N>/seed_<k>, trained on all 60k), their rank
under each rule beside their worst seed's minimum test accuracy over its last 3 epochs (the confirmation rule's
shape), and each rule's Spearman correlation with it over the confirmed trials (with n). Reads only."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

TOP = 5


def committed_studies() -> list[tuple[str, str]]:
    """(storage, study) of the studies this repository keeps."""
    return [("sqlite:///results/search.db", "small6k"), ("sqlite:///results/search.db", "tiny4k"),
            ("sqlite:///results/search_v3.db", "small6k_v3"), ("sqlite:///results/search_v3.db", "tiny4k_v3"),
            *((f"sqlite:///{db}", "mnist_20k_v2") for db in sorted(Path("results/make_sweep").glob("**/optuna.db")))]


def seed_minima(trial: Any) -> list[float]:
    """Each seed's minimum over its last 3 validation epochs: seed 1's from the trial's record, a later seed's
    from its run's metrics.json when that can still be read."""
    from archsearch.core.records import objective_so_far

    minima = [objective_so_far([{"val_acc": v} for v in trial.user_attrs["val_acc_per_epoch"]], "min")]
    for run_dir in trial.user_attrs.get("seed_run_dirs", [])[1:]:
        metrics = Path(run_dir) / "metrics.json"
        if metrics.is_file():
            minima.append(objective_so_far(json.loads(metrics.read_text())["epochs"], "min"))
    return minima


def ranked(storage: str, study: str) -> Optional[list[dict[str, Any]]]:
    """The study's complete trials with both rules' values and ranks (1 = best); None when it is not stored there."""
    import optuna

    from archsearch.core.records import combine
    from archsearch.search.storage import open_readonly

    try:
        trials = optuna.load_study(study_name=study, storage=open_readonly(storage)).trials
    except KeyError:
        return None
    rows = []
    for t in trials:
        if t.state.name != "COMPLETE" or t.value is None or not t.user_attrs.get("val_acc_per_epoch"):
            continue
        minima = seed_minima(t)
        rows.append({"trial": t.number, "mean": t.value, "min": combine(minima, "min"), "seeds_min": len(minima),
                     "seeds": len(t.user_attrs.get("seeds", [1]))})
    for rule in ("mean", "min"):
        for rank, row in enumerate(sorted(rows, key=lambda r: -r[rule]), 1):
            row[f"rank_{rule}"] = rank
    return rows


def confirmed_min(folder: Path) -> Optional[tuple[float, int]]:
    """(the worst seed's minimum test accuracy over its last 3 epochs, seeds) of a confirmation, as confirm.py
    judges it (archsearch/report/acceptance.py, Experiment.min); None without a complete seed."""
    from archsearch.report.acceptance import Experiment, read_run

    runs = [r for r in map(read_run, sorted(folder.glob("seed_*/metrics.json"))) if r.status == "complete"]
    return (Experiment(folder.name, sorted(runs, key=lambda r: r.seed)).min, len(runs)) if runs else None


def report(storage: str, study: str, rows: list[dict[str, Any]], confirm_dir: Path) -> None:
    from scipy.stats import spearmanr

    print(f"## {study} ({storage}): {len(rows)} complete trials\n")
    for rule, title in (("mean", "today's objective (mean of last 3)"), ("min", "robust (min of last 3)")):
        print(f"Top {TOP} by {title}:\n")
        print("| rank | trial | mean of last 3 | min of last 3 | seeds (min over) |")
        print("| ---: | --- | ---: | ---: | --- |")
        for r in sorted(rows, key=lambda r: r[f"rank_{rule}"])[:TOP]:
            print(f"| {r[f'rank_{rule}']} | #{r['trial']} | {r['mean']:.3%} | {r['min']:.2%} | "
                  f"{r['seeds']} ({r['seeds_min']}) |")
        print()
    by_number = {r["trial"]: r for r in rows}
    confirmed = []
    for folder in sorted(confirm_dir.glob(f"{study}_t*")):
        number = folder.name.removeprefix(f"{study}_t")
        found = confirmed_min(folder)
        if number.isdigit() and int(number) in by_number and found:
            confirmed.append((by_number[int(number)], *found))
    if not confirmed:
        print(f"No confirmation of its trials under {confirm_dir}.\n")
        return
    print("| confirmed trial | rank by mean | rank by min | confirmed worst seed's min of last 3 test | seeds |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r, low, seeds in sorted(confirmed, key=lambda c: -c[1]):
        print(f"| #{r['trial']} | {r['rank_mean']} | {r['rank_min']} | {low:.2%} | {seeds} |")
    lows = [low for _, low, _ in confirmed]
    for rule in ("mean", "min"):
        values = [r[rule] for r, _, _ in confirmed]
        rho = spearmanr(values, lows).statistic if len(confirmed) >= 3 else float("nan")
        print(f"\nSpearman rho, {rule} rule against the confirmed worst min: {rho:+.2f} (n={len(confirmed)})", end="")
    print("\n")


def main() -> None:
    import optuna

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", action="append", default=[], metavar="STORAGE::NAME",
                   help="a study to read (repeatable; default: the committed ones)")
    p.add_argument("--confirm-dir", type=Path, default=Path("results/confirm"))
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bad = next((s for s in args.study if "::" not in s), None)
    if bad is not None:
        from archsearch.core.errors import ConfigError

        raise ConfigError(f"--study={bad!r}: give STORAGE::NAME, e.g. sqlite:///results/search.db::small6k")
    studies = [tuple(s.rsplit("::", 1)) for s in args.study] or committed_studies()
    for storage, study in studies:
        rows = ranked(storage, study)
        if rows is None:
            print(f"{study} ({storage}): not there, skipped\n")
        else:
            report(storage, study, rows, args.confirm_dir)


if __name__ == "__main__":
    from archsearch.cli import report_errors

    report_errors(main)
