"""The batches a model sees: MNIST from uint8 tensors on the device, split into train, validation and test,
augmented per sample (random rotation, shift and zoom through one sampling grid, each image with probability
data.aug_p) and normalized, a whole batch at a time: no DataLoader, no worker processes, no per-sample Python."""
from __future__ import annotations

import math
from typing import Any, Iterator, Optional

from omegaconf import DictConfig

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
# Training batches prepared at once: small tensor ops cost mostly per call on a CPU; 2,048 images took 12.0 ms
# batch by batch and 7.0 ms 16 batches at once (`bench/bench.py --parts`, 2 threads here).
PREPARED_BATCHES = 16


def augment(images: Any, cfg: DictConfig, generator: Any, draw_size: Optional[int] = None) -> Any:
    """Per-sample random rotation/translation/scale of a float batch (N, 1, H, W), background 0, each sample
    with probability cfg.aug_p (the others are returned as they are). The random values are drawn for draw_size
    samples at a time (default: all N) in a fixed order, so that batches augmented together get exactly the
    values they would get one by one (epoch_batches)."""
    import torch
    import torch.nn.functional as F

    n = images.shape[0]
    group = draw_size or n
    draws = torch.cat([random_affine(min(group, n - start), cfg, generator, images.device)
                       for start in range(0, n, group)], dim=1)
    angle, scale, shift_x, shift_y = draws[:4]
    grid = affine_grid(torch.cos(angle) / scale, torch.sin(angle) / scale, torch.stack([shift_x, shift_y], dim=1),
                       *images.shape[-2:])
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if cfg.aug_p == 1:
        return out
    # where, not an identity transform: bilinear sampling at the pixel centres is exact only to float rounding;
    # and not a subset: its size would sync a GPU
    return torch.where(draws[4].view(-1, 1, 1, 1) > 0, out, images)


def random_affine(n: int, cfg: DictConfig, generator: Any, device: Any) -> Any:
    """(4, n): angle (radians), scale, x and y shift in [-1, 1] coordinates, drawn in that order; when cfg.aug_p
    < 1, a fifth row drawn after them: whether the sample is augmented (1 or 0). aug_p 1 draws what it always did."""
    import torch

    def rand() -> torch.Tensor:
        return torch.rand(n, device=device, generator=generator)

    def uniform(limit: float) -> torch.Tensor:
        return (rand() * 2 - 1) * limit

    values = [uniform(math.radians(cfg.rotation)), 1 + uniform(cfg.scale), uniform(2 * cfg.translate),
              uniform(2 * cfg.translate)]
    if cfg.aug_p < 1:
        values.append((rand() < cfg.aug_p).float())
    return torch.stack(values)


def affine_grid(cos: Any, sin: Any, shift: Any, height: int, width: int) -> Any:
    """F.affine_grid for theta = [[cos, -sin, shift_x], [sin, cos, shift_y]] per sample, align_corners=False,
    as broadcast multiply-adds written into an x and a y plane (returned as an (N, H, W, 2) view): equal to
    within float rounding, and 3x cheaper on a CPU, where affine_grid's batched (h*w x 3) @ (3 x 2) matmul
    was two thirds of the augmentation's time."""
    import torch

    dev = cos.device
    xs = ((torch.arange(width, device=dev) * 2 + 1) / width - 1).view(1, 1, width)
    ys = ((torch.arange(height, device=dev) * 2 + 1) / height - 1).view(1, height, 1)
    cos, sin = cos.view(-1, 1, 1), sin.view(-1, 1, 1)
    planes = torch.empty(2, cos.shape[0], height, width, device=dev)
    torch.sub(cos * xs, sin * ys, out=planes[0]).add_(shift[:, 0].view(-1, 1, 1))
    torch.add(sin * xs, cos * ys, out=planes[1]).add_(shift[:, 1].view(-1, 1, 1))
    return planes.permute(1, 2, 3, 0)


def use_channels_last(cfg: DictConfig, device: str) -> bool:
    """train.channels_last, where null means: by the rule measured with bench.py on a 2-core CPU
    (fcfree_5k5, docs/BENCHMARKS.md "Memory layout rule"): channels_last on a GPU and with one CPU thread, NCHW with several."""
    import torch

    if cfg.train.channels_last is not None:
        return bool(cfg.train.channels_last)
    return device != "cpu" or torch.get_num_threads() == 1


def to_input(images_u8: Any, cfg: DictConfig, generator: Any = None, channels_last: Optional[bool] = None,
             draw_size: Optional[int] = None) -> Any:
    """A training or evaluation batch as the model sees it (augmented when a generator is given)."""
    import torch

    x = images_u8.unsqueeze(1).to(torch.float32, copy=True).div_(255.0)  # a copy: in place from here on
    d = cfg.data
    if generator is not None and (d.rotation or d.translate or d.scale) and d.aug_p > 0:
        x = augment(x, d, generator, draw_size)
    x = x.sub_(MNIST_MEAN).div_(MNIST_STD)
    if channels_last is None:
        channels_last = use_channels_last(cfg, str(images_u8.device.type))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def epoch_batches(images_u8: Any, labels: Any, order: Any, cfg: DictConfig, generator: Any,
                  channels_last: bool) -> Iterator[tuple[Any, Any]]:
    """One epoch's training batches, in `order`, prepared PREPARED_BATCHES at a time. They are the batches
    that to_input would give one by one, to the bit: the random values are drawn batch by batch."""
    import torch

    bs = cfg.train.batch_size
    for start in range(0, len(order), bs * PREPARED_BATCHES):
        idx = order[start: start + bs * PREPARED_BATCHES]
        x = to_input(torch.index_select(images_u8, 0, idx), cfg, generator, channels_last, draw_size=bs)
        y = torch.index_select(labels, 0, idx)
        for i in range(0, len(idx), bs):
            yield x[i: i + bs], y[i: i + bs]


def split(cfg: DictConfig, data: Any, device: str) -> dict[str, tuple[Any, Any]]:
    """Train/val/test tensors on the device; the val split is fixed by data.split_seed (provenance.split_indices,
    which the teacher check recomputes)."""
    from archsearch.core.provenance import split_indices

    d = cfg.data
    val_idx, train_idx = split_indices(d.split_seed, d.val_size, d.train_subset)
    n_test = d.test_subset or len(data.test_labels)
    parts = {"train": (data.train_images[train_idx], data.train_labels[train_idx]),
             "val": (data.train_images[val_idx], data.train_labels[val_idx]),
             "test": (data.test_images[:n_test], data.test_labels[:n_test])}
    return {k: (x.to(device), y.to(device)) for k, (x, y) in parts.items()}
