"""RESULTS.md from the seed confirmations (`python sweep/results.py`), never typed by hand.

Scans outputs/confirm/<model.name>/seed_<k>/metrics.json, written by
`python sweep/run.py -m +experiment=NAME seed=101,102,103` or by sweep/confirm.py, and says for each experiment and for the
documented baseline whether it is CONFIRMED: for every seed, test accuracy >= the assignment's target_acc
in each of the last 3 epochs; no fully connected layer; under its max_params; within its max_epochs (never a
run's own constraints). With --study, adds what each search did: trials by state, epochs and time, where it
ran, its best trial and whether that trial was a find of the search or a hand-queued starting point, and a plot
of the best objective against the epochs trained. With --budget STUDY=EPOCHS, that study's own section: its stated
budget against the epochs it spent, its best so far, its winner's shape, each finalist's seeds and the epochs until
its first confirming configuration. Reads runs and storages; never trains, never writes a study.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
from datetime import datetime
from pathlib import Path
from typing import Optional, Sequence

from archsearch.core.defaults import ROOT, sweep_defaults
from archsearch.core.machine import cpu_name
from archsearch.report.acceptance import (
    BASELINE,
    LAST,
    MIN_SEEDS,
    Experiment,
    assignment_limits,
    find_experiments,
)
from archsearch.report.plots import (
    BASELINE_STYLE,
    accuracy_axis,
    params_axis,
    pyplot,
    reference_lines,
    save_figure,
)
from archsearch.report.experiment import study_stem
from archsearch.report.frontier import plot_frontier
from archsearch.report.searches import load_searches, plot_progress, searches_section, study_section, sweep_cost
from archsearch.report.tables import (
    fmt_duration,
    fmt_int,
    fmt_macs,
    fmt_pct,
    link,
    md_table,
)

# The project's tighter targets, (name, fewer params than, at most epochs), after the assignment's: the smaller nets
# of the v3 searches, whose finalists are confirmed at 19 (the text says "less than 20 epochs").
TARGETS = (("goal", 6_000, 19), ("stretch", 4_000, 19))


# ---------------------------------------------------------------- the report

def machine() -> str:
    """CPU model and core count of this machine, for the line that says where wall times were measured."""
    return f"{cpu_name() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}"


def summary_table(experiments: Sequence[Experiment]) -> str:
    headers = ["experiment", "params", "MACs", "FC-free", "epochs", "seeds", f"mean last-{LAST} test",
               f"min last-{LAST} test", f"first epoch >={experiments[0].first.target:.1%} (per seed)",
               "wall time per run", "recipe", "verdict"]
    rows = []
    for e in experiments:
        r = e.first
        walls = [x.wall_s for x in e.runs if x.wall_s is not None]
        rows.append([e.label, fmt_int(r.params), fmt_macs(r.macs), "no" if r.fc_layers else "yes",
                     "/".join(sorted({str(len(x.test)) for x in e.runs})), ", ".join(str(x.seed) for x in e.runs),
                     fmt_pct(e.mean), fmt_pct(e.min), " / ".join(str(x.first_at_target or "-") for x in e.runs),
                     fmt_duration(statistics.mean(walls)) if walls else "-", e.recipe(),
                     "CONFIRMED" if e.confirmed else "not confirmed"])
    return md_table(headers, rows)


def targets_table(experiments: Sequence[Experiment]) -> str:
    """Each target, the confirmed configurations that meet it, and the unconfirmed ones that tried."""
    rows, (_, required_params, required_epochs) = [], assignment_limits()
    for name, max_params, max_epochs in (("required", required_params, required_epochs), *TARGETS):
        within = [e for e in experiments if not e.first.fc_layers and e.first.params < max_params
                  and max(len(r.test) for r in e.runs) <= max_epochs]
        met = ", ".join(f"{e.name} ({e.first.params:,} params{', distilled' if e.teacher else ''})"
                        for e in within if e.confirmed) or "**not met**"
        strict = ", ".join(f"{e.name} ({e.first.params:,} params)" for e in within if e.confirmed and not e.teacher)
        tried = ", ".join(f"{e.name} (min {fmt_pct(e.min)}, {len(e.runs)} seed(s))" for e in within
                          if not e.confirmed) or "-"
        rows.append([name, f"< {max_params:,}", f"<= {max_epochs}", met, strict or "**not met**", tried])
    return md_table(["target", "params", "epochs", "met by (confirmed)", "met without a teacher",
                     "tried, not confirmed"], rows)


def experiment_section(e: Experiment) -> list[str]:
    headers = ["seed", f"test acc, last {LAST} epochs", "mean", "min", f"first epoch >={e.first.target:.1%}",
               "epochs", "wall time", "status", "run directory"]
    rows = [[str(r.seed), " / ".join(fmt_pct(a) for a in r.last) or "-",
             fmt_pct(statistics.mean(r.last)) if r.last else "-", fmt_pct(min(r.last, default=None)),
             str(r.first_at_target or "-"), str(len(r.test)), fmt_duration(r.wall_s), r.status, f"`{r.path}`"]
            for r in e.runs]
    weights = [r.path / "model.pt" for r in e.runs if (r.path / "model.pt").is_file()]
    evaluate = ["Each seed's final weights; re-measure them from the checkpoints alone with:", "", "```bash",
                f"python sweep/evaluate.py {' '.join(p.as_posix() for p in weights)}", "```", ""] if weights else []
    recipe = ([f"Recipe: {e.recipe()}. The teacher's forward passes ran in the training loop, so they are in the "
               "wall times; the checkpoints hold the student alone.", ""] if e.teacher else [])
    return [f"### {e.label}", "", e.verdict(), "", *recipe, md_table(headers, rows), "", *evaluate, "Reproduce:", "",
            "```bash", *e.commands(), "```", ""]


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
           cost: Sequence[str] = (), notes: str = "", frontier_path: Optional[Path] = None) -> str:
    n_runs = sum(len(e.runs) for e in experiments)
    confirmed = [e.label for e in experiments if e.confirmed]
    lines = [
        "# Results", "",
        f"Generated by `python sweep/results.py` on {datetime.now():%Y-%m-%d %H:%M} from {n_runs} run(s) under "
        f"`{confirm_dir}`; do not edit by hand. Wall times are the runs' own `wall_time_s`, measured where they "
        f"ran (this machine: {machine()}).", "",
        f"A configuration is CONFIRMED when, for every seed (at least {MIN_SEEDS}), its test accuracy is at least "
        f"the assignment's target_acc in each of the last {LAST} epochs, and it has no fully connected layer, fewer "
        "params than the assignment's max_params and at most its max_epochs epochs "
        "(conf/constraints/assignment.yaml), whatever constraints a run's own config set.", "",
        f"Confirmed: {', '.join(confirmed) if confirmed else 'none yet'}.", "",
        summary_table(experiments), "",
        "Targets (FC-free, confirmed as above):", "",
        targets_table(experiments), "",
        f"![test accuracy vs params]({link(plot_path, out)})", "",
    ]
    if frontier_path is not None:
        lines += ["## The frontier", "",
                  "Every configuration confirmed or tried, at the worst of its seeds' minima over their last "
                  f"{LAST} epochs: what the rule holds it to. The public results are single runs at their best "
                  "epoch, as reported: an easier measure, shown as such.", "",
                  f"![the frontier]({link(frontier_path, out)})", ""]
    lines += ["## Experiments", ""]
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
    p.add_argument("--storage", action="append", default=[],
                   help="with --study: a storage the studies are read from, read-only; repeatable: each study is "
                        "read from the first that holds it (default: the sweep's, cwd-relative)")
    p.add_argument("--study", action="append", default=[],
                   help="a study for the 'Sweep cost' and 'What the searches found' sections; repeatable")
    p.add_argument("--progress-plot", type=Path,
                   help="with --study: the best objective vs epochs trained (default: best_vs_epochs.png next to "
                        "--plot)")
    p.add_argument("--budget", action="append", default=[], metavar="STUDY=EPOCHS",
                   help="a --study's stated budget of trained epochs; that study gets a section of its own: budget "
                        "and epochs spent, best so far, its winner's shape, its finalists' seeds; repeatable")
    p.add_argument("--notes", type=Path, help="a markdown file on how the runs were made, included as written")
    args = p.parse_args(argv)
    if (args.storage or args.progress_plot or args.budget) and not args.study:
        flag = "--storage" if args.storage else "--progress-plot" if args.progress_plot else "--budget"
        p.error(f"{flag} needs at least one --study")
    budgets = {}
    for item in args.budget:
        study, _, epochs = item.partition("=")
        if study not in args.study or not epochs.isdigit() or int(epochs) < 1:
            p.error(f"--budget={item!r}: want STUDY=EPOCHS, a study named by --study ({', '.join(args.study)}) "
                    "and a whole number of trained epochs >= 1")
        budgets[study] = int(epochs)
    args.budget = budgets
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    experiments = find_experiments(args.confirm_dir)
    cost, written = [], [args.plot]
    if args.study:
        searches = load_searches(args.storage or [sweep_defaults().storage], args.study)
        progress = args.progress_plot or args.plot.parent / "best_vs_epochs.png"
        plot_progress(searches, progress, args.budget)
        cost = sweep_cost(searches) + searches_section(searches, progress, args.out)
        written.append(progress)
        for s in (s for s in searches if s.name in args.budget):
            own = progress.with_name(f"{progress.stem}_{study_stem(s.name)}{progress.suffix}")
            cost += study_section(s, args.budget[s.name], experiments, own, args.out)
            written.append(own)
    plot(experiments, args.plot)
    frontier = args.plot.with_name("frontier.png")
    plot_frontier(experiments, frontier)
    written.append(frontier)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    notes = args.notes.read_text() if args.notes else ""
    args.out.write_text(render(experiments, args.confirm_dir, args.plot, args.out, cost, notes, frontier))
    for e in experiments:
        print(f"{e.label}: {'CONFIRMED' if e.confirmed else 'not confirmed'} (mean {fmt_pct(e.mean)}, "
              f"min {fmt_pct(e.min)} over the last {LAST} epochs of seeds {', '.join(str(r.seed) for r in e.runs)})")
    print(f"wrote {args.out} and {' and '.join(map(str, written))}")
