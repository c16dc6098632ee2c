"""Readers for the DeepSEA data files (``train.mat``, ``valid.mat``, ``test.mat``).

In MATLAB every file holds ``<split>xdata`` of size ``(N, 4, L)`` and ``<split>data`` of size
``(N, T)``. ``train.mat`` is saved as MATLAB v7.3, an HDF5 file, which stores arrays with their axes
reversed: h5py sees ``trainxdata (L, 4, N)`` and ``traindata (T, N)``. ``valid.mat`` and ``test.mat``
are MATLAB v5 files read with :func:`scipy.io.loadmat`, which returns the MATLAB order. Each file
is read by its format, not by its name, so either format works for any split.

:func:`read_deepsea_mat` loads a whole file into memory as ``float32`` (the full DeepSEA training
set needs about 86 GB that way, 108 GB at the peak of reading it, and a file larger than the memory
available is refused before it is read); :func:`open_deepsea_mat` gives arrays that ``amber-ray
convert`` reads block by block into our compact HDF5 format instead.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO

import h5py
import numpy as np
import scipy.io

from amber_ray.data.dataset import SequenceDataset, Splits
from amber_ray.data.memory import check_fits_in_memory
from amber_ray.errors import AmberInputError, first_line

SPLITS = ("train", "valid", "test")
# What scipy's MATLAB v5 parser raises on a truncated or garbled file (found by fuzzing the reader).
V5_READ_ERRORS = (
    ValueError,
    TypeError,
    OSError,
    EOFError,
    IndexError,
    KeyError,
    OverflowError,
    NotImplementedError,
    struct.error,
    zlib.error,
    scipy.io.matlab.MatReadError,
)


class MatlabOrder:
    """A v7.3 (HDF5) array seen in MATLAB's axis order, read a block of leading rows at a time."""

    def __init__(self, node: h5py.Dataset):
        self.node = node
        self.shape = node.shape[::-1]
        self.ndim = node.ndim
        self.dtype = node.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        return self.node[(..., rows)].T


MatArray = np.ndarray | MatlabOrder


def _hdf5_array(path: Path, file: h5py.File, key: str) -> MatlabOrder:
    if key not in file:
        raise AmberInputError(f"no variable {key!r} (has {sorted(file.keys())})", path)
    node = file[key]
    if not isinstance(node, h5py.Dataset):
        raise AmberInputError(f"{key!r} is not an array", path)
    _check_numeric(path, key, node.dtype)
    return MatlabOrder(node)


@contextmanager
def _open_v73(path: Path, x_key: str, y_key: str) -> Iterator[tuple[MatlabOrder, MatlabOrder]]:
    try:
        # A large chunk cache: MATLAB chunks span many sequences, so each is decompressed once per pass.
        with h5py.File(path, "r", rdcc_nbytes=256 * 1024**2) as file:
            yield _hdf5_array(path, file, x_key), _hdf5_array(path, file, y_key)
    except OSError as error:
        raise AmberInputError(f"not a readable MATLAB v7.3 file ({error})", path) from None


MI_COMPRESSED = 15  # the MATLAB v5 data type of a zlib-compressed element


def _check_v5_elements(path: Path) -> None:
    """Refuse a v5 file whose top-level elements run past its end, or whose compressed elements do not
    decompress whole: on such damage scipy's reader can crash the process instead of raising."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        header = file.read(128)
        if header[126:128] not in (b"IM", b"MI"):
            return  # not a v5 file: scipy says so
        order = ">" if header[126:128] == b"MI" else "<"
        offset = 128
        while offset + 8 <= size:
            file.seek(offset)
            kind, nbytes = struct.unpack(order + "II", file.read(8))
            if offset + 8 + nbytes > size:
                raise AmberInputError(
                    f"not a readable .mat file (truncated: the element at byte {offset} runs past its end)", path
                )
            if kind == MI_COMPRESSED:
                _check_decompresses(path, file, nbytes, offset)
            offset += 8 + nbytes


def _check_decompresses(path: Path, file: BinaryIO, nbytes: int, offset: int) -> None:
    """Decompress the ``nbytes`` at ``file``'s position, 16 MB of output at a time, only to check them."""
    stream, remaining = zlib.decompressobj(), nbytes
    try:
        while remaining and not stream.eof:
            chunk = file.read(min(remaining, 1 << 20))
            remaining -= len(chunk)
            while chunk and not stream.eof:
                stream.decompress(chunk, 1 << 24)
                chunk = stream.unconsumed_tail
    except zlib.error as error:
        raise AmberInputError(
            f"not a readable .mat file (the compressed element at byte {offset} is damaged: {error})", path
        ) from None
    if not stream.eof:
        raise AmberInputError(f"not a readable .mat file (the compressed element at byte {offset} ends before its data)", path)


def _read_v5(path: Path, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
    _check_v5_elements(path)
    try:
        content = scipy.io.loadmat(path, variable_names=[x_key, y_key])
    except V5_READ_ERRORS as error:
        raise AmberInputError(f"not a readable .mat file ({first_line(error)})", path) from None
    for key in (x_key, y_key):
        if key not in content:
            raise AmberInputError(f"no variable {key!r}", path)
        _check_numeric(path, key, content[key].dtype)
    return content[x_key], content[y_key]


def _check_numeric(path: Path, key: str, dtype: np.dtype) -> None:
    if not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)):
        raise AmberInputError(f"{key!r} has dtype {dtype}, not numbers", path)


def _check_shapes(path: Path, x_key: str, x: MatArray, y_key: str, y: MatArray) -> None:
    if x.ndim != 3 or x.shape[1] != 4:
        raise AmberInputError(f"{x_key!r} has shape {x.shape} in MATLAB order, expected (N, 4, L)", path)
    if y.ndim != 2:
        raise AmberInputError(f"{y_key!r} has shape {y.shape} in MATLAB order, expected (N, T)", path)
    if len(x) != len(y):
        raise AmberInputError(f"{x_key!r} has {len(x)} sequences but {y_key!r} has {len(y)} rows", path)


@contextmanager
def open_deepsea_mat(path: str | Path, split: str) -> Iterator[tuple[MatArray, MatArray]]:
    """``x (N, 4, L)`` and ``y (N, T)`` of one DeepSEA file in MATLAB order, checked.

    Both slice along N; a v7.3 file is read only as far as it is sliced, a v5 file is loaded whole
    (scipy reads it so) in its stored dtype.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(path)
    if not path.is_file():
        raise AmberInputError("file not found", path)
    x_key, y_key = f"{split}xdata", f"{split}data"
    with ExitStack() as stack:
        if h5py.is_hdf5(path):
            x, y = stack.enter_context(_open_v73(path, x_key, y_key))
        else:
            x, y = _read_v5(path, x_key, y_key)
        _check_shapes(path, x_key, x, y_key, y)
        yield x, y


def deepsea_names(split: str, start: int, stop: int) -> list[str]:
    return [f"{split}_{i}" for i in range(start, stop)]


def deepsea_label_names(count: int) -> list[str]:
    return [f"label_{i}" for i in range(count)]


def bytes_to_load(x: MatArray, y: MatArray) -> int:
    """Peak bytes of loading ``x`` and ``y`` as float32: the float32 arrays, plus what a v7.3 file's
    stored arrays are read into first (a v5 file's are in memory already)."""
    total = 0
    for array in (x, y):
        size = int(np.prod(array.shape))
        total += size * (4 + (array.dtype.itemsize if isinstance(array, MatlabOrder) else 0))
    return total


def read_deepsea_mat(path: str | Path, split: str) -> SequenceDataset:
    """One DeepSEA file (``split`` is ``train``, ``valid`` or ``test``: it prefixes the variable names)."""
    with open_deepsea_mat(path, split) as (x, y):
        # Refused before reading: otherwise the process is killed for memory halfway (train.mat: 108 GB at the peak).
        route = f"convert it once (amber-ray convert DIR/{split}.h5 --mat {path}) and use data.kind: hdf5, which streams it"
        check_fits_in_memory(path, bytes_to_load(x, y), route)
        x_all, y_all = np.ascontiguousarray(x[:], dtype=np.float32), np.ascontiguousarray(y[:], dtype=np.float32)
    return SequenceDataset(x_all, y_all, deepsea_names(split, 0, len(x_all)), deepsea_label_names(y_all.shape[1]))


def read_deepsea_dir(directory: str | Path) -> Splits:
    """``train.mat``, ``valid.mat`` and ``test.mat`` of one directory; they must agree on L and T."""
    directory = Path(directory)
    if not directory.is_dir():
        raise AmberInputError("DeepSEA directory not found", directory)
    datasets = {split: read_deepsea_mat(directory / f"{split}.mat", split) for split in SPLITS}
    train = datasets["train"]
    for split in ("valid", "test"):
        other = datasets[split]
        if (other.length, other.num_labels) != (train.length, train.num_labels):
            raise AmberInputError(
                f"{other.length} bp x {other.num_labels} labels, but train.mat has {train.length} bp x {train.num_labels}",
                directory / f"{split}.mat",
            )
    return Splits(**datasets)
