"""Our chunked HDF5 format.

:meth:`HDF5SequenceFile.iter_batches` can read a file batch by batch, one chunk at a time, but
nothing in training uses it yet: :func:`read_hdf5_dir` (``data.kind: hdf5``) loads all three
splits into memory, so the data must fit in memory.

Layout: ``x`` uint8 ``(N, 4, L)`` holding the one-hot values times 4 (0, 1 or 4; an unknown
base's 0.25 becomes 1, so it survives exactly), ``y`` float32 ``(N, T)``, ``names`` UTF-8 strings
``(N,)``, and the attribute ``label_names``. Every dataset is chunked along N with the same chunk
size, so a chunk of rows is one contiguous, cheap read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from amber_ray.atomic import atomic_path
from amber_ray.data.dataset import SequenceDataset, Splits
from amber_ray.errors import AmberInputError

log = logging.getLogger(__name__)

X_SCALE = 4
SPLIT_FILES = {"train": "train.h5", "valid": "valid.h5", "test": "test.h5"}


def _scaled_x(x: np.ndarray) -> np.ndarray:
    """One-hot values -> uint8 times 4; values that are not multiples of 0.25 in [0, 1] are refused."""
    scaled = x * X_SCALE
    as_uint8 = np.rint(scaled).astype(np.uint8)
    if not np.array_equal(as_uint8, scaled) or (as_uint8 > X_SCALE).any():
        raise ValueError("x must hold multiples of 0.25 in [0, 1] (one-hot, 0.25 for unknown bases)")
    return as_uint8


def write_hdf5(dataset: SequenceDataset, path: str | Path, chunk_size: int = 1024) -> None:
    """Write ``dataset`` in chunks of ``chunk_size`` rows; the file appears only once complete."""
    n, chunk = dataset.num_sequences, max(1, min(chunk_size, dataset.num_sequences))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as file:
        x = file.create_dataset("x", (n, 4, dataset.length), dtype=np.uint8, chunks=(chunk, 4, dataset.length))
        y = file.create_dataset("y", (n, dataset.num_labels), dtype=np.float32, chunks=(chunk, dataset.num_labels))
        for start in range(0, n, chunk):
            x[start : start + chunk] = _scaled_x(dataset.x[start : start + chunk])
            y[start : start + chunk] = dataset.y[start : start + chunk]
        file.create_dataset("names", data=dataset.names, dtype=h5py.string_dtype(), chunks=(chunk,))
        file.attrs["label_names"] = dataset.label_names
    log.info("wrote %d sequences to %s", n, path)


def _text(value: str | bytes) -> str:
    """HDF5 strings come back as ``str`` or, from other writers, as ``bytes``."""
    return value.decode() if isinstance(value, bytes) else str(value)


class HDF5SequenceFile:
    """A file written by :func:`write_hdf5`, checked on opening and read chunk by chunk.

    No file handle is kept between calls, so the object pickles (Ray workers) and never leaks one.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise AmberInputError("file not found", self.path)
        try:
            with h5py.File(self.path, "r") as file:
                self._read_header(file)
        except OSError as error:
            raise AmberInputError(f"not a readable HDF5 file ({error})", self.path) from None

    def _read_header(self, file: h5py.File) -> None:
        for key in ("x", "y", "names"):
            if not isinstance(file.get(key), h5py.Dataset):
                raise AmberInputError(f"no dataset {key!r} (has {sorted(file.keys())})", self.path)
        x, y, names = file["x"], file["y"], file["names"]
        if x.ndim != 3 or x.shape[1] != 4 or x.dtype != np.uint8:
            raise AmberInputError(f"'x' is {x.dtype} {x.shape}, expected uint8 (N, 4, L)", self.path)
        if y.ndim != 2 or len(y) != len(x) or names.shape != (len(x),):
            raise AmberInputError(f"'y' {y.shape} and 'names' {names.shape} do not match 'x' {x.shape}", self.path)
        if "label_names" not in file.attrs or len(file.attrs["label_names"]) != y.shape[1]:
            raise AmberInputError(f"attribute 'label_names' missing or not {y.shape[1]} long", self.path)
        self._num_sequences, self._length = len(x), x.shape[2]
        self._chunk_rows = x.chunks[0] if x.chunks else max(1, len(x))
        self._label_names = [_text(name) for name in file.attrs["label_names"]]

    def __len__(self) -> int:
        return self._num_sequences

    @property
    def length(self) -> int:
        return self._length

    @property
    def num_labels(self) -> int:
        return len(self._label_names)

    @property
    def label_names(self) -> list[str]:
        return list(self._label_names)

    def _chunk_starts(self, rng: np.random.Generator | None) -> np.ndarray:
        starts = np.arange(0, self._num_sequences, self._chunk_rows)
        return rng.permutation(starts) if rng is not None else starts

    def iter_batches(self, batch_size: int, shuffle: bool, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(x float32 (B, 4, L), y float32 (B, T))`` batches covering every sequence once.

        With ``shuffle`` the chunk order and the rows within each chunk are permuted (seeded), so only
        one chunk plus a partial batch is in memory; a batch mixes rows of at most two neighbouring
        chunks in the shuffled order. Every batch but the last has ``batch_size`` rows.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        rng = np.random.default_rng(seed) if shuffle else None
        pending_x = np.zeros((0, 4, self._length), dtype=np.float32)
        pending_y = np.zeros((0, self.num_labels), dtype=np.float32)
        with h5py.File(self.path, "r") as file:
            for start in self._chunk_starts(rng):
                x, y = self._read_rows(file, start, start + self._chunk_rows)
                if rng is not None:
                    order = rng.permutation(len(x))
                    x, y = x[order], y[order]
                pending_x, pending_y = np.concatenate([pending_x, x]), np.concatenate([pending_y, y])
                while len(pending_x) >= batch_size:
                    yield pending_x[:batch_size], pending_y[:batch_size]
                    pending_x, pending_y = pending_x[batch_size:], pending_y[batch_size:]
        if len(pending_x):
            yield pending_x, pending_y

    @staticmethod
    def _read_rows(file: h5py.File, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        x = file["x"][start:stop].astype(np.float32)
        x /= X_SCALE
        return x, file["y"][start:stop].astype(np.float32)

    def load(self) -> SequenceDataset:
        """The whole file in memory."""
        with h5py.File(self.path, "r") as file:
            x, y = self._read_rows(file, 0, self._num_sequences)
            names = [str(name) for name in file["names"].asstr()[()]]
        return SequenceDataset(x, y, names, self.label_names)


def read_hdf5_dir(directory: str | Path) -> Splits:
    """``train.h5``, ``valid.h5`` and ``test.h5`` of one directory, loaded; they must agree on L and labels."""
    directory = Path(directory)
    if not directory.is_dir():
        raise AmberInputError("HDF5 data directory not found", directory)
    files = {split: HDF5SequenceFile(directory / name) for split, name in SPLIT_FILES.items()}
    train = files["train"]
    for split in ("valid", "test"):
        other = files[split]
        if (other.length, other.label_names) != (train.length, train.label_names):
            raise AmberInputError("sequence length or label names differ from train.h5", other.path)
    return Splits(**{split: file.load() for split, file in files.items()})
