"""Seeded, stratified train/validation/test splits."""

from __future__ import annotations

import logging
import math

import numpy as np
from sklearn.model_selection import train_test_split

from amber_ray.data.dataset import SequenceDataset, Splits

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


def stratified_split(dataset: SequenceDataset, valid: float, test: float, seed: int) -> Splits:
    """Fractions ``valid`` and ``test`` of the whole set held out; the same seed gives the same split.

    The test set is drawn first, then the validation set from the rest; each draw is stratified
    on its own (label combination, else first label, else none). Each split keeps file order.
    """
    rest, test_idx = _split(np.arange(dataset.num_sequences), dataset.y, test, seed)
    train_idx, valid_idx = _split(rest, dataset.y[rest], valid / (1 - test), seed)
    return Splits(dataset.subset(train_idx), dataset.subset(valid_idx), dataset.subset(test_idx))
