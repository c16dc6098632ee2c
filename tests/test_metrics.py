import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, matthews_corrcoef, roc_auc_score

from amber_ray.errors import AmberInputError
from amber_ray.metrics import binary_metrics, mean_auroc, multilabel_metrics, per_category


def test_per_label_metrics_match_sklearn_and_single_class_labels_are_skipped():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 3)) < 0.3).astype(np.float32)
    y[:, 2] = 0  # a label with one class
    scores = y + rng.normal(0, 0.8, y.shape)
    result = multilabel_metrics(y, scores, ["a", "b", "c"])
    for j in range(2):
        assert result.per_label_auroc[j] == pytest.approx(roc_auc_score(y[:, j], scores[:, j]))
        assert result.per_label_aupr[j] == pytest.approx(average_precision_score(y[:, j], scores[:, j]))
    assert np.isnan(result.per_label_auroc[2]) and result.num_skipped == 1
    assert result.mean_auroc == pytest.approx(np.mean(result.per_label_auroc[:2]))
    assert mean_auroc(y, scores) == pytest.approx(result.mean_auroc)


def test_mean_auroc_without_any_scorable_label_raises():
    with pytest.raises(ValueError, match="no label has both classes"):
        mean_auroc(np.zeros((5, 2)), np.random.default_rng(0).random((5, 2)))


def test_binary_metrics_on_known_counts():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.1, 0.1, 0.2, 0.3, 0.4])
    metrics = binary_metrics(y, p)
    assert metrics["accuracy"] == pytest.approx(0.8)
    assert metrics["sensitivity"] == pytest.approx(0.75)
    assert metrics["specificity"] == pytest.approx(5 / 6)
    assert metrics["mcc"] == pytest.approx(matthews_corrcoef(y, p >= 0.5))


def test_per_category_means_and_missing_labels():
    annotation = pd.DataFrame({"label": ["a", "b", "c"], "category": ["TF", "TF", "DNase"]})
    table = per_category([0.8, 0.9, 0.7], ["a", "b", "c"], annotation)
    assert table.loc["TF", "mean"] == pytest.approx(0.85) and table.loc["DNase", "count"] == 1
    with pytest.raises(AmberInputError, match="no category for \\['d'\\]"):
        per_category([0.5], ["d"], annotation)
