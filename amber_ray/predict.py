"""A trained model put to use: loaded with its label names, a label chosen, held in eval mode on a device.

Variant scoring and interpretation both start here, so a model file, a label name and a device
are checked the same way (and fail with the same one-line errors) whichever command reads them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from amber_ray.child import ChildNet, load_child
from amber_ray.errors import AmberInputError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` means CUDA when there is one, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(path: str | Path, device: str | torch.device | None = "cpu") -> tuple[ChildNet, list[str]]:
    """A model written by ``amber-ray train`` or ``retrain`` on ``device``, and its label names."""
    model, extra = load_child(path)
    try:
        model = model.to(resolve_device(device))
    except (RuntimeError, AssertionError) as error:
        raise AmberInputError(f"cannot use device {str(device)!r} ({str(error).splitlines()[0]})", "--device") from None
    labels = extra.get("label_names") or [f"label_{i}" for i in range(model.space.num_labels)]
    return model, [str(label) for label in labels]


def label_index(label_names: Sequence[str], label: str | None, source: str | Path = "--label") -> int:
    """Position of ``label`` among the model's labels; ``None`` is allowed for a single-label model."""
    shown = ", ".join(label_names[:20]) + (f", ... ({len(label_names)} in all)" if len(label_names) > 20 else "")
    if label is None:
        if len(label_names) == 1:
            return 0
        raise AmberInputError(f"the model has {len(label_names)} labels: choose one with --label ({shown})", source)
    if label not in label_names:
        raise AmberInputError(f"label {label!r} is not one of the model's labels: {shown}", source)
    return list(label_names).index(label)


@contextlib.contextmanager
def held(model: nn.Module, device: str | torch.device | None = None) -> Iterator[nn.Module]:
    """The model in eval mode on ``device`` (default: where it is); its mode and device are restored afterwards, also on error."""
    was_training = model.training
    original = next(model.parameters()).device
    model.to(original if device is None else resolve_device(device)).eval()
    try:
        yield model
    finally:
        model.to(original).train(was_training)
