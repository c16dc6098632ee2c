"""Simulated multi-label sequences with planted JASPAR motifs, and the benchmark's reference data.

Background bases are i.i.d. uniform. For each sequence and each motif (in config order), with
probability ``prevalence`` the motif is chosen and ``instances_per_sequence`` instances are sampled
base by base from its position probability matrix, each on a random strand, and planted at a
random position that overlaps no instance already planted in that sequence. When no such position
is left the instance is not planted, so nothing ever overwrites a planted instance: the label is
exactly "at least one instance planted" and the ground-truth table lists every instance that is
really in the sequence. (Background may still contain motif-like words by chance, as in real DNA.)
"""

from __future__ import annotations

import functools
import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from amber_ray.config import SimulatorConfig
from amber_ray.data.dataset import SequenceDataset, codes_to_one_hot
from amber_ray.errors import AmberInputError

if TYPE_CHECKING:
    from pyjaspar import jaspardb

log = logging.getLogger(__name__)

# Pinned so that a motif id means the same matrix whatever pyjaspar's default release is.
JASPAR_RELEASE = "JASPAR2024"
TRUTH_COLUMNS = ["sequence", "motif_id", "start", "end", "strand"]
REFERENCE_MOTIFS = ("TGACTCAT", "GCCACGTGGC", "GGGGCGGGGC")


@functools.lru_cache(maxsize=1)
def _jaspar() -> jaspardb:
    """Imported on first use: pyjaspar pulls in Biopython, which the other data paths do not need."""
    from pyjaspar import jaspardb

    return jaspardb(release=JASPAR_RELEASE)


@functools.lru_cache(maxsize=None)
def jaspar_motif(motif_id: str) -> tuple[str, np.ndarray]:
    """Name and read-only position probability matrix ``(width, 4)`` (A, C, G, T) of a JASPAR matrix."""
    with warnings.catch_warnings():  # pyjaspar warns, then returns None, for an unknown id
        warnings.simplefilter("ignore")
        motif = _jaspar().fetch_motif_by_id(motif_id)
    if motif is None:
        raise AmberInputError(f"{JASPAR_RELEASE} has no matrix {motif_id!r}", "data.simulate.motifs")
    counts = np.array([motif.counts[base] for base in "ACGT"], dtype=np.float64).T
    ppm = counts / counts.sum(axis=1, keepdims=True)
    ppm.flags.writeable = False
    return str(motif.name), ppm


def sample_instance(rng: np.random.Generator, ppm: np.ndarray) -> np.ndarray:
    """One instance, base codes ``(width,)`` drawn position by position from ``ppm``."""
    cumulative = np.cumsum(ppm, axis=1)
    draws = rng.random((len(ppm), 1))
    return np.minimum((draws >= cumulative).sum(axis=1), 3).astype(np.uint8)


def reverse_complement(codes: np.ndarray) -> np.ndarray:
    """Reverse complement of A, C, G, T codes 0..3 (A<->T is 0<->3, C<->G is 1<->2)."""
    return (3 - codes[::-1]).astype(np.uint8)


def _free_starts(occupied: np.ndarray, width: int) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(occupied, width)
    return np.flatnonzero(~windows.any(axis=1))


def _plant_motif(
    rng: np.random.Generator, codes: np.ndarray, occupied: np.ndarray, ppm: np.ndarray, count: int
) -> list[tuple[int, int, str]]:
    """Plant up to ``count`` instances in one sequence's free positions; ``(start, end, strand)`` of each."""
    planted = []
    for _ in range(count):
        starts = _free_starts(occupied, len(ppm))
        if not len(starts):
            break
        start = int(rng.choice(starts))
        end = start + len(ppm)
        instance = sample_instance(rng, ppm)
        strand = "+" if rng.random() < 0.5 else "-"
        codes[start:end] = instance if strand == "+" else reverse_complement(instance)
        occupied[start:end] = True
        planted.append((start, end, strand))
    return planted


def _load_motifs(config: SimulatorConfig) -> list[tuple[str, np.ndarray]]:
    motifs = [jaspar_motif(motif_id) for motif_id in config.motifs]
    for motif_id, (_, ppm) in zip(config.motifs, motifs, strict=True):
        if len(ppm) > config.length:
            problem = f"motif {motif_id} is {len(ppm)} bp, longer than the {config.length} bp sequences"
            raise AmberInputError(problem, "data.simulate")
    return motifs


def simulate_dataset(config: SimulatorConfig, seed: int) -> tuple[SequenceDataset, pd.DataFrame]:
    """Sequences, labels (one per motif) and the ground truth: one row per planted instance."""
    rng = np.random.default_rng(seed)
    motifs = _load_motifs(config)
    codes = rng.integers(0, 4, (config.num_sequences, config.length), dtype=np.uint8)
    labels = np.zeros((config.num_sequences, len(motifs)), dtype=np.float32)
    truth: list[tuple[int, str, int, int, str]] = []
    for i in range(config.num_sequences):
        occupied = np.zeros(config.length, dtype=bool)
        for j, (motif_id, (_, ppm)) in enumerate(zip(config.motifs, motifs, strict=True)):
            if rng.random() >= config.prevalence:
                continue
            planted = _plant_motif(rng, codes[i], occupied, ppm, config.instances_per_sequence)
            labels[i, j] = float(bool(planted))
            truth.extend((i, motif_id, start, end, strand) for start, end, strand in planted)
    names = [f"sim{i:06d}" for i in range(config.num_sequences)]
    label_names = [f"{motif_id}_{name}" for motif_id, (name, _) in zip(config.motifs, motifs, strict=True)]
    log.info("simulated %d sequences, %d planted instances", config.num_sequences, len(truth))
    dataset = SequenceDataset(codes_to_one_hot(codes), labels, names, label_names)
    return dataset, pd.DataFrame(truth, columns=TRUTH_COLUMNS)


def reference_workload() -> tuple[np.ndarray, np.ndarray]:
    """The search benchmark's data (shared/bench/REFERENCE_WORKLOAD.md): X ``(2000, 4, 200)``, y ``(2000, 3)``.

    The draws happen exactly in the documented order; the checksum in that document pins them.
    """
    rng = np.random.default_rng(0)
    n, length = 2000, 200
    codes = rng.integers(0, 4, (n, length))
    y = np.zeros((n, len(REFERENCE_MOTIFS)), dtype=np.float32)
    for j, motif in enumerate(REFERENCE_MOTIFS):
        k = len(motif)
        consensus = np.array(["ACGT".index(base) for base in motif])
        positive = rng.random(n) < 0.3
        start = rng.integers(0, length - k + 1, n)
        keep = rng.random((n, k)) < 0.85
        other = rng.integers(0, 4, (n, k))
        rows = np.flatnonzero(positive)
        columns = start[rows, None] + np.arange(k)
        codes[rows[:, None], columns] = np.where(keep[rows], consensus, other[rows])
        y[positive, j] = 1
    return codes_to_one_hot(codes), y
