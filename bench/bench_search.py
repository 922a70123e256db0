"""`bench.py --search`: the default sampler and pruner against random sampling at an equal epoch budget."""
from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from bench_utils import QUIET_RUN, conditions, run_sweep, say


# --search: two strategies, the same budget of trained epochs, over seeds. The proxy: sweep=default's space and
# recipe, on 8,000 training + 2,000 validation images and 5-epoch trials. OneCycle peaks by 0.35 of a run, so the
# median pruner's warm-up scales from 7 of 15 epochs (sweep=default) to 3 of 5, and TPE's random start-up from 10
# to 5 trials, of the ~12 that a sweep of the default budget trains.
SEARCH_PROXY = ["sweep=default", "data.train_subset=10000", "data.val_size=2000", "data.test_subset=1000",
                "train.epochs=5", "constraints.max_epochs=5", *QUIET_RUN]
SEARCH_THREADS = 2  # per trial, capped at the cores: the sweeps run one at a time, and a ~5k-param net gains
# little past 2 threads (bench.py --launchers)
STRATEGIES = {  # label -> its overrides (the user's come after and win)
    "default (tpe + median)": ["hydra/sweeper/sampler=tpe", "hydra/sweeper/pruner=median",
                               "hydra.sweeper.warmup_epochs=3", "hydra.sweeper.sampler.n_startup_trials=5"],
    "random without pruning": ["hydra/sweeper/sampler=random", "hydra/sweeper/pruner=none"],
}
# 6 sweeps (2 strategies x 3 seeds) of 60 epochs fit 30 minutes on this project's 2-core CPU: a 5-epoch proxy
# trial took 10-34 s by its model's MACs (21 s mean) on 1 thread while other jobs kept both cores busy (load 3),
# a sweep's start and pre-flight ~10 s: 6 x (12 x 21 + 10) s = 26 min; 2 threads on an idle machine take less.
SEARCH_BUDGET = 60
FRACTIONS = (0.25, 0.5, 1.0)


@dataclass
class SearchRun:
    """One sweep of one strategy and seed, as read back from its study."""

    best: list[Optional[float]]  # best complete value within each of FRACTIONS of the budget; None: none yet
    trials: int  # trials that trained (rejected candidates and duplicates trained nothing)
    pruned: int  # by the pruner, or cut short by the budget
    epochs: int  # trained epochs in all
    trial_epochs: set[int]  # train.epochs of its trials, as the jobs were given it (the proxy's, unless overridden)


def read_search_run(url: str, study_name: str, budget: int) -> SearchRun:
    """The best-so-far curve of a finished sweep's study: in trial order, the trained epochs summed so far, and the
    best value among COMPLETE trials (a pruned trial's value is a partial objective and never counts)."""
    import optuna

    from archsearch.core.errors import ConfigError
    from archsearch.search.storage import load_study, open_readonly

    study = load_study(open_readonly(url), study_name, url)
    if [d.name for d in study.directions] != ["MAXIMIZE"]:
        raise ConfigError(f"bench --search: study {study_name} is not maximizing one objective; the benchmark "
                          "compares sweeps of validation accuracy (not sweep=pareto)")
    spent, curve, trials, pruned = 0, [], 0, 0  # curve: (epochs spent when the trial ended, its complete value)
    trial_epochs = set()
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        epochs = t.user_attrs.get("epochs_trained") or 0
        spent += epochs
        trials += epochs > 0
        pruned += t.user_attrs.get("status") == "pruned"
        want = int(t.user_attrs.get("train.epochs", 0))  # a fixed value: the sweeper records it as a string
        trial_epochs.add(want)
        if t.state == optuna.trial.TrialState.COMPLETE:
            if epochs != want:  # so the trial trained what its job was told: the proxy's epochs, not the sweep's 15
                raise ConfigError(f"bench --search: trial #{t.number} of {study_name} completed {epochs} epochs, "
                                  f"not train.epochs={want}")
            curve.append((spent, t.value))

    def best(limit: float) -> Optional[float]:
        values = [v for at, v in curve if at <= limit]
        return max(values) if values else None

    return SearchRun([best(f * budget) for f in FRACTIONS], trials, pruned, spent, trial_epochs)


def median_or_none(values: list[Optional[float]]) -> Optional[float]:
    """The median, where None (no complete trial yet) ranks below every value: it is the median when the middle
    falls on it."""
    ranked = sorted(values, key=lambda v: (v is not None, v or 0))
    mid = ranked[(len(ranked) - 1) // 2: len(ranked) // 2 + 1]
    return None if None in mid else statistics.mean(mid)


def fmt_value(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.4f}"


def bench_search(args: argparse.Namespace) -> None:
    """Best validation objective at 25/50/100% of an equal epoch budget: the default strategy against random."""
    import tempfile

    from archsearch.core.errors import ConfigError
    from archsearch.core.machine import machine_info

    if args.budget_epochs < 1:
        raise ConfigError(f"--budget-epochs={args.budget_epochs}: must be >= 1")
    if args.keep_studies and (args.keep_studies / "bench.db").exists():
        raise ConfigError(f"--keep-studies={args.keep_studies}: already holds bench.db; a sweep there would go on "
                          "with its study instead of starting afresh: choose another directory")
    cores = os.cpu_count() or 1
    proxy = [*SEARCH_PROXY, f"train.threads={min(SEARCH_THREADS, cores)}"]
    budget = [f"hydra.sweeper.budget.epochs={args.budget_epochs}", "hydra.sweeper.budget.minutes=null",
              "hydra.sweeper.n_trials=100000"]  # never binds: a rejected candidate is a trial that trains nothing
    seeds = list(range(1, args.repeats + 1))
    runs: dict[str, list[SearchRun]] = {name: [] for name in STRATEGIES}
    load_start, t0 = os.getloadavg()[0], time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        where = args.keep_studies or Path(scratch)
        where.mkdir(parents=True, exist_ok=True)
        tmp = str(where.resolve())
        for seed in seeds:
            for name, extra in STRATEGIES.items():
                study = f"{name.split()[0]}_{seed}"
                seconds = run_sweep([*proxy, *extra, *args.overrides, *budget,
                                     f"hydra.sweeper.sampler.seed={seed}"], tmp, "--search", study)
                run = read_search_run(f"sqlite:///{tmp}/bench.db", study, args.budget_epochs)
                runs[name].append(run)
                say(f"seed {seed}  {name}: best {' / '.join(fmt_value(v) for v in run.best)} at 25/50/100%, "
                    f"{run.trials} trials ({run.pruned} pruned), {run.epochs} epochs, {seconds:.0f} s")
    minutes = (time.perf_counter() - t0) / 60
    print_search(args, runs, proxy, seeds, minutes, cores, load_start, machine_info("cpu"))


def print_search(args: argparse.Namespace, runs: dict[str, list[SearchRun]], proxy: list[str], seeds: list[int],
                 minutes: float, cores: int, load_start: float, machine: dict[str, Any]) -> None:
    """The docs/BENCHMARKS.md block: what ran, the table, and the comparison as the last line."""
    n, b = len(seeds), args.budget_epochs
    epochs = "/".join(map(str, sorted(set().union(*(r.trial_epochs for rs in runs.values() for r in rs)))))
    print(f"search quality: {n} sweep{'s' if n > 1 else ''} per strategy (sampler seeds "
          f"{', '.join(map(str, seeds))}), interleaved, each a fresh process and throw-away study with a budget of "
          f"{b} trained epochs (hydra.sweeper.budget.epochs) in {epochs}-epoch trials; {minutes:.1f} min in all")
    print(f"proxy of sweep=default (its space and recipe): {' '.join([*proxy, *args.overrides])}; "
          "data.train_subset includes the validation split")
    for name, extra in STRATEGIES.items():
        print(f"{name}: {' '.join(extra)}")
    print("(the pruner's warm-up and TPE's random start-up are scaled to 5-epoch trials from 7 of 15 epochs and 10 "
          "trials in sweep=default. TPE draws its start-up from a random sampler of the same seed, and the median "
          "pruner waits for 5 complete trials: the two strategies share their first 5 trials, and part after)")
    print(conditions(machine, cores, load_start))
    print()
    print("| strategy | best@25% | best@50% | best@100% | trials | pruned | runs (best@100%) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    medians = {}
    for name, rs in runs.items():
        medians[name] = [median_or_none([r.best[i] for r in rs]) for i in range(len(FRACTIONS))]
        print(f"| {name} | {' | '.join(fmt_value(v) for v in medians[name])} "
              f"| {statistics.median(r.trials for r in rs):g} | {statistics.median(r.pruned for r in rs):g} "
              f"| {' '.join(fmt_value(r.best[-1]) for r in rs)} |")
    print()
    print("best@X% = the best validation objective among the trials completed within X% of the budget, median over "
          "the seeds (- = no complete trial yet); pruned trials never count. trials: trained trials per sweep, "
          "pruned: of those, stopped by the pruner or by the budget (medians)")
    (a, va), (r, vr) = ((name, medians[name][-1]) for name in STRATEGIES)
    if va is None or vr is None:
        verdict = "no comparison: a strategy has no complete trial"
    elif va == vr:
        verdict = "even"
    else:
        lead = a if va > vr else r
        verdict = f"{lead.split()[0]} ahead by {abs(va - vr) * 100:.2f} points"
    print(f"{a} vs {r} at 100% of {b} epochs: {fmt_value(va)} vs {fmt_value(vr)} (median of {n} "
          f"seed{'s' if n > 1 else ''}): {verdict}")
