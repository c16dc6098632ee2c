"""The op library: every candidate op maps (N, C, L) to (N, C, L) ("same" length, stride 1).

One registry from op name to builder; nothing else in the package dispatches on op names.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F


class SamePool(nn.Module):
    """Max or average pooling of width ``kernel`` with stride 1, padded so the length is kept.

    The fastest formulation differs by case (measured on CPU, float32 and bfloat16): averages are
    ``kernel - 1`` additions of shifted views; maxima under autograd use torch's pooling kernel,
    whose stored indices make the backward one scatter rather than a chain of masked maxima;
    maxima without autograd (scoring) take shifted maxima of doubling width, since torch's
    bfloat16 pooling kernel is several times slower.
    """

    def __init__(self, kernel: int, mode: str):
        super().__init__()
        self.kernel = kernel
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = (self.kernel - 1) // 2
        padded = F.pad(x, (left, self.kernel - 1 - left), value=float("-inf") if self.mode == "max" else 0.0)
        if self.mode == "avg":
            length = x.shape[-1]
            windows = [padded[..., shift : shift + length] for shift in range(self.kernel)]
            return sum(windows[1:], windows[0]) / self.kernel
        if torch.is_grad_enabled() and x.requires_grad:
            return F.max_pool1d(padded, self.kernel, stride=1)
        return sliding_max(padded, self.kernel)


def sliding_max(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Maxima of every ``kernel`` consecutive positions along the last dimension, in O(log kernel) maxima."""
    width = 1
    while 2 * width <= kernel:
        x = torch.maximum(x[..., :-width], x[..., width:])
        width *= 2
    if width < kernel:  # two overlapping windows of ``width`` cover one of ``kernel``
        x = torch.maximum(x[..., : -(kernel - width)], x[..., kernel - width :])
    return x


def conv_bn_relu(
    c_in: int, c_out: int, kernel: int, dilation: int = 1, track_running_stats: bool = True
) -> nn.Sequential:
    """Conv (same length, no bias) -> batch norm -> ReLU.

    Symmetric "same" padding (odd spans, 1x1 and these dilated kernels) is left to the convolution,
    which pads without copying its input; uneven padding for even kernels is an explicit pad in
    front (torch's ``padding="same"`` copies the input for those too). Element 0 is that pad or an
    identity, so parameter names are the same either way.
    """
    total = dilation * (kernel - 1)
    pad: nn.Module = nn.ConstantPad1d((total // 2, total - total // 2), 0.0) if total % 2 else nn.Identity()
    return nn.Sequential(
        pad,
        nn.Conv1d(c_in, c_out, kernel, dilation=dilation, padding=0 if total % 2 else total // 2, bias=False),
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
