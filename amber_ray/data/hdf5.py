"""Our chunked HDF5 format, written block by block and read block by block.

Layout (``format_version`` 2): ``codes`` uint8 ``(N, L)``, one base code per position (see
:mod:`amber_ray.data.dataset`: 1 byte per base, a sixteenth of one-hot ``float32``); ``labels``
uint8 ``(N, ceil(T / 8))``, the 0/1 labels packed eight to a byte (``numpy.packbits`` along a
row); ``names`` UTF-8 strings ``(N,)``; attribute ``label_names``. Every dataset is chunked along
N with the same number of rows, so a chunk of rows is one contiguous, cheap read. A DeepSEA-size
training set (4.4 M x 1,000 bp, 919 labels) takes about 4.9 GB instead of 70 GB.

Files of the first layout (``x`` uint8 ``(N, 4, L)`` holding one-hot values times 4, ``y``
float32, no ``format_version``) are still read, block by block, into the same codes.

Training streams a file: :meth:`HDF5SequenceFile.shard_batches` reads the chunks of a pass in
a seeded random order, a window of chunks at a time, so memory holds one window, never the file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from amber_ray.atomic import atomic_path
from amber_ray.data.dataset import CodedDataset, SequenceDataset, ShardBatch, Splits, codes_to_one_hot, one_hot_to_codes
from amber_ray.data.remote import is_remote_dir, is_uri, join, local_file
from amber_ray.errors import AmberInputError

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
X_SCALE = 4  # format 1: one-hot values times 4
DEFAULT_CHUNK_ROWS = 1024
# Rows read together while streaming, from which batches are drawn at random: 8 chunks of 1024
# rows of 1 kb are 8 MB of codes.
DEFAULT_WINDOW_ROWS = 8 * DEFAULT_CHUNK_ROWS
SPLIT_FILES = {"train": "train.h5", "valid": "valid.h5", "test": "test.h5"}


def pack_labels(y: np.ndarray, first_row: int = 0) -> np.ndarray:
    """``(N, T)`` 0/1 labels -> ``uint8 (N, ceil(T / 8))`` bits; other values raise ``ValueError`` naming the row."""
    binary = (y == 0) | (y == 1)
    if not binary.all():
        row, column = np.argwhere(~binary)[0]
        raise ValueError(f"sequence {first_row + row}, label {column}: value {y[row, column].item()!r} is not 0 or 1")
    return np.packbits(np.asarray(y, dtype=bool), axis=1)


def unpack_labels(bits: np.ndarray, num_labels: int) -> np.ndarray:
    return np.unpackbits(bits, axis=1, count=num_labels)


class BlockWriter:
    """Appends blocks of sequences (codes, 0/1 labels, names) to an open file of our format."""

    def __init__(self, file: h5py.File, length: int, label_names: Sequence[str], chunk_rows: int):
        self.file, self.length, self.num_labels = file, length, len(label_names)
        chunk_rows = max(1, chunk_rows)
        packed = -(-self.num_labels // 8)
        file.create_dataset("codes", (0, length), np.uint8, maxshape=(None, length), chunks=(chunk_rows, max(1, length)))
        file.create_dataset("labels", (0, packed), np.uint8, maxshape=(None, packed), chunks=(chunk_rows, max(1, packed)))
        file.create_dataset("names", (0,), h5py.string_dtype(), maxshape=(None,), chunks=(chunk_rows,))
        file.attrs["format_version"] = FORMAT_VERSION
        file.attrs["label_names"] = list(label_names)
        self.rows = 0

    def append(self, codes: np.ndarray, y: np.ndarray, names: Sequence[str]) -> None:
        """Add ``codes uint8 (n, L)``, ``y (n, T)`` of 0/1 and ``n`` names; a bad label value raises ``ValueError``."""
        if codes.shape[1:] != (self.length,) or y.shape != (len(codes), self.num_labels) or len(names) != len(codes):
            raise ValueError(
                f"block of {codes.shape} codes, {y.shape} labels, {len(names)} names "
                f"does not fit L={self.length}, T={self.num_labels}"
            )
        bits = pack_labels(y, first_row=self.rows)
        start, self.rows = self.rows, self.rows + len(codes)
        for key, values in (("codes", codes), ("labels", bits), ("names", list(names))):
            self.file[key].resize(self.rows, axis=0)
            self.file[key][start:] = values


@contextmanager
def open_writer(
    path: str | Path, length: int, label_names: Sequence[str], chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[BlockWriter]:
    """A :class:`BlockWriter` on a temporary file that replaces ``path`` only when the block ends without error."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as file:
        writer = BlockWriter(file, length, label_names, chunk_rows)
        yield writer
    log.info("wrote %d sequences to %s", writer.rows, path)


def write_hdf5(dataset: SequenceDataset, path: str | Path, chunk_size: int = DEFAULT_CHUNK_ROWS) -> None:
    """Write an in-memory dataset in chunks of ``chunk_size`` rows; the file appears only once complete.

    Raises ``ValueError`` for a column that is not one-hot (or unknown or empty) or a label not 0 or 1.
    """
    chunk = max(1, min(chunk_size, dataset.num_sequences))
    with open_writer(path, dataset.length, dataset.label_names, chunk) as writer:
        for start in range(0, dataset.num_sequences, chunk):
            rows = slice(start, start + chunk)
            writer.append(one_hot_to_codes(dataset.x[rows], first_row=start), dataset.y[rows], dataset.names[rows])


def _text(value: str | bytes) -> str:
    """HDF5 strings come back as ``str`` or, from other writers, as ``bytes``."""
    return value.decode() if isinstance(value, bytes) else str(value)


class HDF5SequenceFile:
    """A file of our format, checked on opening and read block by block.

    No file handle is kept between calls, so the object pickles small (it is what Ray workers are
    sent instead of the data) and never leaks one. ``path`` may be a URI (``s3://...``): each
    node then reads its own staged copy (:mod:`amber_ray.data.remote`), fetched when a process
    there first reads it; errors name the URI.
    """

    def __init__(self, path: str | Path, window_rows: int = DEFAULT_WINDOW_ROWS) -> None:
        # Workers open it themselves, whatever their working directory or node.
        self.source: str | Path = str(path) if is_uri(path) else Path(path).absolute()
        self._local: Path | None = None if is_uri(path) else Path(path).absolute()
        self.window_rows = window_rows
        if not self.path.is_file():
            raise AmberInputError("file not found", self.source)
        try:
            with h5py.File(self.path, "r") as file:
                self._read_header(file)
        except OSError as error:
            raise AmberInputError(f"not a readable HDF5 file ({error})", self.source) from None

    @property
    def path(self) -> Path:
        """The file on this node: the local path, or this node's staged copy of the URI."""
        if self._local is None:
            self._local = local_file(self.source)
        return self._local

    def stage(self) -> Path:
        """Make sure this node has the file now (a worker fails at start, not mid-pass); returns its path."""
        return self.path

    def __getstate__(self) -> dict:
        """A URI's staged copy is this node's: another node stages its own."""
        state = dict(self.__dict__)
        if is_uri(self.source):
            state["_local"] = None
        return state

    def _require(self, file: h5py.File, keys: Sequence[str]) -> None:
        for key in keys:
            if not isinstance(file.get(key), h5py.Dataset):
                raise AmberInputError(f"no dataset {key!r} (has {sorted(file.keys())})", self.source)

    def _read_header(self, file: h5py.File) -> None:
        self._version = int(file.attrs.get("format_version", 1))
        if self._version > FORMAT_VERSION:
            raise AmberInputError(
                f"format version {self._version} is newer than this amber-ray reads ({FORMAT_VERSION})", self.source
            )
        if self._version == 1:
            self._require(file, ("x", "y", "names"))
            x, y = file["x"], file["y"]
            if x.ndim != 3 or x.shape[1] != 4 or x.dtype != np.uint8:
                raise AmberInputError(f"'x' is {x.dtype} {x.shape}, expected uint8 (N, 4, L)", self.source)
            rows, self._length = len(x), x.shape[2]
        else:
            self._require(file, ("codes", "labels", "names"))
            x, y = file["codes"], file["labels"]
            if x.ndim != 2 or x.dtype != np.uint8:
                raise AmberInputError(f"'codes' is {x.dtype} {x.shape}, expected uint8 (N, L)", self.source)
            rows, self._length = len(x), x.shape[1]
        if "label_names" not in file.attrs:
            raise AmberInputError("attribute 'label_names' missing", self.source)
        self._label_names = [_text(name) for name in file.attrs["label_names"]]
        width = len(self._label_names) if self._version == 1 else -(-len(self._label_names) // 8)
        if y.ndim != 2 or y.shape != (rows, width) or file["names"].shape != (rows,):
            raise AmberInputError(
                f"labels {y.shape} and 'names' {file['names'].shape} "
                f"do not match {rows} sequences of {len(self._label_names)} labels",
                self.source,
            )
        self._num_sequences = rows
        self._chunk_rows = x.chunks[0] if x.chunks else DEFAULT_CHUNK_ROWS  # contiguous storage: read in blocks anyway

    def __len__(self) -> int:
        return self._num_sequences

    @property
    def num_sequences(self) -> int:
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

    @property
    def chunk_rows(self) -> int:
        return self._chunk_rows

    def _read_block(self, file: h5py.File, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``start:stop`` as ``uint8`` codes ``(n, L)`` and packed label bits ``(n, ceil(T / 8))``."""
        if self._version == 1:
            try:
                codes = one_hot_to_codes(file["x"][start:stop].astype(np.float32) / X_SCALE, first_row=start)
                return codes, pack_labels(file["y"][start:stop], first_row=start)
            except ValueError as error:
                raise AmberInputError(str(error), self.source) from None
        return file["codes"][start:stop], file["labels"][start:stop]

    def _read_chunks(self, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with h5py.File(self.path, "r") as file:
            blocks = [self._read_block(file, start, start + self._chunk_rows) for start in starts]
        return np.concatenate([codes for codes, _ in blocks]), np.concatenate([bits for _, bits in blocks])

    def shard_batches(
        self, batch_size: int, rng: np.random.Generator, rank: int = 0, world_size: int = 1
    ) -> Iterator[ShardBatch]:
        """One pass in global batches of ``batch_size``, streamed; worker ``rank`` decodes rows ``rank::world_size`` of each.

        The chunk order is a permutation drawn from ``rng``; chunks are read ``window_rows`` at a
        time and each batch is drawn at random from the window, so a batch mixes many chunks (a
        file sorted by class still gives mixed batches) while memory holds one window of codes.
        Rows a window leaves over join the next. Every worker draws the same order from the same
        seed, so W workers see the same global batches as one.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        starts = rng.permutation(np.arange(0, self._num_sequences, self._chunk_rows))
        per_window = max(1, self.window_rows // self._chunk_rows)
        codes = np.zeros((0, self._length), dtype=np.uint8)
        bits = np.zeros((0, -(-self.num_labels // 8)), dtype=np.uint8)
        for first in range(0, len(starts), per_window):
            window_codes, window_bits = self._read_chunks(starts[first : first + per_window])
            codes, bits = np.concatenate([codes, window_codes]), np.concatenate([bits, window_bits])
            order = rng.permutation(len(codes))
            full = len(order) - len(order) % batch_size
            for start in range(0, full, batch_size):
                yield self._shard(codes, bits, order[start : start + batch_size], rank, world_size)
            codes, bits = codes[order[full:]], bits[order[full:]]
        if len(codes):
            yield self._shard(codes, bits, np.arange(len(codes)), rank, world_size)

    def _shard(self, codes: np.ndarray, bits: np.ndarray, rows: np.ndarray, rank: int, world_size: int) -> ShardBatch:
        """This worker's rows of the global batch ``rows``, decoded: one-hot x and float32 labels."""
        mine = rows[rank::world_size]
        return codes_to_one_hot(codes[mine]), unpack_labels(bits[mine], self.num_labels).astype(np.float32), len(rows)

    def positive_counts(self) -> np.ndarray:
        """Positives per label ``(T,)``, reading only the labels, a chunk at a time."""
        counts = np.zeros(self.num_labels, dtype=np.int64)
        with h5py.File(self.path, "r") as file:
            labels = file["y" if self._version == 1 else "labels"]
            for start in range(0, self._num_sequences, self._chunk_rows):
                block = labels[start : start + self._chunk_rows]
                block = block if self._version == 1 else unpack_labels(block, self.num_labels)
                counts += (np.asarray(block) == 1).sum(axis=0)
        return counts

    def subset(self, indices: Sequence[int] | np.ndarray) -> CodedDataset:
        """The given rows, in the given order, as codes in memory (one chunk is read at a time)."""
        indices = np.asarray(indices, dtype=np.int64)
        wanted = np.unique(indices)
        codes = np.empty((len(wanted), self._length), dtype=np.uint8)
        labels = np.empty((len(wanted), self.num_labels), dtype=np.uint8)
        names: list[str] = []
        with h5py.File(self.path, "r") as file:
            for start in np.unique(wanted // self._chunk_rows) * self._chunk_rows:
                inside = np.flatnonzero((wanted >= start) & (wanted < start + self._chunk_rows))
                block_codes, block_bits = self._read_block(file, start, start + self._chunk_rows)
                local = wanted[inside] - start
                codes[inside], labels[inside] = block_codes[local], unpack_labels(block_bits[local], self.num_labels)
                block_names = file["names"][start : start + self._chunk_rows]
                names.extend(_text(block_names[i]) for i in local)
        position = np.searchsorted(wanted, indices)
        return CodedDataset(codes[position], labels[position], [names[i] for i in position], self.label_names)

    def load_codes(self) -> CodedDataset:
        """The whole file in memory as base codes (1 byte per base)."""
        return self.subset(np.arange(self._num_sequences))

    def load(self) -> SequenceDataset:
        """The whole file in memory as one-hot ``float32`` (16 bytes per base: only for data that fits)."""
        return self.load_codes().to_one_hot()


def open_hdf5_dir(directory: str | Path) -> dict[str, HDF5SequenceFile]:
    """``train.h5``, ``valid.h5`` and ``test.h5`` of one directory, opened (nothing loaded); they must agree on L and labels."""
    if is_uri(directory):
        if not is_remote_dir(str(directory)):
            raise AmberInputError("HDF5 data directory not found", directory)
    elif not Path(directory).is_dir():
        raise AmberInputError("HDF5 data directory not found", directory)
    files = {split: HDF5SequenceFile(join(directory, name)) for split, name in SPLIT_FILES.items()}
    train = files["train"]
    for split in ("valid", "test"):
        other = files[split]
        if (other.length, other.label_names) != (train.length, train.label_names):
            raise AmberInputError("sequence length or label names differ from train.h5", other.source)
    return files


def read_hdf5_dir(directory: str | Path) -> Splits:
    """The three splits of :func:`open_hdf5_dir`, loaded into memory."""
    return Splits(**{split: file.load() for split, file in open_hdf5_dir(directory).items()})
