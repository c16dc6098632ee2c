"""Searched vs sampled: per-label and per-category AUROC/AUPR, t-tests, parameters vs performance.

Pure statistics: the caller reads and writes the files (:func:`amber_ray.pipeline.compare_retrain`).
Input is ``results.parquet`` from :mod:`amber_ray.retrain` (one row per trial, per-label test
metrics in ``auroc.<label>`` / ``aupr.<label>`` columns). Each trial's score in a category is its
mean over the category's labels; the two roles are compared with a two-sided Welch t-test over
trials (scipy). Parameter count vs test AUROC is a Spearman correlation over all trials.

Trials are replicate seeds of a few architectures, so they are not independent samples of
"searched" and "sampled" architectures: :func:`architecture_level` first averages each
architecture's replicates and compares architectures (percentile of each searched architecture
among the sampled ones, one-sided Mann-Whitney U, bootstrap interval of the difference in mean).
:func:`split_half_reliability` measures how reproducible a search's rewards are within an iteration.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from amber_ray.errors import AmberInputError

ROLES = ("searched", "sampled")
RANDOM_SEARCH_ROLE = "random_search"  # random search's choice, the ablation of a learned search (retrain.random_search)
METRICS = ("auroc", "aupr")
HALF_COLUMNS = ("reward_half1", "reward_half2")
MIN_SPLIT_HALF_ARCHITECTURES = 3


def per_label_columns(results: pd.DataFrame, metric: str) -> list[str]:
    return [column for column in results.columns if column.startswith(f"{metric}.")]


def category_scores(results: pd.DataFrame, metric: str, annotation: pd.DataFrame | None) -> pd.DataFrame:
    """(trials, categories): each trial's mean ``metric`` over the labels of each category."""
    columns = per_label_columns(results, metric)
    labels = [column.split(".", 1)[1] for column in columns]
    if annotation is None:
        categories = pd.Series("all", index=labels)
    else:
        mapping = dict(zip(annotation["label"], annotation["category"]))
        missing = [label for label in labels if label not in mapping]
        if missing:
            raise AmberInputError(f"label annotation has no category for {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        categories = pd.Series([mapping[label] for label in labels], index=labels)
    per_label = results[columns].set_axis(labels, axis=1)
    return per_label.T.groupby(categories).mean().T


def t_test(searched: np.ndarray, sampled: np.ndarray) -> dict[str, float]:
    """Two-sided Welch t-test; NaN where either side has fewer than two values."""
    searched, sampled = searched[~np.isnan(searched)], sampled[~np.isnan(sampled)]
    if len(searched) < 2 or len(sampled) < 2:
        return {"t": math.nan, "p": math.nan}
    result = stats.ttest_ind(searched, sampled, equal_var=False)
    return {"t": float(result.statistic), "p": float(result.pvalue)}


def mean_sd_n(values: np.ndarray) -> dict[str, float]:
    """Mean, sample standard deviation and count of ``values`` (NaN ignored in the mean and sd)."""
    if len(values) == 0 or np.isnan(values).all():
        return {"mean": math.nan, "std": math.nan, "n": len(values)}
    return {
        "mean": float(np.nanmean(values)),
        "std": float(np.nanstd(values, ddof=1)) if len(values) > 1 else math.nan,
        "n": len(values),
    }


def compare_results(results: pd.DataFrame, annotation: pd.DataFrame | None = None) -> dict[str, Any]:
    """All statistics of the comparison as a JSON-ready dict."""
    missing_roles = [role for role in ROLES if role not in set(results["role"])]
    if missing_roles:
        raise AmberInputError(f"results have no {missing_roles} trials to compare")
    is_role = {role: (results["role"] == role).to_numpy() for role in ROLES}
    out: dict[str, Any] = {"trials": {role: int(mask.sum()) for role, mask in is_role.items()}, "categories": {}, "per_label": {}}
    for metric in METRICS:
        scores = category_scores(results, metric, annotation)
        for category in scores.columns:
            values = scores[category].to_numpy()
            entry = out["categories"].setdefault(category, {})
            entry[metric] = {role: mean_sd_n(values[mask]) for role, mask in is_role.items()}
            entry[metric]["t_test"] = t_test(values[is_role["searched"]], values[is_role["sampled"]])
        for column in per_label_columns(results, metric):
            label = column.split(".", 1)[1]
            out["per_label"].setdefault(label, {})[metric] = {
                role: float(np.nanmean(results.loc[mask, column])) for role, mask in is_role.items()
            }
    overall = {}
    for key in [c for c in results.columns if c.startswith("test_")]:
        overall[key.removeprefix("test_")] = {
            role: mean_sd_n(results.loc[mask, key].to_numpy(dtype=float)) for role, mask in is_role.items()
        }
        overall[key.removeprefix("test_")]["t_test"] = t_test(
            results.loc[is_role["searched"], key].to_numpy(dtype=float),
            results.loc[is_role["sampled"], key].to_numpy(dtype=float),
        )
    out["overall"] = overall
    out["architecture_level"] = {
        key.removeprefix("test_"): architecture_level(results, key)
        for key in [c for c in results.columns if c.startswith("test_")]
    }
    if RANDOM_SEARCH_ROLE in set(results["role"]):
        out[RANDOM_SEARCH_ROLE] = random_search_choice(results)
    rho, p = stats.spearmanr(results["num_params"], results["test_auroc"])
    out["params_vs_auroc"] = {"spearman_rho": float(rho), "p": float(p), "n": len(results)}
    return out


def random_search_choice(results: pd.DataFrame, metric: str = "test_auroc") -> dict[str, Any]:
    """Random search's choice beside the learned search's, one value per architecture (its replicates' mean).

    Returned: its ``arch``, ``mean`` and ``replicates``, its ``percentile`` among the sampled architecture means (as
    :func:`architecture_level`), and per searched architecture ``searched_minus_random``, the difference of the means.
    """
    means = architecture_means(results, metric, (*ROLES, RANDOM_SEARCH_ROLE))
    arch = results.loc[results["role"] == RANDOM_SEARCH_ROLE, "arch"].iloc[0]
    chosen = means[RANDOM_SEARCH_ROLE]
    mean = float(chosen["mean"].iloc[0]) if len(chosen) else math.nan  # NaN when none of its trials has a value
    return {
        "metric": metric,
        "arch": arch,
        "mean": mean,
        "replicates": int(chosen["size"].iloc[0]) if len(chosen) else 0,
        "percentile": percentile_among(mean, means["sampled"]["mean"].to_numpy(dtype=float)),
        "searched_minus_random": [
            {"arch": row.arch, "difference": float(row.mean - mean)} for row in means["searched"].itertuples()
        ],
    }


def percentile_among(value: float, reference: np.ndarray) -> float:
    """Percent of ``reference`` strictly below ``value``, ties counting half (0-100; 50 for the median of a tie-free set)."""
    if len(reference) == 0 or math.isnan(value):
        return math.nan
    below, tied = float(np.sum(reference < value)), float(np.sum(reference == value))
    return 100.0 * (below + 0.5 * tied) / len(reference)


def architecture_means(results: pd.DataFrame, metric: str, roles: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """Per role, one row per architecture: ``arch``, the ``mean`` of its trials' finite ``metric`` values and their
    count (``size``), sorted by architecture; an architecture without a finite value is left out."""
    valid = results.loc[results[metric].notna(), ["role", "arch", metric]]
    grouped = valid.groupby(["role", "arch"])[metric].agg(["mean", "size"]).reset_index()
    return {role: grouped[grouped.role == role].sort_values("arch", ignore_index=True) for role in roles}


def architecture_level(results: pd.DataFrame, metric: str = "test_auroc", seed: int = 0, n_boot: int = 10_000) -> dict[str, Any]:
    """Searched vs sampled with one value per architecture: the mean of its replicates.

    ``results`` has one row per trial with columns ``role`` (``searched``/``sampled``), ``arch`` and
    ``metric``; any number of searched architectures (e.g. the results of several searches pooled).
    Trials whose ``metric`` is NaN are left out; an architecture without any finite value is left
    out. Returned (JSON-ready; NaN where a group has no architecture):

    - ``architectures``: per role the architecture means (``arch``, ``mean``, ``replicates``),
      ``searched`` and ``sampled`` (mean, sd and number of the architecture means);
    - ``percentiles``: per searched architecture its percentile among the sampled architecture
      means, the percent of them strictly below it with ties counting half (100: above every
      sampled architecture, 50: at their median); ``median_percentile`` over the searched ones;
    - ``mannwhitney``: one-sided Mann-Whitney U test (scipy, ``alternative="greater"``, its default
      exact/asymptotic choice) that searched architecture means are larger than sampled ones: U of
      the searched group and p;
    - ``difference``: mean of the searched minus mean of the sampled architecture means, and its
      95 % percentile-bootstrap interval (``low``, ``high``): ``n_boot`` resamples, architectures
      drawn with replacement within each group, ``numpy.random.default_rng(seed)``.
    """
    by_role = architecture_means(results, metric, ROLES)
    searched, sampled = (by_role[role]["mean"].to_numpy(dtype=float) for role in ROLES)
    out: dict[str, Any] = {
        "metric": metric,
        "architectures": {
            role: [{"arch": row.arch, "mean": float(row.mean), "replicates": int(row.size)} for row in by_role[role].itertuples()]
            for role in ROLES
        },
        "searched": mean_sd_n(searched),
        "sampled": mean_sd_n(sampled),
    }
    out["percentiles"] = [
        {"arch": row.arch, "mean": float(row.mean), "percentile": percentile_among(float(row.mean), sampled)}
        for row in by_role["searched"].itertuples()
    ]
    out["median_percentile"] = float(np.median([p["percentile"] for p in out["percentiles"]])) if len(searched) else math.nan
    if len(searched) and len(sampled):
        test = stats.mannwhitneyu(searched, sampled, alternative="greater")
        out["mannwhitney"] = {"u": float(test.statistic), "p": float(test.pvalue), "alternative": "greater"}
        rng = np.random.default_rng(seed)
        boot = searched[rng.integers(0, len(searched), (n_boot, len(searched)))].mean(axis=1) - sampled[
            rng.integers(0, len(sampled), (n_boot, len(sampled)))
        ].mean(axis=1)
        low, high = np.percentile(boot, [2.5, 97.5])
        difference = float(searched.mean() - sampled.mean())
    else:
        out["mannwhitney"] = {"u": math.nan, "p": math.nan, "alternative": "greater"}
        difference, low, high = math.nan, math.nan, math.nan
    out["difference"] = {
        "mean": difference,
        "low": float(low),
        "high": float(high),
        "level": 0.95,
        "n_boot": int(n_boot),
        "seed": int(seed),
    }
    return out


def split_half_reliability(history: pd.DataFrame) -> pd.DataFrame:
    """Per search iteration, how well the rewards on two halves of the validation data agree.

    ``history`` is a search's ``history.parquet`` with ``reward_half1`` and ``reward_half2``: each
    architecture's reward on two fixed halves of the validation sequences it was scored on. Per
    iteration, over its distinct architectures (a repeated sample counts once) with both halves
    finite: ``architectures``, ``spearman_r`` between the halves and the Spearman-Brown reliability
    of the full-length reward ``2r / (1 + r)``. Both are NaN when the iteration has fewer than 3
    such architectures or when either half is constant; the reliability is 0 when r <= 0 (the
    formula's negative values have no meaning as a reliability).
    """
    missing = [column for column in ("iteration", "arch", *HALF_COLUMNS) if column not in history.columns]
    if missing:
        raise AmberInputError(f"search history has no {missing} columns (a search from before split-half scoring)")
    rows = []
    for iteration, group in history.groupby("iteration", sort=True):
        group = group.drop_duplicates("arch")
        halves = group[list(HALF_COLUMNS)].to_numpy(dtype=float)
        halves = halves[np.isfinite(halves).all(axis=1)]
        r = math.nan
        if len(halves) >= MIN_SPLIT_HALF_ARCHITECTURES and all(len(np.unique(halves[:, i])) > 1 for i in range(2)):
            r = float(stats.spearmanr(halves[:, 0], halves[:, 1]).statistic)
        reliability = math.nan if math.isnan(r) else 2 * max(r, 0.0) / (1 + max(r, 0.0))
        rows.append({"iteration": int(iteration), "architectures": len(halves), "spearman_r": r, "spearman_brown": reliability})
    table = pd.DataFrame(rows, columns=["iteration", "architectures", "spearman_r", "spearman_brown"])
    return table.astype({"iteration": "int64", "architectures": "int64", "spearman_r": "float64", "spearman_brown": "float64"})


def comparison_metrics(comparison: dict[str, Any]) -> dict[str, float]:
    """The headline numbers as flat MLflow metrics (NaNs left out)."""
    metrics = {"params_vs_auroc_spearman": comparison["params_vs_auroc"]["spearman_rho"]}
    for category, entry in comparison["categories"].items():
        for metric, values in entry.items():
            metrics[f"compare.{category}.{metric}.searched_mean"] = values["searched"]["mean"]
            metrics[f"compare.{category}.{metric}.sampled_mean"] = values["sampled"]["mean"]
            metrics[f"compare.{category}.{metric}.p"] = values["t_test"]["p"]
    for metric, entry in comparison.get("architecture_level", {}).items():
        prefix = f"compare.arch.{metric}"
        metrics[f"{prefix}.median_percentile"] = entry["median_percentile"]
        metrics[f"{prefix}.mannwhitney_p"] = entry["mannwhitney"]["p"]
        metrics[f"{prefix}.difference"] = entry["difference"]["mean"]
        metrics[f"{prefix}.difference_low"] = entry["difference"]["low"]
        metrics[f"{prefix}.difference_high"] = entry["difference"]["high"]
    return {key: value for key, value in metrics.items() if not math.isnan(value)}
