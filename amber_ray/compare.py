"""Searched vs sampled: per-label and per-category AUROC/AUPR, t-tests, parameters vs performance.

Input is ``results.parquet`` from :mod:`amber_ray.retrain` (one row per trial, per-label test
metrics in ``auroc.<label>`` / ``aupr.<label>`` columns). Each trial's score in a category is its
mean over the category's labels; the two roles are compared with a two-sided Welch t-test over
trials (scipy). Parameter count vs test AUROC is a Spearman correlation over all trials.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from amber_ray.errors import AmberInputError

ROLES = ("searched", "sampled")
METRICS = ("auroc", "aupr")


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


def summarize(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values, ddof=1)) if len(values) > 1 else math.nan, "n": int(len(values))}


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
            entry[metric] = {role: summarize(values[mask]) for role, mask in is_role.items()}
            entry[metric]["t_test"] = t_test(values[is_role["searched"]], values[is_role["sampled"]])
        for column in per_label_columns(results, metric):
            label = column.split(".", 1)[1]
            out["per_label"].setdefault(label, {})[metric] = {role: float(np.nanmean(results.loc[mask, column])) for role, mask in is_role.items()}
    overall = {}
    for key in [c for c in results.columns if c.startswith("test_")]:
        overall[key.removeprefix("test_")] = {role: summarize(results.loc[mask, key].to_numpy(dtype=float)) for role, mask in is_role.items()}
        overall[key.removeprefix("test_")]["t_test"] = t_test(
            results.loc[is_role["searched"], key].to_numpy(dtype=float), results.loc[is_role["sampled"], key].to_numpy(dtype=float)
        )
    out["overall"] = overall
    rho, p = stats.spearmanr(results["num_params"], results["test_auroc"])
    out["params_vs_auroc"] = {"spearman_rho": float(rho), "p": float(p), "n": int(len(results))}
    return out


def compare_run(run_dir: Path, annotation: Path | None = None) -> dict[str, Any]:
    """Compare the trials of a retrain directory; write ``compare.json`` and log it to the run's MLflow run."""
    from amber_ray.atomic import atomic_write_json
    from amber_ray.data import read_label_annotation
    from amber_ray.tracking import RunTracker

    results_path = run_dir / "results.parquet"
    if not results_path.is_file():
        raise AmberInputError("no results.parquet; run `amber-ray retrain` first", results_path)
    comparison = compare_results(pd.read_parquet(results_path), read_label_annotation(annotation) if annotation else None)
    atomic_write_json(comparison, run_dir / "compare.json")
    id_file = run_dir / "mlflow_run_id"
    if id_file.is_file():
        tracker = RunTracker.attach(run_dir, id_file.read_text().strip())
        tracker.log_artifact(run_dir / "compare.json")
        tracker.log_metrics(comparison_metrics(comparison))
    return comparison


def comparison_metrics(comparison: dict[str, Any]) -> dict[str, float]:
    """The headline numbers as flat MLflow metrics (NaNs left out)."""
    metrics = {"params_vs_auroc_spearman": comparison["params_vs_auroc"]["spearman_rho"]}
    for category, entry in comparison["categories"].items():
        for metric, values in entry.items():
            metrics[f"compare.{category}.{metric}.searched_mean"] = values["searched"]["mean"]
            metrics[f"compare.{category}.{metric}.sampled_mean"] = values["sampled"]["mean"]
            metrics[f"compare.{category}.{metric}.p"] = values["t_test"]["p"]
    return {key: value for key, value in metrics.items() if not math.isnan(value)}
