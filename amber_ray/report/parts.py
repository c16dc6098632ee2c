"""What exists of a run: its search, retraining, variant and interpretation outputs, each optional.

A loader returns ``None`` for a part whose directory is absent and records a note for every
expected file that is missing or unreadable, so a report shows whatever a run has produced so
far. A search that is still running (or was stopped) has no final tables yet; its last
checkpoint holds the history, controller statistics and op probabilities up to that point.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from amber_ray import outputs
from amber_ray.errors import AmberInputError
from amber_ray.search.checkpoint import has_checkpoint, load_checkpoint, previous_path
from amber_ray.tracking import read_run_id

logger = logging.getLogger(__name__)

T = TypeVar("T")
READ_ERRORS = (OSError, ValueError, RuntimeError, KeyError, pickle.UnpicklingError)


@dataclass
class SearchPart:
    directory: Path
    history: pd.DataFrame | None = None  # iteration, sample, arch, reward, num_params
    op_probs: pd.DataFrame | None = None  # iteration, layer, op, probability
    stats: pd.DataFrame | None = None  # one row per iteration: mean_reward, baseline, entropy, skip_fraction, ...
    final: dict[str, Any] | None = None  # final_architectures.json
    ops: tuple[str, ...] | None = None
    embeddings: np.ndarray | None = None  # (ops, hidden): the controller's op embedding
    run_id: str | None = None


@dataclass
class RetrainPart:
    directory: Path
    results: pd.DataFrame | None = None  # results.parquet: one row per trial
    comparison: dict[str, Any] | None = None  # compare_results of the results (and annotation)
    category_scores: dict[str, pd.DataFrame] = field(default_factory=dict)  # metric -> (trials, categories)
    curves: pd.DataFrame | None = None  # per trial and epoch: trial_id, role, arch, replicate, epoch, valid_auroc, done
    planned_trials: int = 0  # trial directories of the grid, started or not
    provisional: bool = False  # results are those of the trials finished so far
    run_id: str | None = None


@dataclass
class VariantsPart:
    directory: Path
    summary: dict[str, Any] | None = None  # eval.json
    evaluation: pd.DataFrame | None = None  # eval.parquet: variant_id, preferred (1: ref allele), model_score, pwm_score
    scores: pd.DataFrame | None = None  # eval.parquet when it has ref_prob and alt_prob, else a score table with them


@dataclass
class InterpretPart:
    directory: Path
    figures: list[Path] = field(default_factory=list)  # figures/*.png
    seqlets: pd.DataFrame | None = None  # seqlets.tsv


@dataclass
class RunParts:
    """The outputs of one run directory (not an MLflow run): each part ``None`` when absent."""

    search: SearchPart | None = None
    retrain: RetrainPart | None = None
    variants: VariantsPart | None = None
    interpret: InterpretPart | None = None
    notes: list[str] = field(default_factory=list)


def read_optional(path: Path, reader: Callable[[Path], T], notes: list[str]) -> T | None:
    """``reader(path)``, or ``None`` with a note when the file is missing or unreadable."""
    if not path.is_file():
        notes.append(f"{path.name} not found in {path.parent}")
        return None
    try:
        return reader(path)
    except READ_ERRORS as error:
        logger.warning("cannot read %s: %s", path, error)
        notes.append(f"{path} is unreadable ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")
        return None


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The search checkpoint as a resume reads it (the previous one when the newest is damaged), checked."""
    payload = load_checkpoint(path)
    outputs.check_search_checkpoint(payload)
    return payload


def load_search(directory: Path, notes: list[str]) -> SearchPart:
    part = SearchPart(directory)
    path = outputs.search_checkpoint(directory)
    shown = path if path.is_file() or not has_checkpoint(path) else previous_path(path)  # the newest one while a save swaps them
    checkpoint = read_optional(shown, lambda _: read_checkpoint(path), notes)
    if checkpoint is not None:
        part.run_id = checkpoint.get("run_id")
        part.ops = outputs.checkpoint_ops(checkpoint)
        part.embeddings = checkpoint["controller"]["model"]["op_embedding.weight"].numpy()
    if (directory / outputs.HISTORY).is_file() or checkpoint is None:
        part.history = read_optional(directory / outputs.HISTORY, pd.read_parquet, notes)
        part.op_probs = read_optional(directory / outputs.OP_PROBS, pd.read_parquet, notes)
        part.stats = read_optional(directory / outputs.CONTROLLER_STATS, pd.read_parquet, notes)
        part.final = read_optional(directory / outputs.FINAL_ARCHITECTURES, read_json, notes)
    else:
        fill_from_checkpoint(part, checkpoint)
        notes.append(
            f"the search in {directory} has not finished: figures show its last checkpoint (iteration {checkpoint['iteration']})"
        )
    return part


def fill_from_checkpoint(part: SearchPart, checkpoint: dict[str, Any]) -> None:
    """History, statistics and op probabilities of an unfinished search, as the final tables would hold them."""
    part.history = outputs.history_table(checkpoint["history"])
    part.stats = pd.DataFrame(checkpoint["stats"]) if checkpoint["stats"] else None
    part.op_probs = outputs.op_probs_table(checkpoint["op_probs"], part.ops) if checkpoint["op_probs"] else None


def load_retrain(directory: Path, annotation: pd.DataFrame | None, notes: list[str]) -> RetrainPart:
    from amber_ray.compare import METRICS, category_scores, compare_results

    part = RetrainPart(directory)
    part.run_id = read_run_id(directory)
    part.curves = read_trial_curves(directory)
    part.planned_trials = sum(path.is_dir() for path in (directory / outputs.TUNE_DIR).glob("*/*"))
    if (directory / outputs.RESULTS).is_file() or part.curves is None:
        part.results = read_optional(directory / outputs.RESULTS, pd.read_parquet, notes)
    else:
        finished = int(part.curves.groupby("trial_id").done.any().sum())
        notes.append(
            f"the retraining in {directory} has not finished: {finished} of {part.planned_trials} trials done; "
            "its test metrics and statistics are those of the finished trials"
        )
        part.results = provisional_results(directory, notes) if finished else None
        part.provisional = True
    if part.results is None or part.results.empty:
        return part
    try:
        part.comparison = compare_results(part.results, annotation)
        part.category_scores = {metric: category_scores(part.results, metric, annotation) for metric in METRICS}
    except AmberInputError as error:
        notes.append(f"no searched-vs-sampled statistics: {error}")
        return part
    note_other_categories(directory, part.comparison, notes)
    return part


def provisional_results(directory: Path, notes: list[str]) -> pd.DataFrame | None:
    """The finished trials of a running (or stopped) grid, as the retrain command will write them to results.parquet."""
    try:
        return outputs.finished_trials_table(directory)
    except READ_ERRORS as error:
        notes.append(f"cannot read the retraining grid in {directory} ({type(error).__name__}: {error})")
        return None


def read_trial_curves(directory: Path) -> pd.DataFrame | None:
    """Validation AUROC per trial and epoch from Ray Tune's ``result.json`` files.

    They grow while the grid runs, so an unfinished retraining shows its progress. A line being
    written is skipped; an epoch reported again after a resume counts once.
    """
    rows = []
    for record in outputs.read_trial_reports(directory):
        trial = record["config"]["trial"]
        try:
            for entry in record.get("history", [record]):  # all epochs so far, also one whose own line is missing
                rows.append(
                    {
                        "trial_id": record["trial_id"],
                        "role": trial["role"],
                        "arch": trial["arch"],
                        "replicate": trial["replicate"],
                        "epoch": entry["epoch"],
                        "valid_auroc": entry["valid_auroc"],
                        "done": bool(record.get("done")) and entry["epoch"] == record["epoch"],
                    }
                )
        except (KeyError, TypeError):
            continue
    if not rows:
        return None
    return (
        pd.DataFrame(rows)
        .drop_duplicates(["trial_id", "epoch"], keep="last")
        .sort_values(["trial_id", "epoch"], ignore_index=True)
    )


def note_other_categories(directory: Path, comparison: dict[str, Any], notes: list[str]) -> None:
    """compare.json may have been written with a label annotation this report was not given."""
    saved = read_optional(directory / outputs.COMPARISON, read_json, [])
    if saved is not None and set(saved.get("categories", {})) != set(comparison["categories"]):
        notes.append(
            f"compare.json in {directory} has categories {sorted(saved['categories'])}; pass the same --annotation to plot them"
        )


def load_variants(directory: Path, notes: list[str]) -> VariantsPart:
    part = VariantsPart(directory)
    part.summary = read_optional(directory / "eval.json", read_json, notes)
    part.evaluation = read_optional(directory / "eval.parquet", pd.read_parquet, notes)
    has_probs = part.evaluation is not None and outputs.ALLELE_PROB_COLUMNS <= set(part.evaluation.columns)
    part.scores = part.evaluation if has_probs else find_score_table(directory)
    if part.scores is None:
        notes.append(f"no variant score table (with ref_prob and alt_prob columns) in {directory}")
    return part


def find_score_table(directory: Path) -> pd.DataFrame | None:
    """The first parquet or TSV file in ``directory`` with ``ref_prob`` and ``alt_prob`` columns."""
    readers: dict[str, Callable[[Path], pd.DataFrame]] = {".parquet": pd.read_parquet, ".tsv": lambda p: pd.read_csv(p, sep="\t")}
    for path in sorted(directory.iterdir()):
        reader = readers.get(path.suffix)
        if reader is None or not path.is_file():
            continue
        table = read_optional(path, reader, [])
        if table is not None and outputs.ALLELE_PROB_COLUMNS <= set(table.columns):
            return table
    return None


def load_interpret(directory: Path, notes: list[str]) -> InterpretPart:
    part = InterpretPart(directory, sorted((directory / "figures").glob("*.png")))
    if not part.figures:
        notes.append(f"no interpretation figures (figures/*.png) in {directory}")
    part.seqlets = read_optional(directory / "seqlets.tsv", lambda p: pd.read_csv(p, sep="\t"), notes)
    return part


def load_run(
    search: Path | None = None,
    retrain: Path | None = None,
    variants: Path | None = None,
    interpret: Path | None = None,
    annotation: pd.DataFrame | None = None,
) -> RunParts:
    """Every part that exists; a part given as a path that is not a directory is noted and skipped."""
    run = RunParts()
    loaders: dict[str, Callable[[Path], Any]] = {
        "search": lambda d: load_search(d, run.notes),
        "retrain": lambda d: load_retrain(d, annotation, run.notes),
        "variants": lambda d: load_variants(d, run.notes),
        "interpret": lambda d: load_interpret(d, run.notes),
    }
    for name, directory in {"search": search, "retrain": retrain, "variants": variants, "interpret": interpret}.items():
        if directory is None:
            run.notes.append(f"no {name} outputs")
        elif not directory.is_dir():
            run.notes.append(f"{name} directory {directory} does not exist")
        else:
            setattr(run, name, loaders[name](directory))
    return run
