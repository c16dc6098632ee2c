"""The one device rule of every command and config key: ``auto`` is CUDA when there is one, else CPU."""

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
