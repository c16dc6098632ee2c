"""In-memory datasets: one-hot ``float32 (N, 4, L)`` in A, C, G, T order, labels ``float32 (N, T)``.

An unknown base (``N``, or any letter other than A, C, G, T in either case) is 0.25 in each of the
four rows: it says "any base, equally likely" instead of pretending to be one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ALPHABET = "ACGT"
UNKNOWN_CODE = 4


def _build_lookup() -> np.ndarray:
    """Byte -> code table: A, C, G, T (either case) -> 0..3, every other byte -> 4 (unknown)."""
    lookup = np.full(256, UNKNOWN_CODE, dtype=np.uint8)
    for index, base in enumerate(ALPHABET):
        lookup[ord(base)] = lookup[ord(base.lower())] = index
    return lookup


_LOOKUP = _build_lookup()
# Row ``code`` is the one-hot column of that code; the last row is the unknown base.
_CODE_TO_ONE_HOT = np.vstack([np.eye(4, dtype=np.float32), np.full((1, 4), 0.25, dtype=np.float32)])


def encode_codes(seqs: Sequence[str]) -> np.ndarray:
    """Equal-length sequences -> ``uint8 (N, L)`` codes (0..3 for A, C, G, T; 4 for anything else)."""
    if not seqs:
        return np.zeros((0, 0), dtype=np.uint8)
    length = len(seqs[0])
    if any(len(seq) != length for seq in seqs):
        raise ValueError("one_hot_encode needs sequences of one length")
    raw = np.frombuffer("".join(seqs).encode("ascii", errors="replace"), dtype=np.uint8)
    return _LOOKUP[raw].reshape(len(seqs), length)


def codes_to_one_hot(codes: np.ndarray) -> np.ndarray:
    """``uint8 (N, L)`` codes -> ``float32 (N, 4, L)`` one-hot (code 4 -> 0.25 in every row)."""
    return np.ascontiguousarray(_CODE_TO_ONE_HOT[codes].transpose(0, 2, 1))


def one_hot_encode(seqs: Sequence[str]) -> np.ndarray:
    """Equal-length sequences -> ``float32 (N, 4, L)`` (letters other than ACGT become 0.25)."""
    return codes_to_one_hot(encode_codes(seqs))


@dataclass
class SequenceDataset:
    """One-hot sequences ``x (N, 4, L)``, labels ``y (N, T)``, sequence and label names."""

    x: np.ndarray
    y: np.ndarray
    names: list[str]
    label_names: list[str]

    def __post_init__(self) -> None:
        if self.x.ndim != 3 or self.x.shape[1] != 4:
            raise ValueError(f"x must be (N, 4, L), got {self.x.shape}")
        if self.y.ndim != 2 or len(self.y) != len(self.x):
            raise ValueError(f"y must be (N, T) with N = {len(self.x)}, got {self.y.shape}")
        if len(self.names) != len(self.x) or len(self.label_names) != self.y.shape[1]:
            raise ValueError("names must match N and label_names must match T")

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
        """A copy holding the given rows, in the given order."""
        indices = np.asarray(indices, dtype=np.int64)
        return SequenceDataset(self.x[indices], self.y[indices], [self.names[i] for i in indices], list(self.label_names))


@dataclass
class Splits:
    train: SequenceDataset
    valid: SequenceDataset
    test: SequenceDataset
