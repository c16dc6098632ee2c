"""NAS-Bench-360's deepsea_filtered.npz: six arrays, x (N, L, 4) one-hot with the base last, y (N, 36)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from amber_ray.config import DataConfig
from amber_ray.data import load_splits, one_hot_encode
from amber_ray.errors import AmberInputError

SIZES = {"train": 40, "val": 12, "test": 16}


def _npz(path: Path, length: int = 20, labels: int = 36, seed: int = 0, **replace: np.ndarray) -> tuple[Path, dict]:
    rng = np.random.default_rng(seed)
    arrays, seqs = {}, {}
    for split, n in SIZES.items():
        seqs[split] = ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)]
        arrays[f"x_{split}"] = one_hot_encode(seqs[split]).transpose(0, 2, 1).astype(np.uint8)  # (N, L, 4) as the file
        arrays[f"y_{split}"] = (rng.random((n, labels)) < 0.3).astype(np.uint8)
    arrays.update(replace)
    np.savez_compressed(path, **arrays)
    return path, {"arrays": arrays, "seqs": seqs}


def test_reads_the_layout_of_the_benchmark_file(tmp_path: Path) -> None:
    path, made = _npz(tmp_path / "deepsea_filtered.npz")
    splits = load_splits(DataConfig(kind="nb360_deepsea", nb360_npz=path), seed=0)
    for ours, theirs in (("train", "train"), ("valid", "val"), ("test", "test")):
        part = getattr(splits, ours)
        np.testing.assert_array_equal(part.one_hot(np.arange(part.num_sequences)), one_hot_encode(made["seqs"][theirs]))
        np.testing.assert_array_equal(part.y, made["arrays"][f"y_{theirs}"])
    assert splits.train.label_names[:2] == ["nb360_00", "nb360_01"] and splits.train.num_labels == 36
    assert splits.train.length == 20


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        ({"x_val": np.zeros((12, 4, 20), dtype=np.uint8)}, "'x_val' has shape (12, 4, 20), expected (N, L, 4)"),
        ({"y_test": np.full((16, 36), 2, dtype=np.uint8)}, "'y_test' holds values other than 0 and 1"),
        ({"x_train": np.full((40, 20, 4), 1, dtype=np.uint8)}, "'x_train': sequence 0, position 0"),
    ],
)
def test_bad_archives_name_the_array(tmp_path: Path, replace: dict, message: str) -> None:
    path, _ = _npz(tmp_path / "d.npz", **replace)
    with pytest.raises(AmberInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_splits(DataConfig(kind="nb360_deepsea", nb360_npz=path), seed=0)


def test_missing_arrays_are_named(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((2, 5, 4)))
    with pytest.raises(AmberInputError, match=r"missing array\(s\) \['x_test', 'x_val', 'y_test', 'y_train', 'y_val'\]"):
        load_splits(DataConfig(kind="nb360_deepsea", nb360_npz=path), seed=0)
