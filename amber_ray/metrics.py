"""Multi-label AUROC/AUPR, per-category summaries, and accuracy/MCC/sensitivity/specificity for binary tasks.

Curves and scores come from scikit-learn. A label whose true values hold a single class has no
AUROC or AUPR: it is skipped (NaN), counted, and left out of the means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, confusion_matrix, matthews_corrcoef, roc_auc_score

from amber_ray.errors import AmberInputError


@dataclass(frozen=True)
class MultiLabelMetrics:
    per_label_auroc: np.ndarray  # (T,), NaN where a label was skipped
    per_label_aupr: np.ndarray  # (T,), NaN where a label was skipped
    mean_auroc: float  # mean over scored labels; NaN if none was scored
    mean_aupr: float
    num_skipped: int
    label_names: list[str]


def _as_2d(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    return values.reshape(len(values), -1)


def _scorable(y_true: np.ndarray) -> np.ndarray:
    """Which columns of ``(N, T)`` 0/1 labels hold both classes."""
    positives = (y_true > 0.5).sum(axis=0)
    return (positives > 0) & (positives < len(y_true))


def _nan_mean(values: np.ndarray) -> float:
    """Mean of the non-NaN values, NaN (without a warning) when there are none."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if len(finite) else float("nan")


def multilabel_metrics(y_true: np.ndarray, y_score: np.ndarray, label_names: Sequence[str] | None = None) -> MultiLabelMetrics:
    """Per-label AUROC and AUPR of ``(N, T)`` (or ``(N,)``) labels and scores."""
    y_true, y_score = _as_2d(y_true), _as_2d(y_score)
    if y_true.shape != y_score.shape:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} differ in shape")
    auroc = np.full(y_true.shape[1], np.nan)
    aupr = np.full(y_true.shape[1], np.nan)
    scorable = _scorable(y_true)
    for label in np.flatnonzero(scorable):
        auroc[label] = roc_auc_score(y_true[:, label], y_score[:, label])
        aupr[label] = average_precision_score(y_true[:, label], y_score[:, label])
    names = list(label_names) if label_names is not None else [f"label_{i}" for i in range(y_true.shape[1])]
    if len(names) != y_true.shape[1]:
        raise ValueError(f"{len(names)} label names for {y_true.shape[1]} labels")
    return MultiLabelMetrics(auroc, aupr, _nan_mean(auroc), _nan_mean(aupr), int((~scorable).sum()), names)


def mean_auroc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Mean AUROC over the labels that hold both classes (the search reward; skips AUPR).

    Computed as the Mann-Whitney U statistic of all labels at once (tied scores get their mean
    rank, which equals scikit-learn's ``roc_auc_score``): the search calls it for every scored
    architecture, and one ranking of all columns costs a fraction of a curve per label.
    Raises ``ValueError`` when no label holds both classes: a reward of 0.5 would look like a real score.
    """
    y_true, y_score = _as_2d(y_true), _as_2d(y_score)
    scorable = np.flatnonzero(_scorable(y_true))
    if not len(scorable):
        raise ValueError("no label has both classes: AUROC is undefined")
    scores = y_score[:, scorable]
    if not np.isfinite(scores).all():  # a diverged model: no reward rather than a silent NaN one
        raise ValueError("scores contain NaN or infinity: AUROC is undefined")
    positive = y_true[:, scorable] > 0.5
    ranks = rankdata(scores, axis=0)
    n_pos = positive.sum(axis=0)
    n_neg = len(positive) - n_pos
    u = (ranks * positive).sum(axis=0) - n_pos * (n_pos + 1) / 2
    return float(np.mean(u / (n_pos * n_neg)))


def binary_metrics(y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, MCC, sensitivity, specificity (at ``threshold``), AUROC and AUPR of one binary label.

    Rates without a denominator, and AUROC/AUPR when ``y_true`` holds one class, are NaN.
    """
    y_true = np.asarray(y_true).astype(int).ravel()
    y_prob = np.asarray(y_prob, dtype=float).ravel()
    predicted = (y_prob >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, predicted, labels=[0, 1]).ravel()
    both_classes = 0 < tp + fn < len(y_true)
    return {
        "accuracy": float((tp + tn) / len(y_true)),
        "mcc": float(matthews_corrcoef(y_true, predicted)),
        "sensitivity": float(tp / (tp + fn)) if tp + fn else float("nan"),
        "specificity": float(tn / (tn + fp)) if tn + fp else float("nan"),
        "auroc": float(roc_auc_score(y_true, y_prob)) if both_classes else float("nan"),
        "aupr": float(average_precision_score(y_true, y_prob)) if both_classes else float("nan"),
    }


def per_category(
    per_label: pd.Series | np.ndarray | Sequence[float], label_names: Sequence[str], annotation: pd.DataFrame
) -> pd.DataFrame:
    """Mean, median and count (labels with a value) of a per-label metric per category.

    ``per_label`` is positional: its i-th value belongs to ``label_names[i]``. ``annotation`` has
    columns ``label`` and ``category``; a label it does not list is an error naming the label.
    """
    values = np.asarray(per_label, dtype=float)
    if len(values) != len(label_names):
        raise ValueError(f"{len(values)} values for {len(label_names)} label names")
    mapping = dict(zip(annotation["label"], annotation["category"], strict=True))
    missing = [name for name in label_names if name not in mapping]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise AmberInputError(f"no category for label(s) {', '.join(missing[:5])}{more}", "label annotation")
    table = pd.DataFrame({"category": [mapping[name] for name in label_names], "value": values})
    return table.groupby("category")["value"].agg(["mean", "median", "count"])
