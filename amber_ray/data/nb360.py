"""NAS-Bench-360's DeepSEA task: the file ``deepsea_filtered.npz`` (Tu et al. 2022, github.com/rtu715/NAS-Bench-360).

The file is a NumPy ``.npz`` archive of six arrays, as the benchmark's own loaders read it:
``x_train``, ``x_val``, ``x_test`` one-hot sequences ``(N, 1000, 4)`` (position first, base last;
the loaders transpose them to ``(N, 4, 1000)``), and ``y_train``, ``y_val``, ``y_test`` 0/1 labels
``(N, 36)``: 36 of DeepSEA's 919 chromatin features (the published split has 2,490 validation and
149,400 test sequences). The bases keep the order the file stores them in, as our DeepSEA ``.mat``
reader does. The labels carry no names in the file; they are called ``nb360_00`` ... ``nb360_35``.

Sequences are encoded a block at a time into base codes (1 byte per base): training is expanded to
one-hot for training, validation is small, and the 149,400 test sequences stay as codes.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from amber_ray.data.dataset import CodedDataset, Splits, one_hot_to_codes
from amber_ray.errors import AmberInputError

NB360_KEYS = {"train": ("x_train", "y_train"), "valid": ("x_val", "y_val"), "test": ("x_test", "y_test")}
BLOCK_ROWS = 4096


def _coded_split(path: Path, archive: np.lib.npyio.NpzFile, split: str) -> CodedDataset:
    x_key, y_key = NB360_KEYS[split]
    x, y = archive[x_key], archive[y_key]
    if x.ndim != 3 or x.shape[2] != 4:
        raise AmberInputError(f"{x_key!r} has shape {x.shape}, expected (N, L, 4)", path)
    if y.ndim != 2 or len(y) != len(x):
        raise AmberInputError(f"{y_key!r} has shape {y.shape}, expected ({len(x)}, T)", path)
    if not np.isin(y, (0, 1)).all():
        raise AmberInputError(f"{y_key!r} holds values other than 0 and 1", path)
    codes = np.empty(x.shape[:2], dtype=np.uint8)
    for start in range(0, len(x), BLOCK_ROWS):
        block = np.asarray(x[start : start + BLOCK_ROWS], dtype=np.float32).transpose(0, 2, 1)
        try:
            codes[start : start + len(block)] = one_hot_to_codes(block, first_row=start)
        except ValueError as error:
            raise AmberInputError(f"{x_key!r}: {error}", path) from None
    names = [f"{split}{i:06d}" for i in range(len(x))]
    return CodedDataset(codes, y.astype(np.uint8), names, [f"nb360_{j:02d}" for j in range(y.shape[1])])


def read_nb360_deepsea(path: str | Path) -> Splits:
    """The three splits of ``deepsea_filtered.npz``: training one-hot in memory, validation and test as codes."""
    path = Path(path)
    if not path.is_file():
        raise AmberInputError("file not found", path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise AmberInputError(f"not a NumPy .npz archive ({error})", path) from None
    with archive:
        missing = sorted({key for keys in NB360_KEYS.values() for key in keys} - set(archive.files))
        if missing:
            raise AmberInputError(f"missing array(s) {missing} (has {sorted(archive.files)})", path)
        train, valid, test = (_coded_split(path, archive, split) for split in NB360_KEYS)
    if not (train.length == valid.length == test.length and train.num_labels == valid.num_labels == test.num_labels):
        raise AmberInputError("the splits differ in sequence length or number of labels", path)
    return Splits(train.to_one_hot(), valid, test)
