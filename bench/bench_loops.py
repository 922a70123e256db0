"""`bench.py` (no mode): img/s of the tutorial loop, train() and a bare loop, side by side in one process."""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from bench_utils import BENCH_DEFAULTS, QUIET, Rates, conditions, say

if TYPE_CHECKING:
    from omegaconf import DictConfig


FLOP_PER_CYCLE = 32  # Zen 3 AVX2 fp32: 2 FMA pipes x 8 lanes x 2 FLOP (no AVX-512)
WARMUP_BATCHES = 10  # oneDNN primitives, allocator and DataLoader workers before any timing
TEST_SUBSET = 64  # train() evaluates after its epoch; one small batch keeps that out of the timing
# After (a)'s timed run its DataLoader workers go on to prefetch their next batches (per-sample PIL
# transforms) on the cores that the next loop is timed on; the bench waits that out, untimed.
WORKERS_SETTLE_S = 1.0
EPOCH = 60_000

Loop = Callable[[int], tuple[int, float]]  # images asked -> (images trained, seconds)


def tutorial_model(cfg: DictConfig) -> Any:
    """build_model's architecture and parameters with plain torch.nn.Dropout and MaxPool2d, as the seed code had."""
    import torch
    from torch import nn

    from archsearch.core.layers import Dropout, MaxPool2d
    from archsearch.core.model import build_model

    torch.manual_seed(cfg.seed)
    model, report = build_model(cfg.model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, Dropout):
                setattr(parent, name, nn.Dropout(child.p))
            elif isinstance(child, MaxPool2d):
                setattr(parent, name, nn.MaxPool2d(child.kernel_size, child.stride))
    params = sum(p.numel() for p in model.parameters())
    if params != report.params or any(isinstance(m, (Dropout, MaxPool2d)) for m in model.modules()):
        raise RuntimeError(f"the tutorial model is not build_model's with plain torch.nn modules ({params} vs "
                           f"{report.params} params): has the builder gained another module subclass?")
    return model


def tutorial_transform(d: DictConfig) -> Any:
    """Per-sample PIL augmentation as the tutorial writes it, then ToTensor and Normalize."""
    from torchvision import transforms

    from archsearch.core.augment import MNIST_MEAN, MNIST_STD

    aug = []
    if d.translate or d.scale:  # the torchvision counterpart of augment()'s shift and zoom
        aug.append(transforms.RandomAffine(d.rotation, translate=(d.translate, d.translate) if d.translate else None,
                                           scale=(1 - d.scale, 1 + d.scale) if d.scale else None))
    elif d.rotation:
        aug.append(transforms.RandomRotation(d.rotation))
    return transforms.Compose([*aug, transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])


def forever(loader: Any) -> Iterator[Any]:
    """Batches across epochs, so a new epoch (and its worker start-up) comes when it would in training."""
    while True:
        yield from loader


def tutorial_loop(cfg: DictConfig, workers: int) -> Loop:
    """(a): the loop of the PyTorch MNIST example. It passes num_workers only on CUDA (0 on a CPU);
    bench times every --workers value and takes the faster as the baseline."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader
    from torchvision import datasets

    from archsearch.core.config import momentum

    dataset = datasets.MNIST(cfg.data.root, train=True, download=False, transform=tutorial_transform(cfg.data))
    # Workers forked from this process would share its memory copy-on-write, and each epoch forks new ones:
    # every page that (b) and (c) then wrote faulted (in a one-off run of 6 pairs after (a): (b)/(c) 0.96 with
    # forked workers, 0.99 with these). A forkserver's persistent workers share nothing and start once.
    apart = {"multiprocessing_context": "forkserver", "persistent_workers": True} if workers else {}
    batches = forever(DataLoader(dataset, batch_size=cfg.train.batch_size, shuffle=True, num_workers=workers,
                                 **apart))
    model = tutorial_model(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=momentum(cfg.optim))

    def run(images: int) -> tuple[int, float]:
        model.train()
        done, t0 = 0, time.perf_counter()
        while done < images:
            x, y = next(batches)
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            done += len(y)
        seconds = time.perf_counter() - t0
        if workers:
            time.sleep(WORKERS_SETTLE_S)
        return done, seconds

    run(WARMUP_BATCHES * cfg.train.batch_size)
    return run


def trainer_run(cfg: DictConfig, images: int) -> tuple[int, float, float]:
    """(b): train() for one epoch on `images` images; returns (images, epoch seconds, startup_s)."""
    import json
    import tempfile

    from omegaconf import OmegaConf

    from archsearch.core.train import train

    cfg = OmegaConf.merge(cfg, {"data": {"train_subset": images}})
    with tempfile.TemporaryDirectory() as tmp:  # train() writes startup_s only to metrics.json
        result = train(cfg, out_dir=Path(tmp))
        startup_s = json.loads((Path(tmp) / "metrics.json").read_text())["startup_s"]
    return images, result.epochs[0]["seconds"], startup_s


def bare_setup(cfg: DictConfig, images: int) -> tuple[Any, list[tuple[Any, Any]], Any]:
    """(c)'s model, batches and optimizer: train()'s model, optimizer and memory layout (its rule when
    train.channels_last is null), with every batch pre-normalized in memory."""
    import torch

    from archsearch.core.data import load_mnist
    from archsearch.core.model import build_model
    from archsearch.core.augment import to_input, use_channels_last
    from archsearch.core.train import make_optimizer

    data, bs = load_mnist(cfg.data.root), cfg.train.batch_size
    channels_last = use_channels_last(cfg, "cpu")
    x, y = to_input(data.train_images[:images], cfg, channels_last=channels_last), data.train_labels[:images]
    batches = [(x[i: i + bs], y[i: i + bs]) for i in range(0, images, bs)]
    torch.manual_seed(cfg.seed)
    model, _ = build_model(cfg.model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt, _ = make_optimizer(model, cfg, len(batches))
    return model, batches, opt


def bare_loop(cfg: DictConfig, images: int) -> Loop:
    """(c): fixed batches of pre-normalized images in memory, the same model and optimizer as train()."""
    import torch.nn.functional as F

    model, batches, opt = bare_setup(cfg, images)
    bs = cfg.train.batch_size

    def run(n: int) -> tuple[int, float]:
        model.train()
        done, t0 = 0, time.perf_counter()
        for xb, yb in batches[: math.ceil(n / bs)]:  # n <= images: the warm-up or a timed run
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += len(yb)
        return done, time.perf_counter() - t0

    run(WARMUP_BATCHES * bs)
    return run


TUTORIAL = "(a) tutorial, DataLoader num_workers={}"
TRAINER = "(b) train(), this project"
BARE = "(c) bare in-memory loop, no augmentation"


def measure(cfg: DictConfig, images: int, repeats: int, workers: list[int]) -> tuple[Rates, list[float]]:
    """img/s of every loop over interleaved repeats, and train()'s start-up on a cold and a warm call."""
    bs = cfg.train.batch_size
    # First, before anything else reads MNIST: the start-up of a trial, cold (reads the files) and
    # warm (the process's cache). The two short runs also warm up (b).
    startup = [trainer_run(cfg, WARMUP_BATCHES * bs)[2] for _ in range(2)]
    say(f"train() start-up: {startup[0]:.2f} s, then {startup[1]:.2f} s")
    loops: dict[str, Loop] = {TUTORIAL.format(w): tutorial_loop(cfg, w) for w in workers}
    loops[TRAINER] = lambda n: trainer_run(cfg, n)[:2]
    loops[BARE] = bare_loop(cfg, images)
    rates: Rates = {name: [] for name in loops}
    for r in range(repeats):
        # a, b, c, then c, b, a: a drift in the machine's speed then favours no loop over the repeats
        for name in list(loops) if r % 2 == 0 else reversed(loops):
            done, seconds = loops[name](images)
            rates[name].append(done / seconds)
            say(f"repeat {r + 1}/{repeats}  {name}: {rates[name][-1]:.0f} img/s")
    return rates, startup


def print_table(cfg: DictConfig, macs: int, params: int, rates: Rates, startup: list[float],
                images: int, load_start: float) -> None:
    """The docs/BENCHMARKS.md table: conditions, img/s per loop, ratios, FLOP utilisation and per-trial overhead."""
    from archsearch.core.machine import cpu_ghz, machine_info

    machine, ghz = machine_info("cpu"), cpu_ghz()
    cores, threads = machine["cores"] or 1, machine["torch_threads"]
    used = min(threads, cores)
    peak = used * ghz * 1e9 * FLOP_PER_CYCLE if ghz else None
    flop_per_image = macs * 2 * 3  # a MAC is 2 FLOP; the backward costs about twice the forward
    rate = {name: statistics.median(values) for name, values in rates.items()}
    base = max((name for name in rate if name.startswith("(a)")), key=rate.get)  # the fairest: the faster

    def ratio(num: str, den: str) -> float:  # per repeat, as the loops ran back to back: load drifts cancel
        return statistics.median(n / d for n, d in zip(rates[num], rates[den]))

    d = cfg.data
    aug = ", ".join(f"{k} {d[k]}" for k in ("rotation", "translate", "scale") if d[k]) or "no augmentation"
    repeats = len(next(iter(rates.values())))

    print(f"model={cfg.model.name}: {params:,} params, {macs / 1e6:.2f} M MACs/image; batch {cfg.train.batch_size}; "
          f"{aug}; SGD, fp32; {images:,} images per run, median of {repeats} interleaved runs")
    clock = f" at {ghz:.2f} GHz" if ghz else ""
    print(conditions(machine, cores, load_start, f"{clock}; {threads} threads") + " (shared cores: compare ratios)")
    print()
    print("| loop | img/s | runs (img/s) | s per 60k images | vs (a) | FLOP/s of peak |")
    print("|---|---:|---|---:|---:|---:|")
    for name, values in rates.items():
        util = f"{flop_per_image * rate[name] / peak:.1%}" if peak else "n/a"
        print(f"| {name} | {rate[name]:,.0f} | {' '.join(f'{v:.0f}' for v in values)} | {EPOCH / rate[name]:.1f} "
              f"| {ratio(name, base):.2f}x | {util} |")
    print()
    print(f"(b)/(a) = {ratio(TRAINER, base):.2f}x  (a = the faster tutorial variant: {base[4:]}; "
          "ratios are medians of per-repeat ratios)")
    print(f"(b)/(c) = {ratio(TRAINER, BARE):.2f}  ((c) neither shuffles, augments nor normalizes per batch)")
    if peak:
        print(f"peak = {used} core{'s' if used > 1 else ''} x {ghz:.2f} GHz x {FLOP_PER_CYCLE} FLOP/cycle "
              f"(AVX2: 2 FMA x 8 fp32 x 2) = {peak / 1e9:.0f} GFLOP/s; FLOP/s = MACs x 2 x 3 (forward + backward) "
              "x img/s; clock as /proc/cpuinfo reports it, boost not counted")
    print(f"per-trial overhead (train() start to first step): {startup[0]:.2f} s on the first call in the process "
          f"(one-off imports and reading MNIST), {startup[1]:.2f} s on the second (MNIST cached in the process)")


def bench_loops(args: argparse.Namespace) -> None:
    import torch

    from archsearch.core.errors import ConfigError
    from archsearch.report.model_summary import compose_config
    from archsearch.core.config import check_config

    shrink = [*QUIET, "data.val_size=0", f"data.test_subset={TEST_SUBSET}"]
    cfg = compose_config([*BENCH_DEFAULTS, *args.overrides, *shrink])
    if cfg.train.device != "cpu":
        raise ConfigError(f"train.device={cfg.train.device}: bench.py times CPU loops only (leave it at cpu)")
    if not cfg.train.batch_size <= args.images <= EPOCH:
        raise ConfigError(f"--images={args.images}: must be in [train.batch_size={cfg.train.batch_size}, {EPOCH}]")
    report = check_config(cfg)
    if cfg.train.threads:  # as train() does, so that all three loops run on the same threads
        torch.set_num_threads(cfg.train.threads)
    load_start = os.getloadavg()[0]
    rates, startup = measure(cfg, args.images, args.repeats, args.workers)
    print_table(cfg, report.macs, report.params, rates, startup, args.images, load_start)
