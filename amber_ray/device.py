"""The one device rule of every command and config key: ``auto`` is CUDA when there is one, else CPU.

A Ray worker or Tune trial follows the same rule on the GPUs Ray gave it (Ray sets
``CUDA_VISIBLE_DEVICES``, so ``cuda`` there is its own GPU); one given no GPU runs on the CPU.
"""

from __future__ import annotations

import torch

from amber_ray.errors import AmberInputError

AUTO = "auto"


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
        raise AmberInputError(f"unknown device {str(device)!r} ({str(error).splitlines()[0]}); use auto, cpu or cuda", source) from None
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
    assign belong to other workers. With one, ``device`` follows :func:`resolve_device`, so ``auto``
    is that GPU, or the CPU where the GPUs are only Ray resources (a fake cluster, a mislabelled node).
    """
    return resolve_device(device, source) if gpus > 0 else torch.device("cpu")


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bfloat16 autocast for convolutions and matmuls when ``precision`` asks for it (weights stay float32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")
