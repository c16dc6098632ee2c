import numpy as np
import pandas as pd
import pytest
from scipy import stats

from amber_ray.compare import compare_results
from amber_ray.errors import AmberInputError


def results_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for role, shift in (("searched", 0.05), ("sampled", 0.0)):
        for trial in range(5):
            row = {"role": role, "arch": f"a{trial}", "replicate": trial, "num_params": 1000 * (trial + 1) + (0 if role == "sampled" else 50)}
            for label in ("tf1", "tf2", "dnase1"):
                row[f"auroc.{label}"] = 0.8 + shift + rng.normal(0, 0.01)
                row[f"aupr.{label}"] = 0.4 + shift + rng.normal(0, 0.01)
            row["test_auroc"] = np.mean([row[f"auroc.{l}"] for l in ("tf1", "tf2", "dnase1")])
            row["test_aupr"] = np.mean([row[f"aupr.{l}"] for l in ("tf1", "tf2", "dnase1")])
            rows.append(row)
    return pd.DataFrame(rows)


def test_category_t_tests_and_spearman_match_scipy():
    results = results_table()
    annotation = pd.DataFrame({"label": ["tf1", "tf2", "dnase1"], "category": ["TF", "TF", "DNase"]})
    comparison = compare_results(results, annotation)
    tf = results[["auroc.tf1", "auroc.tf2"]].mean(axis=1)
    searched, sampled = tf[results.role == "searched"], tf[results.role == "sampled"]
    expected = stats.ttest_ind(searched, sampled, equal_var=False)
    got = comparison["categories"]["TF"]["auroc"]
    assert got["t_test"]["p"] == pytest.approx(expected.pvalue)
    assert got["t_test"]["t"] == pytest.approx(expected.statistic)
    assert got["searched"]["mean"] == pytest.approx(searched.mean())
    assert got["sampled"]["std"] == pytest.approx(sampled.std(ddof=1))
    assert got["t_test"]["p"] < 1e-3  # the planted 0.05 advantage is found
    rho = stats.spearmanr(results.num_params, results.test_auroc)
    assert comparison["params_vs_auroc"]["spearman_rho"] == pytest.approx(rho.statistic)
    assert set(comparison["categories"]) == {"TF", "DNase"}
    assert comparison["per_label"]["dnase1"]["aupr"]["searched"] == pytest.approx(results.loc[results.role == "searched", "aupr.dnase1"].mean())


def test_without_annotation_all_labels_form_one_category():
    comparison = compare_results(results_table())
    assert list(comparison["categories"]) == ["all"]


def test_annotation_missing_a_label_and_a_missing_role_are_errors():
    with pytest.raises(AmberInputError, match="no category for \\['dnase1'\\]"):
        compare_results(results_table(), pd.DataFrame({"label": ["tf1", "tf2"], "category": ["TF", "TF"]}))
    only_sampled = results_table().query("role == 'sampled'")
    with pytest.raises(AmberInputError, match="no \\['searched'\\] trials"):
        compare_results(only_sampled)
