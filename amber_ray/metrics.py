"""Multi-label AUROC/AUPR (labels with one class are skipped and counted), per-category means,
and accuracy/MCC/sensitivity/specificity for binary tasks. Curves come from scikit-learn."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, confusion_matrix, matthews_corrcoef, roc_auc_score

from amber_ray.errors import AmberInputError


@dataclass
class MultiLabelMetrics:
    per_label_auroc: np.ndarray  # NaN where a label has a single class in y_true
    per_label_aupr: np.ndarray
    label_names: list[str]

    @property
    def num_skipped(self) -> int:
        return int(np.isnan(self.per_label_auroc).sum())

    @property
    def mean_auroc(self) -> float:
        return float(np.nanmean(self.per_label_auroc)) if self.num_skipped < len(self.per_label_auroc) else float("nan")

    @property
    def mean_aupr(self) -> float:
        return float(np.nanmean(self.per_label_aupr)) if self.num_skipped < len(self.per_label_aupr) else float("nan")


def _scorable(y_true: np.ndarray) -> np.ndarray:
    positives = y_true.sum(axis=0)
    return (positives > 0) & (positives < len(y_true))


def multilabel_metrics(y_true: np.ndarray, y_score: np.ndarray, label_names: Sequence[str] | None = None) -> MultiLabelMetrics:
    """Per-label AUROC and AUPR of ``(N, T)`` arrays."""
    y_true = np.asarray(y_true).reshape(len(y_true), -1)
    y_score = np.asarray(y_score).reshape(len(y_score), -1)
    auroc = np.full(y_true.shape[1], np.nan)
    aupr = np.full(y_true.shape[1], np.nan)
    for label in np.flatnonzero(_scorable(y_true)):
        auroc[label] = roc_auc_score(y_true[:, label], y_score[:, label])
        aupr[label] = average_precision_score(y_true[:, label], y_score[:, label])
    names = list(label_names) if label_names is not None else [f"label_{i}" for i in range(y_true.shape[1])]
    return MultiLabelMetrics(auroc, aupr, names)


def mean_auroc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Mean AUROC over the labels that have both classes (the search reward)."""
    y_true = np.asarray(y_true).reshape(len(y_true), -1)
    scorable = _scorable(y_true)
    if not scorable.any():
        raise ValueError("no label has both classes: AUROC is undefined")
    y_score = np.asarray(y_score).reshape(len(y_score), -1)
    return float(roc_auc_score(y_true[:, scorable], y_score[:, scorable], average="macro"))


def binary_metrics(y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, MCC, sensitivity, specificity (at ``threshold``), AUROC and AUPR of one binary label."""
    y_true = np.asarray(y_true).astype(int).ravel()
    y_prob = np.asarray(y_prob).ravel()
    predicted = (y_prob >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, predicted, labels=[0, 1]).ravel()
    return {
        "accuracy": float((tp + tn) / len(y_true)),
        "mcc": float(matthews_corrcoef(y_true, predicted)),
        "sensitivity": float(tp / (tp + fn)) if tp + fn else float("nan"),
        "specificity": float(tn / (tn + fp)) if tn + fp else float("nan"),
        "auroc": float(roc_auc_score(y_true, y_prob)),
        "aupr": float(average_precision_score(y_true, y_prob)),
    }


def per_category(per_label: Sequence[float], label_names: Sequence[str], annotation: pd.DataFrame) -> pd.DataFrame:
    """Mean, median and count of a per-label metric per category of a ``label``/``category`` table."""
    mapping = dict(zip(annotation["label"], annotation["category"]))
    missing = [name for name in label_names if name not in mapping]
    if missing:
        raise AmberInputError(f"label annotation has no category for {missing[:5]}")
    table = pd.DataFrame({"category": [mapping[n] for n in label_names], "value": np.asarray(per_label, dtype=float)})
    return table.groupby("category")["value"].agg(["mean", "median", "count"])
