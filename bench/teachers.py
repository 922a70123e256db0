"""How soft are a teacher's targets? `python bench/teachers.py CKPT [CKPT ...] [--temperature 1,1.5,2,4]`

For each checkpoint (a run's model.pt, as train.distill.teacher takes it) and temperature T, prints the mean
top-class probability and the mean entropy (nats; log 10 = 2.30 is uniform) of softmax(logits / T) over the
first --images test images, and the label smoothing the teacher was trained with. Distillation at T pulls the
student towards these targets, with weight train.distill.weight * T^2: a teacher trained with label smoothing
has compressed logits, so at the same T its targets are flatter, near uniform at T=4. Choose T so that
its targets are as sharp as those of a teacher known to help. Never trains."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def target_softness(path: Path, temperatures: list[float], images: Any) -> list[list[str]]:
    """Rows of (teacher, label smoothing, T, mean top probability, mean entropy) for one checkpoint, over
    `images` (uint8 test images, as load_mnist gives them)."""
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


def main() -> None:
    import torch

    from archsearch.core.data import load_mnist

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--temperature", default="1,1.5,2,4", help="comma-separated (default: %(default)s)")
    p.add_argument("--images", type=int, default=2000, help="the first N test images (default: %(default)s)")
    p.add_argument("--data-root", default="data")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    temperatures = [float(t) for t in args.temperature.split(",")]
    torch.set_num_threads(args.threads)
    images = load_mnist(args.data_root).test_images[:args.images]
    print("| teacher | label smoothing | T | mean top probability | mean entropy (nats) |")
    print("| --- | --- | --- | --- | --- |")
    for path in args.checkpoints:
        for row in target_softness(path, temperatures, images):
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
