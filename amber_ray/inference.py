"""Putting a model to use: probabilities of sequences, and ``amber-ray predict`` over FASTA, BED regions or genome tiles.

Outputs go into one directory (``--out``):

- FASTA or BED + genome: ``predictions.parquet`` (``predictions.tsv`` with ``tsv``), one row per
  sequence (or window) and label, columns :data:`TABLE_COLUMNS` (``chrom``, ``start``, ``end``
  are the window for BED input and empty for FASTA records);
- genome tiles: ``<label>.bw``, one bigWig track per label (see :mod:`amber_ray.regions`);
- always ``summary.json``: the model, the input, counts and the mean probability per label.

Every input is read and checked before the model runs, and every file is written atomically
after all predictions succeeded, so bad input leaves nothing behind. All predictions go through
:func:`amber_ray.predict.predict`, sigmoid per label, with ``both_strands`` the mean of the
forward and reverse-complement strands.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from amber_ray import outputs
from amber_ray.atomic import atomic_path, atomic_write_json, atomic_write_table
from amber_ray.data.dataset import encode_codes
from amber_ray.data.fasta import read_fasta
from amber_ray.errors import AmberInputError
from amber_ray.predict import OnBatch, ProgressFactory, probabilities
from amber_ray.regions import TileStretch, padded_windows, read_bed, region_windows, tile_plan
from amber_ray.registry import load_model
from amber_ray.variants.genome import ReferenceGenome

logger = logging.getLogger(__name__)
TABLE_COLUMNS = ["name", "chrom", "start", "end", "label", "probability"]


def prediction_table(
    names: Sequence[str],
    labels: Sequence[str],
    probs: np.ndarray,
    chrom: Sequence[str] | None = None,
    start: np.ndarray | None = None,
    length: int = 0,
) -> pd.DataFrame:
    """Long format: one row per sequence and label, sequence-major, columns :data:`TABLE_COLUMNS`."""
    n, k = len(names), len(labels)
    positions = start is not None and chrom is not None
    return pd.DataFrame(
        {
            "name": pd.Series(np.repeat(np.asarray(names, dtype=object), k), dtype="string"),
            "chrom": pd.Series(np.repeat(np.asarray(chrom, dtype=object), k) if positions else [pd.NA] * n * k, dtype="string"),
            "start": pd.Series(np.repeat(start, k) if positions else [pd.NA] * n * k, dtype="Int64"),
            "end": pd.Series(np.repeat(start + length, k) if positions else [pd.NA] * n * k, dtype="Int64"),
            "label": pd.Series(np.tile(np.asarray(labels, dtype=object), n), dtype="string"),
            "probability": probs.reshape(-1).astype(np.float32),
        },
        columns=TABLE_COLUMNS,
    )


def track_file(out: Path, label: str) -> Path:
    """``<label>.bw``, with characters other than letters, digits, ``.``, ``_`` and ``-`` as ``_``."""
    return out / f"{re.sub(r'[^A-Za-z0-9._-]', '_', label)}{outputs.BIGWIG_SUFFIX}"


@dataclass
class PredictInputs:
    """One of three input modes: ``fasta``; ``bed`` + ``genome``; ``genome`` + ``tile`` (with optional ``regions``)."""

    fasta: Path | None = None
    bed: Path | None = None
    genome: Path | None = None
    tile: int | None = None
    regions: Path | None = None

    def mode(self) -> str:
        given = {key for key, value in vars(self).items() if value is not None}
        for mode, keys in (
            ("fasta", {"fasta"}),
            ("bed", {"bed", "genome"}),
            ("tile", {"genome", "tile"}),
            ("tile", {"genome", "tile", "regions"}),
        ):
            if given == keys:
                return mode
        raise AmberInputError(
            "give --fasta F, or --bed B with --genome G, or --genome G with --tile STEP [--regions B]", "predict"
        )


def _on_batch(progress: ProgressFactory | None, name: str, total: int) -> OnBatch | None:
    return progress(name, total) if progress is not None else None


def check_duplicate_names(fasta: Path, names: list[str], allow: bool) -> int:
    """How many records repeat an earlier name; refused unless ``allow`` (their rows could not be told apart)."""
    repeated = pd.Series(names)[pd.Series(names).duplicated()]
    if len(repeated) and not allow:
        raise AmberInputError(
            f"duplicate record name ({len(repeated)} record(s) repeat an earlier name, so their rows could not be told "
            "apart; --allow-duplicate-names predicts them anyway)",
            fasta,
            repeated.iloc[0],
        )
    if len(repeated):
        logger.warning("%s: %d record(s) repeat an earlier name, e.g. %r", fasta, len(repeated), repeated.iloc[0])
    return len(repeated)


def predict_fasta(
    model: nn.Module,
    labels: list[str],
    fasta: Path,
    batch_size: int,
    both_strands: bool,
    progress: ProgressFactory | None,
    allow_duplicate_names: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The table of ``fasta``'s records, and what the summary notes about them."""
    names, seqs = read_fasta(fasta, length=model.space.input_length, unique_names=False)
    duplicates = check_duplicate_names(fasta, names, allow_duplicate_names)
    probs = probabilities(model, encode_codes(seqs), batch_size, both_strands, _on_batch(progress, "predict", len(seqs)))
    return prediction_table(names, labels, probs), {"duplicate_names": duplicates}


def predict_bed(
    model: nn.Module,
    labels: list[str],
    bed: Path,
    genome: ReferenceGenome,
    batch_size: int,
    both_strands: bool,
    progress: ProgressFactory | None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The table of ``bed``'s windows, and what the summary notes about them (windows padded with ``N``)."""
    length = model.space.input_length
    regions = read_bed(bed, genome)
    starts, codes = region_windows(genome, regions, length)
    padded = padded_windows(genome, regions, starts, length)
    if padded:
        logger.warning("%s: %d window(s) run past a chromosome end; their bases there are N", bed, padded)
    probs = probabilities(model, codes, batch_size, both_strands, _on_batch(progress, "predict", len(regions)))
    table = prediction_table([r.name for r in regions], labels, probs, [r.chrom for r in regions], starts, length)
    return table, {"padded_windows": padded}


def allow_open_files(extra: int, purpose: str) -> None:
    """Let this process open ``extra`` more files than it has open now, raising its soft limit up to the hard one.

    A bigWig per label stays open while tiles are written: 919 for a DeepSEA model, near the usual
    soft limit of 1,024. Beyond the hard limit it is an input error naming the limit, before any output.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = len(os.listdir("/proc/self/fd")) + extra + 16 if os.path.isdir("/proc/self/fd") else extra + 256
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise AmberInputError(
            f"{purpose} needs {needed} open files, but this process may open at most {hard} (ulimit -Hn)", "--tile"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def write_tracks(
    model: nn.Module,
    labels: list[str],
    genome: ReferenceGenome,
    plan: list[TileStretch],
    out: Path,
    batch_size: int,
    both_strands: bool,
    progress: ProgressFactory | None,
) -> tuple[list[Path], np.ndarray, int]:
    """One bigWig per label from the tiles of ``plan``; returns the files, the summed probabilities and the bin count.

    The tracks are written to temporary names stream by stream and renamed only when all succeeded.
    """
    import pyBigWig

    on_batch = _on_batch(progress, "predict", sum(stretch.bins for stretch in plan))
    paths = [track_file(out, label) for label in labels]
    if len(set(paths)) != len(paths):
        raise AmberInputError("two labels share a track file name after replacing unusual characters", "--out")
    allow_open_files(len(paths), f"writing {len(paths)} bigWig tracks at once")
    header = [(name, genome.length(name)) for name in genome.names]
    totals, bins = np.zeros(len(labels), dtype=np.float64), 0
    with contextlib.ExitStack() as stack:
        tracks = []
        for path in paths:
            track = pyBigWig.open(str(stack.enter_context(atomic_path(path))), "w")
            stack.callback(track.close)  # closed before its atomic rename (callbacks run last in, first out)
            track.addHeader(header)
            tracks.append(track)
        for stretch in plan:
            probs = probabilities(model, stretch.windows(genome), batch_size, both_strands, on_batch)
            starts, ends = stretch.bin_starts().tolist(), stretch.bin_ends().tolist()
            for track, values in zip(tracks, probs.T):
                track.addEntries([stretch.chrom] * len(starts), starts, ends=ends, values=values.astype(np.float64).tolist())
            totals += probs.sum(axis=0)
            bins += len(starts)
    return paths, totals, bins


def remove_stale_outputs(out: Path, labels: list[str], written: list[Path]) -> list[Path]:
    """Remove the outputs an earlier ``predict`` into ``out`` left that this run did not rewrite (another
    format or mode); returns them. Only names ``predict`` writes for these labels are touched."""
    candidates = [out / outputs.PREDICTIONS, out / outputs.PREDICTIONS_TSV, *(track_file(out, label) for label in labels)]
    stale = [path for path in candidates if path not in written and path.is_file()]
    for path in stale:
        logger.info("removing %s, an earlier prediction in another format", path)
        path.unlink()
    return stale


def run_predict(
    source: str | Path,
    out: Path,
    inputs: PredictInputs,
    both_strands: bool = False,
    batch_size: int = 256,
    device: str = "auto",
    tsv: bool = False,
    progress: ProgressFactory | None = None,
    allow_duplicate_names: bool = False,
) -> dict[str, Any]:
    """``amber-ray predict``: predictions of the model ``source`` into ``out``.

    ``source`` is anything :func:`amber_ray.registry.load_model` takes. Outputs of an earlier run
    in ``out`` that this one does not rewrite (``predictions.tsv`` beside a new
    ``predictions.parquet``, or the model's tracks beside a table, and the reverse) are removed,
    so that ``out`` holds one run's predictions.

    Returns the summary that ``summary.json`` holds.
    """
    mode = inputs.mode()
    started = time.perf_counter()
    model, labels = load_model(source, device)
    genome = ReferenceGenome(inputs.genome) if inputs.genome is not None else None
    if mode == "tile":
        regions = read_bed(inputs.regions, genome) if inputs.regions is not None else None
        plan = tile_plan(genome, model.space.input_length, inputs.tile, regions, inputs.regions)
        if plan.without_windows:
            logger.warning(
                "not tiled (no bin has a %d-bp window on the chromosome): %s",
                model.space.input_length,
                ", ".join(plan.without_windows),
            )
        written, totals, count = write_tracks(model, labels, genome, plan.stretches, out, batch_size, both_strands, progress)
        means = totals / max(count, 1)
        notes: dict[str, Any] = {"without_windows": plan.without_windows}
    else:
        if mode == "fasta":
            table, notes = predict_fasta(model, labels, inputs.fasta, batch_size, both_strands, progress, allow_duplicate_names)
        else:
            table, notes = predict_bed(model, labels, inputs.bed, genome, batch_size, both_strands, progress)
        written = [out / (outputs.PREDICTIONS_TSV if tsv else outputs.PREDICTIONS)]
        atomic_write_table(table, written[0])
        count = len(table) // max(len(labels), 1)
        means = table.groupby("label", sort=False)["probability"].mean().reindex(labels).to_numpy()
    removed = remove_stale_outputs(out, labels, written)
    summary = {
        "model": str(source),
        "arch": model.arch.to_text(),
        "input_length": model.space.input_length,
        "mode": mode,
        "inputs": {key: str(value) for key, value in vars(inputs).items() if value is not None},
        "both_strands": both_strands,
        "device": str(next(model.parameters()).device),
        "predicted": count,
        "labels": labels,
        "mean_probability": dict(zip(labels, map(float, means))),
        "outputs": [str(path) for path in written],
        "removed_stale_outputs": [str(path) for path in removed],
        **notes,
        "seconds": time.perf_counter() - started,
    }
    atomic_write_json(summary, out / outputs.PREDICT_SUMMARY)
    return summary
