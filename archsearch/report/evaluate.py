"""Evaluate saved models: `python sweep/evaluate.py PATH/model.pt [more.pt ...]` rebuilds each model from
its checkpoint alone (the run's resolved config and its weights, as archsearch/core/train.py writes them) and
prints params, MACs, FC-free and the accuracy on the full 10k MNIST test set, one row per checkpoint,
measured as training measures it (eval mode; fp32 on a CPU). A file that cannot be evaluated gets one
`error:` line on stderr, the others are still evaluated, and the exit code is 2."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from archsearch.core.checkpoint import load_checkpoint, restore
from archsearch.core.errors import EXIT_USER_ERROR, ArchSearchError, CheckpointError

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

    from archsearch.core.data import load_mnist
    from archsearch.core.train import evaluate, resolve_precision

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

    from archsearch.core.train import resolve_device

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
