"""Review an Optuna study: leaderboard, pruning savings, plots and the winner as a command.

    python sweep/review.py [--study mnist_20k] [--format table|md|csv|json] [--top 10]
    python sweep/review.py --save-experiment NAME   # the winner as conf/experiment/NAME.yaml
    python sweep/review.py --dashboard [--port 8080]

Reads the storage (read-only for sqlite, so it is safe while a sweep runs) and the jobs' records;
never trains and never writes to the storage. The report goes to outputs/review/<study>/.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import re
import shlex
import sys
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional, Sequence


from sweep.errors import ConfigError, StorageError
from sweep.study import STATUS, pareto_front, with_busy_timeout

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
STATES = ("complete", "pruned", "running", "rejected", "failed")  # leaderboard order
CURVES = 5  # top trials in curves.png: more lines are unreadable
TABLE_LABEL_CHARS = 48  # failure reasons are long; the csv/json/md keep them whole
RUNTIME_KEYS = {  # where and how a trial ran, not what it trained: a confirmation run uses its own
    "trial", "objectives", "data.root", "data.train_subset", "data.test_subset", "data.val_size",
    "train.progress", "train.threads", "train.device", "train.checkpoint"}
BASELINE_GLOBS = ("outputs/confirm/baseline/seed_*/metrics.json", "outputs/runs/*baseline*/metrics.json")
BASELINE_LABEL = "baseline (documented Net)"


@dataclass
class Row:
    """One leaderboard line: a trial, or the baseline's metrics.json (number None)."""
    number: Optional[int]
    state: str  # one of STATES, or "baseline"
    label: str
    target: float  # constraints.target_acc of the run
    params: Optional[int] = None
    macs: Optional[int] = None
    objective: Optional[list[float]] = None  # the trial's values; pruned/running: the last reported value
    best_val: Optional[float] = None
    test_curve: list[float] = field(default_factory=list)
    first_at_target: Optional[int] = None
    wall_s: Optional[float] = None
    epochs_trained: int = 0
    max_epochs: Optional[int] = None  # train.epochs of the trial
    hparams: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    started: Optional[datetime] = None
    finished: Optional[datetime] = None
    rank: Optional[int] = None
    trial: Any = field(default=None, repr=False)  # the FrozenTrial

    @property
    def test_acc(self) -> Optional[float]:
        return self.test_curve[-1] if self.test_curve else None


@dataclass
class Summary:
    counts: dict[str, int]
    n_trials: int
    epochs_trained: int
    epochs_budget: int  # every trial run to its train.epochs
    max_epochs: Optional[int]  # the common train.epochs; None when trials differ
    trial_time_s: float  # sum of start-to-finish times, startup included
    span_s: Optional[float]  # first start to last finish

    @property
    def saving(self) -> float:
        return 1 - self.epochs_trained / self.epochs_budget if self.epochs_budget else 0.0

    @property
    def rejected_fraction(self) -> float:
        return self.counts["rejected"] / self.n_trials if self.n_trials else 0.0


@dataclass
class Review:
    study: str
    storage: str
    directions: list[str]
    objective_names: list[str]
    rows: list[Row]  # ranked
    summary: Summary
    target: float
    budget: int
    baseline: Optional[Row] = None
    baseline_path: Optional[Path] = None

    @property
    def winner(self) -> Optional[Row]:
        return next((r for r in self.rows if r.state == "complete"), None)

    @property
    def front(self) -> list[Row]:
        """Complete trials on the Pareto front of final test accuracy (max) and params (min)."""
        done = [r for r in self.rows if r.state == "complete" and r.test_acc is not None and r.params]
        return sorted(pareto_front(done, key=lambda r: (r.test_acc, -r.params)), key=lambda r: r.params)


# ---------------------------------------------------------------- defaults from the configs

def _yaml(path: Path) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.load(path)


def sweep_defaults() -> Any:
    """hydra.sweeper of conf/sweep/default.yaml: the storage and study a plain sweep uses."""
    return _yaml(CONF / "sweep" / "default.yaml").hydra.sweeper


def assignment() -> tuple[float, int]:
    """(target_acc, max_params) of the assignment, as conf/constraints/assignment.yaml states them."""
    c = _yaml(CONF / "constraints" / "assignment.yaml")
    return float(c.target_acc), int(c.max_params)


# ---------------------------------------------------------------- storage, read-only

def readonly_url(url: str) -> str:
    """The URL opened read-only: an sqlite file as a mode=ro URI (never created when missing)."""
    from urllib.parse import quote

    if not url.startswith("sqlite:///"):
        return url  # a server database: we only ever read, but cannot make the connection read-only
    path, _, query = url[len("sqlite:///"):].partition("?")
    if path.startswith("file:"):
        return url
    if path in ("", ":memory:"):
        raise StorageError(f"--storage={url!r}: an in-memory storage holds no study to review")
    if not Path(path).is_file():
        raise StorageError(f"--storage={url!r}: {path} does not exist; run a sweep first "
                           "(python sweep/run.py -m) or point --storage at its database")
    return f"sqlite:///file:{quote(str(Path(path).resolve()))}?mode=ro&uri=true" + (f"&{query}" if query else "")


def open_readonly(url: str) -> Any:
    """An Optuna RDB storage on `url` that this process never writes to."""
    readonly = readonly_url(url)  # before importing Optuna: a missing file answers at once
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.storages.RDBStorage(with_busy_timeout(readonly))  # a sweep may hold the write lock a while
    except Exception as e:  # SQLAlchemy and Optuna raise many types; the user needs the URL and the cause
        cause = " ".join(str(e).split()) or type(e).__name__
        if "readonly database" in cause:
            cause = "it has no Optuna tables; is it an Optuna storage?"
        raise StorageError(f"--storage={url!r}: cannot be read ({cause[:200]})") from None


def load_study(storage: Any, name: str, url: str) -> Any:
    """The study `name`, which must hold at least one trial."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(storage)) or "none"
        raise StorageError(f"--study={name!r}: no such study in {url} (studies there: {names})") from None
    if not study.get_trials(deepcopy=False):
        raise StorageError(f"--study={name!r} in {url} has no trials yet; wait for the sweep's first trial")
    return study


# ---------------------------------------------------------------- rows

def trial_state(t: Any) -> str:
    """complete | pruned | running | rejected | failed. Pruned trials are COMPLETE to Optuna (with their value
    so far); rejected ones are PRUNED (FAIL in studies from before that change)."""
    state, status = t.state.name, t.user_attrs.get(STATUS)
    if status == "rejected":
        return "rejected"
    if state == "COMPLETE":
        return "pruned" if status == "pruned" else "complete"
    if state == "PRUNED":
        return "pruned"
    if state in ("RUNNING", "WAITING"):
        return "running"
    return "failed"


def state_label(t: Any) -> str:
    state, reason = trial_state(t), t.user_attrs.get("reason")
    if state == "pruned":
        return f"pruned at epoch {t.user_attrs.get('pruned_at_epoch') or max(t.intermediate_values, default='?')}"
    if state == "running":
        return f"running, {len(t.intermediate_values)} epochs done" if t.intermediate_values else "running"
    if state == "failed" and STATUS not in t.user_attrs:
        return "failed (stale/killed)"
    if state in ("rejected", "failed"):
        return f"{state}: {reason}" if reason else state
    return state


def first_epoch_at(curve: Sequence[Optional[float]], target: float) -> Optional[int]:
    return next((i for i, acc in enumerate(curve, 1) if acc is not None and acc >= target), None)


def _number(value: Any, kind: Callable[[Any], Any]) -> Any:
    try:
        return None if value is None else kind(value)
    except (TypeError, ValueError):
        return None


def trial_row(t: Any, target: float) -> Row:
    """A leaderboard row from what the job recorded on its trial."""
    a = t.user_attrs
    state = trial_state(t)
    target = _number(a.get("constraints.target_acc"), float) or target
    test = [x for x in a.get("test_acc_per_epoch") or [] if x is not None]
    val = [x for x in a.get("val_acc_per_epoch") or [] if x is not None]
    if state == "complete":
        objective = list(t.values) if t.values is not None else None
    else:
        steps = t.intermediate_values
        objective = [steps[max(steps)]] if steps else None
    wall = a.get("wall_time_s")
    if wall is None and t.datetime_start and t.datetime_complete:
        wall = (t.datetime_complete - t.datetime_start).total_seconds()
    first = a["first_epoch_at_target"] if "first_epoch_at_target" in a else first_epoch_at(test, target)
    return Row(number=t.number, state=state, label=state_label(t), target=target, params=a.get("n_params"),
               macs=a.get("macs"), objective=objective, best_val=max(val, default=None), test_curve=test,
               first_at_target=first, wall_s=wall, epochs_trained=a.get("epochs_trained", len(t.intermediate_values)),
               max_epochs=_number(t.params.get("train.epochs", a.get("train.epochs")), int), hparams=dict(t.params),
               overrides=list(a.get("overrides") or []), started=t.datetime_start, finished=t.datetime_complete,
               trial=t)


def read_metrics(path: Path) -> dict[str, Any]:
    """A run's metrics.json, as sweep/train.py's _write leaves it."""
    try:
        metrics = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable metrics.json ({getattr(e, 'strerror', None) or e})") from None
    missing = [k for k in ("status", "params", "macs", "fc_layers", "epochs", "config") if k not in metrics]
    if missing:
        raise ConfigError(f"{path}: has no {', '.join(missing)}; not a metrics.json written by sweep/train.py")
    return metrics


def find_baseline() -> Optional[Path]:
    """The newest seed confirmation of the documented Net, else its newest single run (cwd-relative)."""
    for pattern in BASELINE_GLOBS:
        found = sorted(Path().glob(pattern), key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1]
    return None


def metrics_row(metrics: dict[str, Any], label: str) -> Row:
    """A reference row from a run's metrics.json."""
    epochs, cfg = metrics["epochs"], metrics["config"]
    val = [e["val_acc"] for e in epochs if e["val_acc"] is not None]
    return Row(number=None, state="baseline", label=label, target=cfg["constraints"]["target_acc"],
               params=metrics["params"], macs=metrics["macs"], best_val=max(val, default=None),
               test_curve=[e["test_acc"] for e in epochs], first_at_target=metrics.get("first_epoch_at_target"),
               wall_s=metrics.get("wall_time_s"), epochs_trained=len(epochs), max_epochs=cfg["train"]["epochs"])


def rank(rows: list[Row], directions: Sequence[str]) -> list[Row]:
    """Complete trials by value (Pareto layers first for several objectives), then pruned by their last
    value, running, rejected, failed; numbers break ties."""
    signs = [1 if d == "maximize" else -1 for d in directions]
    layer: dict[int, int] = {}
    left = [r for r in rows if r.state == "complete" and r.objective]
    depth = 0
    while left and len(signs) > 1:  # non-dominated sorting: peel Pareto fronts
        front = pareto_front(left, key=lambda r: [s * v for s, v in zip(signs, r.objective)])
        layer.update({id(r): depth for r in front})
        left, depth = [r for r in left if id(r) not in layer], depth + 1

    def key(r: Row) -> tuple:
        score = -signs[0] * r.objective[0] if r.objective else float("inf")
        return STATES.index(r.state), layer.get(id(r), 0), score if r.state in STATES[:3] else 0, r.number

    ranked = sorted(rows, key=key)
    for i, r in enumerate(ranked, 1):
        r.rank = i
    return ranked


def summarize(rows: list[Row]) -> Summary:
    longest = max((r.epochs_trained for r in rows), default=0)
    maxima = {r.max_epochs or longest for r in rows}
    times = [(r.finished - r.started).total_seconds() for r in rows if r.started and r.finished]
    starts = [r.started for r in rows if r.started]
    ends = [r.finished for r in rows if r.finished]
    return Summary(counts={s: sum(r.state == s for r in rows) for s in STATES}, n_trials=len(rows),
                   epochs_trained=sum(r.epochs_trained for r in rows),
                   epochs_budget=sum(r.max_epochs or longest for r in rows),
                   max_epochs=maxima.pop() if len(maxima) == 1 else None, trial_time_s=sum(times),
                   span_s=(max(ends) - min(starts)).total_seconds() if starts and ends else None)


def _attr(trials: Sequence[Any], key: str) -> Optional[str]:
    return next((t.user_attrs[key] for t in trials if key in t.user_attrs), None)


def review_study(study: Any, storage_url: str, baseline: Optional[Path]) -> Review:
    trials = study.get_trials(deepcopy=False)
    target, budget = assignment()
    target = _number(_attr(trials, "constraints.target_acc"), float) or target
    budget = _number(_attr(trials, "constraints.max_params"), int) or budget
    directions = [d.name.lower() for d in study.directions]
    names = (_attr(trials, "objectives") or "").strip("[]").replace(" ", "").split(",")  # e.g. "[val_acc,params]"
    if len(names) != len(directions) or not all(names):
        names = ["val_acc"] if len(directions) == 1 else [f"objective {i}" for i in range(len(directions))]
    rows = rank([trial_row(t, target) for t in trials], directions)
    ref = metrics_row(read_metrics(baseline), BASELINE_LABEL) if baseline else None
    return Review(study.study_name, storage_url, directions, names, rows, summarize(rows), target, budget,
                  ref, baseline)


# ---------------------------------------------------------------- the winner: command and experiment

def run_command(overrides: Sequence[str], multirun: bool = False) -> str:
    return " ".join(["python sweep/run.py", *(["-m"] if multirun else []), *map(shlex.quote, overrides)])


def pick(review: Review, number: Optional[int]) -> Row:
    """The trial to save: the winner, or trial `number`, which must be complete (never a pruned one)."""
    if number is None:
        if review.winner is None:
            raise ConfigError(f"study {review.study!r} has no complete trial yet: nothing to save")
        return review.winner
    row = next((r for r in review.rows if r.number == number), None)
    if row is None or row.state != "complete":
        raise ConfigError(f"--trial={number}: {'no such trial' if row is None else row.label}; "
                          "only a complete trial can be saved")
    return row


def experiment_yaml(row: Row, name: str, review: Review) -> str:
    """conf/experiment/<name>.yaml: the trial's overrides as a config for seed confirmation."""
    import yaml
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not row.overrides:
        raise ConfigError(f"trial {row.number} has no 'overrides' record; it was run before they were recorded")
    defaults, values = [], {}
    for o in OverridesParser.create().parse_overrides(row.overrides):
        key = o.key_or_group
        if key == "experiment":
            raise ConfigError(f"trial {row.number} ran with +experiment={o.value()}; an experiment cannot include "
                              "another: write conf/experiment/NAME.yaml by hand from its overrides")
        if o.is_delete() or key in RUNTIME_KEYS or key == "sweep":
            continue
        if (CONF / key).is_dir():
            defaults.append({f"override /{key}": o.value()})
            continue
        node = values
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = o.value()
    values.setdefault("model", {})["name"] = name
    values.setdefault("data", {})["val_size"] = 0  # confirm on all 60k training images
    values["hydra"] = {"sweep": {"dir": "outputs/confirm/${model.name}", "subdir": "seed_${seed}"}}
    header = [
        "# @package _global_",
        f"# From study {review.study!r} ({review.storage}), {_trial_text(row, review)}.",
        f"# Written by `python sweep/review.py --study {review.study} --save-experiment {name}`; the search's",
        "# validation split, data subsets and per-machine settings are dropped. Confirm over seeds:",
        f"#   python sweep/run.py -m +experiment={name} seed=1,2,3",
    ]
    body = yaml.safe_dump({"defaults": defaults + [{"override /sweep": "none"}], **values},
                          sort_keys=False, default_flow_style=False)
    return "\n".join(header) + "\n" + body


def save_experiment(row: Row, name: str, review: Review, directory: Path) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ConfigError(f"--save-experiment={name!r}: use letters, digits, '_' and '-' only")
    path = Path(directory) / f"{name}.yaml"
    if path.exists():
        raise ConfigError(f"--save-experiment={name!r}: {path} exists; choose another name or delete it")
    text = experiment_yaml(row, name, review)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------- formatting

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


def _value(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _objective_text(row: Row, review: Review) -> str:
    if not row.objective:
        return "-"
    return " / ".join(fmt_pct(v) if n == "val_acc" else f"{v:,.0f}"
                      for n, v in zip(review.objective_names, row.objective))


def _trial_text(row: Row, review: Review) -> str:
    return (f"trial #{row.number}: objective {_objective_text(row, review)}, {fmt_int(row.params)} params, "
            f"{fmt_pct(row.test_acc)} test at the final epoch")


def _command(row: Row) -> str:
    return run_command(row.overrides) if row.overrides else "# the trial has no 'overrides' record"


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """'model.widths.c1' -> 'c1', unless two keys would share a short name."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last)}


def param_keys(rows: Sequence[Row]) -> list[str]:
    return sorted({k for r in rows for k in r.hparams})


def table_rows(review: Review, top: int) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the leaderboard for people (table and md): the baseline first."""
    shown = review.rows[:top]
    keys = param_keys(shown)
    headers = ["rank", "trial", "state", "params", "MACs", "objective", "best val acc", "test acc (final epoch)",
               f"first epoch >={review.target:.1%} test", "wall", *short_names(keys).values()]
    lines = []
    for r in ([review.baseline] if review.baseline else []) + shown:
        lines.append(["ref" if r.state == "baseline" else str(r.rank), "-" if r.number is None else f"#{r.number}",
                      r.label, fmt_int(r.params), fmt_macs(r.macs), _objective_text(r, review), fmt_pct(r.best_val),
                      fmt_pct(r.test_acc), str(r.first_at_target or "-"), fmt_duration(r.wall_s),
                      *(_value(r.hparams[k]) if k in r.hparams else "" for k in keys)])
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
    states = ", ".join(f"{n} {state}" for state, n in s.counts.items() if n or state in ("complete", "pruned"))
    budget = (f"{s.n_trials} x {s.max_epochs} = {s.epochs_budget}" if s.max_epochs is not None
              else f"{s.epochs_budget} (each trial's train.epochs)")
    lines = [f"study {review.study!r} ({review.storage}), {' / '.join(review.directions)} "
             f"{' / '.join(review.objective_names)}: {s.n_trials} trials: {states}",
             f"epochs trained: {s.epochs_trained} of {budget}: {s.saving:.1%} saved by pruning and rejection",
             f"rejected before training: {s.counts['rejected']} of {s.n_trials} ({s.rejected_fraction:.1%})",
             f"trial time: {fmt_duration(s.trial_time_s)} in total, "
             f"{fmt_duration(s.span_s)} from first start to last finish"]
    return lines


def winner_lines(review: Review) -> list[str]:
    w = review.winner
    if w is None:
        return ["winner: none yet (no complete trial; pruned trials never win)"]
    return [f"winner: {_trial_text(w, review)}", _command(w)]


def to_markdown(review: Review, top: int, plots: Optional[dict[str, Optional[str]]] = None) -> str:
    headers, cells = table_rows(review, top)
    w = review.winner
    parts = [f"# Review of study `{review.study}`", "",
             f"Storage `{review.storage}`, read {datetime.now():%Y-%m-%d %H:%M}.", "", "## Summary", "",
             *(f"- {line}" for line in summary_lines(review)), "", "## Winner", ""]
    if w is None:
        parts += ["No complete trial yet; pruned trials never win.", ""]
    else:
        parts += [f"The winner is {_trial_text(w, review)}. Re-run it:", "", "```bash", _command(w), "```", "",
                  "Confirm it over seeds on the full training set:", "", "```bash",
                  f"python sweep/review.py --study {review.study} --save-experiment NAME",
                  "python sweep/run.py -m +experiment=NAME seed=1,2,3", "```", ""]
    parts += [f"## Leaderboard (top {min(top, len(review.rows))} of {len(review.rows)})", "", md_table(headers, cells),
              "", "Ranked by the objective (mean validation accuracy over the last 3 epochs); pruned and running "
              "trials by their last reported value. Test accuracy is the final epoch's and is never used to rank."]
    if review.baseline_path:
        parts += ["", f"Reference row: `{review.baseline_path}`."]
    if review.front:
        parts += ["", "## Pareto front (final test accuracy vs params, complete trials)", "",
                  ", ".join(f"#{r.number} ({fmt_int(r.params)} params, {fmt_pct(r.test_acc)})" for r in review.front)]
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


# ---------------------------------------------------------------- plots (shared with results.py)

def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


BASELINE_STYLE = {"marker": "*", "ms": 15, "color": "black", "ls": "none", "zorder": 6}  # for plot/errorbar
ZOOM = 0.05  # accuracy axes show at most this far below the target when the runs get there


def reference_lines(ax: Any, target: Optional[float] = None, budgets: Sequence[int] = ()) -> None:
    for b in sorted(set(budgets)):
        ax.axvline(b, color="tab:red", ls="--", lw=1, label=f"budget: < {b:,} params")
    if target is not None:
        ax.axhline(target, color="tab:green", ls=":", lw=1.5, label=f"target {target:.1%}")


def accuracy_axis(ax: Any, values: Sequence[float], target: float, label: str, above: Sequence[float] = ()) -> None:
    """A percent y axis around `values` and the target, raised to fit `above` (pruned trials) but never lowered
    for them: diverged, pruned or early-epoch points must not squash the range near the target."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    focus = [v for v in values if v >= target - ZOOM] or list(values) or list(above)
    lo = min(focus + [target])
    hi = max(focus + [target] + [v for v in above if v >= lo])
    pad = max(hi - lo, 0.002) * 0.12
    ax.set_ylim(lo - pad, min(hi + pad, 1 + pad / 4))
    ax.yaxis.set_major_locator(MaxNLocator(steps=[1, 2, 5, 10]))  # ticks the formatter can print exactly
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=2 if hi - lo < 0.02 else 1))
    ax.set_ylabel(label)


def below_axis(ax: Any, label: str, values: Sequence[float]) -> str:
    """The legend label, with how many of `values` the zoomed axis leaves out."""
    n = sum(v < ax.get_ylim()[0] for v in values)
    return f"{label} ({n} below the axis)" if n else label


def params_axis(ax: Any, label: str = "parameters") -> None:
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x else "0"))
    ax.set_xlabel(label)


def save_figure(fig: Any, ax: Any, path: Path) -> None:
    """Legend outside the axes (it never hides a point), then a tight PNG."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    pyplot().close(fig)


def _first(r: Row) -> Optional[float]:
    return r.objective[0] if r.objective else None


def plot_history(review: Review, path: Path) -> Optional[str]:
    """Objective per trial: complete ones with the best so far, pruned/running faded at their last value."""
    done = sorted((r for r in review.rows if r.state == "complete" and r.objective), key=lambda r: r.number)
    partial = [r for r in review.rows if r.state in ("pruned", "running") and r.objective]
    if not done and not partial:
        return "no trial has reported a value yet"
    fig, ax = pyplot().subplots(figsize=(8, 4.5))
    name, sign = review.objective_names[0], 1 if review.directions[0] == "maximize" else -1
    if name == "val_acc":
        accuracy_axis(ax, [_first(r) for r in done], review.target, "val acc (mean of last 3 epochs)",
                      above=[_first(r) for r in partial])
    else:
        ax.set_ylabel(name)
    if partial:
        ax.scatter([r.number for r in partial], [_first(r) for r in partial], color="grey", alpha=0.35,
                   label=below_axis(ax, "pruned / running: last value", [_first(r) for r in partial]))
    if done:
        ax.scatter([r.number for r in done], [_first(r) for r in done], color="tab:blue",
                   label=below_axis(ax, "complete", [_first(r) for r in done]))
        best = [_first(done[0])]
        for r in done[1:]:
            best.append(_first(r) if sign * _first(r) > sign * best[-1] else best[-1])
        ax.step([r.number for r in done], best, where="post", color="tab:orange", label="best so far")
    failed = [r.number for r in review.rows if r.state in ("rejected", "failed")]
    if failed:  # at the foot of the axes: they have no value
        ax.plot(failed, [0.03] * len(failed), "x", color="tab:red", transform=ax.get_xaxis_transform(),
                label="rejected / failed")
    ax.xaxis.set_major_locator(_integer_locator())
    ax.set_xlabel("trial number")
    ax.set_title(f"Optimization history: study {review.study}")
    save_figure(fig, ax, path)
    return None


def _integer_locator() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def plot_acc_vs_params(review: Review, path: Path) -> Optional[str]:
    """Final test accuracy vs params: complete trials, pruned faded, the Pareto front, budget, target, baseline."""
    done = [r for r in review.rows if r.state == "complete" and r.test_acc is not None and r.params]
    pruned = [r for r in review.rows if r.state == "pruned" and r.test_acc is not None and r.params]
    if not done and not pruned:
        return "no trial has a test accuracy yet"
    fig, ax = pyplot().subplots(figsize=(8, 5))
    ref = review.baseline if review.baseline and review.baseline.params and review.baseline.test_acc else None
    accuracy_axis(ax, [r.test_acc for r in done] + ([ref.test_acc] if ref else []), review.target,
                  "test accuracy (final epoch)", above=[r.test_acc for r in pruned])
    if pruned:
        ax.scatter([r.params for r in pruned], [r.test_acc for r in pruned], color="grey", alpha=0.3,
                   label=below_axis(ax, "pruned (when stopped)", [r.test_acc for r in pruned]))
    if done:
        ax.scatter([r.params for r in done], [r.test_acc for r in done], color="tab:blue",
                   label=below_axis(ax, "complete", [r.test_acc for r in done]))
    front = review.front
    if front:
        ax.plot([r.params for r in front], [r.test_acc for r in front], "-o", color="tab:orange", mfc="none",
                ms=11, mew=2, label="Pareto front (max acc, min params)")
        for r in front:
            ax.annotate(f"#{r.number}", (r.params, r.test_acc), textcoords="offset points", xytext=(6, 6),
                        fontsize="small")
    if ref:
        ax.plot([ref.params], [ref.test_acc], label=BASELINE_LABEL, **BASELINE_STYLE)
    reference_lines(ax, review.target, [review.budget])
    ax.set_xlim(0, max([review.budget] + [r.params for r in done + pruned] + ([ref.params] if ref else [])) * 1.08)
    params_axis(ax)
    ax.set_title(f"Test accuracy vs parameters: study {review.study}")
    save_figure(fig, ax, path)
    return None


def plot_curves(review: Review, path: Path) -> Optional[str]:
    """Per-epoch test accuracy of the top complete trials and the baseline."""
    top = [r for r in review.rows if r.state == "complete" and r.test_curve][:CURVES]
    if not top:
        return "no complete trial has per-epoch test accuracies"
    ref = review.baseline if review.baseline and review.baseline.test_curve else None
    fig, ax = pyplot().subplots(figsize=(8, 4.5))
    for r in top:
        ax.plot(range(1, len(r.test_curve) + 1), r.test_curve, marker=".",
                label=f"#{r.number}: {fmt_int(r.params)} params, objective {_objective_text(r, review)}")
    if ref:
        ax.plot(range(1, len(ref.test_curve) + 1), ref.test_curve, "--", color="black", lw=2,
                label=f"{BASELINE_LABEL}: {fmt_int(ref.params)} params")
    accuracy_axis(ax, [a for r in top + ([ref] if ref else []) for a in r.test_curve], review.target,
                  "test accuracy")
    reference_lines(ax, review.target)
    ax.xaxis.set_major_locator(_integer_locator())
    ax.set_xlabel("epoch")
    ax.set_title(f"Test accuracy per epoch: top {len(top)} complete trials" + (" and the baseline" if ref else ""))
    save_figure(fig, ax, path)
    return None


def importances(review: Review) -> dict[str, float]:
    """Hyperparameter importances over complete trials only (a pruned trial's value is partial).

    Mean decrease in impurity: Optuna 2.10's default fANOVA fails on scikit-learn >= 1.3."""
    import optuna

    done = [r.trial for r in review.rows if r.state == "complete" and r.objective]
    varying = {k for k in param_keys(review.rows) if len({repr(t.params.get(k)) for t in done}) > 1}
    if len(done) < 2 or not varying:
        raise ValueError(f"needs 2 or more complete trials with varying parameters ({len(done)} complete)")
    copy = optuna.create_study(directions=review.directions)  # in memory: the storage is never written
    copy.add_trials(done)
    return optuna.importance.get_param_importances(
        copy, evaluator=optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0),
        params=sorted(varying), target=lambda t: t.values[0])


def plot_importances(review: Review, path: Path) -> Optional[str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning and scikit-learn's
            scores = importances(review)
    except (ValueError, RuntimeError) as e:
        return str(e)
    names = list(scores)[::-1]
    fig, ax = pyplot().subplots(figsize=(8, max(2.5, 1 + 0.4 * len(names))))
    ax.barh(names, [scores[n] for n in names], color="tab:blue",
            label=f"{sum(r.state == 'complete' for r in review.rows)} complete trials")
    ax.set_xlabel(f"importance for {review.objective_names[0]} (mean decrease in impurity)")
    ax.set_ylabel("hyperparameter")
    ax.set_title(f"Hyperparameter importances: study {review.study}")
    save_figure(fig, ax, path)
    return None


PLOTS = {"history.png": plot_history, "acc_vs_params.png": plot_acc_vs_params, "curves.png": plot_curves,
         "importances.png": plot_importances}


def write_report(review: Review, out: Path, top: int) -> dict[str, Optional[str]]:
    """leaderboard.csv, the plots and report.md in `out`; returns each plot's skip note (None: written)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "leaderboard.csv").write_text(to_csv(review))
    plots = {}
    for name, plot in PLOTS.items():
        (out / name).unlink(missing_ok=True)  # a skipped plot must not leave an older one behind
        plots[name] = plot(review, out / name)
    (out / "report.md").write_text(to_markdown(review, top, plots))
    return plots


# ---------------------------------------------------------------- dashboard and entry point

def serve_dashboard(storage: Any, url: str, study: str, port: int) -> None:
    """optuna-dashboard on 127.0.0.1:port, on the read-only storage, until Ctrl-C.

    The server runs in a thread so that Ctrl-C always reaches the main thread: under optuna_dashboard.run_server,
    wsgiref swallows a KeyboardInterrupt that lands while a request is answered, and the browser polls."""
    import threading
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    import optuna_dashboard

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:  # one line per poll of the browser otherwise
            pass

    try:
        server = make_server("127.0.0.1", port, optuna_dashboard.wsgi(storage), Server, QuietHandler)
    except OSError as e:
        raise ConfigError(f"--port={port}: cannot listen on 127.0.0.1:{port} ({e.strerror or e}); "
                          "choose another port") from None
    names = {s.study_name: s._study_id for s in storage.get_all_study_summaries()}
    page = f"/dashboard/studies/{names[study]}" if study in names else "/dashboard"
    print(f"optuna-dashboard on {url} (read-only): http://127.0.0.1:{port}{page}  (Ctrl-C to stop)", flush=True)
    thread = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)
    thread.start()
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
    finally:
        server.server_close()


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    sweeper = sweep_defaults()
    p = argparse.ArgumentParser(description="Review an Optuna study of the sweep (never writes to it).")
    p.add_argument("--storage", default=sweeper.storage, help="storage URL (default: %(default)s, cwd-relative)")
    p.add_argument("--study", default=sweeper.study_name, help="study name (default: %(default)s)")
    p.add_argument("--top", type=int, default=10, help="leaderboard rows shown (default: %(default)s)")
    p.add_argument("--format", choices=("table", "md", "csv", "json"), default="table", help="stdout format")
    p.add_argument("--out", type=Path, help="report folder (default: outputs/review/<study>)")
    p.add_argument("--baseline", type=Path, help="metrics.json of a baseline run (default: the newest of "
                   + ", ".join(BASELINE_GLOBS) + ")")
    p.add_argument("--save-experiment", metavar="NAME", help="write the winner as conf/experiment/NAME.yaml")
    p.add_argument("--trial", type=int, help="with --save-experiment: save this complete trial, not the winner")
    p.add_argument("--experiment-dir", type=Path, default=CONF / "experiment",
                   help="where --save-experiment writes (default: conf/experiment)")
    p.add_argument("--dashboard", action="store_true", help="serve optuna-dashboard on 127.0.0.1 until Ctrl-C")
    p.add_argument("--port", type=int, default=8080, help="dashboard port (default: %(default)s)")
    args = p.parse_args(argv)
    if args.top < 1:
        p.error(f"--top={args.top}: must be >= 1")
    if args.trial is not None and not args.save_experiment:
        p.error("--trial needs --save-experiment NAME")
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    storage = open_readonly(args.storage)
    if args.dashboard:
        return serve_dashboard(storage, args.storage, args.study, args.port)
    study = load_study(storage, args.study, args.storage)
    if args.baseline and not args.baseline.is_file():
        raise ConfigError(f"--baseline={args.baseline}: no such file")
    baseline = args.baseline or find_baseline()
    review = review_study(study, args.storage, baseline)
    if args.save_experiment:  # before the plots: a name that is taken fails at once
        path = save_experiment(pick(review, args.trial), args.save_experiment, review, args.experiment_dir)
        print(f"wrote {path}; confirm: python sweep/run.py -m +experiment={args.save_experiment} seed=1,2,3",
              file=sys.stderr)
    out = args.out or Path("outputs") / "review" / args.study
    plots = write_report(review, out, args.top)
    sys.stdout.write(render(review, args.format, args.top, plots, out))
    print(f"report: {out}/report.md", file=sys.stderr)


if __name__ == "__main__":
    from sweep.cli import report_errors

    report_errors(main)
