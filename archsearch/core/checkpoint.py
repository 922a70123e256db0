"""Checkpoints as archsearch/core/train.py writes them: {"state_dict": the model's weights, "config": the run's resolved
config}. A checkpoint rebuilds its model from its config alone; loading checks it, never trusts it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from archsearch.core.errors import CheckpointError, ConfigError

ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at path as {"state_dict": ..., "config": ...}; CheckpointError names the file and the problem."""
    import torch

    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    try:
        with path.open("rb") as f:
            head = f.read(len(ZIP_MAGIC))
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from e
    if head == ZIP_MAGIC and (problem := _zip_problem(path)):
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({problem})")
    try:  # weights_only: tensors and plain containers only, so a tampered file cannot run code
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - RuntimeError, OSError, KeyError, EOFError, UnpicklingError...
        why = (e.strerror if isinstance(e, OSError) and e.strerror else " ".join(str(e).split()).split(". ")[0]
               or type(e).__name__)
        if not head:
            raise CheckpointError(f"{path}: empty file, not a checkpoint") from e
        if head != ZIP_MAGIC:
            raise CheckpointError(f"{path}: not a checkpoint, not a file that torch.save wrote "
                                  f"(torch.load: {type(e).__name__} {why})") from e
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({why})") from e
    if not (isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict)
            and isinstance(checkpoint.get("config"), dict) and isinstance(checkpoint["config"].get("model"), dict)):
        got = type(checkpoint).__name__
        if isinstance(checkpoint, dict):
            got += f" with {len(checkpoint)} keys: {_some(sorted(map(str, checkpoint)))}"
        raise CheckpointError(f"{path}: not a checkpoint of sweep/run.py (expected a dict with 'state_dict' and "
                              f"'config' holding the run config; got {got})")
    return checkpoint


def _zip_problem(path: Path) -> str | None:
    """What is wrong with the zip archive that torch.save wrote, or None. Its CRCs are checked here because
    torch.load does not check them: a flipped byte in a weight would load without a word."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile:
        return "no intact zip directory at its end: cut short or overwritten"
    except Exception as e:  # noqa: BLE001 - whatever a damaged archive makes zipfile raise
        return f"unreadable zip archive: {type(e).__name__}: {' '.join(str(e).split())}"
    return f"{bad} fails its CRC check" if bad else None


def restore(path: Path, checkpoint: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(model with the checkpoint's weights, its ModelReport, the run config as a DictConfig)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from archsearch.core.model import build_model

    try:
        cfg = OmegaConf.create(checkpoint["config"])
        model, report = build_model(cfg.model)
    except (ConfigError, OmegaConfBaseException) as e:
        why = " ".join(str(e).split()).split(" full_key:")[0]
        raise CheckpointError(f"{path}: its config does not build a model ({why})") from e
    state = checkpoint["state_dict"]
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    mismatched = [f"{k} {_shape(state[k])} vs {_shape(v)}" for k, v in want.items()
                  if k in state and _shape(state[k]) != _shape(v)]
    if missing or unexpected or mismatched:
        labelled = (("missing", missing), ("unexpected", unexpected), ("shape checkpoint vs model", mismatched))
        problems = [f"{label}: {_some(keys)}" for label, keys in labelled if keys]
        raise CheckpointError(f"{path}: state_dict does not fit the model its config builds "
                              f"(model '{cfg.model.name}', {report.params:,} params; {'; '.join(problems)})")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as e:  # e.g. a non-tensor value under a right key
        raise CheckpointError(f"{path}: state_dict does not fit the model its config builds "
                              f"({' '.join(str(e).split())})") from e
    return model, report, cfg


def _some(items: list[str], n: int = 3) -> str:
    """The first n items, and how many there are when that is more."""
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _shape(value: Any) -> Any:
    return list(value.shape) if hasattr(value, "shape") else type(value).__name__


def save_checkpoint(model: Any, config: dict[str, Any], path: Path) -> None:
    """Write the model's weights with the run's resolved config (what restore() rebuilds it from)."""
    import torch

    torch.save({"state_dict": model.state_dict(), "config": config}, path)


def load_teacher(path: str, device: str, channels_last: bool) -> tuple[Any, dict[str, Any]]:
    """A distillation teacher: the model of a checkpoint this tool wrote, frozen in eval mode on `device`, and
    what it is (file, params, what it trained on, and from the run's metrics.json beside it: its test accuracy
    and what it cost)."""
    import json

    import torch

    from archsearch.core.provenance import teacher_trained_on

    model, report, _ = restore(Path(path), load_checkpoint(Path(path)))
    model = model.to(device).eval().requires_grad_(False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    info: dict[str, Any] = {"checkpoint": str(path), "params": report.params, "macs": report.macs,
                            "trained_on": teacher_trained_on(Path(path))}
    metrics_path = Path(path).with_name("metrics.json")
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        info.update(name=metrics["config"]["model"]["name"], seed=metrics["config"]["seed"],
                    test_acc=metrics["epochs"][-1]["test_acc"], epochs=len(metrics["epochs"]),
                    wall_time_s=metrics.get("wall_time_s"))
    return model, info
