"""Architecture -> torch model. One network body serves both the standalone child and the supernet.

:class:`DagNet` holds, per layer, a dict of candidate ops; the forward pass follows an
:class:`~amber_ray.space.Architecture`. A child model holds only its architecture's ops, the
supernet holds all of them, so a path of the supernet and the child of the same architecture
compute the same function.

Shapes: input ``(N, 4, L)`` one-hot, output ``(N, num_labels)`` logits (sigmoid per label).
"""

from __future__ import annotations

import pickle
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from amber_ray.atomic import atomic_torch_save
from amber_ray.errors import AmberInputError, first_line
from amber_ray.ops import BatchNorm1d, Linear, build_op, conv_bn_relu, from_channels_last, max_pool_length, to_channels_last
from amber_ray.space import Architecture, ModelSpace

STEM_KERNEL = 8


def arch_prefix(arch: Architecture, layers: int) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
    """The first ``layers`` layers of ``arch`` (ops and skips): what the body's output after them depends on."""
    return arch.ops[:layers], arch.skips[:layers]


class PrefixCache:
    """Body outputs that several architectures share, for one input batch.

    Architectures scored on the same batch compute the same stem and, where their first layers
    agree (ops and skips), the same layers: with batch statistics in batch norm the outputs are
    functions of the batch and the prefix alone. Only prefixes shared by two or more of
    ``archs`` are kept, so memory stays at a few activations.
    """

    def __init__(self, archs: Sequence[Architecture]):
        counts = Counter(arch_prefix(arch, layers) for arch in set(archs) for layers in range(arch.num_layers + 1))
        self.shared = {prefix for prefix, count in counts.items() if count > 1}
        self.outputs: dict[tuple, torch.Tensor] = {}

    def get(self, arch: Architecture, layers: int, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The body's output after ``layers`` layers of ``arch``, computed once when shared."""
        prefix = arch_prefix(arch, layers)
        if prefix not in self.shared:
            return compute()
        if prefix not in self.outputs:
            self.outputs[prefix] = compute()
        return self.outputs[prefix]


class DagNet(nn.Module):
    """Stem -> blocks of searched layers (with skips) -> dense head.

    Block ``b`` starts with a 1x1 projection to its channel count (when it differs from the
    incoming one) and ends with a max-pool of ``space.reduction``. A skip from layer ``j`` to a
    later block is max-pooled to the target length and zero-padded to the target channels, so
    skips add no parameters. Where :meth:`runs_channels_last` says so, the body runs on
    ``(N, C, 1, L)`` tensors in channels-last memory (faster on CPU; the same function and parameters).
    """

    def __init__(
        self,
        space: ModelSpace,
        layer_ops: Sequence[Sequence[str]],
        width: float = 1.0,
        track_running_stats: bool = True,
        dropout: float | None = None,
    ):
        super().__init__()
        if len(layer_ops) != space.num_layers:
            raise ValueError(f"need ops for {space.num_layers} layers, got {len(layer_ops)}")
        self.space = space
        self.width = width
        self.channels = [self._scaled(space.block_channels(b)) for b in range(space.num_blocks)]
        stem_channels = self._scaled(space.stem_channels)
        self.stem = conv_bn_relu(4, stem_channels, STEM_KERNEL, track_running_stats=track_running_stats)
        incoming = [stem_channels] + self.channels[:-1]
        self.projections = nn.ModuleList(
            conv_bn_relu(c_in, c_out, 1, track_running_stats=track_running_stats) if c_in != c_out else nn.Identity()
            for c_in, c_out in zip(incoming, self.channels)
        )
        self.layers = nn.ModuleList(
            nn.ModuleDict({op: build_op(op, self.channels[space.block_of(i)], space.dilation, track_running_stats) for op in ops})
            for i, ops in enumerate(layer_ops)
        )
        flat = self.channels[-1] * space.block_length(space.num_blocks)
        dropout = space.dropout if dropout is None else dropout
        # A module rather than F.max_pool1d so that attribution (DeepLIFT) can hook its own rule on it;
        # a reduction of 1 is skipped rather than paid for.
        self.reduce = nn.MaxPool1d(space.reduction) if space.reduction > 1 else nn.Identity()
        head_norm = [BatchNorm1d(space.dense_units, track_running_stats=track_running_stats)] if space.head_norm else []
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            Linear(flat, space.dense_units, bias=not space.head_norm),  # the norm's shift is the bias
            *head_norm,
            nn.ReLU(),
            nn.Dropout(dropout),
            Linear(space.dense_units, space.num_labels),
        )

    def _scaled(self, channels: int) -> int:
        return max(1, round(channels * self.width))

    def runs_channels_last(self) -> bool:
        """Whether the forward pass runs in channels-last memory (see :func:`~amber_ray.ops.to_channels_last`)."""
        return False

    def _reduce(self, h: torch.Tensor) -> torch.Tensor:
        """The block's length reduction; ``self.reduce`` for ``(N, C, L)`` (its module is what DeepLIFT hooks)."""
        if h.dim() == 3 or self.space.reduction == 1:
            return self.reduce(h)
        return max_pool_length(h, self.space.reduction, self.space.reduction)

    def _match(
        self, outputs: list[torch.Tensor], pooled: dict[tuple[int, int], torch.Tensor], source: int, target: int
    ) -> torch.Tensor:
        """Pool and zero-pad layer ``source``'s output to layer ``target``'s shape.

        ``pooled`` memoizes ``(source, blocks pooled)`` within one forward pass, so an output that
        several later layers take as a skip is pooled once per block boundary, not once per use.
        """
        skip = outputs[source]
        for apart in range(1, self.space.block_of(target) - self.space.block_of(source) + 1):
            if (source, apart) not in pooled:  # nested windows: the same as one pool by reduction**apart
                pooled[(source, apart)] = self._reduce(skip)
            skip = pooled[(source, apart)]
        # From the space, not ``skip.shape``: a traced export would otherwise record a shape-dependent branch.
        missing = self.channels[self.space.block_of(target)] - self.channels[self.space.block_of(source)]
        return F.pad(skip, (0, 0) * (skip.dim() - 2) + (0, missing)) if missing else skip

    def _layer(
        self,
        h: torch.Tensor,
        outputs: list[torch.Tensor],
        pooled: dict[tuple[int, int], torch.Tensor],
        arch: Architecture,
        layer: int,
    ) -> torch.Tensor:
        """Layer ``layer`` of ``arch`` on the previous output ``h``, with the block's entry and the layer's skips."""
        per_block = self.space.layers_per_block
        if layer % per_block == 0:
            if layer:
                h = pooled[(layer - 1, 1)] = self._reduce(h)
            h = self.projections[layer // per_block](h)
        y = self.layers[layer][arch.ops[layer]](h)
        for source in arch.skips[layer]:
            y = y + self._match(outputs, pooled, source, layer)
        return y

    def forward_arch(self, x: torch.Tensor, arch: Architecture, prefixes: PrefixCache | None = None) -> torch.Tensor:
        """Logits of ``arch`` on ``x``; ``prefixes`` shares the body's outputs between architectures run on the same ``x``."""
        if self.runs_channels_last():
            x = to_channels_last(x)
        prefixes = prefixes or PrefixCache([])
        h = prefixes.get(arch, 0, lambda: self.stem(x))
        outputs: list[torch.Tensor] = []
        pooled: dict[tuple[int, int], torch.Tensor] = {}
        for layer in range(arch.num_layers):
            h = prefixes.get(arch, layer + 1, lambda: self._layer(h, outputs, pooled, arch, layer))  # noqa: B023 (called at once)
            outputs.append(h)
        h = self._reduce(h)
        return self.head(from_channels_last(h) if h.dim() == 4 else h)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class ChildNet(DagNet):
    """A standalone model of one architecture, for retraining and prediction."""

    def __init__(self, space: ModelSpace, arch: Architecture, width: float = 1.0):
        super().__init__(space, [[op] for op in space.validate(arch).ops], width=width)
        self.arch = arch

    def runs_channels_last(self) -> bool:
        """In training only: there it is about 1.5x faster on CPU, while evaluation with running batch-norm
        statistics is not faster, and attribution (DeepLIFT) hooks the ``(N, C, L)`` pooling module."""
        return self.training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_arch(x, self.arch)


def save_child(model: ChildNet, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write a self-describing checkpoint (space, architecture, width, weights) atomically."""
    payload = {
        "space": asdict(model.space),
        "arch": model.arch.to_text(),
        "width": model.width,
        "state_dict": model.state_dict(),
        "extra": extra or {},
    }
    atomic_torch_save(payload, path)


LOAD_ERRORS = (
    RuntimeError,
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
    EOFError,
    OSError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
)


def load_child(path: str | Path) -> tuple[ChildNet, dict[str, Any]]:
    """Rebuild a :class:`ChildNet` from :func:`save_child`'s file (``weights_only=True``).

    Anything else (a truncated file, a torch file that is not a model, an architecture its space
    cannot hold, label names that do not match the outputs) is an input error naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise AmberInputError("model checkpoint not found", path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or not {"space", "arch", "width", "state_dict"} <= set(payload):
            raise AmberInputError("a torch file, but not an amber_ray model (no space, arch, width and state_dict)", path)
        space_fields = dict(payload["space"])
        space_fields["ops"] = tuple(space_fields["ops"])
        model = ChildNet(ModelSpace(**space_fields), Architecture.from_text(payload["arch"]), payload["width"])
        model.load_state_dict(payload["state_dict"])
    except AmberInputError as error:
        raise AmberInputError(error.problem if error.source == str(path) else f"stored {error}", path) from None
    except LOAD_ERRORS as error:
        detail = first_line(error)[:200]
        raise AmberInputError(f"not a readable amber_ray model checkpoint ({type(error).__name__}: {detail})", path) from None
    extra = payload.get("extra") or {}
    labels = extra.get("label_names") if isinstance(extra, dict) else None
    if labels is not None and len(labels) != model.space.num_labels:
        raise AmberInputError(f"stores {len(labels)} label names for a model with {model.space.num_labels} outputs", path)
    model.eval()
    return model, extra if isinstance(extra, dict) else {}
