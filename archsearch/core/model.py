"""One builder for every model config: blocks of 3x3 convs, optional 1x1 transitions and
max-pools, then global average pooling and a 1x1-conv (FC-free) or Linear head.

The builder also accounts for the model (shapes, receptive field, params, MACs per layer) and
checks it against the constraints, so an impossible or over-budget model fails before any data.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from archsearch.core.errors import BudgetError, ConfigError
from archsearch.core.layers import Dropout, MaxPool2d

IMAGE_SHAPE = (1, 28, 28)
# Each conv unit's order. conv_relu_bn is the documented Net's, and a config without model.block (an older
# checkpoint's) builds it; conv_bn_relu is the usual order (the BN's shift then sets the ReLU's threshold).
BLOCK_ORDERS = ("conv_relu_bn", "conv_bn_relu")
MNIST_CLASSES = 10


@dataclass(frozen=True)
class Layer:
    name: str  # dotted module path, e.g. "conv1.0"
    kind: str  # the module's class name
    out_shape: tuple[int, int, int]  # (C, H, W) for one image
    rf: int  # receptive field in input pixels
    params: int
    macs: int


@dataclass(frozen=True)
class ModelReport:
    layers: tuple[Layer, ...]
    params: int
    macs: int
    fc_layers: tuple[str, ...]  # names of nn.Linear layers; empty means FC-free

    @property
    def fc_free(self) -> bool:
        return not self.fc_layers

    @property
    def rf(self) -> int:
        return max(layer.rf for layer in self.layers)

    def violations(self, constraints: Any) -> list[str]:
        """Human-readable constraint violations, empty when the model fits."""
        problems = []
        if self.params >= constraints.max_params:
            problems.append(f"model has {self.params:,} params; constraints.max_params={constraints.max_params} "
                            "requires fewer")
        if not constraints.allow_fc and self.fc_layers:
            problems.append(f"model has a fully connected layer ({', '.join(self.fc_layers)}); "
                            "constraints.allow_fc=false")
        return problems

    def as_dict(self) -> dict[str, Any]:
        return {"params": self.params, "macs": self.macs, "fc_free": self.fc_free,
                "fc_layers": list(self.fc_layers), "rf": self.rf}


def _check_model_config(cfg: DictConfig) -> None:
    if not cfg.blocks:
        raise ConfigError("model.blocks=[]: needs at least one block")
    for i, block in enumerate(cfg.blocks):
        if not block.convs and block.transition is None:
            raise ConfigError(f"model.blocks.{i}: has neither convs nor a transition")
        for j, width in enumerate(block.convs):
            if width <= 0:
                raise ConfigError(f"model.blocks.{i}.convs.{j}={width}: must be > 0")
        if block.transition is not None and block.transition <= 0:
            raise ConfigError(f"model.blocks.{i}.transition={block.transition}: must be > 0")
        if block.padding not in (0, 1):
            raise ConfigError(f"model.blocks.{i}.padding={block.padding}: must be 0 or 1")
    if cfg.num_classes != MNIST_CLASSES:
        raise ConfigError(f"model.num_classes={cfg.num_classes}: the final layer must output "
                          f"{MNIST_CLASSES} classes for MNIST")
    if not 0 <= cfg.dropout < 1:
        raise ConfigError(f"model.dropout={cfg.dropout}: must be in [0, 1)")
    if cfg.head not in ("conv", "linear"):
        raise ConfigError(f"model.head={cfg.head!r}: must be one of conv, linear")
    if cfg.get("block", BLOCK_ORDERS[0]) not in BLOCK_ORDERS:
        raise ConfigError(f"model.block={cfg.block!r}: must be one of {', '.join(BLOCK_ORDERS)}")


def _check_widths(cfg: DictConfig) -> None:
    """Named widths must be > 0 and each used, so that a misspelt width override fails.

    model.arch uses ARCH_WIDTHS. Unresolved (as composed), blocks name widths as ${model.widths.KEY}.
    Resolved (what a checkpoint or metrics.json holds), blocks hold plain numbers and name no width: then
    a width counts as used when its value is one of the blocks' widths, so the resolved config builds
    the same model."""
    for key, width in cfg.widths.items():
        if width <= 0:
            raise ConfigError(f"model.widths.{key}={width}: must be > 0")
    if cfg.get("arch") is not None or cfg.get("stages") is not None:
        used = set(ARCH_WIDTHS) if cfg.get("arch") is not None else set()
        unused = [key for key in cfg.widths if key not in used]
    elif used := set(re.findall(r"model\.widths\.(\w+)", OmegaConf.to_yaml(cfg.blocks, resolve=False))):
        unused = [key for key in cfg.widths if key not in used]
    else:
        block_widths = {w for block in cfg.blocks for w in [*block.convs, block.transition] if w is not None}
        unused = [key for key, width in cfg.widths.items() if width not in block_widths]
    if unused:
        raise ConfigError(f"model.widths.{unused[0]}: not used by any block of model '{cfg.name}' "
                          f"(used: {', '.join(sorted(used)) or 'none'})")


ARCH_WIDTHS = ("c1", "c2", "t", "c3", "c4")
STAGES = ("s1", "s2", "s3")


def arch_stages(cfg: DictConfig) -> dict[str, Any]:
    """model.arch (the one-pool family, ArchConfig in archsearch/core/config.py) as the multi-stage family it is a case of."""
    a = cfg.arch
    for key, low in (("pre", 1), ("post", 1)):
        if a[key] < low:
            raise ConfigError(f"model.arch.{key}={a[key]}: must be >= {low}")
    for key in ("pad_pre", "pad_post"):
        if a[key] not in (0, 1):
            raise ConfigError(f"model.arch.{key}={a[key]}: must be 0 or 1")
    missing = [k for k in ARCH_WIDTHS if k not in cfg.widths]
    if missing:
        raise ConfigError(f"model.widths.{missing[0]}: model.arch needs widths {', '.join(ARCH_WIDTHS)}")
    w = cfg.widths
    return {"pools": 1,
            "s1": {"depth": a.pre, "width": w.c1, "late_width": w.c2, "pad": a.pad_pre, "transition": 0},
            # post // 2 convs of c3, the rest c4; a single conv after the pool is c4
            "s2": {"depth": a.post, "width": w.c3 if a.post > 1 else w.c4, "late_width": w.c4, "pad": a.pad_post,
                   "transition": w.t if a.transition else 0}}


def stage_blocks(stages: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The blocks of a multi-stage model (StagesConfig): a max-pool after each stage but the last."""
    if stages["pools"] not in (1, 2):
        raise ConfigError(f"model.stages.pools={stages['pools']}: must be 1 or 2")
    used = STAGES[: stages["pools"] + 1]
    blocks = []
    for i, name in enumerate(used):
        st, key = stages[name], f"model.stages.{name}"
        if st["depth"] < 1:
            raise ConfigError(f"{key}.depth={st['depth']}: must be >= 1")
        for field_name in ("width", "late_width"):
            if st.get(field_name) is not None and st[field_name] <= 0:
                raise ConfigError(f"{key}.{field_name}={st[field_name]}: must be > 0")
        if st["transition"] < 0:
            raise ConfigError(f"{key}.transition={st['transition']}: must be >= 0 (0: none)")
        if st["pad"] not in (0, 1):
            raise ConfigError(f"{key}.pad={st['pad']}: must be 0 or 1")
        first = max(1, st["depth"] // 2)
        late = st["width"] if st.get("late_width") is None else st["late_width"]
        blocks.append({"convs": [st["width"]] * first + [late] * (st["depth"] - first),
                       "transition": st["transition"] or None, "pool": i < len(used) - 1, "padding": st["pad"]})
    return blocks


def expand(cfg: DictConfig) -> DictConfig:
    """The model config with its family (model.arch or model.stages) expanded into blocks: what gets built.
    Two configs that expand alike build the same network."""
    families = [key for key in ("arch", "stages") if cfg.get(key) is not None]
    if not families:
        return cfg
    if len(families) > 1:
        raise ConfigError("model.stages: must be null when model.arch is set (one family per model)")
    if cfg.get("blocks"):
        raise ConfigError(f"model.blocks: must be empty when model.{families[0]} is set (the blocks are built from it)")
    stages = arch_stages(cfg) if families[0] == "arch" else OmegaConf.to_container(cfg.stages, resolve=True)
    model = OmegaConf.to_container(cfg, resolve=True)
    model.update(arch=None, stages=None, blocks=stage_blocks(stages), widths={})  # every width is in the blocks
    return OmegaConf.create(model)


class Net(nn.Module):
    """Named stages applied in order; the output is flattened to (N, classes) logits."""

    def __init__(self, stages: list[tuple[str, nn.Sequential]]) -> None:
        super().__init__()
        for name, stage in stages:
            self.add_module(name, stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *body, head = self.children()
        for stage in body:
            x = stage(x)
        return head(x.flatten(1)) if isinstance(head[0], nn.Linear) else head(x).flatten(1)


def build_model(cfg: DictConfig | Mapping[str, Any]) -> tuple[nn.Module, ModelReport]:
    """Build the model described by a `model` config and account for every layer.

    cfg is the composed `model` node or its resolved form, e.g. a checkpoint's config["model"] (a plain dict)."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    _check_widths(cfg)
    cfg = expand(cfg)
    _check_model_config(cfg)
    channels, height, width = IMAGE_SHAPE
    rf, jump = 1, 1  # receptive field and the input-pixel distance between adjacent outputs
    layers: list[Layer] = []
    fc_layers: list[str] = []
    stages: list[tuple[str, nn.Sequential]] = []

    def add(seq: nn.Sequential, module: nn.Module, stage: str, key: str) -> None:
        nonlocal channels, height, width, rf, jump
        macs = 0
        if isinstance(module, nn.Conv2d):
            k, pad = module.kernel_size[0], module.padding[0]
            if height + 2 * pad < k or width + 2 * pad < k:
                raise ConfigError(f"{key}: input is {height}x{width}, too small for a {k}x{k} conv; "
                                  "the spatial size collapses (use fewer convs, padding=1 or fewer pools)")
            height, width = height + 2 * pad - k + 1, width + 2 * pad - k + 1
            macs = module.out_channels * height * width * module.in_channels * k * k
            channels, rf = module.out_channels, rf + (k - 1) * jump
        elif isinstance(module, nn.MaxPool2d):
            if height < 2 or width < 2:
                raise ConfigError(f"{key}: input is {height}x{width}; a 2x2 max-pool collapses it")
            height, width, rf, jump = height // 2, width // 2, rf + jump, jump * 2
        elif isinstance(module, nn.AvgPool2d):
            rf, height, width = rf + (height - 1) * jump, 1, 1
        elif isinstance(module, nn.Linear):
            macs, channels = module.in_features * module.out_features, module.out_features
            fc_layers.append(f"{stage}.{len(seq)}: Linear {module.in_features}->{module.out_features}")
        seq.append(module)
        layers.append(Layer(f"{stage}.{len(seq) - 1}", type(module).__name__, (channels, height, width), rf,
                            sum(p.numel() for p in module.parameters()), macs))

    bn_first = cfg.get("block", BLOCK_ORDERS[0]) == "conv_bn_relu"

    def conv_unit(seq: nn.Sequential, stage: str, key: str, out: int, k: int, pad: int, pool: bool) -> None:
        # Conv -> ReLU -> BN (or Conv -> BN -> ReLU) [-> MaxPool] -> Dropout
        add(seq, nn.Conv2d(channels, out, kernel_size=k, padding=pad, bias=cfg.bias), stage, key)
        for module in (nn.BatchNorm2d(out), nn.ReLU()) if bn_first else (nn.ReLU(), nn.BatchNorm2d(out)):
            add(seq, module, stage, key)
        if pool:
            add(seq, MaxPool2d(2, 2), stage, key)
        if cfg.dropout > 0:
            add(seq, Dropout(cfg.dropout), stage, key)

    for i, block in enumerate(cfg.blocks):
        stage, seq = f"conv{i + 1}", nn.Sequential()
        if block.transition is not None:
            conv_unit(seq, stage, f"model.blocks.{i}.transition", block.transition, 1, 0,
                      block.pool and not block.convs)
        for j, out in enumerate(block.convs):
            conv_unit(seq, stage, f"model.blocks.{i}.convs.{j}", out, 3, block.padding,
                      block.pool and j == len(block.convs) - 1)
        stages.append((stage, seq))

    # Named as in the documented Net (fc1 = GAP, fc2 = Linear) when the head is linear.
    gap_name, head_name = ("fc1", "fc2") if cfg.head == "linear" else ("gap", "head")
    gap, head = nn.Sequential(), nn.Sequential()
    add(gap, nn.AvgPool2d(kernel_size=height), gap_name, "model.head")
    if cfg.head == "linear":
        add(head, nn.Linear(channels, cfg.num_classes), head_name, "model.head")
    else:
        add(head, nn.Conv2d(channels, cfg.num_classes, kernel_size=1), head_name, "model.head")
    stages += [(gap_name, gap), (head_name, head)]

    model = Net(stages)
    with torch.no_grad():  # cheap shape check that the accounting matches the real forward (eval: no BN update)
        out = model.eval()(torch.zeros(1, *IMAGE_SHAPE))
    if out.shape != (1, cfg.num_classes):
        raise ConfigError(f"model '{cfg.name}': outputs shape {tuple(out.shape)} for one image, not (1, "
                          f"{cfg.num_classes})")
    model.train()  # the mode torch's own modules are built in
    report = ModelReport(tuple(layers), sum(p.numel() for p in model.parameters()),
                         sum(layer.macs for layer in layers), tuple(fc_layers))
    return model, report


def check_constraints(report: ModelReport, constraints: Any) -> None:
    """Raise BudgetError naming the first violated constraint."""
    problems = report.violations(constraints)
    if problems:
        raise BudgetError(problems[0])
