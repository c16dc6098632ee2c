"""The whole experiment: search -> retrain -> compare -> report, each step resuming from its outputs.

``amber-ray demo`` and the Ray job ``jobs/pipeline.py`` both run :func:`run_pipeline`. The
comparison of a retraining (``amber-ray compare``) is :func:`compare_retrain`: the statistics of
:mod:`amber_ray.compare`, written to ``compare.json`` and logged to the retraining's MLflow run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from amber_ray import outputs
from amber_ray.atomic import atomic_write_json
from amber_ray.cluster import ray_session
from amber_ray.compare import compare_results, comparison_metrics
from amber_ray.config import ExperimentConfig
from amber_ray.data import read_label_annotation
from amber_ray.errors import AmberInputError
from amber_ray.report import report_run
from amber_ray.retrain import has_retrain_grid, run_retrain
from amber_ray.search.loop import has_search_checkpoint, run_search
from amber_ray.tracking import find_step_run, read_run_id, use_store_in

logger = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    final: dict[str, Any]  # final_architectures.json of the search
    results: pd.DataFrame  # results.parquet of the retraining
    comparison: dict[str, Any]  # compare.json
    report: Path


def compare_retrain(retrain_dir: Path, annotation: Path | None = None) -> dict[str, Any]:
    """Compare the trials of a retrain directory; write ``compare.json`` and log it to the retraining's MLflow run."""
    results_path = retrain_dir / outputs.RESULTS
    if not results_path.is_file():
        raise AmberInputError(f"no {outputs.RESULTS}; run `amber-ray retrain` first", results_path)
    comparison = compare_results(pd.read_parquet(results_path), read_label_annotation(annotation) if annotation else None)
    atomic_write_json(comparison, retrain_dir / outputs.COMPARISON)
    run_id = read_run_id(retrain_dir)
    if run_id:
        tracker = find_step_run(retrain_dir, run_id)
        if tracker is None:
            logger.warning("the retraining's MLflow run %s is in no store found (set MLFLOW_TRACKING_URI); not logged", run_id)
        else:
            tracker.log_artifact(retrain_dir / outputs.COMPARISON)
            tracker.log_metrics(comparison_metrics(comparison))
    return comparison


def run_pipeline(
    config: ExperimentConfig,
    out: Path,
    resume: bool = True,
    on_iteration: Callable[[dict[str, float]], None] | None = None,
    annotation: Path | None = None,
    on_trial: Callable[[int, int, float], None] | None = None,
) -> PipelineResult:
    """Search, retrain, compare and report into ``out`` (``search/``, ``retrain/``, ``report.html``, one MLflow store).

    With ``resume`` a step whose outputs are already there continues from them (a finished step
    is not run again); without it, a step that already ran is an error. Connects to Ray (the
    cluster in ``RAY_ADDRESS`` or a local one) unless it is already initialised, and shuts it
    down afterwards. ``on_iteration`` and ``on_trial`` see the search's iterations and the
    retraining's finished trials (progress bars).
    """
    out = Path(out)
    search_dir, retrain_dir = out / outputs.SEARCH_DIR, out / outputs.RETRAIN_DIR
    out.mkdir(parents=True, exist_ok=True)
    use_store_in(out)
    step = search_dir
    try:
        with ray_session():
            final = run_search(config, search_dir, resume and has_search_checkpoint(config, search_dir), on_iteration)
            logger.info("searched architecture (reward %.4f): %s", final["best"]["reward"], final["best"]["arch"])
            step = retrain_dir
            results = run_retrain(
                config, search_dir, retrain_dir, resume and has_retrain_grid(config, retrain_dir), on_trial=on_trial
            )
    except AmberInputError:
        raise
    except BaseException:
        logger.error("the pipeline stopped in %s; the same command with --out %s continues from it", step, out)
        raise
    comparison = compare_retrain(retrain_dir, annotation)
    return PipelineResult(final, results, comparison, report_run(out))
