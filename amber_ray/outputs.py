"""The names of every output file and the tables they hold, in one Ray-free module.

The commands that write outputs (search, retrain, compare, report, train) and the report that
reads them take their file names and table layouts from here (the search checkpoint's keys from
:mod:`amber_ray.checkpoint`), so a reader never restates what a writer chose. Nothing here imports Ray.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# --- a run directory (``amber-ray demo`` and the pipeline job) --------------------------------
SEARCH_DIR = "search"
RETRAIN_DIR = "retrain"
RANDOM_SEARCH_DIR = "search-random"  # the pipeline's random search beside the learned one (retrain.random_search)
VARIANTS_DIR = "variants"
INTERPRET_DIR = "interpret"
REPORT = "report.html"
MLFLOW_STORE = "mlflow.db"
PIPELINE_STATE = "pipeline.json"  # the steps of a pipeline that finished, so a resume does not run them again

# --- `amber-ray search` ----------------------------------------------------------------------
HISTORY = "history.parquet"
OP_PROBS = "op_probs.parquet"
CONTROLLER_STATS = "controller_stats.parquet"
FINAL_ARCHITECTURES = "final_architectures.json"
SEARCH_OUTPUTS = (HISTORY, OP_PROBS, CONTROLLER_STATS, FINAL_ARCHITECTURES)
CHECKPOINT_DIR = "checkpoints"
SEARCH_CHECKPOINT = Path(CHECKPOINT_DIR) / "search.pt"

# --- `amber-ray retrain` and `amber-ray compare` ---------------------------------------------
RESULTS = "results.parquet"
COMPARISON = "compare.json"
RETRAIN_CONFIG = "config.json"  # the retraining's resolved config, checked by --resume
RUN_ID = "mlflow_run_id"  # the command's MLflow run, so that a resume (and compare, report) reopens it
TUNE_DIR = "tune"
TUNE_NAME = "grid"
TRIAL_STATE = "trial.pt"  # a trial checkpoint: training.FitState.state_dict()
BEST_MODEL = "best_model.pt"  # in a finished trial's last checkpoint
FINAL_DIR = "final"  # the model to use: the searched architecture's best replicate (amber_ray.final_model)
FINAL_CARD = "model.json"  # beside final/model.pt: architecture, labels, input length, training config, metrics

# --- `amber-ray train` -----------------------------------------------------------------------
MODEL = "model.pt"
METRICS = "metrics.json"

# What a resumed retraining reads besides its Tune grid, and what a finished one leaves (mirrored to ``storage``).
RETRAIN_STATE = (RETRAIN_CONFIG, RUN_ID)
RETRAIN_OUTPUTS = (RESULTS, f"{FINAL_DIR}/{MODEL}", f"{FINAL_DIR}/{FINAL_CARD}")

# --- `amber-ray predict` ---------------------------------------------------------------------
PREDICTIONS = "predictions.parquet"  # one row per sequence (or window) and label
PREDICTIONS_TSV = "predictions.tsv"  # the same, with --tsv
PREDICT_SUMMARY = "summary.json"
BIGWIG_SUFFIX = ".bw"  # --tile: one <label>.bw per label

# --- variant score tables --------------------------------------------------------------------
ALLELE_PROB_COLUMNS = frozenset({"ref_prob", "alt_prob"})


def search_checkpoint(search_dir: Path) -> Path:
    return search_dir / SEARCH_CHECKPOINT


def tune_grid(retrain_dir: Path) -> Path:
    """Ray Tune's experiment directory of a retraining grid."""
    return retrain_dir / TUNE_DIR / TUNE_NAME


# --- search tables ---------------------------------------------------------------------------
# ``reward`` is the search objective (search.objective) of ``auroc``, the validation AUROC; they are equal by default.
HISTORY_COLUMNS = ["iteration", "sample", "arch", "reward", "num_params", "reward_half1", "reward_half2", "auroc"]


def history_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Every scored architecture; ``reward_half1``/``reward_half2`` are its rewards on the two halves of the scoring set."""
    table = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    return table.astype(
        {
            "iteration": "int64",
            "sample": "int64",
            "reward": "float64",
            "num_params": "int64",
            "reward_half1": "float64",
            "reward_half2": "float64",
            "auroc": "float64",
        }
    )


def op_probs_table(op_probs: list[list[list[float]]], ops: tuple[str, ...]) -> pd.DataFrame:
    """Long table: iteration, layer, op, probability (mean over the iteration's samples)."""
    array = np.asarray(op_probs, dtype=np.float64).reshape(len(op_probs), -1, len(ops))
    iteration, layer, op = np.indices(array.shape)
    return pd.DataFrame(
        {"iteration": iteration.ravel(), "layer": layer.ravel(), "op": np.asarray(ops)[op.ravel()], "probability": array.ravel()}
    )


# --- retraining tables -----------------------------------------------------------------------
def trial_row(trial: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """One row of ``results.parquet``: a finished trial's ``trial`` config and its last report.

    The report holds the test metrics, epochs, best validation AUROC and time.
    """
    row = {**{key: trial[key] for key in ("role", "arch", "replicate")}, "num_params": metrics["num_params"]}
    row.update({key: value for key, value in metrics.items() if key.startswith("test_") and isinstance(value, (int, float))})
    row.update({f"auroc.{label}": value for label, value in metrics["test_per_label_auroc"].items()})
    row.update({f"aupr.{label}": value for label, value in metrics["test_per_label_aupr"].items()})
    row.update(
        {"epochs": metrics["epochs"], "best_epoch": metrics["best_epoch"], "best_valid_auroc": metrics["best_valid_auroc"]}
    )
    row["wall_seconds"] = metrics["train_seconds"]
    return row


def results_table(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """``results.parquet``: one row per trial (:func:`trial_row`), searched first, then by arch and replicate."""
    table = pd.DataFrame(list(rows))
    if table.empty:
        return table
    return table.sort_values(["role", "arch", "replicate"], ascending=[False, True, True]).reset_index(drop=True)


def read_trial_reports(retrain_dir: Path) -> list[dict[str, Any]]:
    """Every report of every trial, in order, from Ray Tune's ``result.json`` files (no Ray needed).

    They grow while the grid runs; a line being written is skipped.
    """
    records = []
    for path in sorted((retrain_dir / TUNE_DIR).glob("*/*/result.json")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
                record["config"]["trial"]  # a line of a trial of this grid, else KeyError or TypeError
            except (ValueError, KeyError, TypeError):
                continue
            records.append(record)
    return records


def finished_trials_table(retrain_dir: Path) -> pd.DataFrame:
    """The trials of a grid that have finished so far, as ``results.parquet`` holds them."""
    last: dict[str, dict[str, Any]] = {}
    for record in read_trial_reports(retrain_dir):
        if record.get("done") and "test_per_label_auroc" in record:
            last[record["trial_id"]] = record
    return results_table(trial_row(record["config"]["trial"], record) for record in last.values())
