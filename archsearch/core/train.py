"""train(cfg): build and check the model, then train it on in-memory MNIST and write what it did.

The trainer knows nothing of the search: a caller follows a run through Callbacks (the search's job records
each epoch to its Optuna trial and may stop the run early, archsearch/search/job.py). It writes metrics.json,
and the checkpoint, into the run directory it is given.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from archsearch.core.augment import epoch_batches, split, to_input, use_channels_last
from archsearch.core.config import distills, momentum, validate
from archsearch.core.errors import BudgetError, ConfigError, DivergedError
from archsearch.core.machine import keep_freed_memory, machine_info
from archsearch.core.model import ModelReport, build_model, check_constraints
from archsearch.core.provenance import check_teacher, trained_on
from archsearch.core.records import first_epoch_at, objective_so_far

log = logging.getLogger(__name__)

EXPLODED_LOSS = 1e4  # cross-entropy starts near 2.3; a loss this large never comes back


@dataclass
class RunResult:
    status: str  # complete | pruned | failed
    report: Optional[ModelReport]  # None until the model is built
    epochs: list[dict[str, Any]] = field(default_factory=list)
    objective: Any = None  # float, tuple for several objectives, None without a validation split
    reason: Optional[str] = None  # why it ended early (pruned or failed)
    teacher: Optional[dict[str, Any]] = None  # the distillation teacher (archsearch/core/checkpoint.py, load_teacher)


class Callbacks:
    """How a caller follows a run. Each method is a no-op here; the search's job overrides them."""

    nested_progress = False  # a progress bar of the caller's holds the terminal's top line

    def accounted(self, report: ModelReport) -> None:
        """The model is built and fits the constraints; no data has been touched yet."""

    def rejected(self, reason: str, report: Optional[ModelReport]) -> None:
        """The config or its model was refused (ConfigError or BudgetError), before any data; report is None
        when the model could not even be built."""

    def epoch_end(self, epoch: int, objective: Optional[float]) -> Optional[str]:
        """After each epoch, with the objective so far: a reason to stop now (the run ends pruned with it;
        ignored after the last epoch), or None to go on."""
        return None

    def finished(self, summary: dict[str, Any]) -> None:
        """The run ended complete, pruned or diverged; summary is what metrics.json says of it."""

    def interrupted(self, reason: str) -> None:
        """Ctrl-C or a signal stopped the run; metrics.json already says so, with reason."""

    def describe_interrupt(self, e: BaseException) -> str:
        """How the reason names an interruption (the search's job names the signal)."""
        return f"interrupted ({type(e).__name__})"


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        from archsearch.core.errors import ConfigError

        raise ConfigError("train.device='cuda': no CUDA device is available (use auto or cpu)")
    return name


def resolve_precision(precision: str) -> str:
    """train.precision as run. auto is fp32 everywhere: bf16 autocast was 4x slower on the AVX2 CPU, and 12%
    slower per 15-epoch trial on an H100 (make gpu-check, docs/BENCHMARKS.md "GPU"), where steps this small are bound by
    kernel launches."""
    return "fp32" if precision == "auto" else precision


def evaluate(model: Any, images: Any, labels: Any, cfg: DictConfig, autocast: Any) -> Optional[float]:
    import torch

    if len(labels) == 0:
        return None
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=labels.device)
    with torch.inference_mode(), autocast():
        for i in range(0, len(labels), cfg.train.eval_batch_size):
            logits = model(to_input(images[i: i + cfg.train.eval_batch_size], cfg))
            correct += (logits.argmax(1) == labels[i: i + cfg.train.eval_batch_size]).sum()
    return correct.item() / len(labels)


def make_optimizer(model: Any, cfg: DictConfig, steps_per_epoch: int) -> tuple[Any, Any]:
    import torch

    o, s = cfg.optim, cfg.sched
    beta1 = momentum(o)
    # foreach: one kernel per operation for all parameters, as PyTorch does by default only on a GPU. On the CPU
    # a step of fcfree_5k5's 23 tensors took 0.15 ms per parameter, 0.11 ms foreach (`bench/bench.py --parts`).
    if o.name == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=beta1, nesterov=o.nesterov and beta1 > 0,
                              weight_decay=o.weight_decay, foreach=True)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=(beta1, 0.999), weight_decay=o.weight_decay,
                                foreach=True)
    total = cfg.train.epochs * steps_per_epoch
    if s.name == "onecycle":  # all schedules step per batch
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=o.lr, total_steps=total, pct_start=s.pct_start,
                                                    div_factor=s.div_factor, final_div_factor=s.final_div_factor,
                                                    cycle_momentum=s.cycle_momentum, base_momentum=s.base_momentum,
                                                    max_momentum=s.max_momentum)
    elif s.name == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    elif s.name == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=s.step_epochs * steps_per_epoch, gamma=s.gamma)
    elif s.name == "linear":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup_anneal(total, s))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def linear_warmup_anneal(total: int, s: Any) -> Any:
    """The LR factor at each step of sched=linear: s.start_factor rising linearly to 1 at s.pct_start of the
    `total` steps, then falling linearly to s.end_factor at the last."""
    peak = max(1, round(s.pct_start * total))

    def factor(step: int) -> float:
        if step < peak:
            return s.start_factor + (1 - s.start_factor) * step / peak
        return 1 + (s.end_factor - 1) * min(1.0, (step - peak) / max(1, total - peak))

    return factor


def weight_average(model: Any, decay: float) -> Any:
    """torch's AveragedModel keeping an exponential moving average of the weights and of the BatchNorm
    statistics (use_buffers), updated after every step; None when decay is 0."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def training_loss(cfg: DictConfig, teacher: Any) -> Any:
    """loss(logits, labels, inputs): cross-entropy (with train.label_smoothing), mixed with the distillation
    loss when a teacher is given (DistillConfig in archsearch/core/config.py)."""
    import torch
    import torch.nn.functional as F

    smoothing, kd = cfg.train.label_smoothing, cfg.train.distill

    def loss(logits: Any, labels: Any, inputs: Any) -> Any:
        ce = F.cross_entropy(logits, labels, label_smoothing=smoothing)
        if teacher is None:
            return ce
        with torch.no_grad():
            target = F.log_softmax(teacher(inputs).float() / kd.temperature, dim=1)
        soft = F.kl_div(F.log_softmax(logits.float() / kd.temperature, dim=1), target, log_target=True,
                        reduction="batchmean")
        return (1 - kd.weight) * ce + kd.weight * kd.temperature ** 2 * soft

    return loss


def train(cfg: DictConfig, out_dir: Optional[Path] = None, callbacks: Optional[Callbacks] = None) -> RunResult:
    """Train one config, writing metrics.json (and model.pt) to out_dir when one is given.

    A config or model that fails its checks raises ConfigError or BudgetError before any data is loaded; a loss
    that diverges raises DivergedError after saying so in metrics.json; Ctrl-C or a signal (a KeyboardInterrupt)
    is recorded with the epoch reached, then goes on up."""
    callbacks = callbacks or Callbacks()
    run = _Run(cfg, out_dir, callbacks, RunResult("complete", None))
    try:  # a signal during the set-up (torch's import takes seconds) is recorded as one before the first epoch
        try:
            validate(cfg)
            check_teacher(cfg)
            import torch

            torch.manual_seed(cfg.seed)
            model, run.result.report = build_model(cfg.model)  # after seeding: the initial weights follow cfg.seed
            check_constraints(run.result.report, cfg.constraints)
        except (ConfigError, BudgetError) as e:
            callbacks.rejected(str(e), run.result.report)
            raise
        callbacks.accounted(run.result.report)
        return run.train(model)
    except KeyboardInterrupt as e:
        run.stopped(e)
        raise


class _Run:
    """One training run: the loop, and what it writes when it ends, however it ends."""

    def __init__(self, cfg: DictConfig, out_dir: Optional[Path], callbacks: Callbacks, result: RunResult) -> None:
        self.cfg, self.out_dir, self.callbacks, self.result = cfg, out_dir, callbacks, result
        self.epoch = 0  # the epoch being trained (0: not yet training)
        self.started = time.perf_counter()

    def train(self, model: Any) -> RunResult:
        import contextlib

        import torch

        from archsearch.core.data import load_mnist

        cfg, result = self.cfg, self.result
        device = resolve_device(cfg.train.device)
        keep_freed_memory()
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        model = model.to(device)
        channels_last = use_channels_last(cfg, device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        teacher = None
        if distills(cfg):
            from archsearch.core.checkpoint import load_teacher

            with torch.random.fork_rng(devices=[]):  # building the teacher draws; the student's run must not see it
                teacher, result.teacher = load_teacher(cfg.train.distill.teacher, device, channels_last)
        parts = split(cfg, load_mnist(cfg.data.root), device)
        train_x, train_y = parts["train"]
        gen = torch.Generator(device=device).manual_seed(cfg.seed)
        steps = math.ceil(len(train_y) / cfg.train.batch_size)
        opt, sched = make_optimizer(model, cfg, steps)
        averaged = weight_average(model, cfg.train.ema)
        scored = model if averaged is None else averaged.module  # what is evaluated, selected on and saved
        loss_fn = training_loss(cfg, teacher)
        bf16 = resolve_precision(cfg.train.precision) == "bf16"

        def autocast() -> Any:
            return torch.autocast(device_type=device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

        check_every = 1 if device == "cpu" else 25  # a finiteness check syncs a GPU; on a CPU it is free
        bar = _progress_bar(cfg, steps, self.callbacks.nested_progress)
        startup_s = None
        for epoch in range(1, cfg.train.epochs + 1):
            self.epoch = epoch
            t0 = time.perf_counter()
            model.train()
            order = torch.randperm(len(train_y), device=device, generator=gen)
            loss_sum = torch.zeros((), device=device)
            for step, (x, y) in enumerate(epoch_batches(train_x, train_y, order, cfg, gen, channels_last)):
                with autocast():
                    loss = loss_fn(model(x), y, x)
                if startup_s is None:
                    startup_s = time.perf_counter() - self.started
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if averaged is not None:
                    averaged.update_parameters(model)
                loss_sum += loss.detach()
                if step % check_every == 0 and not (torch.isfinite(loss) and loss < EXPLODED_LOSS):
                    self.diverged(f"diverged: loss {loss.item():.3g} at epoch {epoch}, step {step + 1}; "
                                  f"optim.lr={cfg.optim.lr} is probably too high")
                if bar is not None:
                    bar.update(1)
            train_loss = loss_sum.item() / steps
            if not math.isfinite(train_loss):
                self.diverged(f"diverged: non-finite loss at epoch {epoch}")
            record = {"epoch": epoch, "train_loss": train_loss,
                      "val_acc": evaluate(scored, *parts["val"], cfg, autocast),
                      "test_acc": evaluate(scored, *parts["test"], cfg, autocast)}
            if averaged is not None:  # the raw weights too, recorded beside the average (never selected on)
                record.update(raw_val_acc=evaluate(model, *parts["val"], cfg, autocast),
                              raw_test_acc=evaluate(model, *parts["test"], cfg, autocast))
            record.update(lr=opt.param_groups[0]["lr"], seconds=time.perf_counter() - t0)
            result.epochs.append(record)
            val = "-" if record["val_acc"] is None else f"{record['val_acc']:.4f}"
            log.info(f"epoch {epoch:2d}/{cfg.train.epochs}  loss {train_loss:.4f}  val {val}  "
                     f"test {record['test_acc']:.4f}  {record['seconds']:.1f}s")
            stop = self.callbacks.epoch_end(epoch, objective_so_far(result.epochs, cfg.train.objective_rule))
            if stop and epoch < cfg.train.epochs:
                result.status, result.reason = "pruned", stop
                log.info(stop)
                break
        if bar is not None:
            bar.close()
        result.objective = _objective(cfg, result)
        summary = _write(cfg, result, self.out_dir, scored, time.perf_counter() - self.started, startup_s,
                         reason=result.reason, machine=machine_info(device))
        self.callbacks.finished(summary)
        return result

    def diverged(self, reason: str) -> None:
        self.result.status = "failed"
        self.callbacks.finished(_write(self.cfg, self.result, self.out_dir, None, None, None, reason=reason))
        raise DivergedError(reason)

    def stopped(self, e: BaseException) -> None:
        """Say why the run stopped in its metrics.json, then tell the caller. In that order: a sweeper that waits
        for its jobs to fail their trials (archsearch/search/signals.py, jobs_elsewhere) then finds both. Stopped
        before its model was built, a run has no accounting to record: it writes no metrics.json (its directory
        stays incomplete, and a resume trains it again), and its caller is told all the same."""
        where = f"during epoch {self.epoch}" if self.epoch else "before its first epoch"
        reason = f"{self.callbacks.describe_interrupt(e)} {where}"
        log.warning(f"stopped: {reason}")
        self.result.status, self.result.reason = "failed", reason
        try:
            if self.result.report is not None:
                _write(self.cfg, self.result, self.out_dir, None, time.perf_counter() - self.started, None,
                       reason=reason)
        except Exception as error:  # noqa: BLE001 - the signal may have landed anywhere; never hide it
            log.warning(f"could not write metrics.json: {error}")
        self.callbacks.interrupted(reason)


def _objective(cfg: DictConfig, result: RunResult) -> Any:
    acc = objective_so_far(result.epochs, cfg.train.objective_rule)
    if acc is None:
        return None
    values = [{"val_acc": acc, "params": result.report.params, "macs": result.report.macs}[k] for k in cfg.objectives]
    return values[0] if len(values) == 1 else tuple(values)


def _progress_bar(cfg: DictConfig, steps: int, nested: bool) -> Any:
    if not (cfg.train.progress and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=steps * cfg.train.epochs, unit="batch", leave=False, dynamic_ncols=True,
                position=1 if nested else 0)


def _write(cfg: DictConfig, result: RunResult, out_dir: Optional[Path], model: Any, wall: Optional[float],
           startup_s: Optional[float], reason: Optional[str] = None,
           machine: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """metrics.json (and the checkpoint) in the run directory; returns the trial's summary record."""
    target = cfg.constraints.target_acc
    # The best epoch by validation only (None without a split): test accuracy is recorded, never selected on.
    best = max((e for e in result.epochs if e["val_acc"] is not None), key=lambda e: e["val_acc"], default=None)
    summary = {
        "status": result.status,
        "epochs_trained": len(result.epochs),
        "val_acc_per_epoch": [e["val_acc"] for e in result.epochs],
        "test_acc_per_epoch": [e["test_acc"] for e in result.epochs],
        "objective": result.objective,
        "first_epoch_at_target": first_epoch_at([e["test_acc"] for e in result.epochs], target),
        "wall_time_s": wall,
        "startup_s": startup_s,
    }
    if result.status == "pruned":
        summary["pruned_at_epoch"] = len(result.epochs)
    if reason:
        summary["reason"] = reason
    if out_dir is None:
        return summary
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {
        **summary,
        **result.report.as_dict(),
        "trained_on": trained_on(cfg.data),
        "teacher": result.teacher,
        "best_epoch": best,
        "machine": machine,
        "epochs": result.epochs,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    tmp = out_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2))
    os.replace(tmp, out_dir / "metrics.json")  # a killed run never leaves half a metrics.json
    if model is not None and cfg.train.checkpoint:
        from archsearch.core.checkpoint import save_checkpoint

        save_checkpoint(model, metrics["config"], out_dir / "model.pt")
    return summary

