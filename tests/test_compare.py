import numpy as np
import pandas as pd
import pytest
from scipy import stats

from amber_ray.compare import (
    architecture_level,
    compare_results,
    comparison_metrics,
    random_search_choice,
    split_half_reliability,
)
from amber_ray.errors import AmberInputError


def results_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for role, shift in (("searched", 0.05), ("sampled", 0.0)):
        for trial in range(5):
            row = {
                "role": role,
                "arch": f"a{trial}",
                "replicate": trial,
                "num_params": 1000 * (trial + 1) + (0 if role == "sampled" else 50),
            }
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
    assert comparison["per_label"]["dnase1"]["aupr"]["searched"] == pytest.approx(
        results.loc[results.role == "searched", "aupr.dnase1"].mean()
    )


def test_without_annotation_all_labels_form_one_category():
    comparison = compare_results(results_table())
    assert list(comparison["categories"]) == ["all"]


def test_annotation_missing_a_label_and_a_missing_role_are_errors():
    with pytest.raises(AmberInputError, match="no category for \\['dnase1'\\]"):
        compare_results(results_table(), pd.DataFrame({"label": ["tf1", "tf2"], "category": ["TF", "TF"]}))
    only_sampled = results_table().query("role == 'sampled'")
    with pytest.raises(AmberInputError, match="no \\['searched'\\] trials"):
        compare_results(only_sampled)


def trials(arch_values: dict[tuple[str, str], list[float]], metric: str = "test_auroc") -> pd.DataFrame:
    """One row per trial from {(role, arch): [replicate values]}."""
    rows = [
        {"role": role, "arch": arch, "replicate": i, metric: value}
        for (role, arch), values in arch_values.items()
        for i, value in enumerate(values)
    ]
    return pd.DataFrame(rows)


# Sampled architectures whose means are dyadic, so exact: 0.5, 0.625, 0.75, 0.875.
SAMPLED = {
    ("sampled", "u1"): [0.5, 0.5],
    ("sampled", "u2"): [0.5, 0.75],
    ("sampled", "u3"): [0.75],
    ("sampled", "u4"): [1.0, 0.75, 0.875],
}


def test_architecture_level_percentiles_are_the_share_of_sampled_means_below_ties_half():
    # architecture means (dyadic, so exact): sampled 0.5, 0.625, 0.75, 0.875; searched 0.75 (tie), 0.9375, 0.5625
    results = trials(
        {
            **SAMPLED,
            ("searched", "s1"): [0.625, 0.875],
            ("searched", "s2"): [0.875, 1.0],
            ("searched", "s3"): [0.5, 0.625, float("nan")],
        }
    )
    level = architecture_level(results)
    percentiles = {entry["arch"]: entry["percentile"] for entry in level["percentiles"]}
    assert percentiles == {"s1": 62.5, "s2": 100.0, "s3": 25.0}  # (2 + 0.5) / 4, 4 / 4, 1 / 4
    assert level["median_percentile"] == 62.5
    means = {role: {e["arch"]: e["mean"] for e in level["architectures"][role]} for role in ("searched", "sampled")}
    assert means["sampled"] == {"u1": 0.5, "u2": 0.625, "u3": 0.75, "u4": 0.875}
    assert means["searched"] == {"s1": 0.75, "s2": 0.9375, "s3": 0.5625}
    assert [e["replicates"] for e in level["architectures"]["searched"]] == [2, 2, 2]  # the NaN trial is left out
    expected = stats.mannwhitneyu([0.75, 0.9375, 0.5625], [0.5, 0.625, 0.75, 0.875], alternative="greater")
    assert level["mannwhitney"]["u"] == pytest.approx(expected.statistic)
    assert level["mannwhitney"]["p"] == pytest.approx(expected.pvalue)
    assert level["difference"]["mean"] == pytest.approx(np.mean([0.75, 0.9375, 0.5625]) - 0.6875)
    assert (level["searched"]["n"], level["sampled"]["n"]) == (3, 4)


def test_random_searchs_choice_is_one_architecture_mean_with_its_percentile_and_the_searched_differences():
    # architecture means (dyadic): sampled 0.5, 0.625, 0.75, 0.875; random search 0.75 (a tie); searched 0.9375, 0.5
    results = trials(
        {
            **SAMPLED,
            ("random_search", "r"): [0.625, 0.875, float("nan")],
            ("searched", "s1"): [0.875, 1.0],
            ("searched", "s2"): [0.5],
        }
    )
    chosen = random_search_choice(results)
    assert (chosen["arch"], chosen["mean"], chosen["replicates"]) == ("r", 0.75, 2)  # the NaN trial left out
    assert chosen["percentile"] == 62.5  # (2 below + half of 1 tie) / 4
    assert chosen["searched_minus_random"] == [{"arch": "s1", "difference": 0.1875}, {"arch": "s2", "difference": -0.25}]
    comparison = compare_results(results.assign(num_params=np.arange(len(results))))
    assert comparison["random_search"] == chosen
    assert comparison["trials"] == {"searched": 3, "sampled": 8}  # random search's trials are not counted as either
    assert "random_search" not in compare_results(results[results.role != "random_search"].assign(num_params=np.arange(11)))


def test_replicates_of_one_architecture_do_not_count_as_independent_samples():
    # one searched architecture above five sampled ones, ten replicates each: the trials look overwhelming,
    # the architectures cannot say more than the exact one-sided p of one rank among six, 1/6
    rng = np.random.default_rng(1)
    arch_values = {("searched", "s"): list(0.9 + rng.normal(0, 0.002, 10))}
    arch_values |= {("sampled", f"u{i}"): list(0.80 + 0.01 * i + rng.normal(0, 0.002, 10)) for i in range(5)}
    results = trials(arch_values)
    welch = stats.ttest_ind(
        results.test_auroc[results.role == "searched"], results.test_auroc[results.role == "sampled"], equal_var=False
    )
    assert welch.pvalue < 1e-10
    level = architecture_level(results)
    assert level["mannwhitney"]["p"] == pytest.approx(1 / 6)
    assert level["percentiles"] == [
        {"arch": "s", "mean": pytest.approx(np.mean(arch_values[("searched", "s")])), "percentile": 100.0}
    ]


def test_bootstrap_interval_excludes_zero_when_the_groups_separate_and_contains_it_when_they_overlap():
    rng = np.random.default_rng(2)
    separated = trials(
        {("searched", f"s{i}"): list(0.85 + rng.normal(0, 0.01, 3)) for i in range(6)}
        | {("sampled", f"u{i}"): list(0.75 + rng.normal(0, 0.01, 3)) for i in range(8)}
    )
    level = architecture_level(separated, n_boot=4000)
    low, high = level["difference"]["low"], level["difference"]["high"]
    assert 0 < low < level["difference"]["mean"] < high
    assert level["mannwhitney"]["p"] == pytest.approx(
        stats.mannwhitneyu(
            separated[separated.role == "searched"].groupby("arch").test_auroc.mean(),
            separated[separated.role == "sampled"].groupby("arch").test_auroc.mean(),
            alternative="greater",
        ).pvalue
    )

    same = trials(
        {("searched", f"s{i}"): list(0.8 + rng.normal(0, 0.03, 3)) for i in range(6)}
        | {("sampled", f"u{i}"): list(0.8 + rng.normal(0, 0.03, 3)) for i in range(8)}
    )
    overlapping = architecture_level(same, n_boot=4000)
    assert overlapping["difference"]["low"] < 0 < overlapping["difference"]["high"]
    assert architecture_level(same, n_boot=4000) == overlapping  # seeded
    assert architecture_level(same, n_boot=4000, seed=1)["difference"]["low"] != overlapping["difference"]["low"]


def test_architecture_level_is_in_the_comparison_and_its_headline_in_the_mlflow_metrics():
    results = results_table()  # five searched and five sampled architectures, one trial each
    comparison = compare_results(results)
    assert set(comparison["architecture_level"]) == {"auroc", "aupr"}
    level = comparison["architecture_level"]["auroc"]
    searched, sampled = (results.loc[results.role == role, "test_auroc"].to_numpy() for role in ("searched", "sampled"))
    assert level["mannwhitney"]["p"] == pytest.approx(stats.mannwhitneyu(searched, sampled, alternative="greater").pvalue)
    assert level["median_percentile"] == 100.0  # the planted 0.05 advantage puts every searched one above every sampled one
    metrics = comparison_metrics(comparison)
    assert metrics["compare.arch.auroc.mannwhitney_p"] == level["mannwhitney"]["p"]
    assert metrics["compare.arch.aupr.median_percentile"] == 100.0
    assert metrics["compare.arch.auroc.difference_low"] > 0


def test_architecture_level_without_sampled_architectures_is_nan_not_an_error():
    level = architecture_level(trials({("searched", "s"): [0.8, 0.9]}))
    assert np.isnan(level["median_percentile"]) and np.isnan(level["mannwhitney"]["p"]) and np.isnan(level["difference"]["low"])


def test_split_half_reliability_is_spearman_between_halves_and_spearman_brown_per_iteration():
    rows = [  # iteration 0: halves ranked 1..5 and 1,2,3,5,4 -> r = 1 - 6 * 2 / (5 * 24) = 0.9
        (0, "a", 0.1, 0.1),
        (0, "b", 0.2, 0.2),
        (0, "c", 0.3, 0.3),
        (0, "d", 0.4, 0.5),
        (0, "e", 0.5, 0.4),
        (0, "a", 0.1, 0.1),  # the same architecture sampled twice counts once
        (0, "f", float("nan"), 0.9),  # not scored on one half: left out
        (1, "a", 0.1, 0.3),
        (1, "b", 0.2, 0.2),
        (1, "c", 0.3, 0.1),  # reversed: r = -1, reliability 0
        (2, "a", 0.1, 0.1),
        (2, "b", 0.2, 0.2),  # two architectures
        (3, "a", 0.1, 0.5),
        (3, "b", 0.2, 0.5),
        (3, "c", 0.3, 0.5),  # one half constant
    ]
    history = pd.DataFrame(rows, columns=["iteration", "arch", "reward_half1", "reward_half2"])
    table = split_half_reliability(history).set_index("iteration")
    assert list(table.architectures) == [5, 3, 2, 3]
    assert table.spearman_r[0] == pytest.approx(0.9)
    assert table.spearman_brown[0] == pytest.approx(2 * 0.9 / 1.9)
    assert table.spearman_r[1] == pytest.approx(-1) and table.spearman_brown[1] == 0
    assert table[["spearman_r", "spearman_brown"]].loc[[2, 3]].isna().all().all()
    with pytest.raises(AmberInputError, match="reward_half1"):
        split_half_reliability(history.drop(columns="reward_half1"))
