"""train(cfg): validate, build and budget-check the model, then train on in-memory MNIST.

The hot path keeps the whole dataset as uint8 tensors on the device, shuffles by index
permutation, augments each batch at once (per-sample random affine via affine_grid/grid_sample)
and normalizes per batch: no DataLoader, no worker processes, no per-sample Python.
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
from typing import Any, Iterator, Optional

from omegaconf import DictConfig, OmegaConf

from sweep.config import momentum, validate
from sweep.errors import BudgetError, ConfigError, DivergedError
from sweep.machine import keep_freed_memory, machine_info
from sweep.model import ModelReport, build_model, check_constraints

log = logging.getLogger(__name__)

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
OBJECTIVE_EPOCHS = 3  # the objective averages the last epochs: consistency, not one lucky epoch
EXPLODED_LOSS = 1e4  # cross-entropy starts near 2.3; a loss this large never comes back
# Training batches prepared at once: small tensor ops cost mostly per call on a CPU; 2,048 images took 12.0 ms
# batch by batch and 7.0 ms 16 batches at once (`bench.py --parts`, 2 threads here).
PREPARED_BATCHES = 16


@dataclass
class RunResult:
    status: str  # complete | pruned
    report: ModelReport
    epochs: list[dict[str, Any]] = field(default_factory=list)
    objective: Any = None  # float, tuple for several objectives, None without a validation split
    reason: Optional[str] = None  # why it ended early (pruned or failed)
    teacher: Optional[dict[str, Any]] = None  # the distillation teacher (sweep/checkpoint.py, load_teacher)
    seed_objectives: list[float] = field(default_factory=list)  # per seed, when the trial trained several
    reseed_note: Optional[str] = None  # why it trained fewer seeds than reseed.seeds


def check_config(cfg: DictConfig, model: bool = True) -> Optional[ModelReport]:
    """Validate values and, if asked, build the model and check it against the constraints."""
    validate(cfg)
    if not model:
        return None
    _, report = build_model(cfg.model)
    check_constraints(report, cfg.constraints)
    return report


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        from sweep.errors import ConfigError

        raise ConfigError("train.device='cuda': no CUDA device is available (use auto or cpu)")
    return name


def resolve_precision(precision: str) -> str:
    """train.precision as run. auto is fp32 everywhere: bf16 autocast was 4x slower on the AVX2 CPU, and 12%
    slower per 15-epoch trial on an H100 (make gpu-check, README "GPU"), where steps this small are bound by
    kernel launches."""
    return "fp32" if precision == "auto" else precision


def augment(images: Any, cfg: DictConfig, generator: Any, draw_size: Optional[int] = None) -> Any:
    """Per-sample random rotation/translation/scale of a float batch (N, 1, H, W), background 0. The random
    values are drawn for draw_size samples at a time (default: all N) in a fixed order, so that batches
    augmented together get exactly the values they would get one by one (epoch_batches)."""
    import torch
    import torch.nn.functional as F

    n = images.shape[0]
    group = draw_size or n
    angle, scale, shift_x, shift_y = torch.cat([random_affine(min(group, n - start), cfg, generator, images.device)
                                                for start in range(0, n, group)], dim=1)
    grid = affine_grid(torch.cos(angle) / scale, torch.sin(angle) / scale, torch.stack([shift_x, shift_y], dim=1),
                       *images.shape[-2:])
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_affine(n: int, cfg: DictConfig, generator: Any, device: Any) -> Any:
    """(4, n): angle (radians), scale, and x and y shift in [-1, 1] coordinates, drawn in that order."""
    import torch

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(n, device=device, generator=generator) * 2 - 1) * limit

    return torch.stack([uniform(math.radians(cfg.rotation)), 1 + uniform(cfg.scale),
                        uniform(2 * cfg.translate), uniform(2 * cfg.translate)])


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
    (fcfree_5k5, README "Speed"): channels_last on a GPU and with one CPU thread, NCHW with several."""
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
    if generator is not None and (d.rotation or d.translate or d.scale):
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
    """Train/val/test tensors on the device; the val split is fixed by data.split_seed."""
    import torch

    d = cfg.data
    pool = torch.randperm(60_000, generator=torch.Generator().manual_seed(d.split_seed))
    if d.train_subset:
        pool = pool[: d.train_subset]
    val_idx, train_idx = pool[: d.val_size], pool[d.val_size:]
    n_test = d.test_subset or len(data.test_labels)
    parts = {"train": (data.train_images[train_idx], data.train_labels[train_idx]),
             "val": (data.train_images[val_idx], data.train_labels[val_idx]),
             "test": (data.test_images[:n_test], data.test_labels[:n_test])}
    return {k: (x.to(device), y.to(device)) for k, (x, y) in parts.items()}


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
    # a step of fcfree_5k5's 23 tensors took 0.15 ms per parameter, 0.11 ms foreach (`bench.py --parts`).
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
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def weight_average(model: Any, decay: float) -> Any:
    """torch's AveragedModel keeping an exponential moving average of the weights and of the BatchNorm
    statistics (use_buffers), updated after every step; None when decay is 0."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def training_loss(cfg: DictConfig, teacher: Any) -> Any:
    """loss(logits, labels, inputs): cross-entropy (with train.label_smoothing), mixed with the distillation
    loss when a teacher is given (DistillConfig in sweep/config.py)."""
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


def first_epoch_at(epochs: list[dict[str, Any]], key: str, target: float) -> Optional[int]:
    return next((e["epoch"] for e in epochs if e[key] is not None and e[key] >= target), None)


def objective_so_far(epochs: list[dict[str, Any]]) -> Optional[float]:
    vals = [e["val_acc"] for e in epochs[-OBJECTIVE_EPOCHS:]]
    return None if not vals or vals[0] is None else sum(vals) / len(vals)


@dataclass
class _Progress:
    """How far a run got, for the reason and metrics.json of an interrupted one."""

    epoch: int = 0  # the epoch being trained (0: not yet training)
    result: Optional[RunResult] = None
    during: str = ""  # a further seed being trained (ReseedConfig), else empty
    started: float = field(default_factory=time.perf_counter)


def train(cfg: DictConfig, out_dir: Optional[Path] = None, link: Any = None) -> RunResult:
    """Train one config; under Hydra, write to the job's directory and report to its Optuna trial.

    Ctrl-C, SIGTERM and SIGHUP (sweep.signals) fail the trial at once, with the signal and the epoch
    reached, and say the same in metrics.json. In the entry point's process the interruption goes on up
    (the sweep stops, exit 128 + signal); a job in another process (joblib, submitit) ends as a failed job."""
    from sweep import signals

    progress = _Progress()
    with signals.job_scope() as own_handler:
        try:
            if out_dir is None and link is None:
                out_dir, link = _from_hydra(cfg)
            progress.result = RunResult("complete", _check_or_reject(cfg, out_dir, link))
            result = _train(cfg, out_dir, link, progress)
            if link is not None and _reseeds(cfg, result, link):
                _more_seeds(cfg, result, out_dir, link, progress)
            return result
        except KeyboardInterrupt as e:  # Ctrl-C, or signals.Terminated
            reason = _interrupted(e, cfg, progress, out_dir, link)
            if own_handler and isinstance(e, signals.Terminated):
                raise signals.JobStopped(reason) from None
            raise
        finally:
            if link is not None:
                link.close()


def _reseeds(cfg: DictConfig, result: RunResult, link: Any) -> bool:
    """Whether this sweep trial trains more seeds (ReseedConfig): it is complete and its first seed would rank
    among the study's top reseed.top complete trials."""
    top = cfg.reseed.top
    if not (top and cfg.reseed.seeds > 1 and result.status == "complete" and isinstance(result.objective, float)):
        return False
    return link.ahead_of(result.objective) < top


def _more_seeds(cfg: DictConfig, result: RunResult, out_dir: Optional[Path], link: Any, progress: _Progress) -> None:
    """Train seeds cfg.seed + 1, ... of this trial in <run dir>/seed_<k>, without reporting epochs (the pruner
    judged the first seed), then make the trial's objective the mean over its seeds. A seed that would overrun
    the sweep's budget is not started; the trial keeps the seeds it has, saying why."""
    objectives, dirs, epochs = [result.objective], [str(out_dir)], len(result.epochs)
    started = time.perf_counter()
    for k in range(1, cfg.reseed.seeds):
        budget = cfg.trial_budget
        took = (time.perf_counter() - progress.started) / len(objectives)
        if budget.epochs is not None and epochs + cfg.train.epochs > budget.epochs:
            result.reseed_note = "no further seed: the sweep's epoch budget ran out"
        elif budget.deadline is not None and time.time() + took > budget.deadline:
            result.reseed_note = "no further seed: the sweep's time budget would run out"
        if result.reseed_note:
            log.info(result.reseed_note)
            break
        seed_cfg = cfg.copy()
        seed_cfg.seed = cfg.seed + k
        seed_dir = None if out_dir is None else out_dir / f"seed_{seed_cfg.seed}"
        log.info(f"in the study's top {cfg.reseed.top}: training seed {seed_cfg.seed} too, in {seed_dir}")
        progress.during = f"seed {seed_cfg.seed}"
        again = _train(seed_cfg, seed_dir, None, _Progress(result=RunResult("complete", result.report)))
        objectives.append(again.objective)
        dirs.append(str(seed_dir))
        epochs += len(again.epochs)
    result.seed_objectives = objectives
    result.objective = sum(objectives) / len(objectives)
    link.record(objective=result.objective, seed_objectives=objectives, seeds=list(range(cfg.seed, cfg.seed + len(
        objectives))), seed_run_dirs=dirs, epochs_trained=epochs, reseed_note=result.reseed_note,
        reseed_wall_time_s=time.perf_counter() - started)


def _interrupted(e: BaseException, cfg: DictConfig, progress: _Progress, out_dir: Optional[Path],
                 link: Any) -> str:
    """Say why the run stopped in its metrics.json, then fail its trial; the reason. In that order: a
    sweeper that waits for its jobs to fail their trials (sweep.signals.jobs_elsewhere) then finds both."""
    from sweep import signals

    where = (f"while training {progress.during}" if progress.during
             else f"during epoch {progress.epoch}" if progress.epoch else "before its first epoch")
    reason = f"{signals.describe(e)} {where}"
    log.warning(f"stopped: {reason}")
    if progress.result is not None:
        progress.result.status, progress.result.reason = "failed", reason
        try:
            _write(cfg, progress.result, out_dir, None, time.perf_counter() - progress.started, None, reason=reason)
        except Exception as error:  # noqa: BLE001
            log.warning(f"could not write metrics.json: {error}")
    if link is not None:
        try:  # the signal may have landed inside a database call; never let that hide the interrupt
            link.fail(reason)
        except Exception as error:  # noqa: BLE001
            log.warning(f"could not mark trial {cfg.trial} failed: {error}")
    return reason


def _check_or_reject(cfg: DictConfig, out_dir: Optional[Path], link: Any) -> ModelReport:
    """check_config; a sweep's candidate that fails it is recorded as rejected (in milliseconds)."""
    try:
        report = check_config(cfg)
    except (ConfigError, BudgetError) as e:
        if link is None and out_dir is not None:
            _discard_run_dir(out_dir)
        if link is not None:
            try:
                link.record(**_accounting(build_model(cfg.model)[1]))
            except ConfigError:
                pass  # not even buildable: no count to record
            link.record(status="rejected", reason=str(e))
        raise
    if link is not None:
        link.record(**_accounting(report))
    return report


def _from_hydra(cfg: DictConfig) -> tuple[Optional[Path], Any]:
    """The job's output directory and, in an Optuna sweep, the link to its trial."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None, None
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    if cfg.trial is None or "pruner" not in hc.sweeper:
        return out_dir, None
    from sweep.study import TrialLink

    link = TrialLink(hc.sweeper.storage, hc.sweeper.study_name, cfg.trial, hc.sweeper.pruner)
    link.record(run_dir=str(out_dir))  # its overrides were recorded by the sweeper when it asked the trial
    return out_dir, link


def _discard_run_dir(out_dir: Path) -> None:
    """Remove a run directory that holds only what Hydra wrote before the config was rejected."""
    import shutil

    if out_dir.is_dir() and {p.name for p in out_dir.iterdir()} <= {".hydra", "run.log"}:
        shutil.rmtree(out_dir, ignore_errors=True)


def _accounting(report: ModelReport) -> dict[str, Any]:
    return {"n_params": report.params, "macs": report.macs, "fc_free": report.fc_free}


def _train(cfg: DictConfig, out_dir: Optional[Path], link: Any, progress: _Progress) -> RunResult:
    import contextlib

    import torch

    from sweep.data import load_mnist

    device = resolve_device(cfg.train.device)
    keep_freed_memory()
    threads = cfg.train.threads or _parallel_jobs_threads()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    model, _ = build_model(cfg.model)  # built after seeding, so the initial weights follow cfg.seed
    model = model.to(device)
    channels_last = use_channels_last(cfg, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    result, teacher = progress.result, None
    if cfg.train.distill.teacher is not None:
        from sweep.checkpoint import load_teacher

        teacher, result.teacher = load_teacher(cfg.train.distill.teacher, device, channels_last)
    parts = split(cfg, load_mnist(cfg.data.root), device)
    train_x, train_y = parts["train"]
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    bs = cfg.train.batch_size
    steps = math.ceil(len(train_y) / bs)
    opt, sched = make_optimizer(model, cfg, steps)
    averaged = weight_average(model, cfg.train.ema)
    scored = model if averaged is None else averaged.module  # what is evaluated, selected on and saved
    loss_fn = training_loss(cfg, teacher)

    precision = resolve_precision(cfg.train.precision)

    def autocast() -> Any:
        if precision == "bf16":
            return torch.autocast(device_type=device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    check_every = 1 if device == "cpu" else 25  # a finiteness check syncs a GPU; on a CPU it is free
    started = progress.started
    bar = _progress(cfg, steps)
    startup_s = None
    for epoch in range(1, cfg.train.epochs + 1):
        progress.epoch = epoch
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_y), device=device, generator=gen)
        loss_sum = torch.zeros((), device=device)
        for step, (x, y) in enumerate(epoch_batches(train_x, train_y, order, cfg, gen, channels_last)):
            with autocast():
                loss = loss_fn(model(x), y, x)
            if startup_s is None:
                startup_s = time.perf_counter() - started
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if averaged is not None:
                averaged.update_parameters(model)
            loss_sum += loss.detach()
            if step % check_every == 0 and not (torch.isfinite(loss) and loss < EXPLODED_LOSS):
                _diverged(f"diverged: loss {loss.item():.3g} at epoch {epoch}, step {step + 1}; "
                          f"optim.lr={cfg.optim.lr} is probably too high", link, result, out_dir, cfg)
            if bar is not None:
                bar.update(1)
        train_loss = loss_sum.item() / steps
        if not math.isfinite(train_loss):
            _diverged(f"diverged: non-finite loss at epoch {epoch}", link, result, out_dir, cfg)
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
        # Optuna reports intermediate values (and prunes) for one objective only.
        if link is not None and record["val_acc"] is not None and len(cfg.objectives) == 1:
            if link.report(objective_so_far(result.epochs), epoch) and epoch < cfg.train.epochs:
                result.status, result.reason = "pruned", f"pruned at epoch {epoch} by {type(link.pruner).__name__}"
        if result.status == "complete" and epoch < cfg.train.epochs:
            result.reason = _out_of_budget(cfg.trial_budget, epoch)
            result.status = "pruned" if result.reason else result.status
        if result.status == "pruned":
            log.info(result.reason)
            break
    if bar is not None:
        bar.close()
    result.objective = _objective(cfg, result)
    summary = _write(cfg, result, out_dir, scored, time.perf_counter() - started, startup_s, reason=result.reason,
                     machine=machine_info(device))
    if link is not None:
        link.record(**{"reason": None, **summary})  # None replaces the worker-lost reason set at the start
    return result


def _out_of_budget(budget: Any, epoch: int) -> Optional[str]:
    """Why the sweep's budget ends this trial after `epoch`, or None."""
    if budget.epochs is not None and epoch >= budget.epochs:
        return f"pruned at epoch {epoch}: the sweep's epoch budget ran out"
    if budget.deadline is not None and time.time() >= budget.deadline:
        return f"pruned at epoch {epoch}: the sweep's time budget ran out"
    return None


def _parallel_jobs_threads() -> int:
    """Under a joblib launcher running several trials at once, each job's share of the cores (0: leave
    torch's default). Two trials with a thread per core each made every epoch 5-15x slower here."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return 0
    hc = HydraConfig.get()
    launcher_jobs = hc.launcher.get("n_jobs") if "joblib" in str(hc.launcher.get("_target_", "")) else None
    if launcher_jobs is None:
        return 0
    cores = os.cpu_count() or 1
    at_once = min(cores if launcher_jobs < 1 else launcher_jobs, hc.sweeper.get("n_jobs") or cores)
    return max(1, cores // max(1, at_once))


def _objective(cfg: DictConfig, result: RunResult) -> Any:
    acc = objective_so_far(result.epochs)
    if acc is None:
        return None
    values = [{"val_acc": acc, "params": result.report.params, "macs": result.report.macs}[k] for k in cfg.objectives]
    return values[0] if len(values) == 1 else tuple(values)


def _diverged(reason: str, link: Any, result: RunResult, out_dir: Optional[Path], cfg: DictConfig) -> None:
    result.status = "failed"
    summary = _write(cfg, result, out_dir, None, None, None, reason=reason)
    if link is not None:
        link.record(**summary)
    raise DivergedError(reason)


def _progress(cfg: DictConfig, steps: int) -> Any:
    if not (cfg.train.progress and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    # In a sweep the sweep's own bar holds the top line (sweep/progress.py).
    return tqdm(total=steps * cfg.train.epochs, unit="batch", leave=False, dynamic_ncols=True,
                position=0 if cfg.trial is None else 1)


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
        "first_epoch_at_target": first_epoch_at(result.epochs, "test_acc", target),
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
        from sweep.checkpoint import save_checkpoint

        save_checkpoint(model, metrics["config"], out_dir / "model.pt")
    return summary

