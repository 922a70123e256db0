"""Training images/second of three loops on the same model, measured side by side in one process.

(a) the tutorial-style loop of the seed code: torchvision.datasets.MNIST + DataLoader(shuffle=True) +
    per-sample PIL transforms, plain torch.nn.Dropout, SGD, fp32, NCHW;
(b) this project's trainer: `train()` itself, one epoch on --images images;
(c) the bare eager ceiling: pre-normalized batches already in memory, no augmentation.

    python sweep/bench.py [--images N] [--repeats R] [--workers 0,2] [hydra overrides]

Defaults: the documented Net (model=baseline), batch 64, data.rotation=7 (the seed's
RandomRotation(7)). Measurements are interleaved (a, b, c, a, b, c, ...) and the median is kept,
because other processes share the cores. Prints a Markdown table for the README. A benchmark, not
a test: nothing here asserts a speed.

    python sweep/bench.py --launchers [--trials N] [--repeats R] [hydra overrides]

times whole sweeps instead (`run.py -m`, N one-epoch trials of 10k images into a throw-away study):
one process with one thread, one process with a thread per core, and a joblib process per core
with one thread each. That is the choice between `train.threads` and `hydra/launcher=joblib`.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator


if TYPE_CHECKING:
    from omegaconf import DictConfig

BENCH_DEFAULTS = ["data.rotation=7", "train.device=cpu"]  # user overrides come after and win
FLOP_PER_CYCLE = 32  # Zen 3 AVX2 fp32: 2 FMA pipes x 8 lanes x 2 FLOP (no AVX-512)
WARMUP_BATCHES = 10  # oneDNN primitives, allocator and DataLoader workers before any timing
TEST_SUBSET = 64  # train() evaluates after its epoch; one small batch keeps that out of the timing
EPOCH = 60_000

Loop = Callable[[int], tuple[int, float]]  # images asked -> (images trained, seconds)


def tutorial_model(cfg: DictConfig) -> Any:
    """build_model's architecture and parameters with plain torch.nn.Dropout, as the seed code had."""
    import torch
    from torch import nn

    from sweep.model import Dropout, build_model

    torch.manual_seed(cfg.seed)
    model, report = build_model(cfg.model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, Dropout):
                setattr(parent, name, nn.Dropout(child.p))
    params = sum(p.numel() for p in model.parameters())
    if params != report.params or any(isinstance(m, Dropout) for m in model.modules()):
        raise RuntimeError(f"the tutorial model is not build_model's with nn.Dropout ({params} vs {report.params} "
                           "params): has the builder gained a Dropout subclass?")
    return model


def tutorial_transform(d: DictConfig) -> Any:
    """Per-sample PIL augmentation as the tutorial writes it, then ToTensor and Normalize."""
    from torchvision import transforms

    from sweep.train import MNIST_MEAN, MNIST_STD

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

    dataset = datasets.MNIST(cfg.data.root, train=True, download=False, transform=tutorial_transform(cfg.data))
    batches = forever(DataLoader(dataset, batch_size=cfg.train.batch_size, shuffle=True, num_workers=workers))
    model = tutorial_model(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum)

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
        return done, time.perf_counter() - t0

    run(WARMUP_BATCHES * cfg.train.batch_size)
    return run


def trainer_run(cfg: DictConfig, images: int) -> tuple[int, float, float]:
    """(b): train() for one epoch on `images` images; returns (images, epoch seconds, startup_s)."""
    import json
    import tempfile

    from omegaconf import OmegaConf

    from sweep.train import train

    cfg = OmegaConf.merge(cfg, {"data": {"train_subset": images}})
    with tempfile.TemporaryDirectory() as tmp:  # train() writes startup_s only to metrics.json
        result = train(cfg, out_dir=Path(tmp))
        startup_s = json.loads((Path(tmp) / "metrics.json").read_text())["startup_s"]
    return images, result.epochs[0]["seconds"], startup_s


def bare_loop(cfg: DictConfig, images: int) -> Loop:
    """(c): fixed batches of pre-normalized images in memory, the same model and optimizer as train()."""
    import torch
    import torch.nn.functional as F

    from sweep.data import load_mnist
    from sweep.model import build_model
    from sweep.train import make_optimizer, to_input

    data, bs = load_mnist(cfg.data.root), cfg.train.batch_size
    x, y = to_input(data.train_images[:images], cfg), data.train_labels[:images]  # same memory format as train()
    batches = [(x[i: i + bs], y[i: i + bs]) for i in range(0, images, bs)]
    torch.manual_seed(cfg.seed)
    model, _ = build_model(cfg.model)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt, _ = make_optimizer(model, cfg, len(batches))

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
Rates = dict[str, list[float]]  # loop or launcher name -> its rate in each repeat
QUIET = ["train.epochs=1", "train.progress=false", "train.checkpoint=false"]  # every timed run


def conditions(machine: dict[str, Any], cores: int, load_start: float, detail: str = "") -> str:
    """When and where it ran, and how busy the machine was: the line every table starts from."""
    import datetime

    return (f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {machine['cpu']}, {cores} cores{detail}; "
            f"torch {machine['torch']}; load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)  # progress goes to stderr, so stdout is only the table


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
        for name, loop in loops.items():
            done, seconds = loop(images)
            rates[name].append(done / seconds)
            say(f"repeat {r + 1}/{repeats}  {name}: {rates[name][-1]:.0f} img/s")
    return rates, startup


def print_table(cfg: DictConfig, macs: int, params: int, rates: Rates, startup: list[float],
                images: int, load_start: float) -> None:
    """The README table: conditions, img/s per loop, ratios, FLOP utilisation and per-trial overhead."""
    from sweep.machine import cpu_ghz, machine_info

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


def bench(args: argparse.Namespace) -> None:
    import torch

    from sweep.errors import ConfigError
    from sweep.summary import compose_config
    from sweep.train import check_config

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


LAUNCHERS = {  # name -> overrides; {cores} is filled in
    "sequential, 1 thread": ["train.threads=1"],
    "sequential, {cores} threads": ["train.threads={cores}"],
    "joblib, {cores} processes x 1 thread": ["hydra/launcher=joblib", "hydra.launcher.n_jobs={cores}",
                                             "hydra.sweeper.n_jobs={cores}", "train.threads=1"],
}
LAUNCHER_SHRINK = [*QUIET, "data.train_subset=10000", "data.val_size=1000", "data.test_subset=1000"]


def time_sweep(overrides: list[str], trials: int) -> float:
    """Seconds of one `run.py -m` of `trials` trials into a throw-away study, process start included."""
    import subprocess
    import tempfile

    from sweep.errors import ConfigError

    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, str(Path(__file__).with_name("run.py")), "-m", f"hydra.sweeper.n_trials={trials}",
                   "hydra.sweeper.study_name=bench", f"hydra.sweeper.storage=sqlite:///{tmp}/optuna.db",
                   f"hydra.sweep.dir={tmp}/sweep", *overrides]
        t0 = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    if done.returncode:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise ConfigError(f"bench --launchers: the sweep failed: {last.removeprefix('error: ')}")
    return seconds


def bench_launchers(args: argparse.Namespace) -> None:
    """Trials per hour of one shrunk sweep under each launcher set-up, interleaved over repeats."""
    from sweep.machine import machine_info

    cores = os.cpu_count() or 1
    setups = {name.format(cores=cores): [o.format(cores=cores) for o in extra] for name, extra in LAUNCHERS.items()}
    rates: Rates = {name: [] for name in setups}
    load_start = os.getloadavg()[0]
    for r in range(args.repeats):
        for name, extra in setups.items():
            seconds = time_sweep([*LAUNCHER_SHRINK, *extra, *args.overrides], args.trials)
            rates[name].append(args.trials / seconds * 3600)
            say(f"repeat {r + 1}/{args.repeats}  {name}: {seconds:.1f} s, {rates[name][-1]:.0f} trials/h")
    print(f"{args.trials} trials per sweep: {' '.join(LAUNCHER_SHRINK)} {' '.join(args.overrides)}".rstrip()
          + f"; median of {args.repeats} interleaved sweeps, each a fresh process and study")
    print(conditions(machine_info("cpu"), cores, load_start))
    print()
    print("| launcher | trials/h | runs (trials/h) |")
    print("|---|---:|---|")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):,.0f} | {' '.join(f'{v:.0f}' for v in values)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12_800, help="training images per timed run (default 12800)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per loop; the median is kept")
    parser.add_argument("--workers", type=lambda s: [int(w) for w in s.split(",")], default=[0, 2],
                        help="DataLoader num_workers values to time for (a), comma-separated (default 0,2)")
    parser.add_argument("--launchers", action="store_true", help="time whole sweeps under each launcher set-up")
    parser.add_argument("--trials", type=int, default=4, help="with --launchers: trials per sweep (default 4)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=fcfree train.batch_size=128")
    args = parser.parse_args()
    if args.repeats < 1 or args.trials < 1 or any(w < 0 for w in args.workers):
        parser.error("--repeats and --trials must be >= 1 and --workers values >= 0")

    from sweep.cli import report_errors

    report_errors(lambda: bench_launchers(args) if args.launchers else bench(args))


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    main()
