"""Which of the 60k MNIST training images a run trained on and which it validated on, as augment.split draws
them; and the refusal of a distillation teacher that trained on this run's validation images."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from archsearch.core.errors import ConfigError

TRAIN_IMAGES = 60_000  # the MNIST training set, from which validation is held out; the 10k test set never is
SPLIT_KEYS = ("split_seed", "val_size", "train_subset")


def trained_on(data: Any) -> dict[str, int]:
    """metrics.json's record of the images a run trained on, from its data config (a DictConfig or a dict):
    enough to recompute them (split_indices)."""
    record = {k: int(data[k]) for k in SPLIT_KEYS}
    return {**record, "images": (record["train_subset"] or TRAIN_IMAGES) - record["val_size"]}


def split_indices(split_seed: int, val_size: int, train_subset: int) -> tuple[Any, Any]:
    """(validation, training) indices into the 60k training images: the first val_size of a permutation fixed
    by split_seed (cut to train_subset), and the rest, as augment.split takes them."""
    import torch

    pool = torch.randperm(TRAIN_IMAGES, generator=torch.Generator().manual_seed(split_seed))
    if train_subset:
        pool = pool[:train_subset]
    return pool[:val_size], pool[val_size:]


def teacher_trained_on(checkpoint: Path) -> Optional[dict[str, int]]:
    """What the teacher at `checkpoint` trained on, from the metrics.json beside it: its trained_on record, or
    for runs written before that record, the data config it stored; None when neither says."""
    metrics_path = checkpoint.with_name("metrics.json")
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(metrics.get("trained_on"), dict):
        return metrics["trained_on"]
    data = (metrics.get("config") or {}).get("data") or {}
    return trained_on(data) if all(isinstance(data.get(k), int) for k in SPLIT_KEYS) else None


def check_teacher(cfg: Any) -> None:
    """Refuse (ConfigError) a distillation teacher whose run trained on any of this run's validation images, or
    that has no record of what it trained on; a run without a validation split may use any teacher. A named
    teacher is checked even at weight 0: a sweep that searches the weight then fails before its first trial."""
    d, path = cfg.data, cfg.train.distill.teacher
    if path is None or not d.val_size:
        return
    if not Path(path).is_file():
        raise ConfigError(f"train.distill.teacher={path}: no such file; give a model.pt this tool trained")
    seen = teacher_trained_on(Path(path))
    if seen is None:
        raise ConfigError(f"train.distill.teacher={path}: no metrics.json beside it records which images its run "
                          f"trained on, so it may have seen this run's validation images; use a teacher this "
                          f"tool trained with data.split_seed={d.split_seed} and data.val_size >= {d.val_size}")
    import torch

    val, _ = split_indices(d.split_seed, d.val_size, d.train_subset)
    _, taught = split_indices(seen["split_seed"], seen["val_size"], seen["train_subset"])
    overlap = int(torch.isin(val, taught).sum())
    if overlap:
        raise ConfigError(f"train.distill.teacher={path}: its run trained on {overlap:,} of this run's "
                          f"{d.val_size:,} validation images (data.split_seed={d.split_seed}, "
                          f"data.val_size={d.val_size}); use a teacher trained with the same data.split_seed "
                          f"and data.val_size >= {d.val_size}")
