"""Training images/second of three loops on the same model, measured side by side in one process.

(a) the tutorial-style loop of the seed code: torchvision.datasets.MNIST + DataLoader(shuffle=True) +
    per-sample PIL transforms, plain torch.nn.Dropout, SGD, fp32, NCHW;
(b) this project's trainer: `train()` itself, one epoch on --images images;
(c) the bare eager ceiling: pre-normalized batches already in memory, no augmentation.

    python bench/bench.py [--images N] [--repeats R] [--workers 0,2] [hydra overrides]

Defaults: the documented Net (model=baseline), batch 64, data.rotation=7 (the seed's
RandomRotation(7)), 7 repeats. Measurements are interleaved (a, b, c, c, b, a, a, b, c, ...) and the
median is kept, because this machine's speed drifts and other processes share the cores. Prints a
Markdown table for docs/BENCHMARKS.md. A benchmark, not a test: nothing here asserts a speed.

    python bench/bench.py --launchers [--trials N] [--repeats R] [hydra overrides]

times whole sweeps instead (`run.py -m`, N one-epoch trials of 10k images into a throw-away study):
one process with one thread, one process with a thread per core, and a joblib process per core
with one thread each. That is the choice between `train.threads` and `hydra/launcher=joblib`.

    python bench/bench.py --search [--repeats R] [--budget-epochs B] [--keep-studies DIR] [hydra overrides]

measures search quality instead: the project's default sampler and pruner (TPE + median) against random
sampling without pruning, each for R seeds (1..R) of real sweeps (`run.py -m`, interleaved) with the same budget
of B trained epochs (hydra.sweeper.budget.epochs), on a cheap proxy of sweep=default: 5-epoch trials on 8,000
training and 2,000 validation images. Prints, per strategy, the best validation objective of the trials
completed within 25/50/100% of the budget (median over the seeds), and a line comparing the two. The studies
are throw-away unless --keep-studies keeps their database (DIR/bench.db) to look at.

    python bench/bench.py --parts [--repeats R] [--images N] [hydra overrides]

times the parts of a CPU step that the trainer does its own way, each against torch's plain way, on
fcfree_5k5's shapes (median ms per call over R interleaved rounds), and the bare loop (c) on N images with and
without train()'s allocator setting, each in a fresh process (system time and page faults).
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from archsearch.core.defaults import ROOT

if TYPE_CHECKING:
    from omegaconf import DictConfig

BENCH_DEFAULTS = ["data.rotation=7", "train.device=cpu"]  # user overrides come after and win
FLOP_PER_CYCLE = 32  # Zen 3 AVX2 fp32: 2 FMA pipes x 8 lanes x 2 FLOP (no AVX-512)
WARMUP_BATCHES = 10  # oneDNN primitives, allocator and DataLoader workers before any timing
TEST_SUBSET = 64  # train() evaluates after its epoch; one small batch keeps that out of the timing
# After (a)'s timed run its DataLoader workers go on to prefetch their next batches (per-sample PIL
# transforms) on the cores that the next loop is timed on; the bench waits that out, untimed.
WORKERS_SETTLE_S = 1.0
EPOCH = 60_000
# The loops' per-repeat ratios scattered by up to 10% here (the machine's speed drifts by tens of percent
# within minutes), too much for a median of 3; a repeat of the loops takes about 15 s, one of the sweeps minutes.
LOOP_REPEATS, SWEEP_REPEATS = 7, 3
PART_CALLS = 20  # calls of a part per timing

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
Rates = dict[str, list[float]]  # loop or launcher name -> its rate in each repeat
QUIET_RUN = ["train.progress=false", "train.checkpoint=false"]  # every benchmarked run
QUIET = ["train.epochs=1", *QUIET_RUN]  # every timed run


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


def bench(args: argparse.Namespace) -> None:
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


def fwd_bwd(module: Any, x: Any) -> Callable[[], None]:
    """One training forward and backward of `module` on a fresh leaf copy of x."""
    def call() -> None:
        module(x.detach().requires_grad_()).sum().backward()
    return call


def part_pairs(cfg: DictConfig) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """part -> (torch's plain way, the trainer's), on fcfree_5k5's shapes at batch 128 (batch 64 for Dropout)."""
    import torch
    from torch import nn

    from archsearch.core.data import load_mnist
    from archsearch.core.layers import Dropout, MaxPool2d, _at_least
    from archsearch.core.model import build_model
    from archsearch.core.augment import epoch_batches, to_input
    from archsearch.core.train import make_optimizer

    torch.manual_seed(0)
    activation = torch.randn(64, 16, 26, 26)
    pooled = torch.relu(torch.randn(128, 14, 24, 24))
    random_values = torch.randint(-(2**15), 2**15, (128, 8, 26, 26), dtype=torch.int16)  # Dropout's 16-bit draws
    model, _ = build_model(cfg.model)
    model(torch.randn(8, 1, 28, 28)).sum().backward()  # every parameter has a gradient
    plain_opt, fast_opt = (make_optimizer(model, cfg, 1)[0] for _ in range(2))
    for group in plain_opt.param_groups:
        group["foreach"] = False
    data, bs = load_mnist(cfg.data.root), cfg.train.batch_size
    images, labels = data.train_images[:2048], data.train_labels[:2048]
    order = torch.randperm(len(images))

    def one_by_one() -> None:
        gen = torch.Generator().manual_seed(0)
        for i in range(0, len(order), bs):
            to_input(images[order[i: i + bs]], cfg, gen, channels_last=False)

    def together() -> None:
        list(epoch_batches(images, labels, order, cfg, torch.Generator().manual_seed(0), False))

    return {
        "Dropout(0.05), 64x16x26x26, forward + backward": (
            fwd_bwd(nn.Dropout(0.05).train(), activation), fwd_bwd(Dropout(0.05).train(), activation)),
        "Dropout's keep mask, 128x8x26x26: >= then float / clamp then float": (
            lambda: (random_values >= -29491).to(torch.float32),  # p = 0.05
            lambda: _at_least(random_values, -29491).to(torch.float32)),
        "MaxPool2d(2), 128x14x24x24, forward + backward": (
            fwd_bwd(nn.MaxPool2d(2, 2), pooled), fwd_bwd(MaxPool2d(2, 2), pooled)),
        f"{cfg.optim.name} step, {cfg.model.name}'s parameters: per parameter / foreach": (
            lambda: plain_opt.step(), lambda: fast_opt.step()),  # closures: a scheduler holds them only weakly
        f"2,048 training images, rotation {cfg.data.rotation}: batch by batch / 16 batches at once": (
            one_by_one, together),
    }


ALLOCATOR_RUN = """
import json, resource, sys
import torch
from bench import bench
from archsearch.core.machine import keep_freed_memory
from archsearch.report.model_summary import compose_config
kept = sys.argv[1] == "keep" and keep_freed_memory()
cfg = compose_config(sys.argv[3:])
if cfg.train.threads:
    torch.set_num_threads(cfg.train.threads)
run = bench.bare_loop(cfg, int(sys.argv[2]))
before = resource.getrusage(resource.RUSAGE_SELF)
images, seconds = run(int(sys.argv[2]))
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"kept": kept, "steps": -(-images // cfg.train.batch_size), "seconds": seconds,
                  "system_s": after.ru_stime - before.ru_stime, "faults": after.ru_minflt - before.ru_minflt}))
"""


def allocator_run(keep: bool, images: int, overrides: list[str]) -> dict[str, Any]:
    """The bare loop (c) on `images` images in a fresh process, with or without train()'s allocator setting."""
    import json
    import subprocess

    done = subprocess.run([sys.executable, "-c", ALLOCATOR_RUN, "keep" if keep else "default", str(images),
                           *overrides], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"the allocator run failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(done.stdout)


def bench_parts(args: argparse.Namespace) -> None:
    """Median ms per call of each part, both ways interleaved over the repeats; then the allocator table."""
    import torch

    from archsearch.core.machine import machine_info
    from archsearch.report.model_summary import compose_config

    overrides = [*BENCH_DEFAULTS, "+experiment=fcfree_5k5", "train.batch_size=128", *args.overrides]
    cfg = compose_config(overrides)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    load_start = os.getloadavg()[0]
    from torch.utils.benchmark import Timer

    times: dict[str, tuple[list[float], list[float]]] = {}
    for part, pair in part_pairs(cfg).items():
        times[part] = ([], [])
        timers = [Timer("f()", globals={"f": f}, num_threads=torch.get_num_threads()) for f in pair]
        for f in pair:
            f()  # warm-up
        for _ in range(args.repeats):  # the two ways take turns, so that drifts of the machine hit both
            for timer, out in zip(timers, times[part]):
                out.append(timer.timeit(PART_CALLS).mean * 1e3)
        say(f"{part}: {statistics.median(times[part][0]):.2f} -> {statistics.median(times[part][1]):.2f} ms")
    runs = {keep: [] for keep in (False, True)}
    for _ in range(args.repeats):
        for keep in runs:
            runs[keep].append(allocator_run(keep, args.images, overrides))
    machine = machine_info("cpu")
    print(conditions(machine, machine["cores"] or 1, load_start, f"; {machine['torch_threads']} threads")
          + f"; medians of {args.repeats} interleaved rounds of {PART_CALLS} calls")
    print()
    print("| part | torch's way (ms) | the trainer's (ms) | ratio |")
    print("|---|---:|---:|---:|")
    for part, (plain, fast) in times.items():
        a, b = statistics.median(plain), statistics.median(fast)
        print(f"| {part} | {a:.3f} | {b:.3f} | {a / b:.2f}x |")
    print()
    steps = runs[True][0]["steps"]
    print(f"The bare loop (c), {steps} steps of {cfg.model.name} in a fresh process each (medians of {args.repeats}):")
    print()
    print("| allocator | seconds | system time (s) | minor page faults | runs (s) |")
    print("|---|---:|---:|---:|---|")
    for keep, label in ((False, "glibc's defaults"), (True, "keep_freed_memory()")):
        r = runs[keep]
        med = {k: statistics.median(x[k] for x in r) for k in ("seconds", "system_s", "faults")}
        seconds = " ".join(f"{x['seconds']:.2f}" for x in r)
        print(f"| {label} | {med['seconds']:.2f} | {med['system_s']:.2f} | {med['faults']:,.0f} | {seconds} |")


LAUNCHERS = {  # name -> overrides; {cores} is filled in
    "sequential, 1 thread": ["train.threads=1"],
    "sequential, {cores} threads": ["train.threads={cores}"],
    "joblib, {cores} processes x 1 thread": ["hydra/launcher=joblib", "hydra.launcher.n_jobs={cores}",
                                             "hydra.sweeper.n_jobs={cores}", "train.threads=1"],
}
LAUNCHER_SHRINK = [*QUIET, "data.train_subset=10000", "data.val_size=1000", "data.test_subset=1000"]


def run_sweep(overrides: list[str], tmp: str, mode: str, study: str = "bench") -> float:
    """Seconds of one `run.py -m` into the study `study` of <tmp>/bench.db, its sweep directory <tmp>/<study>,
    process start included. These come after `overrides`, so that the study is always the throw-away one."""
    import subprocess

    from archsearch.core.errors import ConfigError

    command = [sys.executable, str(ROOT / "sweep" / "run.py"), "-m", *overrides,
               f"hydra.sweeper.study_name={study}", f"hydra.sweeper.storage=sqlite:///{tmp}/bench.db",
               f"hydra.sweep.dir={tmp}/{study}"]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise ConfigError(f"bench {mode}: the sweep failed: {last.removeprefix('error: ')}")
    return seconds


def time_sweep(overrides: list[str], trials: int) -> float:
    """Seconds of one `run.py -m` of `trials` trials into a throw-away study, process start included."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return run_sweep([*overrides, f"hydra.sweeper.n_trials={trials}"], tmp, "--launchers")


def bench_launchers(args: argparse.Namespace) -> None:
    """Trials per hour of one shrunk sweep under each launcher set-up, interleaved over repeats."""
    from archsearch.core.machine import machine_info

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


# --search: two strategies, the same budget of trained epochs, over seeds. The proxy: sweep=default's space and
# recipe, on 8,000 training + 2,000 validation images and 5-epoch trials. OneCycle peaks by 0.35 of a run, so the
# median pruner's warm-up scales from 7 of 15 epochs (sweep=default) to 3 of 5, and TPE's random start-up from 10
# to 5 trials, of the ~12 that a sweep of the default budget trains.
SEARCH_PROXY = ["sweep=default", "data.train_subset=10000", "data.val_size=2000", "data.test_subset=1000",
                "train.epochs=5", "constraints.max_epochs=5", *QUIET_RUN]
SEARCH_THREADS = 2  # per trial, capped at the cores: the sweeps run one at a time, and a ~5k-param net gains
# little past 2 threads (bench.py --launchers)
STRATEGIES = {  # label -> its overrides (the user's come after and win)
    "default (tpe + median)": ["hydra/sweeper/sampler=tpe", "hydra/sweeper/pruner=median",
                               "hydra.sweeper.warmup_epochs=3", "hydra.sweeper.sampler.n_startup_trials=5"],
    "random without pruning": ["hydra/sweeper/sampler=random", "hydra/sweeper/pruner=none"],
}
# 6 sweeps (2 strategies x 3 seeds) of 60 epochs fit 30 minutes on this project's 2-core CPU: a 5-epoch proxy
# trial took 10-34 s by its model's MACs (21 s mean) on 1 thread while other jobs kept both cores busy (load 3),
# a sweep's start and pre-flight ~10 s: 6 x (12 x 21 + 10) s = 26 min; 2 threads on an idle machine take less.
SEARCH_BUDGET = 60
FRACTIONS = (0.25, 0.5, 1.0)


@dataclass
class SearchRun:
    """One sweep of one strategy and seed, as read back from its study."""

    best: list[Optional[float]]  # best complete value within each of FRACTIONS of the budget; None: none yet
    trials: int  # trials that trained (rejected candidates and duplicates trained nothing)
    pruned: int  # by the pruner, or cut short by the budget
    epochs: int  # trained epochs in all
    trial_epochs: set[int]  # train.epochs of its trials, as the jobs were given it (the proxy's, unless overridden)


def read_search_run(url: str, study_name: str, budget: int) -> SearchRun:
    """The best-so-far curve of a finished sweep's study: in trial order, the trained epochs summed so far, and the
    best value among COMPLETE trials (a pruned trial's value is a partial objective and never counts)."""
    import optuna

    from archsearch.core.errors import ConfigError
    from archsearch.search.storage import load_study, open_readonly

    study = load_study(open_readonly(url), study_name, url)
    if [d.name for d in study.directions] != ["MAXIMIZE"]:
        raise ConfigError(f"bench --search: study {study_name} is not maximizing one objective; the benchmark "
                          "compares sweeps of validation accuracy (not sweep=pareto)")
    spent, curve, trials, pruned = 0, [], 0, 0  # curve: (epochs spent when the trial ended, its complete value)
    trial_epochs = set()
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        epochs = t.user_attrs.get("epochs_trained") or 0
        spent += epochs
        trials += epochs > 0
        pruned += t.user_attrs.get("status") == "pruned"
        want = int(t.user_attrs.get("train.epochs", 0))  # a fixed value: the sweeper records it as a string
        trial_epochs.add(want)
        if t.state == optuna.trial.TrialState.COMPLETE:
            if epochs != want:  # so the trial trained what its job was told: the proxy's epochs, not the sweep's 15
                raise ConfigError(f"bench --search: trial #{t.number} of {study_name} completed {epochs} epochs, "
                                  f"not train.epochs={want}")
            curve.append((spent, t.value))

    def best(limit: float) -> Optional[float]:
        values = [v for at, v in curve if at <= limit]
        return max(values) if values else None

    return SearchRun([best(f * budget) for f in FRACTIONS], trials, pruned, spent, trial_epochs)


def median_or_none(values: list[Optional[float]]) -> Optional[float]:
    """The median, where None (no complete trial yet) ranks below every value: it is the median when the middle
    falls on it."""
    ranked = sorted(values, key=lambda v: (v is not None, v or 0))
    mid = ranked[(len(ranked) - 1) // 2: len(ranked) // 2 + 1]
    return None if None in mid else statistics.mean(mid)


def fmt_value(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.4f}"


def bench_search(args: argparse.Namespace) -> None:
    """Best validation objective at 25/50/100% of an equal epoch budget: the default strategy against random."""
    import tempfile

    from archsearch.core.errors import ConfigError
    from archsearch.core.machine import machine_info

    if args.budget_epochs < 1:
        raise ConfigError(f"--budget-epochs={args.budget_epochs}: must be >= 1")
    if args.keep_studies and (args.keep_studies / "bench.db").exists():
        raise ConfigError(f"--keep-studies={args.keep_studies}: already holds bench.db; a sweep there would go on "
                          "with its study instead of starting afresh: choose another directory")
    cores = os.cpu_count() or 1
    proxy = [*SEARCH_PROXY, f"train.threads={min(SEARCH_THREADS, cores)}"]
    budget = [f"hydra.sweeper.budget.epochs={args.budget_epochs}", "hydra.sweeper.budget.minutes=null",
              "hydra.sweeper.n_trials=100000"]  # never binds: a rejected candidate is a trial that trains nothing
    seeds = list(range(1, args.repeats + 1))
    runs: dict[str, list[SearchRun]] = {name: [] for name in STRATEGIES}
    load_start, t0 = os.getloadavg()[0], time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        where = args.keep_studies or Path(scratch)
        where.mkdir(parents=True, exist_ok=True)
        tmp = str(where.resolve())
        for seed in seeds:
            for name, extra in STRATEGIES.items():
                study = f"{name.split()[0]}_{seed}"
                seconds = run_sweep([*proxy, *extra, *args.overrides, *budget,
                                     f"hydra.sweeper.sampler.seed={seed}"], tmp, "--search", study)
                run = read_search_run(f"sqlite:///{tmp}/bench.db", study, args.budget_epochs)
                runs[name].append(run)
                say(f"seed {seed}  {name}: best {' / '.join(fmt_value(v) for v in run.best)} at 25/50/100%, "
                    f"{run.trials} trials ({run.pruned} pruned), {run.epochs} epochs, {seconds:.0f} s")
    minutes = (time.perf_counter() - t0) / 60
    print_search(args, runs, proxy, seeds, minutes, cores, load_start, machine_info("cpu"))


def print_search(args: argparse.Namespace, runs: dict[str, list[SearchRun]], proxy: list[str], seeds: list[int],
                 minutes: float, cores: int, load_start: float, machine: dict[str, Any]) -> None:
    """The docs/BENCHMARKS.md block: what ran, the table, and the comparison as the last line."""
    n, b = len(seeds), args.budget_epochs
    epochs = "/".join(map(str, sorted(set().union(*(r.trial_epochs for rs in runs.values() for r in rs)))))
    print(f"search quality: {n} sweep{'s' if n > 1 else ''} per strategy (sampler seeds "
          f"{', '.join(map(str, seeds))}), interleaved, each a fresh process and throw-away study with a budget of "
          f"{b} trained epochs (hydra.sweeper.budget.epochs) in {epochs}-epoch trials; {minutes:.1f} min in all")
    print(f"proxy of sweep=default (its space and recipe): {' '.join([*proxy, *args.overrides])}; "
          "data.train_subset includes the validation split")
    for name, extra in STRATEGIES.items():
        print(f"{name}: {' '.join(extra)}")
    print("(the pruner's warm-up and TPE's random start-up are scaled to 5-epoch trials from 7 of 15 epochs and 10 "
          "trials in sweep=default. TPE draws its start-up from a random sampler of the same seed, and the median "
          "pruner waits for 5 complete trials: the two strategies share their first 5 trials, and part after)")
    print(conditions(machine, cores, load_start))
    print()
    print("| strategy | best@25% | best@50% | best@100% | trials | pruned | runs (best@100%) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    medians = {}
    for name, rs in runs.items():
        medians[name] = [median_or_none([r.best[i] for r in rs]) for i in range(len(FRACTIONS))]
        print(f"| {name} | {' | '.join(fmt_value(v) for v in medians[name])} "
              f"| {statistics.median(r.trials for r in rs):g} | {statistics.median(r.pruned for r in rs):g} "
              f"| {' '.join(fmt_value(r.best[-1]) for r in rs)} |")
    print()
    print("best@X% = the best validation objective among the trials completed within X% of the budget, median over "
          "the seeds (- = no complete trial yet); pruned trials never count. trials: trained trials per sweep, "
          "pruned: of those, stopped by the pruner or by the budget (medians)")
    (a, va), (r, vr) = ((name, medians[name][-1]) for name in STRATEGIES)
    if va is None or vr is None:
        verdict = "no comparison: a strategy has no complete trial"
    elif va == vr:
        verdict = "even"
    else:
        lead = a if va > vr else r
        verdict = f"{lead.split()[0]} ahead by {abs(va - vr) * 100:.2f} points"
    print(f"{a} vs {r} at 100% of {b} epochs: {fmt_value(va)} vs {fmt_value(vr)} (median of {n} "
          f"seed{'s' if n > 1 else ''}): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12_800, help="training images per timed run (default 12800)")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"interleaved runs per loop or strategy, the median is kept (default {LOOP_REPEATS} for "
                             f"the loops, {SWEEP_REPEATS} with --launchers or --search)")
    parser.add_argument("--workers", type=lambda s: [int(w) for w in s.split(",")], default=[0, 2],
                        help="DataLoader num_workers values to time for (a), comma-separated (default 0,2)")
    parser.add_argument("--launchers", action="store_true", help="time whole sweeps under each launcher set-up")
    parser.add_argument("--trials", type=int, default=4, help="with --launchers: trials per sweep (default 4)")
    parser.add_argument("--search", action="store_true",
                        help="compare the default sampler + pruner with random sampling at an equal epoch budget")
    parser.add_argument("--budget-epochs", type=int, default=SEARCH_BUDGET,
                        help=f"with --search: trained epochs per sweep (default {SEARCH_BUDGET})")
    parser.add_argument("--parts", action="store_true",
                        help="time the trainer's own CPU parts against torch's plain ones, and its allocator setting")
    parser.add_argument("--keep-studies", type=Path, default=None,
                        help="with --search: keep the studies in DIR/bench.db (default: throw-away)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=fcfree train.batch_size=128")
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = SWEEP_REPEATS if args.search or args.launchers else LOOP_REPEATS
    if args.repeats < 1 or args.trials < 1 or any(w < 0 for w in args.workers):
        parser.error("--repeats and --trials must be >= 1 and --workers values >= 0")
    if args.search + args.launchers + args.parts > 1:
        parser.error("--search, --launchers and --parts: choose one")

    from archsearch.cli import report_errors

    mode = bench_search if args.search else bench_launchers if args.launchers else bench_parts if args.parts else bench
    report_errors(lambda: mode(args))


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    main()
