"""How soft are a teacher's targets? `python bench/teachers.py CKPT [CKPT ...] [--temperature 1,1.5,2,4]`

For each checkpoint (a run's model.pt, as train.distill.teacher takes it) and temperature T, prints the mean
top-class probability and the mean entropy (nats; log 10 = 2.30 is uniform) of softmax(logits / T) over the
first --images validation images (the 10k training images that the search holds out, data.val_size=10000 with
data.split_seed=0: a teacher is a choice, so it is measured off the test set), and the label smoothing the teacher
was trained with. Distillation at T pulls the
student towards these targets, with weight train.distill.weight * T^2: a teacher trained with label smoothing
has compressed logits, so at the same T its targets are flatter, near uniform at T=4. Choose T so that
its targets are as sharp as those of a teacher known to help. Never trains."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def target_softness(path: Path, temperatures: list[float], images: Any) -> list[list[str]]:
    """Rows of (teacher, label smoothing, T, mean top probability, mean entropy) for one checkpoint, over
    `images` (uint8 images, as load_mnist gives them)."""
    import torch

    from archsearch.core.checkpoint import load_checkpoint, load_teacher, restore
    from archsearch.core.train import to_input

    _, _, cfg = restore(path, load_checkpoint(path))
    teacher, info = load_teacher(str(path), "cpu", channels_last=False)
    with torch.inference_mode():
        logits = teacher(to_input(images, cfg)).float()
    rows = []
    for t in temperatures:
        p = torch.softmax(logits / t, dim=1)
        entropy = -(p * p.clamp_min(1e-12).log()).sum(1).mean().item()
        rows.append([info.get("name", str(path)), f"{cfg.train.label_smoothing:.3g}", f"{t:g}",
                     f"{p.max(1).values.mean().item():.3f}", f"{entropy:.3f}"])
    return rows


def held_out_images(root: str, n: int, val_size: int, split_seed: int) -> Any:
    """The first n validation images of the search's split (archsearch/core/provenance.py, split_indices), as uint8."""
    from archsearch.core.data import load_mnist
    from archsearch.core.provenance import split_indices

    val, _ = split_indices(split_seed, val_size, 0)
    return load_mnist(root).train_images[val[:n]]


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--temperature", default="1,1.5,2,4", help="comma-separated (default: %(default)s)")
    p.add_argument("--images", type=int, default=2000, help="the first N validation images (default: %(default)s)")
    p.add_argument("--val-size", type=int, default=10_000, help="the search's split (default: %(default)s)")
    p.add_argument("--split-seed", type=int, default=0, help="the search's split (default: %(default)s)")
    p.add_argument("--data-root", default="data")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    temperatures = [float(t) for t in args.temperature.split(",")]
    torch.set_num_threads(args.threads)
    if not 0 < args.images <= args.val_size:
        raise SystemExit(f"--images={args.images}: must be in [1, --val-size={args.val_size}]")
    images = held_out_images(args.data_root, args.images, args.val_size, args.split_seed)
    print(f"Over the first {len(images):,} of {args.val_size:,} validation images (split_seed {args.split_seed}).\n")
    print("| teacher | label smoothing | T | mean top probability | mean entropy (nats) |")
    print("| --- | --- | --- | --- | --- |")
    for path in args.checkpoints:
        for row in target_softness(path, temperatures, images):
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
