"""Reverse-complement augmentation of one-hot batches (A, C, G, T channel order).

With channels in A, C, G, T order the complement (A<->T, C<->G) is the channel axis reversed, so the
reverse complement of ``(N, 4, L)`` is a flip of the channel and length axes; an unknown base (0.25
in every channel) and an empty column stay what they are.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from amber_ray.data.dataset import ALPHABET, ShardBatch, TrainSource

assert ALPHABET == "ACGT", "the flip below is the complement only in A, C, G, T order"


def reverse_complement_batch(x: np.ndarray) -> np.ndarray:
    """``(N, 4, L)`` one-hot -> the reverse complement of every sequence."""
    return np.ascontiguousarray(x[:, ::-1, ::-1])


class StrandAugmented:
    """A training source whose every batch is read on a random strand (as given, or reverse-complemented).

    The strands of a pass are drawn from a generator seeded by the pass's ``rng`` before the first
    batch, so data-parallel workers, which share that seed, flip the same global batches.
    """

    def __init__(self, source: TrainSource):
        self.source = source

    @property
    def num_sequences(self) -> int:
        return self.source.num_sequences

    @property
    def length(self) -> int:
        return self.source.length

    @property
    def num_labels(self) -> int:
        return self.source.num_labels

    @property
    def label_names(self) -> list[str]:
        return list(self.source.label_names)

    def shard_batches(
        self, batch_size: int, rng: np.random.Generator, rank: int = 0, world_size: int = 1
    ) -> Iterator[ShardBatch]:
        strands = np.random.default_rng(rng.integers(2**63))
        for x, y, rows in self.source.shard_batches(batch_size, rng, rank, world_size):
            yield (reverse_complement_batch(x) if strands.random() < 0.5 else x), y, rows
