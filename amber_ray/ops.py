"""The op library: every candidate op maps (N, C, L) to (N, C, L) ("same" length, stride 1).

One registry from op name to builder; nothing else in the package dispatches on op names.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F


class SamePool(nn.Module):
    """Max or average pooling of width ``kernel`` with stride 1, padded so the length is kept.

    Computed as ``kernel - 1`` elementwise max/add of shifted views: for the small stride-1
    windows of this space that is several times faster than torch's pooling kernels (and their
    backward), in float32 and bfloat16 alike.
    """

    def __init__(self, kernel: int, mode: str):
        super().__init__()
        self.kernel = kernel
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = (self.kernel - 1) // 2
        right = self.kernel - 1 - left
        length = x.shape[-1]
        padded = F.pad(x, (left, right), value=float("-inf") if self.mode == "max" else 0.0)
        windows = [padded[..., shift : shift + length] for shift in range(self.kernel)]
        if self.mode == "max":
            return functools.reduce(torch.maximum, windows)
        return sum(windows[1:], windows[0]) / self.kernel


def same_padding(kernel: int, dilation: int = 1) -> nn.ConstantPad1d:
    """Explicit "same" padding (torch's own copies the input for even kernels)."""
    total = dilation * (kernel - 1)
    return nn.ConstantPad1d((total // 2, total - total // 2), 0.0)


def conv_bn_relu(
    c_in: int, c_out: int, kernel: int, dilation: int = 1, track_running_stats: bool = True
) -> nn.Sequential:
    """Conv (same length, no bias) -> batch norm -> ReLU."""
    return nn.Sequential(
        same_padding(kernel, dilation),
        nn.Conv1d(c_in, c_out, kernel, dilation=dilation, bias=False),
        nn.BatchNorm1d(c_out, track_running_stats=track_running_stats),
        nn.ReLU(),
    )


OpBuilder = Callable[[int, int, bool], nn.Module]

OPS: dict[str, OpBuilder] = {
    "conv8": lambda c, d, t: conv_bn_relu(c, c, 8, 1, t),
    "conv4": lambda c, d, t: conv_bn_relu(c, c, 4, 1, t),
    "dconv8": lambda c, d, t: conv_bn_relu(c, c, 8, d, t),
    "dconv4": lambda c, d, t: conv_bn_relu(c, c, 4, d, t),
    "maxpool": lambda c, d, t: SamePool(4, "max"),
    "avgpool": lambda c, d, t: SamePool(4, "avg"),
    "identity": lambda c, d, t: nn.Identity(),
}


def build_op(name: str, channels: int, dilation: int = 10, track_running_stats: bool = True) -> nn.Module:
    """Instantiate op ``name`` for ``channels`` channels.

    ``track_running_stats=False`` makes batch norm always use batch statistics: the supernet
    needs it because running statistics shared by many architectures fit none of them.
    """
    return OPS[name](channels, dilation, track_running_stats)
