"""The review as text: the leaderboard and summary as a terminal table, markdown, csv or json."""
from __future__ import annotations

import csv
import io
import json
import os
import shlex
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Sequence

from archsearch.report.ranking import Review, StudyTotals
from archsearch.report.rows import Row, param_keys

TABLE_LABEL_CHARS = 48  # failure reasons are long; the csv/json/md keep them whole


def run_command(overrides: Sequence[str], multirun: bool = False) -> str:
    return " ".join(["python sweep/run.py", *(["-m"] if multirun else []), *map(shlex.quote, overrides)])


def fmt_pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2%}"


def fmt_int(x: Optional[int]) -> str:
    return "-" if x is None else f"{x:,}"


def fmt_macs(x: Optional[int]) -> str:
    return "-" if x is None else f"{x / 1e6:.2f}M"


def fmt_duration(s: Optional[float]) -> str:
    if s is None:
        return "-"
    return f"{s:.0f}s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def cell(x: Any) -> str:
    """A hyperparameter for people: floats to 3 significant digits."""
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def objective_text(row: Row, review: Review) -> str:
    if not row.objective:
        return "-"
    return " / ".join(fmt_pct(v) if n == "val_acc" else f"{v:,.0f}"
                      for n, v in zip(review.objective_names, row.objective))


def trial_text(row: Row, review: Review) -> str:
    return (f"trial #{row.number}: objective {objective_text(row, review)}, {fmt_int(row.params)} params, "
            f"{fmt_pct(row.test_acc)} test at the final epoch")


def rerun_command(row: Row) -> str:
    return run_command(row.overrides) if row.overrides else "# the trial has no 'overrides' record"


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """'model.widths.c1' -> 'c1', unless two keys would share a short name."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last)}


def table_rows(review: Review, top: int) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the leaderboard for people (table and md): the baseline first."""
    shown = review.rows[:top]
    keys = param_keys(shown)
    headers = ["rank", "trial", "state", "params", "MACs", "objective", "best val acc", "test acc (final epoch)",
               f"first epoch >={review.target:.1%} test", "wall", *short_names(keys).values()]
    lines = []
    for r in ([review.baseline] if review.baseline else []) + shown:
        lines.append(["ref" if r.state == "baseline" else str(r.rank), "-" if r.number is None else f"#{r.number}",
                      r.label, fmt_int(r.params), fmt_macs(r.macs), objective_text(r, review), fmt_pct(r.best_val),
                      fmt_pct(r.test_acc), str(r.first_at_target or "-"), fmt_duration(r.wall_s),
                      *(cell(r.hparams[k]) if k in r.hparams else "" for k in keys)])
    return headers, lines


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    rows = [[c if len(c) <= TABLE_LABEL_CHARS else c[:TABLE_LABEL_CHARS - 1] + "…" for c in r] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip()
                     for line in [headers, ["-" * w for w in widths], *rows])


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(headers), line(["---"] * len(headers)), *map(line, rows)])


RECORD_FIELDS = ("rank", "trial", "state", "label", "params", "macs", "objective", "best_val_acc",
                 "test_acc_final_epoch", "first_epoch_at_target", "target_acc", "epochs_trained", "wall_time_s")


def row_record(r: Row) -> dict[str, Any]:
    """A row for machines (csv, json): raw numbers, full parameter names."""
    objective = r.objective[0] if r.objective and len(r.objective) == 1 else r.objective
    values = ("ref" if r.state == "baseline" else r.rank, r.number, r.state, r.label, r.params, r.macs, objective,
              r.best_val, r.test_acc, r.first_at_target, r.target, r.epochs_trained, r.wall_s)
    return {**dict(zip(RECORD_FIELDS, values)), **r.hparams}


def to_csv(review: Review) -> str:
    records = [row_record(r) for r in ([review.baseline] if review.baseline else []) + review.rows]
    fields = [*RECORD_FIELDS, *param_keys(review.rows)]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: json.dumps(v) if isinstance(v, list) else v for k, v in rec.items()} for rec in records)
    return out.getvalue()


def summary_lines(review: Review) -> list[str]:
    s = review.summary
    states = ", ".join(f"{n} {state}" for state, n in s.counts.items()
                       if state != "duplicate" and (n or state in ("complete", "pruned")))
    budget = (f"{s.n_trials} x {s.max_epochs} = {s.epochs_budget}" if s.max_epochs is not None
              else f"{s.epochs_budget} (each trial's train.epochs)")
    duplicates = s.counts["duplicate"]
    lines = [f"study {review.study!r} ({review.storage}), {' / '.join(review.directions)} "
             f"{' / '.join(review.objective_names)}: {s.n_trials} trials: {states}",
             epochs_line(s, budget),
             f"rejected before training: {s.counts['rejected']} of {s.n_trials} ({s.rejected_fraction:.1%})"]
    if duplicates:
        lines.append(f"duplicate asks, skipped: {duplicates} (each repeated a configuration a trial already held; "
                     "never trained, and counted nowhere else)")
    return lines + [f"trial time: {fmt_duration(s.trial_time_s)} in total, "
                    f"{fmt_duration(s.span_s)} from first start to last finish"]


def epochs_line(s: StudyTotals, budget: str) -> str:
    saved = f"{s.saving:.1%} saved by pruning and rejection"
    if not s.further_seed_epochs:
        return f"epochs trained: {s.epochs_trained} of {budget}: {saved}"
    return (f"epochs trained: {s.epochs_trained}: {s.first_seed_epochs} by first seeds, of {budget} "
            f"({saved}), and {s.further_seed_epochs} by the further seeds of top trials")


def winner_lines(review: Review) -> list[str]:
    w = review.winner
    if w is None:
        return ["winner: none yet (no complete trial; pruned trials never win)"]
    return [f"winner: {trial_text(w, review)}", rerun_command(w)]


def to_markdown(review: Review, top: int, plots: Optional[dict[str, Optional[str]]] = None) -> str:
    headers, cells = table_rows(review, top)
    w = review.winner
    parts = [f"# Review of study `{review.study}`", "",
             f"Storage `{review.storage}`, read {datetime.now():%Y-%m-%d %H:%M}.", "", "## Summary", "",
             *(f"- {line}" for line in summary_lines(review)), "", "## Winner", ""]
    if w is None:
        parts += ["No complete trial yet; pruned trials never win.", ""]
    else:
        parts += [f"The winner is {trial_text(w, review)}. Re-run it:", "", "```bash", rerun_command(w), "```", "",
                  "Confirm it over seeds on the full training set:", "", "```bash",
                  f"python sweep/review.py --study {review.study} --save-experiment NAME",
                  "python sweep/run.py -m +experiment=NAME seed=101,102,103", "```", ""]
    parts += [f"## Leaderboard (top {min(top, len(review.rows))} of {len(review.rows)})", "", md_table(headers, cells),
              "", "Ranked by the objective (mean validation accuracy over the last 3 epochs); pruned and running "
              "trials by their last reported value. Test accuracy is the final epoch's and is never used to rank."]
    if review.baseline_path:
        parts += ["", f"Reference row: `{review.baseline_path}`."]
    if review.front:
        parts += ["", "## Pareto front (validation objective vs params, complete trials)", "",
                  ", ".join(f"#{r.number} ({fmt_int(r.params)} params, {fmt_pct(review.accuracy(r))}; "
                            f"{fmt_pct(r.test_acc)} test, recorded)" for r in review.front)]
    if plots is not None:
        parts += ["", "## Plots", ""]
        for name, note in plots.items():
            parts.append(f"![{name}]({name})" if note is None else f"- `{name}` skipped: {note}")
            parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def to_json(review: Review, plots: dict[str, Optional[str]], out: Path) -> str:
    w = review.winner
    s = review.summary
    return json.dumps({
        "study": review.study, "storage": review.storage, "directions": review.directions,
        "objectives": review.objective_names, "target_acc": review.target, "max_params": review.budget,
        "summary": {"counts": s.counts, "n_trials": s.n_trials, "epochs_trained": s.epochs_trained,
                    "further_seed_epochs": s.further_seed_epochs,
                    "epochs_budget": s.epochs_budget, "max_epochs": s.max_epochs, "saving": s.saving,
                    "rejected_fraction": s.rejected_fraction, "trial_time_s": s.trial_time_s, "span_s": s.span_s},
        "winner": None if w is None else {"trial": w.number,
                                          "command": run_command(w.overrides) if w.overrides else None},
        "pareto_front": [r.number for r in review.front],
        "baseline": None if review.baseline is None else {**row_record(review.baseline),
                                                          "path": str(review.baseline_path)},
        "leaderboard": [row_record(r) for r in review.rows],
        "report_dir": str(out), "plots": plots,
    }, indent=2, default=str)


def render(review: Review, fmt: str, top: int, plots: dict[str, Optional[str]], out: Path) -> str:
    if fmt == "csv":
        return to_csv(review)
    if fmt == "json":
        return to_json(review, plots, out)
    if fmt == "md":
        return to_markdown(review, top)
    return "\n".join([*summary_lines(review), "", text_table(*table_rows(review, top)), "",
                      *winner_lines(review)]) + "\n"


def link(path: Path, out: Path) -> str:
    """`path` as a markdown file at `out` refers to it."""
    return Path(os.path.relpath(path, out.parent)).as_posix()
