"""In-memory datasets: one-hot ``float32 (N, 4, L)`` in A, C, G, T order, labels ``float32 (N, T)``.

An unknown base (``N``, or any letter other than A, C, G, T in either case) is 0.25 in each of the
four rows: it says "any base, equally likely" instead of pretending to be one of them.

Compact form: one ``uint8`` code per base (0..3 for A, C, G, T; 4 for an unknown base; 5 for an
all-zero column, as padded or masked positions appear in other tools' one-hot files), a sixteenth
of the one-hot ``float32`` size. :class:`CodedDataset` holds it and decodes one batch at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

ALPHABET = "ACGT"
UNKNOWN_CODE = 4

# A training batch for one of ``world_size`` data-parallel workers: its rows of the global batch
# (one-hot x, labels) and the global batch's size, which normalises the summed loss.
ShardBatch = tuple[np.ndarray, np.ndarray, int]


def _build_lookup() -> np.ndarray:
    """Byte -> code table: A, C, G, T (either case) -> 0..3, every other byte -> 4 (unknown)."""
    lookup = np.full(256, UNKNOWN_CODE, dtype=np.uint8)
    for index, base in enumerate(ALPHABET):
        lookup[ord(base)] = lookup[ord(base.lower())] = index
    return lookup


_LOOKUP = _build_lookup()
# Row ``code`` is the one-hot column of that code: A, C, G, T, then unknown (4) and empty (5).
_CODE_TO_ONE_HOT = np.vstack(
    [np.eye(4, dtype=np.float32), np.full((1, 4), 0.25, dtype=np.float32), np.zeros((1, 4), dtype=np.float32)]
)


# Code -> the code of its complement: A <-> T, C <-> G; unknown (4) and empty (5) stay.
COMPLEMENT_CODES = np.array([3, 2, 1, 0, UNKNOWN_CODE, 5], dtype=np.uint8)


def reverse_complement(codes: np.ndarray) -> np.ndarray:
    """The reverse complement of base codes (along the last axis)."""
    return COMPLEMENT_CODES[codes[..., ::-1]]


def minibatch_indices(n: int, batch_size: int, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
    """Index arrays covering ``range(n)`` once; shuffled when ``rng`` is given."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


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
    # One gather per base row, (4, N, L), then one copy into (N, 4, L): five times faster than
    # gathering (N, L, 4) and transposing, which matters when every training batch is decoded.
    return np.ascontiguousarray(np.take(_CODE_TO_ONE_HOT.T, codes, axis=1).transpose(1, 0, 2))


def one_hot_to_codes(x: np.ndarray, first_row: int = 0) -> np.ndarray:
    """``(N, 4, L)`` one-hot (0.25 each for unknown, 0 each for empty) -> ``uint8 (N, L)`` codes.

    Any other column raises a ``ValueError`` naming the first one (sequence index counted from
    ``first_row``, position).
    """
    matches = (x.transpose(0, 2, 1)[:, :, None, :] == _CODE_TO_ONE_HOT).all(axis=-1)
    known = matches.any(axis=-1)
    if not known.all():
        row, position = np.argwhere(~known)[0]
        column = x[row, :, position].tolist()
        raise ValueError(
            f"sequence {first_row + row}, position {position}: {column} is not one-hot, 0.25 each (unknown) or 0 each"
        )
    return matches.argmax(axis=-1).astype(np.uint8)


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

    def head(self, count: int | None) -> SequenceDataset:
        """The first ``count`` sequences (all when ``None``), as views rather than copies."""
        if count is None or count >= self.num_sequences:
            return self
        return SequenceDataset(self.x[:count], self.y[:count], self.names[:count], self.label_names)

    def one_hot(self, rows: np.ndarray | slice) -> np.ndarray:
        return self.x[rows]

    def shard_batches(
        self, batch_size: int, rng: np.random.Generator, rank: int = 0, world_size: int = 1
    ) -> Iterator[ShardBatch]:
        """One shuffled pass in global batches of ``batch_size``; worker ``rank`` gets rows ``rank::world_size`` of each."""
        for index in minibatch_indices(self.num_sequences, batch_size, rng):
            shard = index[rank::world_size]
            yield self.x[shard], self.y[shard], len(index)


@dataclass
class CodedDataset:
    """Sequences as ``uint8 (N, L)`` base codes and 0/1 labels ``(N, T)`` (``uint8`` from a file); one-hot only per batch.

    ``L + T`` bytes per sequence instead of ``16 L + 4 T``: what a search worker holds of a
    validation file.
    """

    codes: np.ndarray
    y: np.ndarray
    names: list[str]
    label_names: list[str]

    def __post_init__(self) -> None:
        if self.codes.ndim != 2 or self.codes.dtype != np.uint8:
            raise ValueError(f"codes must be uint8 (N, L), got {self.codes.dtype} {self.codes.shape}")
        if self.y.shape != (len(self.codes), len(self.label_names)) or len(self.names) != len(self.codes):
            raise ValueError("y must be (N, T) and names N long, with T label names")

    @property
    def num_sequences(self) -> int:
        return len(self.codes)

    @property
    def length(self) -> int:
        return self.codes.shape[1]

    @property
    def num_labels(self) -> int:
        return self.y.shape[1]

    def subset(self, indices: Sequence[int] | np.ndarray) -> CodedDataset:
        indices = np.asarray(indices, dtype=np.int64)
        return CodedDataset(self.codes[indices], self.y[indices], [self.names[i] for i in indices], list(self.label_names))

    def head(self, count: int | None) -> CodedDataset:
        if count is None or count >= self.num_sequences:
            return self
        return CodedDataset(self.codes[:count], self.y[:count], self.names[:count], self.label_names)

    def one_hot(self, rows: np.ndarray | slice) -> np.ndarray:
        return codes_to_one_hot(self.codes[rows])

    def to_one_hot(self) -> SequenceDataset:
        return SequenceDataset(codes_to_one_hot(self.codes), self.y.astype(np.float32), self.names, self.label_names)


# A dataset in memory: one-hot, or base codes expanded to one-hot a batch at a time.
LoadedData = SequenceDataset | CodedDataset


class TrainSource(Protocol):
    """Training data: a :class:`SequenceDataset` in memory, or a file read batch by batch
    (:class:`amber_ray.data.hdf5.HDF5SequenceFile`); both give :meth:`shard_batches`."""

    @property
    def num_sequences(self) -> int: ...

    @property
    def length(self) -> int: ...

    @property
    def num_labels(self) -> int: ...

    @property
    def label_names(self) -> list[str]: ...

    def shard_batches(
        self, batch_size: int, rng: np.random.Generator, rank: int = 0, world_size: int = 1
    ) -> Iterator[ShardBatch]: ...

    def subset(self, indices: Sequence[int] | np.ndarray) -> SequenceDataset | CodedDataset: ...


@dataclass
class Splits:
    """Train, validation and test sets; the training set may be a file that training streams."""

    train: TrainSource
    valid: LoadedData
    test: LoadedData
