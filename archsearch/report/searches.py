"""What each search did and found, for RESULTS.md: its trials by state, epochs and time, where it ran, its best
trial and whether the search found it, its best objective against the epochs trained, and with a stated budget
a section of its own. Reads storages and runs; never trains, never writes a study."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Optional, Sequence

from archsearch.core.errors import StorageError
from archsearch.report.acceptance import (
    LAST,
    Experiment,
)
from archsearch.report.plots import (
    accuracy_axis,
    pyplot,
    reference_lines,
    save_figure,
)
from archsearch.report.experiment import finalist_name, study_stem
from archsearch.report.pruning_evidence import EpochEvidence, pruning_evidence
from archsearch.report.ranking import RULE_WORDS, Review, review_study
from archsearch.report.rows import STATES, Row, as_number, trial_state
from archsearch.report.shape import shape_text
from archsearch.report.tables import (
    cell,
    fmt_duration,
    fmt_int,
    fmt_macs,
    fmt_pct,
    link,
    md_table,
    objective_text,
)
from archsearch.search.storage import load_study, open_readonly

HAND_QUEUED = "fixed_params"  # the system attr Optuna's study.enqueue_trial leaves on the trial it queues


def run_metrics(t: Any) -> Optional[dict[str, Any]]:
    """The trial's metrics.json (its `run_dir` record), or None where it is not on this machine or not readable.
    A run_dir from another checkout is also looked for under this one's outputs/ (cwd-relative)."""
    run_dir = t.user_attrs.get("run_dir")
    if not run_dir:
        return None
    parts = Path(run_dir).parts
    candidates = [Path(run_dir)] + ([Path(*parts[parts.index("outputs"):])] if "outputs" in parts else [])
    for path in (c / "metrics.json" for c in candidates):
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        return metrics if isinstance(metrics, dict) else None
    return None


@dataclass
class Search:
    """What one study's search did, read from its storage and its runs' metrics.json."""
    review: Review
    trials: list[Any]  # FrozenTrials, by number
    machines: Counter = field(default_factory=Counter)  # "cpu, N cores" per trial whose metrics.json says so
    torch_threads: Counter = field(default_factory=Counter)  # metrics.json machine.torch_threads per trial
    threads_setting: Counter = field(default_factory=Counter)  # the train.threads record per trial
    evidence: list[EpochEvidence] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.review.study

    @property
    def storage(self) -> str:
        return self.review.storage

    @property
    def hand_queued(self) -> list[int]:
        """Numbers of the trials queued with study.enqueue_trial, as the trials themselves record it."""
        return [t.number for t in self.trials if HAND_QUEUED in t.system_attrs]

    @property
    def winner(self) -> Optional[Row]:
        return self.review.winner

    def found_by(self) -> str:
        w = self.winner
        if w is None:
            return "-"
        return "hand-queued starting point" if w.number in self.hand_queued else "found by the search"


def read_search(storage: Any, url: str, name: str) -> Search:
    study = load_study(storage, name, url)
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    search = Search(review_study(study, url, None), trials, evidence=pruning_evidence(trials))
    for t in trials:
        machine_record = (run_metrics(t) or {}).get("machine")
        if isinstance(machine_record, dict):
            if machine_record.get("cpu") or machine_record.get("cores"):
                search.machines[f"{machine_record.get('cpu') or 'unknown CPU'}, "
                                f"{machine_record.get('cores', '?')} cores"] += 1
            if machine_record.get("torch_threads") is not None:
                search.torch_threads[machine_record["torch_threads"]] += 1
        if t.user_attrs.get("train.threads") is not None:
            search.threads_setting[t.user_attrs["train.threads"]] += 1
    return search


def load_searches(storages: Sequence[str], studies: Sequence[str]) -> list[Search]:
    """Each study from the first of `storages` that holds it (read-only); a study in none is an error."""
    import optuna

    opened = {url: open_readonly(url) for url in dict.fromkeys(storages)}
    names = {url: optuna.get_all_study_names(store) for url, store in opened.items()}
    searches = []
    for study in dict.fromkeys(studies):
        url = next((u for u in opened if study in names[u]), None)
        if url is None:
            where = "; ".join(f"{u} has {', '.join(n) or 'none'}" for u, n in names.items())
            raise StorageError(f"--study={study!r}: no such study in any --storage ({where})")
        searches.append(read_search(opened[url], url, study))
    return searches


def _counted(counts: Counter, n: int, fmt: str = "{}") -> str:
    return ", ".join(f"{fmt.format(k)} ({v} of {n} trials)" for k, v in counts.most_common())


def machine_cell(s: Search) -> str:
    return _counted(s.machines, len(s.trials)) or f"not recorded (none of the {len(s.trials)} runs' metrics.json here)"


def threads_cell(s: Search) -> str:
    parts = [_counted(s.torch_threads, len(s.trials), "torch_threads={}"),
             _counted(s.threads_setting, len(s.trials), "train.threads={}")]
    return "; ".join(p for p in parts if p) or "not recorded"


def data_text(s: Search, short: bool = False) -> str:
    """The images the trials trained and validated on, from their records: objectives on other data differ."""
    subsets = {t.user_attrs.get("data.train_subset") for t in s.trials} - {None, "None", "null", "0"}
    vals = {t.user_attrs.get("data.val_size") for t in s.trials} - {None}
    if len(subsets) > 1 or len(vals) != 1:
        return "-" if not vals and not subsets else "varies"
    subset, val = (int(subsets.pop()) if subsets else None), int(vals.pop())
    if short:
        return f"val {val / 1000:g}k of " + (f"a {subset / 1000:g}k subset" if subset else "60k")
    return (f"a {subset:,}-image subset" if subset else "all 60,000") + f", {val:,} of them for validation"


def pruning_text(s: Search) -> str:
    """Where the pruner stopped trials, and how well the objective there ranked the complete trials by their final
    one (archsearch/report/pruning_evidence.py's evidence, at the epoch where it pruned most)."""
    pruned = [t for t in s.trials if trial_state(t) == "pruned"]
    if not pruned:
        return "no trial pruned"
    at = Counter(as_number(t.user_attrs.get("pruned_at_epoch"), int) for t in pruned)
    at.pop(None, None)
    if not at:
        return f"{len(pruned)} pruned (no pruned_at_epoch record)"
    busiest = min(at, key=lambda e: (-at[e], e))
    span = f"epoch {min(at)}" if len(at) == 1 else f"epochs {min(at)}-{max(at)}"
    evidence = next((e for e in s.evidence if e.epoch == busiest), None)
    rho = ("too few complete trials that reported it for a rank correlation" if evidence is None or evidence.rho is None
           else f"Spearman rho {evidence.rho:+.2f} between the objective then and the final one, over the "
                f"{evidence.trials} complete trials")
    return f"{len(pruned)} pruned, at {span}; most at epoch {busiest} ({at[busiest]}): {rho}"


def hparams_text(r: Row) -> str:
    return ", ".join(f"{k}={cell(v)}" for k, v in r.hparams.items())


def sweep_cost(searches: Sequence[Search]) -> list[str]:
    """Trials per state, epochs trained against the full budget, and time, per study."""
    summaries = {s.name: s.review.summary for s in searches}
    walls = {s.name: [t.user_attrs["wall_time_s"] for t in s.trials
                      if isinstance(t.user_attrs.get("wall_time_s"), (int, float))] for s in searches}
    # Only the Optuna 5 sweeper skips duplicates: no column of zeros for the studies from before it.
    states = [k for k in STATES if k != "duplicate"]
    skipped = any(s.counts["duplicate"] for s in summaries.values())
    reseeded = any(s.further_seed_epochs for s in summaries.values())  # likewise, only v3's studies reseed
    headers = ["study", "trials", *states, *(["duplicate asks (skipped)"] if skipped else []), "epochs trained",
               *(["of them, further seeds"] if reseeded else []), "of n x max", "saved",
               "sum of trials' wall_time_s", "sum of trial times", "first start to last finish"]
    rows = [[name, str(s.n_trials), *(str(s.counts[k]) for k in states),
             *([str(s.counts["duplicate"])] if skipped else []), str(s.epochs_trained),
             *([str(s.further_seed_epochs)] if reseeded else []),
             str(s.epochs_budget), f"{s.saving:.1%}", fmt_duration(sum(walls[name])) if walls[name] else "-",
             fmt_duration(s.trial_time_s), fmt_duration(s.span_s)]
            for name, s in summaries.items()]
    by_storage: dict[str, list[str]] = {}
    for s in searches:
        by_storage.setdefault(s.storage, []).append(s.name)
    sources = "; ".join(f"{', '.join(names)} from `{url}`" for url, names in by_storage.items())
    return ["## Sweep cost", "", f"{sources}. Pruned trials stop early and rejected ones never train: \"saved\" is "
            "the share of n x max (every trial trained to its train.epochs) that pruning and rejection left "
            "untrained, first seeds only (a reseeded trial's further seeds are counted apart); a duplicate ask, "
            "which repeated a configuration another trial holds, is not a trial here. A trial's `wall_time_s` is "
            "the time its job measured (trials that recorded one); trial times run from a trial's start to its "
            "finish in the storage, startup included.", "",
            md_table(headers, rows), ""]


def searches_section(searches: Sequence[Search], plot_path: Optional[Path], out: Path) -> list[str]:
    """Where each search ran, its best trial and whether the search found it, and the progress plot."""
    headers = ["study", "training images", "machine (runs' metrics.json)", "torch threads", "best trial",
               "objective", "params", "MACs", "network (3x3 widths per stage; p: padded)", "found by",
               "hand-queued trials"]
    rows = []
    for s in searches:
        w = s.winner
        rows.append([s.name, data_text(s), machine_cell(s), threads_cell(s), f"#{w.number}" if w else "none complete",
                     objective_text(w, s.review) if w else "-", fmt_int(w.params) if w else "-",
                     fmt_macs(w.macs) if w else "-", (shape_text(w.overrides) or "-") if w else "-", s.found_by(),
                     ", ".join(f"#{n}" for n in s.hand_queued) or "none"])
    lines = ["## What the searches found", "",
             "The best trial is the best complete one by the validation objective. A hand-queued trial is one "
             "queued with Optuna's `study.enqueue_trial` (it carries `fixed_params` in its system attrs); every "
             "other trial was sampled by the search. Objectives are comparable only between studies on the same "
             "images.",
             "", md_table(headers, rows), ""]
    if plot_path is not None:
        lines += [f"![best objective vs epochs trained]({link(plot_path, out)})", ""]
    for s in searches:
        w, running = s.winner, s.review.summary.counts["running"]
        best = (f"best trial #{w.number} ({s.found_by()}): {hparams_text(w)}." if w else "no complete trial yet.")
        live = (f" {running} trial(s) were running when this file was generated: its numbers are a snapshot of a "
                "live search (a running trial's epochs so far count as trained, the rest of its train.epochs as "
                "saved)." if running else "")
        lines.append(f"- **{s.name}**: {best} Pruning: {pruning_text(s)}.{live}")
    return [*lines, ""]


def epochs_through(s: Search) -> dict[int, int]:
    """Trial number -> the epochs the search had trained by the end of that trial: its own and those of every trial
    numbered before it. Trial order, duplicate asks (never trained) left out."""
    trained = {r.number: r.epochs_trained for r in s.review.rows}
    through, epochs = {}, 0
    for t in s.trials:
        if t.number in trained:
            epochs += trained[t.number]
            through[t.number] = epochs
    return through


def best_so_far(s: Search) -> tuple[list[int], list[float], list[tuple[int, float, int]]]:
    """Cumulative epochs trained after each trial (by number) from the first complete one on, the best complete
    objective then, and each trial that raised it as (epochs, objective, number)."""
    sign = 1 if s.review.directions[0] == "maximize" else -1
    rows = {r.number: r for r in s.review.rows}
    xs, ys, records, best = [], [], [], None
    for number, epochs in epochs_through(s).items():
        r = rows[number]
        if r.state == "complete" and r.objective and (best is None or sign * r.objective[0] > sign * best):
            best = r.objective[0]
            records.append((epochs, best, r.number))
        if best is not None:
            xs.append(epochs)
            ys.append(best)
    return xs, ys, records


def plot_progress(searches: Sequence[Search], path: Path, budgets: Mapping[str, int] = MappingProxyType({})) -> None:
    """One line per study: the best objective so far (complete trials) against the epochs the search had
    trained, all trials in number order; a marker where a trial raised it, hollow for a hand-queued one; a dashed
    line at a study's stated budget of trained epochs."""
    fig, ax = pyplot().subplots(figsize=(8, 4.5))
    curves = {s.name: best_so_far(s) for s in searches}
    target = searches[0].review.target
    accuracy = all(s.review.objective_names[0] == "val_acc" for s in searches)
    if accuracy:
        accuracy_axis(ax, [y for _, ys, _ in curves.values() for y in ys], target, "best validation objective so far")
    else:  # a study with another first objective: no percent axis, no target line
        ax.set_ylabel("best first objective so far")
    for i, s in enumerate(searches):
        xs, ys, records = curves[s.name]
        color = f"C{i}"
        if not xs:
            ax.plot([], [], color=color, label=f"{s.name}: no complete trial yet")
            continue
        label = f"{s.name}: < {s.review.budget / 1000:g}k params, {data_text(s, short=True)}"
        ax.step(xs, ys, where="post", color=color, label=label)
        queued = set(s.hand_queued)
        for x, y, number in records:
            ax.plot([x], [y], "o", color=color, mfc="white" if number in queued else color, ms=7, zorder=5)
            ax.annotate(f"#{number}", (x, y), textcoords="offset points", xytext=(4, -12), fontsize="small",
                        color=color)
        if s.name in budgets:
            ax.axvline(budgets[s.name], color=color, ls="--", lw=1,
                       label=f"{s.name}: stated budget, {budgets[s.name]:,} epochs")
    ax.plot([], [], "o", color="grey", label="a trial that raised the best: found by the search")
    ax.plot([], [], "o", color="grey", mfc="white", label="a trial that raised the best: hand-queued")
    if accuracy:
        reference_lines(ax, target)
    ax.set_xlim(left=0)
    ax.set_xlabel("epochs trained by the search (all trials, in trial order)")
    ax.set_title("Best objective against the epochs each search trained" if len(searches) > 1
                 else f"{searches[0].name}: best objective against the epochs it trained")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, ax, path)


SHAPE_KEYS = ("model.stages.", "model.widths.", "model.arch.")  # what shape_text's network line already says


def finalist_rows(r: Row, e: Experiment, review: Review) -> list[list[str]]:
    """A finalist's rows of the study section's table, one per seed; what is the finalist's on the first only."""
    head = [f"#{r.number} ({fmt_int(r.params)} params)", objective_text(r, review)]
    tail = ["CONFIRMED" if e.confirmed else f"not confirmed, min {fmt_pct(e.min)}", e.recipe()]
    rows = []
    for i, run in enumerate(e.runs):
        seed = [str(run.seed), " / ".join(fmt_pct(a) for a in run.last) or "-", fmt_pct(min(run.last, default=None))]
        rows.append([*head, *seed, *tail] if i == 0 else ["", "", *seed, "", ""])
    return rows


def winner_text(s: Search) -> str:
    """The winner's size, objective over its seeds, network (stages, widths, pools) and recipe, in one line."""
    w = s.winner
    shape = shape_text(w.overrides)
    seeds = w.trial.user_attrs.get("seed_objectives") or []
    combined = RULE_WORDS.get(s.review.objective_rule, "combination")
    over = (f"the {combined} of {len(seeds)} seeds ({', '.join(fmt_pct(v) for v in seeds)})" if len(seeds) > 1
            else "one seed")
    pools = shape.split().count("pool") if shape else 0
    form = (f"`{shape}`: {shape.count('[')} stages of 3x3 convolutions, widths in brackets (p: padded), "
            f"{pools} max-pool{'' if pools == 1 else 's'}" if shape else "not readable")
    recipe = ", ".join(f"{k}={cell(v)}" for k, v in w.hparams.items() if not k.startswith(SHAPE_KEYS))
    return (f"Winner: **#{w.number}** ({s.found_by()}), {fmt_int(w.params)} params, {fmt_macs(w.macs)} MACs, "
            f"validation objective {objective_text(w, s.review)}, {over}. Network {form}. Recipe: {recipe}.")


def study_section(s: Search, budget: int, experiments: Sequence[Experiment], plot_path: Path,
                  out: Path) -> list[str]:
    """A study run to a stated budget: what it spent, its best so far against the epochs trained, its winner's
    shape, and each finalist's seeds (the experiments `<study>_t<number>` that sweep/confirm.py ran)."""
    totals, review = s.review.summary, s.review
    spent = totals.epochs_trained
    states = ", ".join(f"{totals.counts[k]} {k}" for k in STATES if totals.counts[k])
    further = (f", {totals.further_seed_epochs:,} of them on further seeds of its top trials"
               if totals.further_seed_epochs else "")
    left = "all of it" if spent >= budget else f"{budget - spent:,} left"
    images = data_text(s)
    lines = [f"## Study {s.name}", "",
             f"Fewer than {review.budget:,} params{'' if images == '-' else f'; images: {images}'}. "
             f"Budget: {budget:,} trained epochs. "
             f"Spent: {spent:,} ({left}){further}, over {totals.n_trials} trials: {states}.", ""]

    plot_progress([s], plot_path, {s.name: budget})
    rows = {r.number: r for r in review.rows}
    raised = [[fmt_int(epochs), f"#{n}", objective_text(rows[n], review), fmt_int(rows[n].params),
               shape_text(rows[n].overrides) or "-"] for epochs, _, n in best_so_far(s)[2]]
    lines += [f"![{s.name}: best objective vs epochs trained]({link(plot_path, out)})", "",
              "The trials that raised the best validation objective, at the epochs the search had trained by "
              "their end (trials in number order):", "",
              md_table(["epochs trained", "trial", "objective", "params", "network"], raised), ""]

    if s.winner is not None:
        lines += [winner_text(s), ""]

    by_name = {e.name: e for e in experiments}
    finalists = [(r, by_name[name]) for r in review.rows if (name := finalist_name(s.name, r.number)) in by_name]
    through = epochs_through(s)
    table = [row for r, e in finalists for row in finalist_rows(r, e, review)]
    confirmed = [r.number for r, e in finalists if e.confirmed]
    first = min(confirmed, key=through.__getitem__, default=None)
    lines += [f"Finalists: its trials confirmed with `sweep/confirm.py` (experiments `{study_stem(s.name)}_t<number>` "
              "above), by rank. A failing finalist may have fewer than 3 seeds: once one seed misses, the rule cannot "
              "pass.", "",
              md_table(["finalist", "objective", "seed", f"test acc, last {LAST} epochs", "min", "verdict", "recipe"],
                       table) if table else "none yet.", "",
              (f"First configuration that confirms: #{first}, after {through[first]:,} of the study's trained epochs "
               "(its own and those of every trial numbered before it)." if first is not None else
               f"No configuration of this study confirms yet: none within its {spent:,} trained epochs."), ""]
    return lines
