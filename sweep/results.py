"""RESULTS.md from the seed confirmations (`python sweep/results.py`), never typed by hand.

Scans outputs/confirm/<model.name>/seed_<k>/metrics.json, written by
`python sweep/run.py -m +experiment=NAME seed=1,2,3`, and says for each experiment and for the
documented baseline whether it is CONFIRMED: for every seed, test accuracy >= constraints.target_acc
in each of the last 3 epochs; no fully connected layer; under constraints.max_params; within
constraints.max_epochs. With --study, adds what the sweeps cost. Reads runs; never trains.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional, Sequence

from sweep.defaults import ROOT, sweep_defaults
from sweep.errors import ConfigError
from sweep.machine import cpu_name
from sweep.plots import BASELINE_STYLE, accuracy_axis, params_axis, pyplot, reference_lines, save_figure
from sweep.ranking import review_study
from sweep.rows import BASELINE_LABEL, STATES, read_metrics
from sweep.studyread import load_study, open_readonly
from sweep.tables import fmt_duration, fmt_int, fmt_macs, fmt_pct, md_table, run_command

LAST = 3  # the acceptance rule: the target in each of the last 3 epochs, not one lucky epoch
MIN_SEEDS = 3  # one seed is a result; confirmation needs repeats
BASELINE = "baseline"  # model.name of the documented Net (conf/model/baseline.yaml)
# The project's targets, (name, fewer params than, at most epochs): the assignment's, then smaller ones.
TARGETS = (("required", 20_000, 20), ("goal", 6_000, 15), ("stretch", 4_000, 15))


@dataclass
class Run:
    path: Path  # the run directory
    name: str  # model.name
    seed: int
    status: str
    reason: Optional[str]
    params: int
    macs: int
    fc_layers: list[str]
    test: list[float]  # test accuracy per epoch
    first_at_target: Optional[int]
    wall_s: Optional[float]
    target: float
    max_params: int
    max_epochs: int
    overrides: list[str]  # the job's overrides without seed=, from .hydra/overrides.yaml

    @property
    def last(self) -> list[float]:
        return self.test[-LAST:]


def read_run(metrics_path: Path) -> Run:
    """A run from its metrics.json and, for the command that made it, its .hydra/overrides.yaml."""
    from omegaconf import OmegaConf

    m = read_metrics(metrics_path)
    cfg, c = m["config"], m["config"]["constraints"]
    overrides_yaml = metrics_path.parent / ".hydra" / "overrides.yaml"
    overrides = list(OmegaConf.load(overrides_yaml)) if overrides_yaml.is_file() else []
    return Run(path=metrics_path.parent, name=cfg["model"]["name"], seed=cfg["seed"], status=m["status"],
               reason=m.get("reason"), params=m["params"], macs=m["macs"], fc_layers=m["fc_layers"],
               test=[e["test_acc"] for e in m["epochs"]], first_at_target=m.get("first_epoch_at_target"),
               wall_s=m.get("wall_time_s"), target=c["target_acc"], max_params=c["max_params"],
               max_epochs=c["max_epochs"], overrides=[o for o in overrides if not o.startswith("seed=")])


@dataclass
class Experiment:
    name: str
    runs: list[Run]  # sorted by seed

    @property
    def label(self) -> str:
        return BASELINE_LABEL if self.name == BASELINE else self.name

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def seed_means(self) -> list[float]:
        return [statistics.mean(r.last) for r in self.runs if r.last]

    @property
    def mean(self) -> Optional[float]:
        """Mean over seeds of each seed's last-3-epoch mean."""
        return statistics.mean(self.seed_means) if self.seed_means else None

    @property
    def min(self) -> Optional[float]:
        """The lowest test accuracy of any seed in its last 3 epochs: the rule holds iff min >= target."""
        return min((a for r in self.runs for a in r.last), default=None)

    def accuracy_misses(self) -> list[str]:
        """Why the accuracy rule fails (empty: every seed >= target in each of its last 3 epochs)."""
        misses = []
        for r in self.runs:
            if r.status != "complete":
                misses.append(f"seed {r.seed} {r.status}" + (f" ({r.reason})" if r.reason else ""))
            elif len(r.test) < LAST:
                misses.append(f"seed {r.seed} trained {len(r.test)} epochs, fewer than {LAST}")
            else:
                low = [(len(r.test) - LAST + i + 1, a) for i, a in enumerate(r.last) if a < r.target]
                misses += [f"seed {r.seed} has {fmt_pct(a)} at epoch {e}, under {r.target:.1%}" for e, a in low]
        return misses

    def rule_misses(self) -> list[str]:
        """Why the other rules fail: FC layer, budget, epochs, seeds, runs that disagree."""
        r, misses = self.first, []
        if r.fc_layers:
            misses.append(f"it has a fully connected layer ({', '.join(r.fc_layers)}), which the rules forbid")
        if r.params >= r.max_params:
            misses.append(f"{r.params:,} params, not under constraints.max_params={r.max_params:,}")
        longest = max(len(run.test) for run in self.runs)
        if longest > r.max_epochs:
            misses.append(f"{longest} epochs, over constraints.max_epochs={r.max_epochs}")
        if len(self.runs) < MIN_SEEDS:
            misses.append(f"{len(self.runs)} seed(s); confirmation needs {MIN_SEEDS}")
        if len({(run.params, tuple(run.fc_layers)) for run in self.runs}) > 1:
            misses.append("its seeds trained different models (params differ); re-run them with one config")
        return misses

    @property
    def confirmed(self) -> bool:
        return not self.accuracy_misses() and not self.rule_misses()

    def verdict(self) -> str:
        r, misses = self.first, self.accuracy_misses()
        reached = f"every seed reaches {r.target:.1%} in each of the last {LAST} epochs (min {fmt_pct(self.min)})"
        if self.confirmed:
            return (f"**CONFIRMED**: FC-free, {r.params:,} < {r.max_params:,} params, "
                    f"{max(len(x.test) for x in self.runs)} <= {r.max_epochs} epochs; {reached}.")
        below = ["accuracy rule fails: " + "; ".join(misses)] if misses else []
        text = f"**NOT CONFIRMED**: {'; '.join(self.rule_misses() + below)}."
        return text if misses else f"{text} Accuracy alone passes: {reached}."

    def commands(self) -> list[str]:
        """Commands that reproduce the runs found: one per distinct set of overrides, with their seeds."""
        by_overrides: dict[tuple[str, ...], list[int]] = {}
        for r in self.runs:
            by_overrides.setdefault(tuple(r.overrides) or (f"+experiment={self.name}",), []).append(r.seed)
        return [run_command([*o, "seed=" + ",".join(map(str, sorted(seeds)))], multirun=True)
                for o, seeds in by_overrides.items()]


def find_experiments(confirm_dir: Path) -> list[Experiment]:
    """Every <confirm_dir>/*/seed_*/metrics.json grouped by model.name; the baseline first, then by params."""
    paths = sorted(Path(confirm_dir).glob("*/seed_*/metrics.json"))
    if not paths:
        raise ConfigError(f"--confirm-dir={confirm_dir}: no */seed_*/metrics.json there; confirm a configuration "
                          "first: python sweep/run.py -m +experiment=NAME seed=1,2,3")
    groups: dict[str, list[Run]] = {}
    for path in paths:
        run = read_run(path)
        groups.setdefault(run.name, []).append(run)
    experiments = [Experiment(name, sorted(runs, key=lambda r: r.seed)) for name, runs in groups.items()]
    return sorted(experiments, key=lambda e: (e.name != BASELINE, e.first.params or 0, e.name))


# ---------------------------------------------------------------- the report

def machine() -> str:
    """CPU model and core count of this machine, for the line that says where wall times were measured."""
    return f"{cpu_name() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}"


def summary_table(experiments: Sequence[Experiment]) -> str:
    headers = ["experiment", "params", "MACs", "FC-free", "epochs", "seeds", f"mean last-{LAST} test",
               f"min last-{LAST} test", f"first epoch >={experiments[0].first.target:.1%} (per seed)",
               "wall time per run", "verdict"]
    rows = []
    for e in experiments:
        r = e.first
        walls = [x.wall_s for x in e.runs if x.wall_s is not None]
        rows.append([e.label, fmt_int(r.params), fmt_macs(r.macs), "no" if r.fc_layers else "yes",
                     "/".join(sorted({str(len(x.test)) for x in e.runs})), ", ".join(str(x.seed) for x in e.runs),
                     fmt_pct(e.mean), fmt_pct(e.min), " / ".join(str(x.first_at_target or "-") for x in e.runs),
                     fmt_duration(statistics.mean(walls)) if walls else "-",
                     "CONFIRMED" if e.confirmed else "not confirmed"])
    return md_table(headers, rows)


def targets_table(experiments: Sequence[Experiment]) -> str:
    """Each target, the confirmed configurations that meet it, and the unconfirmed ones that tried."""
    rows = []
    for name, max_params, max_epochs in TARGETS:
        within = [e for e in experiments if not e.first.fc_layers and e.first.params < max_params
                  and max(len(r.test) for r in e.runs) <= max_epochs]
        met = ", ".join(f"{e.name} ({e.first.params:,} params)" for e in within if e.confirmed) or "**not met**"
        tried = ", ".join(f"{e.name} (min {fmt_pct(e.min)}, {len(e.runs)} seed(s))" for e in within
                          if not e.confirmed) or "-"
        rows.append([name, f"< {max_params:,}", f"<= {max_epochs}", met, tried])
    return md_table(["target", "params", "epochs", "met by (confirmed)", "tried, not confirmed"], rows)


def experiment_section(e: Experiment) -> list[str]:
    headers = ["seed", f"test acc, last {LAST} epochs", "mean", "min", f"first epoch >={e.first.target:.1%}",
               "epochs", "wall time", "status", "run directory"]
    rows = [[str(r.seed), " / ".join(fmt_pct(a) for a in r.last) or "-",
             fmt_pct(statistics.mean(r.last)) if r.last else "-", fmt_pct(min(r.last, default=None)),
             str(r.first_at_target or "-"), str(len(r.test)), fmt_duration(r.wall_s), r.status, f"`{r.path}`"]
            for r in e.runs]
    return [f"### {e.label}", "", e.verdict(), "", md_table(headers, rows), "", "Reproduce:", "", "```bash",
            *e.commands(), "```", ""]


def sweep_cost(storage: str, studies: Sequence[str]) -> list[str]:
    """Trials per state, epochs trained against the full budget, and time, per study (read-only)."""
    store = open_readonly(storage)
    summaries = {name: review_study(load_study(store, name, storage), storage, None).summary for name in studies}
    # Only the Optuna 5 sweeper skips duplicates: no column of zeros for the studies from before it.
    states = [k for k in STATES if k != "duplicate" or any(s.counts[k] for s in summaries.values())]
    headers = ["study", "trials", *states, "epochs trained", "of n x max", "saved", "sum of trial times",
               "first start to last finish"]
    rows = [[name, str(s.n_trials), *(str(s.counts[k]) for k in states), str(s.epochs_trained),
             str(s.epochs_budget), f"{s.saving:.1%}", fmt_duration(s.trial_time_s), fmt_duration(s.span_s)]
            for name, s in summaries.items()]
    return ["## Sweep cost", "", f"From `{storage}`. Pruned trials stop early and rejected ones never train; "
            "trial times run from a trial's start to its finish, startup included.", "", md_table(headers, rows), ""]


def plot(experiments: Sequence[Experiment], path: Path) -> None:
    """Mean last-3 test accuracy vs params; bars from the lowest to the highest of the seeds' last 3 epochs,
    so a bar that crosses the target line is an experiment that misses the rule."""
    fig, ax = pyplot().subplots(figsize=(8, 5))
    shown = [e for e in experiments if e.seed_means and e.first.params]
    target = experiments[0].first.target
    accuracy_axis(ax, [a for e in shown for r in e.runs for a in r.last], target,  # the whole bars
                     f"test accuracy, mean of the last {LAST} epochs")
    for e in shown:
        yerr = [[e.mean - e.min], [max(a for r in e.runs for a in r.last) - e.mean]]
        if e.name == BASELINE:
            style, label = BASELINE_STYLE, f"{e.label}: FC head"
        else:
            style = {"marker": "o", "ms": 7, "ls": "none", "color": "tab:green" if e.confirmed else "tab:red"}
            label = f"{e.name}: {'confirmed' if e.confirmed else 'not confirmed'}"
        ax.errorbar([e.first.params], [e.mean], yerr=yerr, capsize=4, label=label, **style)
        ax.annotate(e.name, (e.first.params, e.mean), textcoords="offset points", xytext=(8, 4), fontsize="small")
    budgets = [e.first.max_params for e in shown]
    reference_lines(ax, target, budgets)
    ax.set_xlim(0, max(budgets + [e.first.params for e in shown]) * 1.1)
    params_axis(ax)
    ax.set_title(f"Seed confirmations: mean, and min to max over the seeds' last {LAST} epochs")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, ax, path)


def render(experiments: Sequence[Experiment], confirm_dir: Path, plot_path: Path, out: Path,
           cost: Sequence[str] = (), notes: str = "") -> str:
    n_runs = sum(len(e.runs) for e in experiments)
    confirmed = [e.label for e in experiments if e.confirmed]
    lines = [
        "# Results", "",
        f"Generated by `python sweep/results.py` on {datetime.now():%Y-%m-%d %H:%M} from {n_runs} run(s) under "
        f"`{confirm_dir}`; do not edit by hand. Wall times are the runs' own `wall_time_s`, measured where they "
        f"ran (this machine: {machine()}).", "",
        f"A configuration is CONFIRMED when, for every seed (at least {MIN_SEEDS}), its test accuracy is at least "
        f"constraints.target_acc in each of the last {LAST} epochs, and it has no fully connected layer, fewer "
        "params than constraints.max_params and at most constraints.max_epochs epochs.", "",
        f"Confirmed: {', '.join(confirmed) if confirmed else 'none yet'}.", "",
        summary_table(experiments), "",
        "Targets (FC-free, confirmed as above):", "",
        targets_table(experiments), "",
        f"![test accuracy vs params]({Path(os.path.relpath(plot_path, out.parent)).as_posix()})", "",
        "## Experiments", "",
    ]
    for e in experiments:
        lines += experiment_section(e)
    if notes:
        lines += ["## Notes on these runs", "", notes.strip(), ""]
    return "\n".join([*lines, *cost]).rstrip() + "\n"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Write RESULTS.md from the seed confirmations in outputs/confirm/.")
    p.add_argument("--confirm-dir", type=Path, default=Path("outputs/confirm"),
                   help="where <model.name>/seed_<k>/metrics.json are (default: %(default)s, cwd-relative)")
    p.add_argument("--out", type=Path, default=ROOT / "RESULTS.md", help="default: RESULTS.md at the project root")
    p.add_argument("--plot", type=Path, default=ROOT / "results" / "acc_vs_params.png",
                   help="default: results/acc_vs_params.png at the project root")
    p.add_argument("--storage", help="with --study: the sweeps' storage (default: the sweep's, cwd-relative)")
    p.add_argument("--study", action="append", default=[], help="a study for the 'Sweep cost' section; repeatable")
    p.add_argument("--notes", type=Path, help="a markdown file on how the runs were made, included as written")
    args = p.parse_args(argv)
    if args.storage and not args.study:
        p.error("--storage needs at least one --study")
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    experiments = find_experiments(args.confirm_dir)
    storage = args.storage or sweep_defaults().storage
    cost = sweep_cost(storage, args.study) if args.study else []
    plot(experiments, args.plot)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    notes = args.notes.read_text() if args.notes else ""
    args.out.write_text(render(experiments, args.confirm_dir, args.plot, args.out, cost, notes))
    for e in experiments:
        print(f"{e.label}: {'CONFIRMED' if e.confirmed else 'not confirmed'} (mean {fmt_pct(e.mean)}, "
              f"min {fmt_pct(e.min)} over the last {LAST} epochs of seeds {', '.join(str(r.seed) for r in e.runs)})")
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    from sweep.cli import report_errors

    report_errors(main)
