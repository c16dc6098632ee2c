"""The one device rule of every command and config key: ``auto`` is CUDA when there is one, else CPU.

A Ray worker or Tune trial follows the same rule on the GPUs Ray gave it (Ray sets
``CUDA_VISIBLE_DEVICES``, so ``cuda`` there is its own GPU); one given no GPU runs on the CPU.

And the one precision rule: ``auto`` is bfloat16 only where the device runs it natively.
On the CPU, compute loops also keep freed host memory for reuse (:func:`keep_freed_host_memory`).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
import socket
from pathlib import Path

import torch

from amber_ray.errors import AmberInputError, first_line

AUTO = "auto"
# Set by Ray's fake multi-node cluster on every node it starts: its GPUs are Ray resources without CUDA.
FAKE_CLUSTER_ENV = "RAY_FAKE_CLUSTER"
# CPU flags (as /proc/cpuinfo names them) of native bfloat16 arithmetic: AVX-512 BF16 dot products or AMX tiles.
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# Measured on a 2-core AVX2 EPYC without either: the reference search step took 39.8 s in bfloat16, 4.1 s in float32.
EMULATED_BF16_SLOWDOWN = "about 10x slower than float32"

# glibc's mallopt parameters, and the largest block it will serve from the heap rather than by mmap.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 * 1024**2

log = logging.getLogger(__name__)


@functools.cache
def keep_freed_host_memory() -> bool:
    """Have glibc keep freed memory (blocks up to 32 MiB) for reuse rather than return it to the OS.

    By default glibc hands large freed blocks (a batch's activations: a few MB each) back to the
    kernel, and every new activation is then zero-filled page by page on first touch. On the
    reference search step (2 cores) keeping the memory cut scoring from 0.44 to 0.29 s in float32
    and the step from 0.97 to 0.81 s (0.59 to 0.56 s in bfloat16). Peak memory is unchanged;
    memory once used stays with the process. Process-wide and done once; returns whether it
    applied (not on other C libraries).
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    return bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1) and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX))


def resolve_device(device: str | torch.device | None = AUTO, source: str = "--device") -> torch.device:
    """``auto`` (or ``None``) picks CUDA when present; anything else must name a device this machine has.

    A request this machine cannot meet (``cuda`` without CUDA, ``cuda:3`` on a one-GPU node, a
    misspelled name) is a one-line error naming ``source`` instead of a failure deep in torch.
    """
    if device is None or str(device) == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise AmberInputError(f"unknown device {str(device)!r} ({first_line(error)}); use auto, cpu or cuda", source) from None
    if resolved.type == "cuda":
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if available == 0 or (resolved.index or 0) >= available:
            raise AmberInputError(f"device {str(device)!r} requested but this machine has {available} CUDA device(s)", source)
    elif resolved.type not in ("cpu", "mps"):
        raise AmberInputError(f"device {str(device)!r} is not supported; use auto, cpu or cuda", source)
    return resolved


def worker_device(device: str | None, gpus: float, source: str = "train.device") -> torch.device:
    """The device of a Ray actor or trial that Ray gave ``gpus`` GPUs.

    Without a GPU from Ray it is the CPU whatever ``device`` says: CUDA devices that Ray did not
    assign belong to other workers. With one, ``device`` follows :func:`resolve_device`; but a GPU
    that torch cannot use (a driver too old for the wheel, a CPU-only wheel, a mislabelled node) is
    an error naming the node, the GPU ids and torch's CUDA build, not days of search on the CPU
    while holding GPUs. Only Ray's fake cluster (``RAY_FAKE_CLUSTER=1``, its GPUs are Ray
    resources only) runs such a worker on the CPU, and says so. ``device: cpu`` is the CPU anywhere.
    """
    if gpus <= 0:
        return torch.device("cpu")
    if str(device) != "cpu" and not torch.cuda.is_available():
        if fake_cluster():
            log.info("GPUs of Ray's fake cluster (%s=1) are Ray resources only: this worker runs on the CPU", FAKE_CLUSTER_ENV)
            return torch.device("cpu")
        raise AmberInputError(unusable_gpu_message(), source)
    return resolve_device(device, source)


def fake_cluster() -> bool:
    """Whether this process runs on Ray's fake multi-node cluster (its GPUs are Ray resources, no CUDA)."""
    return bool(os.environ.get(FAKE_CLUSTER_ENV))


def unusable_gpu_message() -> str:
    """Where a GPU from Ray is that torch cannot use, and torch's build: what the user fixes the image from."""
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    gpu_ids = os.environ.get("CUDA_VISIBLE_DEVICES") or "none visible"
    return (
        f"Ray gave this worker GPU(s) {gpu_ids} on node {socket.gethostname()} but torch {torch.__version__} "
        f"({build}) sees no CUDA device there; install the torch wheel built for that node's driver, "
        "or set train.device: cpu"
    )


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bfloat16 autocast for convolutions and matmuls when ``precision`` asks for it (weights stay float32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


def cpuinfo_field(name: str) -> str:
    """The first ``name`` field of ``/proc/cpuinfo`` (empty where there is no such file, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags from ``/proc/cpuinfo`` (empty where unknown)."""
    return frozenset(cpuinfo_field("flags").split())


def cpu_vendor() -> str:
    """This CPU's vendor ID from ``/proc/cpuinfo``: ``AuthenticAMD``, ``GenuineIntel`` (empty where unknown)."""
    return cpuinfo_field("vendor_id")


def native_bfloat16(device: torch.device) -> tuple[bool, str]:
    """Whether ``device`` computes in bfloat16 natively, and the evidence.

    Without native support, torch still runs bfloat16 on CPU by converting to float32 around
    every kernel, which costs far more than it saves.
    """
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return native, f"{torch.cuda.get_device_name(device)} {'has' if native else 'lacks'} native bfloat16"
    if device.type == "cpu":
        found = sorted(set(NATIVE_BF16_CPU_FLAGS) & cpu_flags())
        if found:
            return True, f"CPU has {' and '.join(found)}"
        return False, f"CPU has none of {', '.join(NATIVE_BF16_CPU_FLAGS)}"
    return False, f"no native bfloat16 rule for {device.type}"


def resolve_precision(requested: str, device: torch.device) -> tuple[str, str]:
    """``(precision, reason)`` for ``search.precision``: ``auto`` picks bfloat16 only where it is native.

    An explicit ``bfloat16`` is kept, with a warning where it is emulated.
    """
    native, evidence = native_bfloat16(device)
    if requested == AUTO:
        return ("bfloat16" if native else "float32"), f"auto: {evidence}"
    if requested == "bfloat16" and not native:
        log.warning("search.precision: bfloat16 on a device without native bfloat16 (%s): %s", evidence, EMULATED_BF16_SLOWDOWN)
    return requested, f"requested ({evidence})"
