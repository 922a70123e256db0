"""The winner (or a chosen complete trial) written as conf/experiment/NAME.yaml, ready for seed confirmation."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from archsearch.core.config import MACHINE_KEYS
from archsearch.core.defaults import CONF
from archsearch.core.errors import ConfigError
from archsearch.report.ranking import Review
from archsearch.report.rows import Row
from archsearch.report.tables import trial_text


def study_stem(study: str) -> str:
    """The study's name made safe for a file or directory name."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", study)


def finalist_name(study: str, number: int) -> str:
    """<study>_t<number>: the finalist's model.name, run directory and experiment name."""
    return f"{study_stem(study)}_t{number}"


# What only the search used (its split, subsets, objectives, trial bookkeeping) and where or how a trial ran: a
# confirmation run sets its own.
RUNTIME_KEYS = {*MACHINE_KEYS, "trial", "objectives", "data.train_subset", "data.test_subset", "data.val_size"}


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


def experiment_yaml(row: Row, name: str, review: Review, note: Optional[str] = None,
                    written_by: Optional[str] = None) -> str:
    """conf/experiment/<name>.yaml: the trial's overrides as a config for seed confirmation. `note` is a comment
    line placed right under `# @package _global_` (Hydra reads the package only from the file's leading `# @`
    lines, so nothing may come before it); `written_by` the command named as the writer (default: the review's)."""
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
    written_by = written_by or f"python sweep/review.py --study {review.study} --save-experiment {name}"
    header = [
        "# @package _global_",
        *([f"# {' '.join(note.split())}"] if note else []),
        f"# From study {review.study!r} ({review.storage}), {trial_text(row, review)}.",
        f"# Written by `{written_by}`; the search's",
        "# validation split, data subsets and per-machine settings are dropped. Confirm over seeds:",
        f"#   python sweep/run.py -m +experiment={name} seed=101,102,103  # seeds no search trains",
    ]
    body = yaml.safe_dump({"defaults": defaults + [{"override /sweep": "none"}], **values},
                          sort_keys=False, default_flow_style=False)
    return "\n".join(header) + "\n" + body


def save_experiment(row: Row, name: str, review: Review, directory: Path, note: Optional[str] = None,
                    written_by: Optional[str] = None) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ConfigError(f"--save-experiment={name!r}: use letters, digits, '_' and '-' only")
    path = Path(directory) / f"{name}.yaml"
    if path.exists():
        raise ConfigError(f"--save-experiment={name!r}: {path} exists; choose another name or delete it")
    text = experiment_yaml(row, name, review, note, written_by)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
