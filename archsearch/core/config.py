"""Typed schemas for every config group, registered in Hydra's ConfigStore.

A misspelt key or a wrong type fails at composition with the key named; value ranges
(lr > 0, dropout in [0, 1), ...) are checked by `validate` before any data is touched.
"""
from __future__ import annotations

import math
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from archsearch.core.errors import ConfigError
from archsearch.core.records import OBJECTIVE_RULES


@dataclass
class DataConfig:
    root: str = "data"  # IDX files go to <root>/MNIST/raw (torchvision's layout)
    val_size: int = 0  # images held out of the 60k train set for selection; 0 = train on all
    split_seed: int = 0  # the split is fixed across trials so their objectives compare
    train_subset: int = 0  # 0 = all; tests use a few thousand
    test_subset: int = 0
    rotation: float = 0.0  # max |degrees| of per-sample random rotation
    translate: float = 0.0  # max shift as a fraction of the image side
    scale: float = 0.0  # max relative zoom in or out
    aug_p: float = 1.0  # chance that an image is augmented at all (1: every image; the rest are left as they are)


@dataclass
class BlockConfig:
    convs: List[int] = MISSING  # output widths of the 3x3 convs, in order
    transition: Optional[int] = None  # width of a 1x1 conv that opens the block
    pool: bool = False  # 2x2 max-pool after the last conv
    padding: int = 0


@dataclass
class ArchConfig:
    """The searched FC-free family, which the builder expands into blocks (archsearch/core/model.py, arch_stages):
    `pre` 3x3 convs (widths c1, then c2), a 2x2 max-pool, an optional 1x1 transition to t, `post` 3x3
    convs (the first half c3, the rest c4), then GAP and a 1x1 conv to the classes."""
    pre: int = 2  # 3x3 convs before the pool: where the pool goes
    post: int = 4  # 3x3 convs after the pool
    transition: bool = True  # a 1x1 conv to widths.t right after the pool
    pad_pre: int = 0  # padding of the convs before the pool: MACs, no params
    pad_post: int = 0


@dataclass
class StageConfig:
    """One stage of the multi-stage family: an optional 1x1 transition, then `depth` 3x3 convs. The first
    max(1, depth // 2) convs are `width` wide, the rest `late_width` (null: width)."""
    depth: int = 2
    width: int = 8
    late_width: Optional[int] = None
    pad: int = 1  # 1 keeps the size (MACs, no params); 0 shrinks it by 2 a conv
    transition: int = 0  # width of a 1x1 conv that opens the stage; 0: none


@dataclass
class StagesConfig:
    """The multi-stage FC-free family (archsearch/core/model.py, stages_model): stage s1, a 2x2 max-pool, s2, and with
    pools=2 another max-pool and s3; then GAP and a 1x1 conv to the classes. s3 is unused with pools=1."""
    pools: int = 2
    s1: StageConfig = field(default_factory=lambda: StageConfig(depth=2, width=4))
    s2: StageConfig = field(default_factory=lambda: StageConfig(depth=2, width=8))
    s3: StageConfig = field(default_factory=lambda: StageConfig(depth=2, width=16))


@dataclass
class ModelConfig:
    name: str = MISSING
    widths: Dict[str, int] = field(default_factory=dict)  # named widths that blocks (or arch) use
    arch: Optional[ArchConfig] = None  # set: blocks are built from it and must be left empty
    stages: Optional[StagesConfig] = None  # likewise: the multi-stage family
    blocks: List[BlockConfig] = field(default_factory=list)
    dropout: float = 0.0
    # conv biases: under conv_relu_bn a bias shifts the ReLU's threshold (not redundant); under conv_bn_relu the
    # BN's mean subtraction cancels it
    bias: bool = True
    block: str = "conv_relu_bn"  # each conv unit's order (BLOCK_ORDERS in archsearch/core/model.py)
    head: str = "conv"  # "conv": GAP then 1x1 conv (FC-free); "linear": GAP then Linear
    num_classes: int = 10


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adamw
    lr: float = 0.01  # for OneCycle this is the peak LR
    # SGD's momentum, AdamW's beta1; null: 0.9. OneCycle with sched.cycle_momentum sets it at every step,
    # so there it must stay null (validate says so).
    momentum: Optional[float] = None
    nesterov: bool = False
    weight_decay: float = 0.0


@dataclass
class SchedConfig:
    name: str = "none"  # none | onecycle | cosine | step | linear
    pct_start: float = 0.25  # onecycle, linear: fraction of steps spent warming up
    div_factor: float = 25.0  # onecycle: initial LR = lr / div_factor
    final_div_factor: float = 1e3
    # onecycle: cycle the momentum against the LR (PyTorch's default, and every searched and confirmed run's):
    # max_momentum at the start and the end, base_momentum at the LR peak.
    cycle_momentum: bool = True
    base_momentum: float = 0.85
    max_momentum: float = 0.95
    step_epochs: int = 6  # step: decay every this many epochs
    gamma: float = 0.1  # step: decay factor
    start_factor: float = 0.5  # linear: the first LR is optim.lr * start_factor, rising linearly to optim.lr
    end_factor: float = 0.0  # linear: falling linearly from optim.lr to optim.lr * end_factor at the last step


DEFAULT_MOMENTUM = 0.9


def momentum(optim: Any) -> float:
    """optim.momentum as the optimizer gets it (null: DEFAULT_MOMENTUM)."""
    return DEFAULT_MOMENTUM if optim.momentum is None else optim.momentum


@dataclass
class DistillConfig:
    """Knowledge distillation from a net this tool trained: loss = (1 - weight) * cross-entropy + weight *
    temperature^2 * KL(teacher || student) on the softened outputs. The teacher's forward passes run in the
    training loop, so they count in the run's time; the checkpoint holds the student alone."""
    teacher: Optional[str] = None  # a model.pt this tool wrote (cwd-relative); null: no distillation
    temperature: float = 4.0
    weight: float = 0.5  # 0: no distillation either (the teacher is not even loaded), so a search can turn it off


def distills(cfg: Any) -> bool:
    """Whether a run's config distills: a teacher and a weight above 0 (DistillConfig)."""
    return cfg.train.distill.teacher is not None and cfg.train.distill.weight > 0


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 64
    eval_batch_size: int = 2000
    precision: str = "auto"  # auto = fp32 on CPU and CUDA (bf16 autocast measured slower on both)
    channels_last: Optional[bool] = None  # null: by the measured rule in train.use_channels_last
    device: str = "auto"  # auto = cuda when present, else cpu
    threads: int = 0  # torch intra-op threads; 0 = torch's default (under joblib: cores // n_jobs)
    label_smoothing: float = 0.0
    # Decay of an exponential moving average of the weights and BatchNorm statistics, updated every step; when
    # > 0 the average is what is evaluated, selected on and saved (the raw weights' accuracies are recorded
    # beside it). 0: off.
    ema: float = 0.0
    # A run's objective from its last 3 validation epochs: their mean, or their minimum, which sees a run that
    # swings from epoch to epoch as the confirmation rule (every epoch >= the target) does.
    objective_rule: str = "mean"
    distill: DistillConfig = field(default_factory=DistillConfig)
    progress: bool = True
    checkpoint: bool = True


@dataclass
class ConstraintsConfig:
    max_params: int = 20_000
    max_epochs: int = 20
    target_acc: float = 0.994
    allow_fc: bool = True  # the documented Net has a Linear head; sweeps set false


@dataclass
class TrialBudget:
    """What is left of the sweep's budget when a trial starts; the trial ends PRUNED, saying so, past it."""
    epochs: Optional[int] = None  # train at most this many epochs
    deadline: Optional[float] = None  # unix time: stop after the first epoch that ends past it


@dataclass
class ReseedConfig:
    """Set by the sweeper from hydra.sweeper.reseed: a trial whose first seed would rank among the study's
    `top` complete trials trains `seeds` seeds in all (seed, seed + 1, ...), and its value is their mean, so
    that the study's best is never one lucky seed. top 0: one seed for every trial. A first seed whose objective
    is below min_objective (null: no floor) trains no more seeds."""
    top: int = 0
    seeds: int = 2
    min_objective: Optional[float] = None


@dataclass
class Config:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    optim: OptimConfig = MISSING
    sched: SchedConfig = MISSING
    train: TrainConfig = MISSING
    constraints: ConstraintsConfig = MISSING
    seed: int = 1
    objectives: List[str] = field(default_factory=lambda: ["val_acc"])  # val_acc | params | macs
    trial: Optional[int] = None  # Optuna trial number, set by the sweeper for each job
    trial_budget: TrialBudget = field(default_factory=TrialBudget)  # set by the sweeper
    reseed: ReseedConfig = field(default_factory=ReseedConfig)  # set by the sweeper


OBJECTIVES = {"val_acc": "maximize", "params": "minimize", "macs": "minimize"}
CHOICES = {
    "model.head": ("conv", "linear"),
    "optim.name": ("sgd", "adamw"),
    "sched.name": ("none", "onecycle", "cosine", "step", "linear"),
    "train.objective_rule": OBJECTIVE_RULES,
    "train.precision": ("auto", "bf16", "fp32"),
    "train.device": ("auto", "cpu", "cuda"),
}


# Keys that say where and how a run runs, not what it trains: two runs that differ only in these are the same
# configuration (a finished confirmation is reused whatever they were; the sweep's duplicate check ignores them).
MACHINE_KEYS = ("data.root", "train.threads", "train.progress", "train.device", "train.checkpoint")
# Keys added after the committed studies ran, at the value that trains as before: left out of a configuration's
# key at that value, so that a configuration keeps the key its trials were stored under.
LATER_DEFAULTS = {"data.aug_p": 1.0, "model.block": "conv_relu_bn", "sched.start_factor": 0.5,
                  "sched.end_factor": 0.0, "train.objective_rule": "mean"}
# A sweep's bookkeeping for each job, and the name a run is filed under: no part of what is trained either.
BOOKKEEPING_KEYS = ("trial", "trial_budget", "reseed", "model.name", "hydra")


def check_config(cfg: DictConfig) -> Any:
    """What a run checks before any data: the config's values, its teacher's training images, its model's build
    and the constraints (raises ConfigError or BudgetError); the model's accounting (a ModelReport)."""
    from archsearch.core.model import build_model, check_constraints
    from archsearch.core.provenance import check_teacher

    validate(cfg)
    check_teacher(cfg)
    _, report = build_model(cfg.model)
    check_constraints(report, cfg.constraints)
    return report


def configuration_key(cfg: DictConfig) -> str:
    """A digest of what a run trains: the model as the builder expands it (archsearch/core/model.py, expand) and the
    recipe. Configs that build the same network with the same recipe share it, e.g. a transition width
    sampled while the transition is off, or a third stage's width with one pool."""
    import hashlib
    import json

    from archsearch.core.model import expand

    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])  # hydra's node resolves only in a job
    c = OmegaConf.to_container(job, resolve=True)
    c["model"] = OmegaConf.to_container(expand(job.model), resolve=True)
    if not distills(job):  # its temperature and weight, or the teacher at weight 0, change nothing
        c["train"]["distill"] = None
    if c["sched"].get("name") != "linear":  # only the linear schedule reads its factors
        for unread in ("start_factor", "end_factor"):
            c["sched"].pop(unread, None)
    for key in (*MACHINE_KEYS, *BOOKKEEPING_KEYS, *LATER_DEFAULTS):
        *parents, leaf = key.split(".")
        node = c
        for p in parents:
            node = node.get(p) or {}
        if key not in LATER_DEFAULTS or node.get(leaf, LATER_DEFAULTS[key]) == LATER_DEFAULTS[key]:
            node.pop(leaf, None)
    return hashlib.sha256(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()[:16]


def register_schema() -> None:
    """Register the schema, so that conf/config.yaml's `defaults` can start from it, and the resolver that sizes
    budgets to the machine (${archsearch.on_cuda:A,B})."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="schema", node=Config)
    OmegaConf.register_new_resolver("archsearch.on_cuda", _on_cuda, replace=True)


def _on_cuda(cuda_value: Any, cpu_value: Any) -> Any:
    """${archsearch.on_cuda:A,B}: A where a CUDA device is available, else B (budgets sized to the machine)."""
    import torch

    return cuda_value if torch.cuda.is_available() else cpu_value


def _get(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key)


def validate(cfg: DictConfig) -> None:
    """Check value ranges that types cannot express; raise ConfigError naming key, value and limit."""

    def require(key: str, ok: bool, limit: str) -> None:
        if not ok:
            raise ConfigError(f"{key}={_get(cfg, key)!r}: must be {limit}")

    for key, allowed in CHOICES.items():
        require(key, _get(cfg, key) in allowed, "one of " + ", ".join(allowed))
    for name in cfg.objectives:
        if name not in OBJECTIVES:
            raise ConfigError(f"objectives={list(cfg.objectives)}: {name!r} is not one of {', '.join(OBJECTIVES)}")
    lr = cfg.optim.lr
    require("optim.lr", math.isfinite(lr) and 0 < lr <= 10, "> 0 and <= 10")
    momentum = cfg.optim.momentum
    require("optim.momentum", momentum is None or 0 <= momentum < 1, "in [0, 1), or null for 0.9")
    s = cfg.sched
    if s.name == "onecycle" and s.cycle_momentum:
        require("sched.base_momentum", 0 <= s.base_momentum <= s.max_momentum,
                f"in [0, sched.max_momentum={s.max_momentum}]")
        require("sched.max_momentum", s.max_momentum < 1, "< 1")
        if momentum is not None:
            raise ConfigError(f"optim.momentum={momentum}: sched=onecycle sets the momentum at every step (from "
                              f"sched.max_momentum={s.max_momentum} to sched.base_momentum={s.base_momentum} and "
                              "back); set those instead, or sched.cycle_momentum=false to use optim.momentum")
    require("optim.weight_decay", cfg.optim.weight_decay >= 0, ">= 0")
    require("model.dropout", 0 <= cfg.model.dropout < 1, "in [0, 1)")
    require("train.epochs", 1 <= cfg.train.epochs <= cfg.constraints.max_epochs,
            f"in [1, constraints.max_epochs={cfg.constraints.max_epochs}]")
    require("train.batch_size", cfg.train.batch_size > 0, "> 0")
    require("train.eval_batch_size", cfg.train.eval_batch_size > 0, "> 0")
    require("train.threads", cfg.train.threads >= 0, ">= 0")
    require("reseed.top", cfg.reseed.top >= 0, ">= 0 (0: off)")
    require("reseed.seeds", cfg.reseed.seeds >= 1, ">= 1")
    require("reseed.min_objective", cfg.reseed.min_objective is None or 0 <= cfg.reseed.min_objective <= 1,
            "in [0, 1] or null")
    require("data.val_size", 0 <= cfg.data.val_size < 60_000, "in [0, 60000)")
    require("data.train_subset", cfg.data.train_subset >= 0, ">= 0 (0 = all)")
    require("data.test_subset", 0 <= cfg.data.test_subset <= 10_000, "in [0, 10000] (0 = all)")
    require("data.rotation", 0 <= cfg.data.rotation <= 180, "in [0, 180] degrees")
    require("data.translate", 0 <= cfg.data.translate < 0.5, "in [0, 0.5)")
    require("data.scale", 0 <= cfg.data.scale < 0.5, "in [0, 0.5)")
    require("data.aug_p", 0 <= cfg.data.aug_p <= 1, "in [0, 1]")
    require("sched.pct_start", 0 < cfg.sched.pct_start < 1, "in (0, 1)")
    require("train.label_smoothing", 0 <= cfg.train.label_smoothing < 1, "in [0, 1)")
    require("train.ema", 0 <= cfg.train.ema < 1, "in [0, 1) (0: off)")
    kd = cfg.train.distill
    if distills(cfg):
        require("train.distill.temperature", kd.temperature > 0, "> 0")
        require("train.distill.weight", 0 <= kd.weight <= 1, "in [0, 1]")
        require("train.distill.teacher", Path(kd.teacher).is_file(),
                f"a checkpoint file (model.pt) this tool wrote; none at {Path(kd.teacher).absolute()}")
    require("sched.step_epochs", cfg.sched.step_epochs > 0, "> 0")
    require("sched.start_factor", 0 <= cfg.sched.start_factor <= 1, "in [0, 1]")
    require("sched.end_factor", 0 <= cfg.sched.end_factor <= 1, "in [0, 1]")
    require("constraints.max_params", cfg.constraints.max_params > 0, "> 0")
    require("constraints.target_acc", 0 < cfg.constraints.target_acc <= 1, "in (0, 1]")
    if cfg.data.train_subset and cfg.data.val_size >= cfg.data.train_subset:
        raise ConfigError(f"data.val_size={cfg.data.val_size}: must be < data.train_subset={cfg.data.train_subset}")
