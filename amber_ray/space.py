"""The model space: layers in blocks, one op per layer, skip connections to earlier layers.

An :class:`Architecture` is one point of a :class:`ModelSpace`: the op of every layer and, for
layer ``i``, the set of earlier layers ``j < i`` whose outputs are added to its output. Its
canonical text form, used as MLflow tag, table key and CLI argument, is one ``op,skip:...`` per
layer joined by ``;``, skips as ``+``-joined indices, e.g. ``conv8,skip:;dconv4,skip:0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amber_ray.config import OP_NAMES, SpaceConfig
from amber_ray.errors import AmberInputError


@dataclass(frozen=True)
class ModelSpace:
    """Shape of the searchable network for inputs of ``input_length`` bp and ``num_labels`` outputs.

    Layers are grouped in blocks of ``layers_per_block``; block ``b`` has
    ``first_filters * filter_growth**b`` channels and ends with a max-pool of ``reduction``.
    """

    input_length: int
    num_labels: int
    num_layers: int
    layers_per_block: int
    ops: tuple[str, ...]
    first_filters: int = 32
    filter_growth: int = 2
    reduction: int = 4
    stem_channels: int = 64
    dense_units: int = 925
    dilation: int = 10
    dropout: float = 0.1
    # Batch norm between the dense layer and its ReLU (``space.head_norm``, on for new spaces). False here
    # because a model saved before the option existed has none, and its stored space lacks the key.
    head_norm: bool = False

    def __post_init__(self) -> None:
        unknown = [op for op in self.ops if op not in OP_NAMES]
        if unknown:
            raise AmberInputError(f"unknown op(s) {unknown}; known ops are {list(OP_NAMES)}", "model space")
        if self.num_layers % self.layers_per_block:
            raise AmberInputError(
                f"num_layers ({self.num_layers}) must be a multiple of layers_per_block ({self.layers_per_block})",
                "model space",
            )
        final = self.block_length(self.num_blocks)
        if final < 1:
            raise AmberInputError(
                f"{self.num_blocks} blocks each reducing the length x{self.reduction} leave nothing of a "
                f"{self.input_length}-bp input; use fewer layers per block, fewer layers or a smaller reduction",
                "model space",
            )

    @classmethod
    def from_config(cls, config: SpaceConfig, input_length: int, num_labels: int) -> ModelSpace:
        return cls(
            input_length=input_length,
            num_labels=num_labels,
            num_layers=config.num_layers,
            layers_per_block=config.layers_per_block,
            ops=tuple(config.ops),
            first_filters=config.first_filters,
            filter_growth=config.filter_growth,
            reduction=config.reduction,
            stem_channels=config.stem_channels,
            dense_units=config.dense_units,
            dilation=config.dilation,
            dropout=config.dropout,
            head_norm=config.head_norm,
        )

    @property
    def num_blocks(self) -> int:
        return self.num_layers // self.layers_per_block

    def block_of(self, layer: int) -> int:
        return layer // self.layers_per_block

    def block_channels(self, block: int) -> int:
        return self.first_filters * self.filter_growth**block

    def block_length(self, block: int) -> int:
        """Sequence length inside ``block`` (``block == num_blocks`` gives the length after the last)."""
        return self.input_length // self.reduction**block

    @property
    def num_skip_choices(self) -> int:
        """Possible skip connections: layer ``i`` may add any of the ``i`` layers before it."""
        return self.num_layers * (self.num_layers - 1) // 2

    def size(self) -> int:
        """Number of distinct architectures: ops^layers * 2^(skip choices)."""
        return len(self.ops) ** self.num_layers * 2**self.num_skip_choices

    def sample(self, rng: np.random.Generator, skip_probability: float = 0.4) -> Architecture:
        """A uniformly random op per layer; each skip present with ``skip_probability``."""
        ops = tuple(self.ops[i] for i in rng.integers(0, len(self.ops), self.num_layers))
        skips = tuple(
            tuple(int(j) for j in np.flatnonzero(rng.random(layer) < skip_probability)) for layer in range(self.num_layers)
        )
        return Architecture(ops, skips)

    def validate(self, arch: Architecture) -> Architecture:
        """Raise a clear error if ``arch`` is not a point of this space."""
        if len(arch.ops) != self.num_layers:
            raise AmberInputError(f"architecture has {len(arch.ops)} layers, the space has {self.num_layers}", "architecture")
        for layer, op in enumerate(arch.ops):
            if op not in self.ops:
                raise AmberInputError(f"op {op!r} is not in the space {list(self.ops)}", "architecture", f"layer {layer}")
        return arch


@dataclass(frozen=True)
class Architecture:
    """Ops per layer and, per layer ``i``, the sorted earlier layers ``j < i`` it adds as skips."""

    ops: tuple[str, ...]
    skips: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        if len(self.skips) != len(self.ops):
            raise AmberInputError("one skip list per layer is required", "architecture")
        for layer, sources in enumerate(self.skips):
            if list(sources) != sorted(set(sources)):
                raise AmberInputError(f"skips {list(sources)} must be sorted and unique", "architecture", f"layer {layer}")
            for source in sources:
                if not 0 <= source < layer:
                    raise AmberInputError(f"skip to layer {source} is not an earlier layer", "architecture", f"layer {layer}")

    @property
    def num_layers(self) -> int:
        return len(self.ops)

    def to_text(self) -> str:
        return ";".join(f"{op},skip:{'+'.join(map(str, sources))}" for op, sources in zip(self.ops, self.skips))

    @classmethod
    def from_text(cls, text: str) -> Architecture:
        ops, skips = [], []
        for layer, part in enumerate(text.strip().split(";")):
            op, sep, skip_text = part.partition(",skip:")
            if not sep or not op:
                raise AmberInputError(f"expected 'op,skip:i+j', got {part!r}", "architecture", f"layer {layer}")
            try:
                sources = tuple(int(s) for s in skip_text.split("+")) if skip_text else ()
            except ValueError:
                raise AmberInputError(
                    f"skip list {skip_text!r} is not '+'-joined integers", "architecture", f"layer {layer}"
                ) from None
            ops.append(op)
            skips.append(sources)
        return cls(tuple(ops), tuple(skips))

    def skip_fraction(self) -> float:
        """Fraction of possible skip connections that are present."""
        possible = self.num_layers * (self.num_layers - 1) // 2
        return sum(map(len, self.skips)) / possible if possible else 0.0

    def skip_matrix(self) -> np.ndarray:
        """(layers, layers) 0/1 matrix, ``[i, j] = 1`` when layer i adds layer j's output."""
        matrix = np.zeros((self.num_layers, self.num_layers), dtype=np.int8)
        for layer, sources in enumerate(self.skips):
            matrix[layer, list(sources)] = 1
        return matrix

    def __str__(self) -> str:
        return self.to_text()
