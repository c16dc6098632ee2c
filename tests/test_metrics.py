"""Metrics agree with direct scikit-learn calls; single-class labels are skipped and counted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, matthews_corrcoef, recall_score, roc_auc_score

from amber_ray.errors import AmberInputError
from amber_ray.metrics import binary_metrics, mean_auroc, multilabel_metrics, per_category


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray]:
    """Four labels; label 2 is all negative and so cannot be scored."""
    rng = np.random.default_rng(0)
    y_true = (rng.random((200, 4)) < 0.3).astype(np.float32)
    y_true[:, 2] = 0
    y_score = np.clip(y_true * 0.3 + rng.random((200, 4)) * 0.7, 0, 1).astype(np.float32)
    return y_true, y_score


def test_multilabel_metrics_match_sklearn_and_skip_single_class_labels(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y_true, y_score = scored
    result = multilabel_metrics(y_true, y_score, ["a", "b", "c", "d"])
    scorable = [0, 1, 3]
    expected_auroc = [roc_auc_score(y_true[:, j], y_score[:, j]) for j in scorable]
    expected_aupr = [average_precision_score(y_true[:, j], y_score[:, j]) for j in scorable]
    np.testing.assert_allclose(result.per_label_auroc[scorable], expected_auroc)
    np.testing.assert_allclose(result.per_label_aupr[scorable], expected_aupr)
    assert np.isnan(result.per_label_auroc[2]) and np.isnan(result.per_label_aupr[2])
    assert result.num_skipped == 1 and result.label_names == ["a", "b", "c", "d"]
    assert result.mean_auroc == pytest.approx(np.mean(expected_auroc))
    assert result.mean_aupr == pytest.approx(np.mean(expected_aupr))


def test_multilabel_metrics_with_nothing_scorable_is_nan() -> None:
    result = multilabel_metrics(np.ones((5, 2)), np.random.default_rng(0).random((5, 2)))
    assert result.num_skipped == 2 and np.isnan(result.mean_auroc) and np.isnan(result.mean_aupr)
    assert result.label_names == ["label_0", "label_1"]


def test_mean_auroc_is_the_mean_over_scorable_labels(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y_true, y_score = scored
    assert mean_auroc(y_true, y_score) == pytest.approx(multilabel_metrics(y_true, y_score).mean_auroc)
    assert mean_auroc(y_true[:, 0], y_score[:, 0]) == pytest.approx(roc_auc_score(y_true[:, 0], y_score[:, 0]))
    with pytest.raises(ValueError, match="no label has both classes"):
        mean_auroc(np.zeros((10, 3)), y_score[:10, :3])
    with pytest.raises(ValueError, match="NaN or infinity"):
        mean_auroc(y_true, np.where(y_true > 0, np.nan, y_score))


def test_mean_auroc_counts_tied_scores_as_sklearn_does(scored: tuple[np.ndarray, np.ndarray]) -> None:
    """Rounded scores tie often (as bfloat16 logits do); the rank statistic must still equal the curve's area."""
    y_true, y_score = scored
    tied = np.round(y_score, 1)
    expected = np.mean([roc_auc_score(y_true[:, j], tied[:, j]) for j in (0, 1, 3)])
    assert mean_auroc(y_true, tied) == pytest.approx(expected, abs=1e-12)


def test_binary_metrics_match_sklearn() -> None:
    y_true = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    y_prob = np.array([0.9, 0.8, 0.4, 0.6, 0.1, 0.7, 0.2, 0.3, 0.05, 0.5])
    predicted = (y_prob >= 0.5).astype(int)
    result = binary_metrics(y_true, y_prob)
    assert result["accuracy"] == pytest.approx(accuracy_score(y_true, predicted))
    assert result["mcc"] == pytest.approx(matthews_corrcoef(y_true, predicted))
    assert result["sensitivity"] == pytest.approx(recall_score(y_true, predicted))
    assert result["specificity"] == pytest.approx(recall_score(1 - y_true, 1 - predicted))
    assert result["auroc"] == pytest.approx(roc_auc_score(y_true, y_prob))
    assert result["aupr"] == pytest.approx(average_precision_score(y_true, y_prob))
    assert (result["sensitivity"], result["specificity"]) == (pytest.approx(3 / 4), pytest.approx(4 / 6))


def test_binary_metrics_with_one_class_gives_nan_curves() -> None:
    result = binary_metrics(np.zeros(4), np.array([0.1, 0.6, 0.2, 0.3]))
    assert result["specificity"] == pytest.approx(0.75)
    assert np.isnan(result["sensitivity"]) and np.isnan(result["auroc"]) and np.isnan(result["aupr"])


def test_per_category_summarises_and_names_missing_labels() -> None:
    annotation = pd.DataFrame({"label": ["a", "b", "c", "d"], "category": ["TF", "TF", "DNase", "TF"]})
    table = per_category(pd.Series([0.9, 0.7, 0.8, np.nan]), ["a", "b", "c", "d"], annotation)
    assert table.loc["TF", "mean"] == pytest.approx(0.8) and table.loc["TF", "count"] == 2
    assert table.loc["DNase", "median"] == pytest.approx(0.8)
    with pytest.raises(AmberInputError, match="no category for label\\(s\\) e, f"):
        per_category(np.array([0.5, 0.6, 0.7]), ["a", "e", "f"], annotation)
