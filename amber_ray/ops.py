"""The op library: every candidate op maps (N, C, L) to (N, C, L) ("same" length, stride 1).

One registry from op name to builder (:data:`OPS`). Its names are ``config.OP_NAMES``, which
the configuration checks without importing torch (the command line starts without it); the
registry must hold exactly those names, in that order, or this module does not import.
``report/figures.py`` colours ops by family (name prefix); nothing else dispatches on op names.
Every op also takes ``(N, C, 1, L)`` tensors, which the supernet keeps in channels-last memory
(see :func:`to_channels_last`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from amber_ray.config import OP_NAMES
from amber_ray.device import cpu_vendor


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, L)`` -> ``(N, C, 1, L)`` with the channels innermost in memory.

    oneDNN runs the narrow (32-64 channel), long-sequence convolutions of genomic CNNs much faster
    in this layout: it skips the reorders into and out of its blocked format that dominate there
    (a DeepSEA-space first block, forward and backward: 1.7x in float32, 1.6x in bfloat16 on CPU).
    """
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


class _FromChannelsLast(torch.autograd.Function):
    """Channels-last ``(N, C, 1, L)`` -> contiguous ``(N, C, L)``, with the gradient sent back channels-last."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x.squeeze(2).contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return to_channels_last(grad)


def from_channels_last(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`to_channels_last`, for the dense head.

    A plain reshape would send a gradient in the default layout back into the channels-last
    layers; their backward kernels then mix layouts and fall onto slow strided paths (ReLU's
    backward alone ran 10x slower).
    """
    return _FromChannelsLast.apply(x)


def max_pool_length(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Max-pool along the last dimension of ``(N, C, L)`` or ``(N, C, 1, L)``."""
    if x.dim() == 4:
        return F.max_pool2d(x, (1, kernel), (1, stride))
    return F.max_pool1d(x, kernel, stride)


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` that also takes ``(N, C, 1, L)``, as the equivalent 2-D convolution (same weights)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            return super().forward(x)
        return F.conv2d(
            x, self.weight.unsqueeze(2), self.bias, (1, self.stride[0]), (0, self.padding[0]), (1, self.dilation[0]), self.groups
        )


# oneDNN's dense linear kernel (torch builds without oneDNN lack it), and whether :class:`Linear` takes it:
# on AMD CPUs, where MKL's float32 GEMM runs a generic path (measured); elsewhere MKL stays.
ONEDNN_LINEAR_AVAILABLE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
ONEDNN_LINEAR = ONEDNN_LINEAR_AVAILABLE and cpu_vendor() == "AuthenticAMD"


def _onednn_linear_applies(x: torch.Tensor) -> bool:
    """Whether :class:`Linear` takes oneDNN's route: float32 on CPU in eager mode (tracing, export
    and compilation see plain ``F.linear``; autocast keeps its own bfloat16 route, already oneDNN's)."""
    return (
        x.dtype == torch.float32
        and x.device.type == "cpu"
        and x.dim() == 2
        and ONEDNN_LINEAR
        and not torch.is_autocast_enabled("cpu")
        and not (
            torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
        )
    )


def onednn_matmul(a: torch.Tensor, b_rows: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b_rows.T (+ bias)`` by oneDNN on dense tensors, read and written in place (the kernel inductor's
    linear layers call)."""
    return torch.ops.mkldnn._linear_pointwise(a, b_rows, bias, "none", [], "")


class _OneDnnLinear(torch.autograd.Function):
    """``F.linear`` (forward and both gradients) through oneDNN's matrix products."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        x, weight = x.contiguous(), weight.contiguous()
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return onednn_matmul(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_weight = grad_bias = None
        # Both products take transposed views: oneDNN reads the strides, where copying the transposes
        # (or converting to and from its own tensor type) cost 10-15 % of the head's backward.
        if ctx.needs_input_grad[0]:
            grad_x = onednn_matmul(grad, weight.t())
        if ctx.needs_input_grad[1]:
            grad_weight = onednn_matmul(grad.t(), x.t())
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(0)
        return grad_x, grad_weight, grad_bias


class Linear(nn.Linear):
    """``nn.Linear`` whose float32 products on AMD CPUs run through oneDNN instead of the BLAS (MKL).

    MKL's float32 GEMM takes its generic path on AMD CPUs: the dense head's products (100-400 rows
    of 6,400 x 1,000) ran at 140-200 GFLOP/s there, oneDNN's at 280-470 (2 cores, AVX-512; the
    reference search step in float32 went from 1.18 to 0.97 s). The same parameters and results
    up to float round-off; other dtypes, devices, autocast, tracing and export use ``F.linear``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _onednn_linear_applies(x):
            return _OneDnnLinear.apply(x, self.weight, self.bias)
        return super().forward(x)


class BatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that also takes ``(N, C, 1, L)``: statistics per channel, as for ``(N, C, L)``."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 3, 4):
            raise ValueError(f"expected 2D, 3D or 4D input (got {input.dim()}D input)")


class SamePool(nn.Module):
    """Max or average pooling of width ``kernel`` with stride 1, padded so the length is kept.

    The fastest formulation differs by case (measured on CPU, float32 and bfloat16): averages are a
    depthwise convolution with fixed weights (:func:`sliding_mean`); maxima under autograd use
    torch's pooling kernel, whose stored indices make the backward one scatter rather than a chain
    of masked maxima; maxima without autograd (scoring) take shifted maxima of doubling width,
    since torch's bfloat16 pooling kernel is several times slower.
    """

    def __init__(self, kernel: int, mode: str):
        super().__init__()
        self.kernel = kernel
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = (self.kernel - 1) // 2
        padded = F.pad(x, (left, self.kernel - 1 - left), value=float("-inf") if self.mode == "max" else 0.0)
        if self.mode == "avg":
            return sliding_mean(padded, self.kernel)
        if torch.is_grad_enabled() and x.requires_grad:
            return max_pool_length(padded, self.kernel, stride=1)
        return sliding_max(padded, self.kernel)


def sliding_mean(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Means of every ``kernel`` consecutive positions along the last dimension of ``(N, C, L)`` or ``(N, C, 1, L)``.

    A depthwise convolution with fixed weights ``1 / kernel`` (not parameters): one oneDNN kernel
    forward and one backward. The ``kernel - 1`` additions of shifted views it replaces, with their
    backward, took 5x (float32) to 7x (bfloat16) as long in training (100 x 32 x 200, 2 CPU cores).
    """
    channels = x.shape[1]
    if x.dim() == 4:
        return F.conv2d(x, x.new_full((channels, 1, 1, kernel), 1 / kernel), groups=channels)
    return F.conv1d(x, x.new_full((channels, 1, kernel), 1 / kernel), groups=channels)


def sliding_max(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Maxima of every ``kernel`` consecutive positions along the last dimension, in O(log kernel) maxima."""
    width = 1
    while 2 * width <= kernel:
        x = torch.maximum(x[..., :-width], x[..., width:])
        width *= 2
    if width < kernel:  # two overlapping windows of ``width`` cover one of ``kernel``
        x = torch.maximum(x[..., : -(kernel - width)], x[..., kernel - width :])
    return x


def conv_bn_relu(c_in: int, c_out: int, kernel: int, dilation: int = 1, track_running_stats: bool = True) -> nn.Sequential:
    """Pad to the same length -> conv (no bias) -> batch norm -> ReLU.

    The pad is explicit: torch's ``padding="same"`` copies the input for even kernels anyway, and
    oneDNN's own padding was measured slower for the dilated kernels. A 1x1 conv gets an identity
    in its place (same parameter names), as a pad by nothing would still copy.
    """
    total = dilation * (kernel - 1)
    pad: nn.Module = nn.ConstantPad1d((total // 2, total - total // 2), 0.0) if total else nn.Identity()
    return nn.Sequential(
        pad,
        Conv1d(c_in, c_out, kernel, dilation=dilation, bias=False),
        BatchNorm1d(c_out, track_running_stats=track_running_stats),
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
if tuple(OPS) != OP_NAMES:
    raise ImportError(f"amber_ray.ops.OPS has ops {list(OPS)} but config.OP_NAMES lists {list(OP_NAMES)}")


def build_op(name: str, channels: int, dilation: int = 10, track_running_stats: bool = True) -> nn.Module:
    """Instantiate op ``name`` for ``channels`` channels.

    ``track_running_stats=False`` makes batch norm always use batch statistics: the supernet
    needs it because running statistics shared by many architectures fit none of them.
    """
    return OPS[name](channels, dilation, track_running_stats)
