"""`bench.py --parts`: the trainer's own CPU parts against torch's plain ones, and its allocator setting."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import TYPE_CHECKING, Any, Callable

from archsearch.core.defaults import ROOT

from bench_utils import BENCH_DEFAULTS, conditions, say

if TYPE_CHECKING:
    from omegaconf import DictConfig


PART_CALLS = 20  # calls of a part per timing


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
import bench_loops
from archsearch.core.machine import keep_freed_memory
from archsearch.report.model_summary import compose_config
kept = sys.argv[1] == "keep" and keep_freed_memory()
cfg = compose_config(sys.argv[3:])
if cfg.train.threads:
    torch.set_num_threads(cfg.train.threads)
run = bench_loops.bare_loop(cfg, int(sys.argv[2]))
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
                           *overrides], capture_output=True, text=True, cwd=ROOT / "bench")  # imports bench_loops
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
