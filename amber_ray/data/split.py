"""Seeded, stratified train/validation/test splits."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from amber_ray.data.dataset import SequenceDataset, Splits


def _strata(y: np.ndarray, min_count: int) -> np.ndarray | None:
    """Label combinations if each is frequent enough, else the first label, else nothing."""
    for keys in (np.array(["".join(map(str, row)) for row in y.astype(int)]), y[:, 0].astype(int)):
        _, counts = np.unique(keys, return_counts=True)
        if counts.min() >= min_count:
            return keys
    return None


def stratified_split(dataset: SequenceDataset, valid: float, test: float, seed: int) -> Splits:
    indices = np.arange(dataset.num_sequences)
    rest, test_idx = train_test_split(indices, test_size=test, random_state=seed, stratify=_strata(dataset.y, 3))
    train_idx, valid_idx = train_test_split(
        rest, test_size=valid / (1 - test), random_state=seed, stratify=_strata(dataset.y[rest], 3)
    )
    return Splits(dataset.subset(np.sort(train_idx)), dataset.subset(np.sort(valid_idx)), dataset.subset(np.sort(test_idx)))
