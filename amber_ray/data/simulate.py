"""Simulated multi-label sequences with planted JASPAR motifs, and the benchmark's reference data.

Background bases are i.i.d. uniform. For each sequence and motif, with probability
``prevalence``, ``instances_per_sequence`` instances are sampled base by base from the motif's
position probability matrix, on a random strand, and planted at random positions that do not
overlap instances already planted in that sequence (when no such position is left, the
instance is not planted). So the label is exactly "motif planted", and the ground-truth table
lists every instance that is really in the sequence.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from amber_ray.config import SimulatorConfig
from amber_ray.data.dataset import SequenceDataset
from amber_ray.errors import AmberInputError

REFERENCE_MOTIFS = ("TGACTCAT", "GCCACGTGGC", "GGGGCGGGGC")


@functools.lru_cache(maxsize=None)
def jaspar_motif(motif_id: str) -> tuple[str, np.ndarray]:
    """Name and position probability matrix ``(length, 4)`` (A, C, G, T) of a JASPAR matrix."""
    from pyjaspar import jaspardb

    motif = jaspardb().fetch_motif_by_id(motif_id)
    if motif is None:
        raise AmberInputError(f"JASPAR has no matrix {motif_id!r}", "data.simulate.motifs")
    counts = np.array([motif.counts[base] for base in "ACGT"], dtype=np.float64).T
    return motif.name, counts / counts.sum(axis=1, keepdims=True)


def _free_starts(occupied: np.ndarray, width: int) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(occupied, width)
    return np.flatnonzero(~windows.any(axis=1))


def simulate_dataset(config: SimulatorConfig, seed: int) -> tuple[SequenceDataset, pd.DataFrame]:
    """Sequences, labels and the ground truth (sequence, motif_id, start, end, strand) per instance."""
    rng = np.random.default_rng(seed)
    motifs = [jaspar_motif(motif_id) for motif_id in config.motifs]
    codes = rng.integers(0, 4, (config.num_sequences, config.length))
    labels = np.zeros((config.num_sequences, len(motifs)), dtype=np.float32)
    truth = []
    for i in range(config.num_sequences):
        occupied = np.zeros(config.length, dtype=bool)
        for j, (_, ppm) in enumerate(motifs):
            if rng.random() >= config.prevalence:
                continue
            for _ in range(config.instances_per_sequence):
                starts = _free_starts(occupied, len(ppm)) if len(ppm) <= config.length else np.array([])
                if not len(starts):
                    break
                start = int(rng.choice(starts))
                instance = np.array([rng.choice(4, p=row) for row in ppm])
                strand = "+" if rng.random() < 0.5 else "-"
                if strand == "-":
                    instance = 3 - instance[::-1]
                codes[i, start : start + len(ppm)] = instance
                occupied[start : start + len(ppm)] = True
                labels[i, j] = 1
                truth.append((i, config.motifs[j], start, start + len(ppm), strand))
    x = np.eye(4, dtype=np.float32)[codes].transpose(0, 2, 1).copy()
    names = [f"sim{i:06d}" for i in range(config.num_sequences)]
    label_names = [f"{motif_id}_{name}" for motif_id, (name, _) in zip(config.motifs, motifs)]
    ground_truth = pd.DataFrame(truth, columns=["sequence", "motif_id", "start", "end", "strand"])
    return SequenceDataset(x, labels, names, label_names), ground_truth


def reference_workload() -> tuple[np.ndarray, np.ndarray]:
    """The search benchmark's data, exactly as specified (X ``(2000, 4, 200)``, y ``(2000, 3)``)."""
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
        for i in np.flatnonzero(positive):
            codes[i, start[i] : start[i] + k] = np.where(keep[i], consensus, other[i])
        y[positive, j] = 1
    x = np.eye(4, dtype=np.float32)[codes]
    return np.ascontiguousarray(x.transpose(0, 2, 1)), y
