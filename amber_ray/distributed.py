"""Data parallelism for the supernet with ``torch.distributed`` (gloo on CPU, NCCL on GPU).

Each worker holds a replica and takes its share of every global mini-batch; gradients are summed
across workers every step, so W workers follow the same trajectory as one worker on the full
batch. The supernet's batch norm uses batch statistics, so those are synchronised too
(:class:`SyncBatchNorm1d`); torch's own ``SyncBatchNorm`` only runs on accelerators.
"""

from __future__ import annotations

from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from amber_ray.ops import BatchNorm1d

# How long a worker waits for the others to join the group (they are placed already: see
# search/loop.py) and for its peers in any collective.
RENDEZVOUS_TIMEOUT_S = 600.0


class _SyncBatchNormFunction(torch.autograd.Function):
    """Batch norm over the union of all workers' batches; forward and backward each all-reduce once.

    Sums, sums of squares and the element count accumulate in float32 whatever the input's
    dtype: under bfloat16 autocast a bfloat16 count already rounds (100 x 100 positions count
    9,984), bfloat16 sums keep 8 bits and the variance cancels, so W workers would no longer give
    the model of one. The output and the input's gradient keep the input's dtype, as torch's
    batch norm does; the input is saved as given and normalised again in the backward.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        channels = x.shape[1]
        wide = x.float()
        count = torch.tensor([x.shape[0] * x.shape[2]], dtype=torch.float32, device=x.device)
        stats = torch.cat([wide.sum((0, 2)), (wide * wide).sum((0, 2)), count])
        dist.all_reduce(stats)
        total = stats[-1]
        mean = stats[:channels] / total
        invstd = torch.rsqrt((stats[channels : 2 * channels] / total - mean * mean).clamp_min(0) + eps)
        ctx.save_for_backward(x, weight, mean, invstd, total)
        xhat = (wide - mean[None, :, None]) * invstd[None, :, None]
        return (xhat * weight.float()[None, :, None] + bias.float()[None, :, None]).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, weight, mean, invstd, total = ctx.saved_tensors
        channels = x.shape[1]
        xhat = (x.float() - mean[None, :, None]) * invstd[None, :, None]
        grad = grad.float()
        grad_xhat = grad * weight.float()[None, :, None]
        sums = torch.cat([grad_xhat.sum((0, 2)), (grad_xhat * xhat).sum((0, 2))])
        dist.all_reduce(sums)
        mean_grad = (sums[:channels] / total)[None, :, None]
        mean_grad_xhat = (sums[channels:] / total)[None, :, None]
        grad_x = (grad_xhat - mean_grad - xhat * mean_grad_xhat) * invstd[None, :, None]
        grad_weight = (grad * xhat).sum((0, 2)).to(weight.dtype)
        return grad_x.to(x.dtype), grad_weight, grad.sum((0, 2)).to(weight.dtype), None


class SyncBatchNorm1d(BatchNorm1d):
    """``BatchNorm1d`` (batch statistics only) whose statistics span every worker of the group."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        if x.dim() == 4:  # (N, C, 1, L): the same statistics on the (N, C, L) view, layout kept
            return _SyncBatchNormFunction.apply(x.squeeze(2), self.weight, self.bias, self.eps).unsqueeze(2)
        if x.dim() == 2:  # (N, C), the dense head's: as (N, C, 1)
            return _SyncBatchNormFunction.apply(x.unsqueeze(2), self.weight, self.bias, self.eps).squeeze(2)
        return _SyncBatchNormFunction.apply(x, self.weight, self.bias, self.eps)


def synchronise_batch_norm(model: nn.Module) -> None:
    """Swap every batch-statistics ``BatchNorm1d`` of ``model`` for :class:`SyncBatchNorm1d`, in place."""
    for module in model.modules():
        if type(module) is BatchNorm1d and not module.track_running_stats:
            module.__class__ = SyncBatchNorm1d


def sum_gradients(model: nn.Module) -> None:
    """All-reduce (sum) the gradients present; every worker ran the same path, so the same ones are."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def init_group(
    rank: int, world_size: int, address: str, port: int, use_gpu: bool, timeout_s: float = RENDEZVOUS_TIMEOUT_S
) -> None:
    """Join the process group; a rank that waits more than ``timeout_s`` for the others raises ``DistError``.

    The timeout also bounds every collective, so a survivor does not wait 30 minutes (torch's
    default) in an all-reduce with a worker that died.
    """
    dist.init_process_group(
        "nccl" if use_gpu else "gloo",
        init_method=f"tcp://{address}:{port}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=timeout_s),
    )
