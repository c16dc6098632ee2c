"""Seeded, stratified train/validation/test splits."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import train_test_split

from amber_ray.data.dataset import SequenceDataset, Splits
from amber_ray.errors import AmberInputError

log = logging.getLogger(__name__)


def _stratifiable(keys: np.ndarray, test_fraction: float) -> bool:
    """scikit-learn's conditions: every class has 2+ members and fits in both sides of the split."""
    _, counts = np.unique(keys, return_counts=True)
    n_test = math.ceil(test_fraction * len(keys))
    return bool(counts.min() >= 2 and len(counts) <= min(n_test, len(keys) - n_test))


def _strata(y: np.ndarray, test_fraction: float) -> np.ndarray | None:
    """The label combination of each row if it can stratify, else the first label, else nothing."""
    combinations = np.unique(y, axis=0, return_inverse=True)[1].ravel()
    for keys in (combinations, y[:, 0]):
        if _stratifiable(keys, test_fraction):
            return keys
    log.warning("too few sequences per class to stratify: splitting %d sequences at random", len(y))
    return None


def _split(indices: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    kept, held_out = train_test_split(indices, test_size=test_fraction, random_state=seed, stratify=_strata(y, test_fraction))
    return np.sort(kept), np.sort(held_out)


def _held_out_size(n: int, fraction: float) -> int:
    """How many of ``n`` rows scikit-learn's ``train_test_split`` holds out for ``test_size=fraction``."""
    return math.ceil(fraction * n)


def check_splittable(dataset: SequenceDataset, valid: float, test: float, source: str) -> None:
    """Refuse data that cannot give three non-empty splits, or a label with one value throughout.

    Checked before scikit-learn sees the data, so the error names the file (``source``) and the label.
    """
    n = dataset.num_sequences
    n_test = _held_out_size(n, test)
    n_valid = _held_out_size(n - n_test, valid / (1 - test))
    sizes = {"train": n - n_test - n_valid, "valid": n_valid, "test": n_test}
    empty = [name for name, size in sizes.items() if size < 1]
    if n_test >= n or empty:
        problem = (
            f"{n} record(s) cannot be split into train, valid and test (data.split.valid {valid:g}, "
            f"data.split.test {test:g} leave {sizes['train']} train, {sizes['valid']} valid, {sizes['test']} test)"
        )
        raise AmberInputError(problem, source)
    for column, label in enumerate(dataset.label_names):
        values = np.unique(dataset.y[:, column])
        if len(values) < 2:
            raise AmberInputError(f"label {label!r} is {values[0]:g} in every record: nothing to learn or score", source)


def check_splits_scorable(splits: Splits, source: str) -> None:
    """Each split needs a label with both classes, or its AUROC (the search reward, the test metric) is undefined."""
    for name, part in (("train", splits.train), ("valid", splits.valid), ("test", splits.test)):
        varies = [bool(np.unique(part.y[:, column]).size > 1) for column in range(part.num_labels)]
        if not any(varies):
            problem = (
                f"no label has both classes among the {part.num_sequences} {name} record(s): AUROC is undefined; "
                "add records or change data.split"
            )
            raise AmberInputError(problem, source)
        for label, ok in zip(part.label_names, varies):
            if not ok:
                log.warning("label %r has one class in the %s split of %s: its AUROC there is skipped", label, name, source)


def stratified_split(dataset: SequenceDataset, valid: float, test: float, seed: int, source: str = "data") -> Splits:
    """Fractions ``valid`` and ``test`` of the whole set held out; the same seed gives the same split.

    The test set is drawn first, then the validation set from the rest; each draw is stratified
    on its own (label combination, else first label, else none). Each split keeps file order.
    Data too small to split, or a label that never varies, is an input error naming ``source``.
    """
    check_splittable(dataset, valid, test, source)
    rest, test_idx = _split(np.arange(dataset.num_sequences), dataset.y, test, seed)
    train_idx, valid_idx = _split(rest, dataset.y[rest], valid / (1 - test), seed)
    splits = Splits(dataset.subset(train_idx), dataset.subset(valid_idx), dataset.subset(test_idx))
    check_splits_scorable(splits, source)
    return splits


def record_chromosome(name: str) -> str:
    """``chr1:1000-2000`` (what ``bedtools getfasta`` and ``amber-ray dataset`` name windows) -> ``chr1``."""
    chromosome, sep, span = name.rpartition(":")
    return chromosome if sep and chromosome and "-" in span else ""


def chromosome_split(dataset: SequenceDataset, valid: Sequence[str], test: Sequence[str], source: str = "data") -> Splits:
    """Whole chromosomes held out: records of ``valid`` chromosomes validate, of ``test`` ones test, the rest train.

    Record names must be ``chrom:start-end``; another name, or a split left empty, is an input error naming ``source``.
    """
    chromosomes = np.array([record_chromosome(name) for name in dataset.names])
    unnamed = np.flatnonzero(chromosomes == "")
    if len(unnamed):
        problem = "a split by chromosome (data.split.valid_chromosomes) needs record names like chr1:1000-2000"
        raise AmberInputError(problem, source, dataset.names[unnamed[0]])
    in_valid, in_test = np.isin(chromosomes, list(valid)), np.isin(chromosomes, list(test))
    parts = {"train": np.flatnonzero(~in_valid & ~in_test), "valid": np.flatnonzero(in_valid), "test": np.flatnonzero(in_test)}
    for name, rows in parts.items():
        if not len(rows):
            raise AmberInputError(f"no {name} records: no record lies on its chromosomes (data.split)", source)
    splits = Splits(*(dataset.subset(rows) for rows in parts.values()))
    check_splits_scorable(splits, source)
    return splits
