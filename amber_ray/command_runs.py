"""What the MLflow run of each command that produces results holds (the search and retraining log their own).

``train`` logs into the config's experiment; ``predict``, ``variants score``, ``variants eval`` and
``interpret`` take a model rather than a config and log into the experiment ``amber-ray``. Each
run is tagged ``command`` and lives in :func:`amber_ray.tracking.tracking_uri` of the command's
output directory: ``MLFLOW_TRACKING_URI`` when set, else ``OUT/mlflow.db`` (for ``variants score``,
whose ``--out`` is a file, the store sits beside it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from amber_ray import outputs
from amber_ray.config import ExperimentConfig, config_as_flat_dict
from amber_ray.tracking import log_command_run


def _given(options: Mapping[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in options.items() if value is not None}


def track_train(config: ExperimentConfig, out: Path, metrics: Mapping[str, Any]) -> str:
    """``amber-ray train``: the config and architecture, test metrics, ``model.pt`` and ``metrics.json``."""
    scalars = {f"test_{key}": value for key, value in metrics["test"].items() if isinstance(value, (int, float))}
    scalars.update({key: metrics[key] for key in ("num_params", "epochs", "best_epoch", "best_valid_auroc", "train_seconds")})
    return log_command_run(
        out,
        "train",
        config.name,
        {**config_as_flat_dict(config), "arch": metrics["arch"]},
        scalars,
        [out / outputs.MODEL, out / outputs.METRICS],
    )


def track_predict(out: Path, summary: Mapping[str, Any]) -> str:
    """``amber-ray predict``: model, inputs, the count predicted, mean probability per label and ``summary.json``."""
    params = {
        "model": summary["model"],
        "arch": summary["arch"],
        "mode": summary["mode"],
        "both_strands": summary["both_strands"],
    }
    params.update({f"input.{key}": value for key, value in summary["inputs"].items()})
    metrics = {
        "predicted": summary["predicted"],
        **{f"mean_probability.{label}": p for label, p in summary["mean_probability"].items()},
    }
    return log_command_run(out, "predict", params=params, metrics=metrics, artifacts=[out / outputs.PREDICT_SUMMARY])


def track_variants_score(out: Path, options: Mapping[str, Any], scored: int, skipped: int) -> str:
    """``amber-ray variants score``: its options and how many variants were scored and not scored."""
    return log_command_run(out.parent, "variants score", params=_given(options), metrics={"scored": scored, "skipped": skipped})


def track_variants_eval(out: Path, options: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    """``amber-ray variants eval``: its options, AUROC, AUPR and accuracy of model and PWM, and ``eval.json``."""
    metrics = {
        "n": summary["n"],
        **{f"{who}_{key}": summary[who][key] for who in ("model", "pwm") for key in ("auroc", "aupr", "accuracy")},
    }
    return log_command_run(out, "variants eval", params=_given(options), metrics=metrics, artifacts=[out / "eval.json"])


def track_interpret(out: Path, options: Mapping[str, Any], seqlets: int, matched: int) -> str:
    """``amber-ray interpret``: its options, seqlet counts, the seqlet and motif tables and the figures."""
    artifacts = [out / "seqlets.tsv", out / "motifs.tsv", *sorted((out / "figures").glob("*.png"))]
    return log_command_run(
        out, "interpret", params=_given(options), metrics={"seqlets": seqlets, "matched_seqlets": matched}, artifacts=artifacts
    )
