"""Dropout and MaxPool2d as torch's modules (same repr, same results in expectation or to the bit), faster on a CPU
where these tiny convs leave the generator and NCHW max-pooling a large share of a step (`bench/bench.py --parts`).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

DROPOUT_LEVELS = 2**16  # the fast Dropout's resolution: p is applied as a whole number of 1/65536ths


class Dropout(nn.Dropout):
    """nn.Dropout (same repr) whose CPU mask costs one RNG draw per 4 elements instead of one per element:
    the CPU generator is slow next to these tiny convs (`bench/bench.py --parts`). Each element gets 16 random
    bits, so p is applied as round(p * 65536) / 65536, and the kept ones are scaled by 1 / (1 - that), so
    E[out] = x exactly and the drop rate is p to within 1/131072."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
            x = x.contiguous()
        n = x.numel()
        dropped = round(self.p * DROPOUT_LEVELS)  # of DROPOUT_LEVELS equally likely 16-bit values
        if dropped == 0:
            return x  # p < 1/131072: nothing is dropped, so nothing may be scaled either
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64)
        # The 16-bit values are i.i.d., so laying them out with x's strides keeps channels_last intact.
        random_values = words.view(torch.int16)[:n].as_strided(x.shape, x.stride())
        keep = 1 - dropped / DROPOUT_LEVELS
        scale = _at_least(random_values, dropped - DROPOUT_LEVELS // 2).to(torch.float32).mul_(1 / keep)
        return _Scale.apply(x, scale)


def _at_least(values: torch.Tensor, threshold: int) -> torch.Tensor:
    """(values >= threshold) as 0/1 of values' integer dtype, without a bool: on the CPU, Dropout's float mask
    of a 128x8x26x26 activation took 0.72 ms through a bool and 0.06 ms through this (`bench/bench.py --parts`)."""
    info = torch.iinfo(values.dtype)
    if threshold <= info.min:
        return torch.ones_like(values)
    if threshold > info.max:
        return torch.zeros_like(values)
    return values.clamp(threshold - 1, threshold).sub_(threshold - 1)


class _Scale(torch.autograd.Function):
    """x * scale, with the gradient grad * scale: for Dropout, one pass each way over a scale of 0 or 1/(1-p)
    (autograd's where(mask, x * s, 0) took two each way)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(scale)
        return x * scale

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (scale,) = ctx.saved_tensors
        return grad * scale, None


class MaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d (same repr) that, when training on a CPU in NCHW, pools in channels_last and takes the
    gradient with the NCHW kernel, to the bit the same outputs and gradients. PyTorch's NCHW max-pool forward
    was most of the cost (`bench/bench.py --parts`, 128x14x24x24, forward and backward: 4.0 ms, 2.7 ms for this)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain = self.padding == 0 and self.dilation == 1 and not self.ceil_mode and not self.return_indices
        if not (self.training and plain and x.device.type == "cpu" and x.dim() == 4 and x.is_contiguous()):
            return super().forward(x)
        return _ChannelsLastMaxPool.apply(x, _pair(self.kernel_size), _pair(self.stride))


def _pair(size: int | tuple[int, int]) -> list[int]:
    return list(size) if isinstance(size, tuple) else [size, size]


class _ChannelsLastMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel: list[int], stride: list[int]) -> torch.Tensor:
        y, indices = torch.ops.aten.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last),
                                                            kernel, stride)
        ctx.save_for_backward(x, indices)  # indices count within an H x W plane, in either layout
        ctx.kernel, ctx.stride = kernel, stride
        return y.contiguous()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        x, indices = ctx.saved_tensors
        grad_x = torch.ops.aten.max_pool2d_with_indices_backward(grad.contiguous(), x, ctx.kernel, ctx.stride, [0, 0],
                                                                 [1, 1], False, indices.contiguous())
        return grad_x, None, None
