"""The acceptance rule ("confirmed"), in one place for confirm.py and results.py: a configuration is CONFIRMED
when, for every seed (at least MIN_SEEDS), its test accuracy is at least the assignment's target_acc in each of
the last LAST epochs, and it has no fully connected layer, fewer params than the assignment's max_params and at
most its max_epochs epochs (conf/constraints/assignment.yaml). Every run is judged against the assignment, never
against the constraints its own config set: those are shown only as information. Runs are read from the
metrics.json that training wrote."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from archsearch.core.defaults import CONF, assignment
from archsearch.core.errors import ConfigError
from archsearch.core.records import OBJECTIVE_EPOCHS as LAST  # the rule judges the epochs the objective averages
from archsearch.core.records import first_epoch_at
from archsearch.report.rows import BASELINE_LABEL, read_metrics
from archsearch.report.tables import fmt_duration, fmt_int, fmt_pct, run_command

MIN_SEEDS = 3  # one seed is a result; confirmation needs repeats
BASELINE = "baseline"  # model.name of the documented Net (conf/model/baseline.yaml)


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
    target: float  # the assignment's limits, which the rule judges against
    max_params: int
    max_epochs: int
    own_constraints: dict[str, Any]  # what the run's own config set (constraints.*): information only
    overrides: list[str]  # the job's overrides without seed=, from .hydra/overrides.yaml
    teacher: Optional[dict[str, Any]] = None  # the distillation teacher its metrics.json names, if any

    @property
    def last(self) -> list[float]:
        return self.test[-LAST:]

    def own_limits_note(self) -> Optional[str]:
        """What the run's config asked where it differs from the assignment, e.g. 'its config asked target 90.0%'."""
        own = self.own_constraints
        asked = [f"target {own['target_acc']:.1%}" if own.get("target_acc") != self.target else "",
                 f"max_params {own['max_params']:,}" if own.get("max_params") != self.max_params else "",
                 f"max_epochs {own['max_epochs']}" if own.get("max_epochs") != self.max_epochs else ""]
        return f"its config asked {', '.join(a for a in asked if a)}" if any(asked) else None


def assignment_limits() -> tuple[float, int, int]:
    """(target_acc, max_params, max_epochs) of the assignment: what every run is judged against."""
    from omegaconf import OmegaConf

    target, max_params = assignment()
    return target, max_params, int(OmegaConf.load(CONF / "constraints" / "assignment.yaml").max_epochs)


def read_run(metrics_path: Path) -> Run:
    """A run from its metrics.json and, for the command that made it, its .hydra/overrides.yaml."""
    from omegaconf import OmegaConf

    m = read_metrics(metrics_path)
    cfg = m["config"]
    overrides_yaml = metrics_path.parent / ".hydra" / "overrides.yaml"
    overrides = list(OmegaConf.load(overrides_yaml)) if overrides_yaml.is_file() else []
    target, max_params, max_epochs = assignment_limits()
    test = [e["test_acc"] for e in m["epochs"]]
    return Run(path=metrics_path.parent, name=cfg["model"]["name"], seed=cfg["seed"], status=m["status"],
               reason=m.get("reason"), params=m["params"], macs=m["macs"], fc_layers=m["fc_layers"], test=test,
               first_at_target=first_epoch_at(test, target), wall_s=m.get("wall_time_s"), target=target,
               max_params=max_params, max_epochs=max_epochs, own_constraints=dict(cfg["constraints"]),
               overrides=[o for o in overrides if not o.startswith("seed=")], teacher=m.get("teacher"))


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
    def teacher(self) -> Optional[dict[str, Any]]:
        return self.first.teacher

    def recipe(self) -> str:
        """'distilled from <teacher>' with what the teacher is and cost, or 'no teacher'."""
        t = self.teacher
        if not t:
            return "no teacher"
        who = f"{t.get('name', t['checkpoint'])}" + (f" seed {t['seed']}" if t.get("seed") is not None else "")
        cost = (f"; trained {t['epochs']} epochs in {fmt_duration(t['wall_time_s'])}" if t.get("wall_time_s")
                else "")
        return f"distilled from {who} ({fmt_int(t['params'])} params{cost}; {teacher_images(t)})"

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
            misses.append(f"{r.params:,} params, not under the assignment's {r.max_params:,}")
        longest = max(len(run.test) for run in self.runs)
        if longest > r.max_epochs:
            misses.append(f"{longest} epochs, over the assignment's {r.max_epochs}")
        if len(self.runs) < MIN_SEEDS:
            misses.append(f"{len(self.runs)} seed(s); confirmation needs {MIN_SEEDS}")
        if len({(run.params, tuple(run.fc_layers)) for run in self.runs}) > 1:
            misses.append("its seeds trained different models (params differ); re-run them with one config")
        return misses

    @property
    def confirmed(self) -> bool:
        return not self.accuracy_misses() and not self.rule_misses()

    def verdict(self) -> str:
        r, misses, note = self.first, self.accuracy_misses(), self.own_limits_note()
        reached = f"every seed reaches {r.target:.1%} in each of the last {LAST} epochs (min {fmt_pct(self.min)})"
        if self.confirmed:
            text = (f"**CONFIRMED**: FC-free, {r.params:,} < {r.max_params:,} params, "
                    f"{max(len(x.test) for x in self.runs)} <= {r.max_epochs} epochs; {reached}.")
        else:
            below = ["accuracy rule fails: " + "; ".join(misses)] if misses else []
            text = f"**NOT CONFIRMED**: {'; '.join(self.rule_misses() + below)}."
            text = text if misses else f"{text} Accuracy alone passes: {reached}."
        return f"{text} {note}" if note else text

    def own_limits_note(self) -> Optional[str]:
        """Where the runs' own configs set other limits than the assignment, what they asked (information only)."""
        notes = sorted({n for r in self.runs if (n := r.own_limits_note())})
        return f"Judged against the assignment; {'; '.join(notes)}." if notes else None

    def commands(self) -> list[str]:
        """Commands that reproduce the runs found: one per distinct set of overrides, with their seeds."""
        by_overrides: dict[tuple[str, ...], list[int]] = {}
        for r in self.runs:
            by_overrides.setdefault(tuple(r.overrides) or (f"+experiment={self.name}",), []).append(r.seed)
        return [run_command([*o, "seed=" + ",".join(map(str, sorted(seeds)))], multirun=True)
                for o, seeds in by_overrides.items()]


def teacher_images(teacher: dict[str, Any]) -> str:
    """Which training images a run's teacher saw: its own record, or the metrics.json beside its checkpoint."""
    from archsearch.core.provenance import TRAIN_IMAGES, teacher_trained_on

    seen = teacher.get("trained_on") or teacher_trained_on(Path(teacher["checkpoint"]))
    if seen is None:
        return "its training images unrecorded"
    if seen["images"] == TRAIN_IMAGES:
        return "it trained on all 60,000 training images"
    held_out = f", the {seen['val_size']:,} validation images of split {seen['split_seed']} held out" if seen[
        "val_size"] else ""
    return f"it trained on {seen['images']:,} training images{held_out}"


def find_experiments(confirm_dir: Path) -> list[Experiment]:
    """Every <confirm_dir>/*/seed_*/metrics.json grouped by model.name; the baseline first, then by params."""
    paths = sorted(Path(confirm_dir).glob("*/seed_*/metrics.json"))
    if not paths:
        raise ConfigError(f"--confirm-dir={confirm_dir}: no */seed_*/metrics.json there; confirm a configuration "
                          "first: python sweep/run.py -m +experiment=NAME seed=101,102,103")
    groups: dict[str, list[Run]] = {}
    for path in paths:
        run = read_run(path)
        groups.setdefault(run.name, []).append(run)
    experiments = [Experiment(name, sorted(runs, key=lambda r: r.seed)) for name, runs in groups.items()]
    return sorted(experiments, key=lambda e: (e.name != BASELINE, e.first.params or 0, e.name))
