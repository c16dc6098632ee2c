"""The whole experiment: search (-> random search) -> retrain -> compare -> report, each step resuming from its outputs.

``amber-ray demo`` and the Ray job ``jobs/pipeline.py`` both run :func:`run_pipeline`. The
comparison of a retraining (``amber-ray compare``) is :func:`compare_retrain`: the statistics of
:mod:`amber_ray.compare`, written to ``compare.json`` and logged to the retraining's MLflow run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from amber_ray import outputs, storage
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


SEARCH_STEP, RANDOM_SEARCH_STEP, RETRAIN_STEP = "search", "random_search", "retrain"


def random_search_config(config: ExperimentConfig) -> ExperimentConfig | None:
    """The config of the random search beside the learned one (``retrain.random_search``): the same but for
    ``search.strategy: random``; None when there is none to run (not asked for, or the search itself is random)."""
    if not config.retrain.random_search or config.search.strategy == "random":
        return None
    return config.model_copy(update={"search": config.search.model_copy(update={"strategy": "random"})})


def search_step(
    config: ExperimentConfig,
    out: Path,
    step: str,
    search_dir: Path,
    finished: set[str],
    resume: bool,
    on_iteration: Callable[[dict[str, float]], None] | None,
) -> dict[str, Any]:
    """The pipeline's ``step``, a search into ``search_dir``: fetched when finished, else run (resumed when it can be)."""
    if step in finished:
        return finished_search(config, search_dir)
    final = run_search(config, search_dir, resume and has_search_checkpoint(config, search_dir), on_iteration)
    mark_finished(config, out, step)
    return final


def finished_steps(config: ExperimentConfig, out: Path) -> set[str]:
    """The steps of the pipeline in ``out`` that finished (``pipeline.json``, from ``storage`` on a replaced head)."""
    storage.fetch_missing(config.storage, out, (outputs.PIPELINE_STATE,))
    path = out / outputs.PIPELINE_STATE
    if not path.is_file():
        return set()
    try:
        return set(json.loads(path.read_text())["finished"])
    except (ValueError, KeyError, TypeError) as error:
        raise AmberInputError(
            f"not a pipeline state ({type(error).__name__}: {error}); remove it to rerun every step", path
        ) from None


def mark_finished(config: ExperimentConfig, out: Path, step: str) -> None:
    """Record ``step`` as finished in ``pipeline.json``, mirrored to ``storage`` after the step's own outputs."""
    steps = [*sorted(finished_steps(config, out) - {step}), step]
    atomic_write_json({"finished": steps}, out / outputs.PIPELINE_STATE)
    storage.mirror(config.storage, out, (outputs.PIPELINE_STATE,))


def finished_search(config: ExperimentConfig, search_dir: Path) -> dict[str, Any]:
    """The outputs of the pipeline's finished search, fetched from ``storage`` where they are missing (with its
    checkpoint, which the report reads), without running any of it again."""
    storage.fetch_missing(config.storage, search_dir, outputs.SEARCH_OUTPUTS)
    has_search_checkpoint(config, search_dir)
    path = search_dir / outputs.FINAL_ARCHITECTURES
    if not path.is_file():
        raise AmberInputError(f"the pipeline's search finished but its {outputs.FINAL_ARCHITECTURES} is gone", path)
    return json.loads(path.read_text())


def finished_retrain(config: ExperimentConfig, retrain_dir: Path) -> pd.DataFrame:
    """The results of the pipeline's finished retraining, its outputs fetched from ``storage`` where they are missing."""
    storage.fetch_missing(config.storage, retrain_dir, (*outputs.RETRAIN_STATE, *outputs.RETRAIN_OUTPUTS))
    path = retrain_dir / outputs.RESULTS
    if not path.is_file():
        raise AmberInputError(f"the pipeline's retraining finished but its {outputs.RESULTS} is gone", path)
    return pd.read_parquet(path)


def run_pipeline(
    config: ExperimentConfig,
    out: Path,
    resume: bool = True,
    on_iteration: Callable[[dict[str, float]], None] | None = None,
    annotation: Path | None = None,
    on_trial: Callable[[int, int, float], None] | None = None,
    on_random_iteration: Callable[[dict[str, float]], None] | None = None,
) -> PipelineResult:
    """Search, retrain, compare and report into ``out`` (``search/``, ``retrain/``, ``report.html``, one MLflow store).

    With ``retrain.random_search`` a random search of the same budget runs after the learned one, into
    ``search-random/``, and its choice is retrained beside the searched and the sampled architectures.

    With ``resume`` a step whose outputs are already there continues from them (a finished step,
    as ``pipeline.json`` records, is not run again); without it, a step that already ran is an error.
    With ``storage`` everything a resume needs is mirrored there and fetched back when ``out`` lost
    it (a replaced head), so the same command with the same ``out`` and ``storage`` continues the
    run. Connects to Ray (the cluster in ``RAY_ADDRESS`` or a local one) unless it is already
    initialised, and shuts it down afterwards. ``on_iteration`` and ``on_trial`` see the search's iterations and the
    retraining's finished trials (progress bars), ``on_random_iteration`` the random search's.
    """
    out = Path(out)
    search_dir, retrain_dir = out / outputs.SEARCH_DIR, out / outputs.RETRAIN_DIR
    out.mkdir(parents=True, exist_ok=True)
    use_store_in(out)
    finished = finished_steps(config, out) if resume else set()
    random_config = random_search_config(config)
    random_dir = out / outputs.RANDOM_SEARCH_DIR if random_config is not None else None
    step = search_dir
    try:
        with ray_session():
            final = search_step(config, out, SEARCH_STEP, search_dir, finished, resume, on_iteration)
            logger.info("searched architecture (reward %.4f): %s", final["best"]["reward"], final["best"]["arch"])
            if random_config is not None:
                step = random_dir
                searched = search_step(random_config, out, RANDOM_SEARCH_STEP, random_dir, finished, resume, on_random_iteration)
                chosen = searched["best"]
                logger.info("random search's architecture (reward %.4f): %s", chosen["reward"], chosen["arch"])
            step = retrain_dir
            if RETRAIN_STEP in finished:
                results = finished_retrain(config, retrain_dir)
            else:
                resume_grid = resume and has_retrain_grid(config, retrain_dir)
                results = run_retrain(
                    config, search_dir, retrain_dir, resume_grid, on_trial=on_trial, random_search_dir=random_dir
                )
                mark_finished(config, out, RETRAIN_STEP)
    except AmberInputError:
        raise
    except BaseException:
        logger.error("the pipeline stopped in %s; the same command with --out %s continues from it", step, out)
        raise
    comparison = compare_retrain(retrain_dir, annotation)
    return PipelineResult(final, results, comparison, report_run(out))
