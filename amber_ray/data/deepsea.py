"""Readers for the DeepSEA data files (``train.mat``, ``valid.mat``, ``test.mat``).

In MATLAB every file holds ``<split>xdata`` of size ``(N, 4, L)`` and ``<split>data`` of size
``(N, T)``. ``train.mat`` is saved as MATLAB v7.3, an HDF5 file, which stores arrays with their axes
reversed: h5py sees ``trainxdata (L, 4, N)`` and ``traindata (T, N)``. ``valid.mat`` and ``test.mat``
are MATLAB v5 files read with :func:`scipy.io.loadmat`, which returns the MATLAB order. Each file
is read by its format, not by its name, so either format works for any split.

The whole file is loaded into memory as ``float32`` (the full DeepSEA training set needs about
70 GB that way).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from amber_ray.data.dataset import SequenceDataset, Splits
from amber_ray.errors import AmberInputError

SPLITS = ("train", "valid", "test")
# What scipy's MATLAB v5 parser raises on a truncated or garbled file (found by fuzzing the reader).
V5_READ_ERRORS = (
    ValueError, TypeError, OSError, EOFError, IndexError, KeyError, OverflowError, NotImplementedError,
    struct.error, zlib.error, scipy.io.matlab.MatReadError,
)


def _hdf5_array(path: Path, file: h5py.File, key: str) -> np.ndarray:
    if key not in file:
        raise AmberInputError(f"no variable {key!r} (has {sorted(file.keys())})", path)
    node = file[key]
    if not isinstance(node, h5py.Dataset):
        raise AmberInputError(f"{key!r} is not an array", path)
    _check_numeric(path, key, node.dtype)
    return node[()].T  # v7.3 stores MATLAB arrays with reversed axes


def _read_v73(path: Path, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with h5py.File(path, "r") as file:
            return _hdf5_array(path, file, x_key), _hdf5_array(path, file, y_key)
    except OSError as error:
        raise AmberInputError(f"not a readable MATLAB v7.3 file ({error})", path) from None


def _read_v5(path: Path, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        content = scipy.io.loadmat(path, variable_names=[x_key, y_key])
    except V5_READ_ERRORS as error:
        raise AmberInputError(f"not a readable .mat file ({str(error).splitlines()[0]})", path) from None
    for key in (x_key, y_key):
        if key not in content:
            raise AmberInputError(f"no variable {key!r}", path)
        _check_numeric(path, key, content[key].dtype)
    return content[x_key], content[y_key]


def _check_numeric(path: Path, key: str, dtype: np.dtype) -> None:
    if not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)):
        raise AmberInputError(f"{key!r} has dtype {dtype}, not numbers", path)


def _check_shapes(path: Path, x_key: str, x: np.ndarray, y_key: str, y: np.ndarray) -> None:
    if x.ndim != 3 or x.shape[1] != 4:
        raise AmberInputError(f"{x_key!r} has shape {x.shape} in MATLAB order, expected (N, 4, L)", path)
    if y.ndim != 2:
        raise AmberInputError(f"{y_key!r} has shape {y.shape} in MATLAB order, expected (N, T)", path)
    if len(x) != len(y):
        raise AmberInputError(f"{x_key!r} has {len(x)} sequences but {y_key!r} has {len(y)} rows", path)


def read_deepsea_mat(path: str | Path, split: str) -> SequenceDataset:
    """One DeepSEA file (``split`` is ``train``, ``valid`` or ``test``: it prefixes the variable names)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(path)
    if not path.is_file():
        raise AmberInputError("file not found", path)
    x_key, y_key = f"{split}xdata", f"{split}data"
    x, y = (_read_v73 if h5py.is_hdf5(path) else _read_v5)(path, x_key, y_key)
    _check_shapes(path, x_key, x, y_key, y)
    names = [f"{split}_{i}" for i in range(len(x))]
    label_names = [f"label_{i}" for i in range(y.shape[1])]
    x, y = np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, dtype=np.float32)
    return SequenceDataset(x, y, names, label_names)


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
