"""In-memory datasets: one-hot ``float32 (N, 4, L)`` in A, C, G, T order, labels ``float32 (N, T)``.

An unknown base (``N``) is 0.25 in each of the four rows, so it carries no preference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ALPHABET = "ACGT"
_LOOKUP = np.full(256, 4, dtype=np.uint8)
for _index, _base in enumerate(ALPHABET):
    _LOOKUP[ord(_base)] = _LOOKUP[ord(_base.lower())] = _index
_EYE = np.vstack([np.eye(4, dtype=np.float32), np.full((1, 4), 0.25, dtype=np.float32)])


def one_hot_encode(seqs: Sequence[str]) -> np.ndarray:
    """Equal-length sequences -> ``(N, 4, L)`` float32 (letters other than ACGT become 0.25)."""
    if not seqs:
        return np.zeros((0, 4, 0), dtype=np.float32)
    codes = _LOOKUP[np.frombuffer("".join(seqs).encode("ascii"), dtype=np.uint8)].reshape(len(seqs), -1)
    return np.ascontiguousarray(_EYE[codes].transpose(0, 2, 1))


@dataclass
class SequenceDataset:
    x: np.ndarray
    y: np.ndarray
    names: list[str]
    label_names: list[str]

    @property
    def num_sequences(self) -> int:
        return len(self.x)

    @property
    def length(self) -> int:
        return self.x.shape[2]

    @property
    def num_labels(self) -> int:
        return self.y.shape[1]

    def subset(self, indices: Sequence[int] | np.ndarray) -> SequenceDataset:
        indices = np.asarray(indices, dtype=np.int64)
        return SequenceDataset(self.x[indices], self.y[indices], [self.names[i] for i in indices], list(self.label_names))


@dataclass
class Splits:
    train: SequenceDataset
    valid: SequenceDataset
    test: SequenceDataset
