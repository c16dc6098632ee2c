"""A trained model put to use: loaded with its label names, a label chosen, run in eval mode on a device.

:func:`predict` is the one batched prediction loop: training's validation, variant scoring and
interpretation all run through it. Variant scoring and interpretation both start here, so a model
file, a label name and a device are checked the same way (and fail with the same one-line errors)
whichever command reads them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from amber_ray.child import ChildNet, load_child
from amber_ray.data.dataset import codes_to_one_hot, one_hot_encode
from amber_ray.data.fasta import check_records
from amber_ray.device import keep_freed_host_memory, resolve_device
from amber_ray.errors import AmberInputError, first_line
from amber_ray.outputs import MODEL

# Progress of a loop a user waits on: ``OnBatch`` gets the rows (or sequences) just done, a progress bar's
# advance; a ``ProgressFactory`` makes one for a stage, from its name and its total.
OnBatch = Callable[[int], None]
ProgressFactory = Callable[[str, int], OnBatch]


def model_file(source: str | Path) -> Path:
    """The checkpoint a model path names: a ``model.pt``, or a directory holding one (``retrain``'s ``final/``)."""
    path = Path(source)
    return path / MODEL if path.is_dir() else path


def load_model(source: str | Path, device: str | torch.device | None = "auto") -> tuple[ChildNet, list[str]]:
    """A model written by ``amber-ray train`` or ``retrain`` on ``device``, and its label names.

    ``source`` is a ``model.pt`` or a directory holding one; :func:`amber_ray.registry.load_model` also
    takes a Model Registry URI ``models:/NAME/VERSION``.
    """
    model, extra = load_child(model_file(source))
    try:
        model = model.to(resolve_device(device))
    except (RuntimeError, AssertionError) as error:
        raise AmberInputError(f"cannot use device {str(device)!r} ({first_line(error)})", "--device") from None
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


class StrandProbabilities(nn.Module):
    """Sigmoid outputs of ``model``; with ``both_strands`` the mean of the forward and reverse-complement ones.

    Starts in the wrapped model's mode, so that restoring the wrapper's mode restores the model's.
    """

    def __init__(self, model: nn.Module, both_strands: bool = False):
        super().__init__()
        self.model = model
        self.both_strands = both_strands
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.sigmoid(self.model(x))
        if self.both_strands:  # A, C, G, T order: complementing is reversing the channel axis
            probs = (probs + torch.sigmoid(self.model(x.flip((1, 2))))) / 2
        return probs.float()


@contextlib.contextmanager
def eval_mode_on(model: nn.Module, device: str | torch.device | None = None) -> Iterator[nn.Module]:
    """The model in eval mode on ``device`` (default: where it is).

    Afterwards, also on error, the model is back on its device and every submodule back in the
    train/eval mode it had (a wrapper such as a label selector leaves the wrapped model as it was).
    """
    modes = [(module, module.training) for module in model.modules()]
    original = model_device(model)
    model.to(original if device is None else resolve_device(device)).eval()
    try:
        yield model
    finally:
        model.to(original)
        for module, training in modes:
            module.training = training


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters are (CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@torch.no_grad()
def predict(
    model: nn.Module,
    X: np.ndarray | torch.Tensor,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    func: Callable[[torch.Tensor], torch.Tensor] | None = None,
    prepare: Callable[[np.ndarray], np.ndarray | torch.Tensor] | None = None,
    on_batch: OnBatch | None = None,
) -> np.ndarray:
    """``model`` (or ``func`` of its output) on every row of ``X``, in batches, stacked as a NumPy array on the CPU.

    As tangermeme's ``predict``: the model runs in eval mode without gradients on ``device``
    (default: where it is), each batch's output is moved to the CPU, and the model's train/eval
    mode and device are restored afterwards (:func:`eval_mode_on`). ``prepare`` turns each batch
    of ``X`` into the model's input (e.g. base codes into one-hot) so that only one batch is ever
    expanded; ``on_batch`` gets the number of rows after each batch (a progress bar's advance).
    An empty ``X`` still goes through the model once, as an empty batch, so the result has the
    output's shape. The result is allocated once, from the first batch's output (which may hold a
    fixed number of rows per row of ``X``, as ``prepare`` can expand a row): a large test set's
    outputs are held once, not twice as stacking the batches' outputs would.
    """
    if not isinstance(X, (np.ndarray, torch.Tensor)):
        raise TypeError(f"X must be a NumPy array or a torch tensor, not {type(X).__name__}")
    if X.ndim < 1:
        raise ValueError("X must have a batch axis")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
    keep_freed_host_memory()
    result: torch.Tensor | None = None
    written = 0
    with eval_mode_on(model, device):
        target = model_device(model)
        for start in range(0, max(len(X), 1), batch_size):
            batch = X[start : start + batch_size]
            rows = len(batch)
            if prepare is not None:
                batch = prepare(batch)
            if isinstance(batch, np.ndarray):  # arrays from Ray's object store are read-only: torch wants a copy
                batch = torch.from_numpy(batch if batch.flags.writeable else batch.copy())
            y = model(batch.to(target))
            y = (func(y) if func is not None else y).cpu()
            if result is None:
                result = torch.empty((len(X) * (len(y) // rows if rows else 1), *y.shape[1:]), dtype=y.dtype)
            result[written : written + len(y)] = y
            written += len(y)
            if on_batch is not None and rows:
                on_batch(rows)
    if written != len(result):
        raise RuntimeError(f"the model gave {written} output rows for {len(X)} input rows, not a fixed number per row")
    return result.numpy()


def probabilities(
    model: nn.Module,
    x: np.ndarray,
    batch_size: int = 256,
    both_strands: bool = False,
    on_batch: OnBatch | None = None,
) -> np.ndarray:
    """Probability per label ``(N, labels)`` of one-hot ``x`` ``(N, 4, L)`` or base codes ``uint8 (N, L)``
    (expanded to one-hot a batch at a time), on the model's device."""
    prepare = codes_to_one_hot if x.dtype == np.uint8 else None
    return predict(StrandProbabilities(model, both_strands), x, batch_size, prepare=prepare, on_batch=on_batch)


def as_model_input(data: Any, length: int, source: str = "input") -> np.ndarray:
    """One-hot ``float32 (N, 4, L)`` from sequences (a list of strings, a Series, a DataFrame with a
    ``sequence`` column or a single column) or from a one-hot array; other shapes are input errors."""
    if isinstance(data, pd.DataFrame):
        if "sequence" not in data.columns and data.shape[1] != 1:
            raise AmberInputError(f"a table of sequences needs a 'sequence' column (it has {list(data.columns)})", source)
        data = data["sequence"] if "sequence" in data.columns else data.iloc[:, 0]
    if isinstance(data, (np.ndarray, list, tuple, pd.Series)) and len(data) and all(isinstance(s, str) for s in data):
        seqs = [str(s).upper() for s in data]
        check_records(source, [str(i + 1) for i in range(len(seqs))], seqs, length)
        return one_hot_encode(seqs)
    array = np.asarray(data, dtype=np.float32)
    if array.ndim != 3 or array.shape[1:] != (4, length):
        raise AmberInputError(f"one-hot input must have shape (N, 4, {length}), not {array.shape}", source)
    return array
