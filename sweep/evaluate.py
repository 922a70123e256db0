"""Evaluate saved models: `python sweep/evaluate.py PATH/model.pt [more.pt ...]` rebuilds each model from
its checkpoint alone (the run's resolved config and its weights, as sweep/train.py writes them) and
prints params, MACs, FC-free and the accuracy on the full 10k MNIST test set, one row per checkpoint,
measured as training measures it (eval mode; fp32 on a CPU). A file that cannot be evaluated gets one
`error:` line on stderr, the others are still evaluated, and the exit code is 2."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sweep.cli import EXIT_USER_ERROR, report_errors
from sweep.errors import ArchSearchError, CheckpointError, ConfigError

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
        raise CheckpointError(f"{path}: not a checkpoint of sweep/train.py (expected a dict with 'state_dict' and "
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

    from sweep.model import build_model

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


def evaluate_checkpoint(path: Path, device: str, data_root: str | None) -> dict[str, Any]:
    """One row: the checkpoint's accounting and its accuracy on the full MNIST test set."""
    from omegaconf.errors import OmegaConfBaseException

    model, report, cfg = restore(path, load_checkpoint(path))
    try:
        acc, n_test, precision = _test_accuracy(model, cfg, device, data_root)
    except OmegaConfBaseException as e:  # a config without a key that evaluation reads
        raise CheckpointError(f"{path}: its config lacks a key evaluation needs "
                              f"({getattr(e, 'full_key', None) or ' '.join(str(e).split())})") from e
    return {"file": str(path), "model": cfg.model.name, "params": report.params, "macs": report.macs,
            "fc_free": report.fc_free, "test_acc": acc, "n_test": n_test, "device": device, "precision": precision}


def _test_accuracy(model: Any, cfg: Any, device: str, data_root: str | None) -> tuple[float, int, str]:
    """Accuracy on all 10k test images, measured by training's own evaluate() (eval mode, to_input's
    normalization), with the model and the batches in the run's memory format; fp32 on a CPU, the run's
    precision (resolve_precision) on CUDA."""
    import contextlib

    import torch

    from sweep.data import load_mnist
    from sweep.train import evaluate, resolve_precision

    model = model.to(device)
    if cfg.train.channels_last:  # to_input makes the batches channels_last too
        model = model.to(memory_format=torch.channels_last)
    bf16 = device == "cuda" and resolve_precision(cfg.train.precision) == "bf16"

    def autocast() -> Any:
        return torch.autocast(device_type=device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    data = load_mnist(data_root if data_root is not None else cfg.data.root)
    images, labels = data.test_images.to(device), data.test_labels.to(device)
    return evaluate(model, images, labels, cfg, autocast), len(labels), "bf16" if bf16 else "fp32"


HEADER = f"{'params':>8} {'MACs':>11} {'FC-free':>7} {'test_acc':>8}  checkpoint"


def table_row(row: dict[str, Any]) -> str:
    return (f"{row['params']:>8,} {row['macs']:>11,} {'yes' if row['fc_free'] else 'no':>7} "
            f"{row['test_acc']:>8.4f}  {row['file']}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sweep/evaluate.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path, metavar="model.pt",
                        help="checkpoints written by a run (train.checkpoint=true): <run dir>/model.pt")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: cuda when present, else cpu (default)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0 = torch's default")
    parser.add_argument("--data-root", default=None,
                        help="where MNIST is (prepared if missing); default: each checkpoint's data.root")
    args = parser.parse_args(argv)
    if args.threads < 0:
        parser.error("--threads must be >= 0")

    import torch

    from sweep.train import resolve_device

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, failed = [], False
    if args.format == "table":
        print(HEADER, flush=True)
    for path in args.checkpoints:
        try:
            row = evaluate_checkpoint(path, device, args.data_root)
        except ArchSearchError as e:  # this file only: report it and go on with the others
            message = str(e) if isinstance(e, CheckpointError) else f"{path}: {e}"
            print(f"error: {message}", file=sys.stderr, flush=True)
            failed = True
            continue
        rows.append(row)
        if args.format == "table":
            print(table_row(row), flush=True)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    return EXIT_USER_ERROR if failed else 0


if __name__ == "__main__":
    sys.exit(report_errors(lambda: main(sys.argv[1:])))
