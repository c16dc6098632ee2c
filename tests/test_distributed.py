"""Data parallelism is exact: shards with synchronised batch norm give the full batch's gradients."""

import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn import functional as F

from amber_ray.distributed import init_group, sum_gradients, synchronise_batch_norm
from amber_ray.space import Architecture, ModelSpace
from amber_ray.supernet import Supernet

# Two blocks, so skips are pooled and zero-padded across a block boundary and every op is used.
SPACE = ModelSpace(
    input_length=64,
    num_labels=2,
    num_layers=4,
    layers_per_block=2,
    ops=("conv8", "dconv4", "maxpool", "avgpool", "conv4", "identity"),
    first_filters=8,
    reduction=2,
    stem_channels=8,
    dense_units=16,
    dilation=3,
)
ARCHS = [
    Architecture(("conv8", "maxpool", "dconv4", "conv4"), ((), (0,), (0, 1), (1,))),
    Architecture(("avgpool", "dconv4", "identity", "conv8"), ((), (), (1,), (0, 2))),
]
BATCH = 24


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (BATCH, SPACE.input_length))].transpose(0, 2, 1)
    return torch.from_numpy(x.copy()), torch.from_numpy((rng.random((BATCH, 2)) < 0.4).astype(np.float32))


def gradients(rank: int, world_size: int, port: int, sync_batch_norm: bool, queue, cuda: bool = False) -> None:
    """Rank ``rank``'s share of one step over ARCHS; rank 0 reports the summed gradients.

    ``cuda``: on GPU ``rank`` with the NCCL group of :func:`amber_ray.distributed.init_group`
    (formed even for one worker, so that its NCCL branch runs), else on the CPU with gloo.
    """
    torch.set_num_threads(1)
    torch.manual_seed(0)
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # comparable with the CPU
    net = Supernet(SPACE).to(device)
    if world_size > 1 or cuda:
        init_group(rank, world_size, "127.0.0.1", port, use_gpu=cuda)
        if sync_batch_norm:
            synchronise_batch_norm(net)
    x, y = (tensor.to(device) for tensor in batch())
    rows = slice(rank, None, world_size)
    for arch in ARCHS:
        loss = F.binary_cross_entropy_with_logits(net(x[rows], arch), y[rows], reduction="sum") / BATCH
        loss.backward()
    if dist.is_initialized():
        sum_gradients(net)
        dist.destroy_process_group()
    if rank == 0:
        queue.put({name: p.grad.cpu().numpy() for name, p in net.named_parameters() if p.grad is not None})


def run(world_size: int, sync_batch_norm: bool = True, cuda: bool = False) -> dict[str, np.ndarray]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(target=gradients, args=(r, world_size, port, sync_batch_norm, queue, cuda)) for r in range(world_size)
    ]
    for worker in workers:
        worker.start()
    result = queue.get(timeout=120)
    for worker in workers:
        worker.join(timeout=60)
    return result


def worst_relative_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(float(np.linalg.norm(a[n] - b[n]) / np.linalg.norm(b[n])) for n in b)


def test_two_shards_give_the_gradients_of_the_whole_batch():
    """The claim behind multi-worker search, checked on one step (whole trajectories are not
    comparable: Adam turns round-off along batch norm's scale-free directions into full steps)."""
    one = run(1)
    assert worst_relative_difference(run(2), one) < 1e-4
    assert worst_relative_difference(run(2, sync_batch_norm=False), one) > 1e-2  # the check can fail


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the NCCL branch needs CUDA (one worker per GPU, up to 2)")
def test_nccl_workers_on_gpus_give_the_gradients_of_the_whole_batch_on_the_cpu():
    world_size = min(2, torch.cuda.device_count())
    assert worst_relative_difference(run(world_size, cuda=True), run(1)) < 1e-3
