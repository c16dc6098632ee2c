"""Simulated multi-label sequences with planted JASPAR motifs, and the benchmark's reference data.

Background bases are i.i.d. uniform. For each sequence and each motif (in config order), with
probability ``prevalence`` the motif is chosen and ``instances_per_sequence`` instances are sampled
base by base from its position probability matrix, each on a random strand, and planted at a
random position that overlaps no instance already planted in that sequence. When no such position
is left the instance is not planted, so nothing ever overwrites a planted instance: the label is
exactly "at least one instance planted" and the ground-truth table lists every instance that is
really in the sequence. (Background may still contain motif-like words by chance, as in real DNA.)

``task: grammar`` (two motifs, A then B; one label ``grammar_<A name>_<B name>``) makes the label
depend on the arrangement of a pair, so a network needs a receptive field spanning the pair and
must tell the strands apart. The spacing ``d`` of a pair is the start-to-start distance of B
after A read on A's strand: on ``+``, ``start_B - start_A``; on ``-``, ``end_A - end_B``. A
sequence is positive when it holds A and B on the same strand with
``|d - spacing| <= spacing_tolerance``. Exactly ``round(prevalence * num_sequences)`` sequences
are positive; of the negatives, ``round(wrong_spacing_fraction * negatives)`` hold the pair in the
right orientation at ``d = spacing +- shift``, shift uniform in ``[decoy_min_shift,
decoy_max_shift]`` and the sign a coin flip; ``round(wrong_orientation_fraction * negatives)``
hold it at a right spacing with one of the two motifs (a coin flip) on the other strand; the rest
are split into A only, B only and neither, in that order of precedence for the remainder. Which
sequence gets which kind is a seeded permutation. Positive and wrong-orientation spacings are
uniform in ``spacing +- spacing_tolerance``. Each pair is laid out on ``+``, reverse-complemented
as a whole with probability 1/2 (so the rule holds on either strand) and placed at a uniform
position; instances never overlap (B starts after A ends). The ground truth lists every planted
instance, A before B.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from amber_ray.config import SimulatorConfig
from amber_ray.data.dataset import SequenceDataset, codes_to_one_hot, reverse_complement
from amber_ray.errors import AmberInputError
from amber_ray.jaspar import jaspar_motif

log = logging.getLogger(__name__)

TRUTH_COLUMNS = ["sequence", "motif_id", "start", "end", "strand"]
REFERENCE_MOTIFS = ("TGACTCAT", "GCCACGTGGC", "GGGGCGGGGC")


def sample_instance(rng: np.random.Generator, ppm: np.ndarray) -> np.ndarray:
    """One instance, base codes ``(width,)`` drawn position by position from ``ppm``."""
    cumulative = np.cumsum(ppm, axis=1)
    draws = rng.random((len(ppm), 1))
    return np.minimum((draws >= cumulative).sum(axis=1), 3).astype(np.uint8)


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


GRAMMAR_KINDS = ("positive", "wrong_spacing", "wrong_orientation", "only_a", "only_b", "neither")


def grammar_kind_counts(config: SimulatorConfig) -> dict[str, int]:
    """How many sequences of each kind ``task: grammar`` simulates (exact, not sampled)."""
    n = config.num_sequences
    positives = round(config.prevalence * n)
    negatives = n - positives
    wrong_spacing = round(config.wrong_spacing_fraction * negatives)
    wrong_orientation = min(round(config.wrong_orientation_fraction * negatives), negatives - wrong_spacing)
    rest = negatives - wrong_spacing - wrong_orientation
    singles = [rest // 3 + (k < rest % 3) for k in range(3)]
    return dict(zip(GRAMMAR_KINDS, [positives, wrong_spacing, wrong_orientation, *singles], strict=True))


def _grammar_layout(rng: np.random.Generator, config: SimulatorConfig, kind: str) -> list[tuple[int, int, str]]:
    """``(offset, motif index, strand)`` of the instances of one sequence, laid out on ``+`` from offset 0."""
    right = config.spacing + int(rng.integers(-config.spacing_tolerance, config.spacing_tolerance + 1))
    if kind == "positive":
        return [(0, 0, "+"), (right, 1, "+")]
    if kind == "wrong_spacing":
        shift = int(rng.integers(config.decoy_min_shift, config.decoy_max_shift + 1))
        return [(0, 0, "+"), (config.spacing + (shift if rng.random() < 0.5 else -shift), 1, "+")]
    if kind == "wrong_orientation":
        flip_b = rng.random() < 0.5
        return [(0, 0, "+" if flip_b else "-"), (right, 1, "-" if flip_b else "+")]
    return {"only_a": [(0, 0, "+")], "only_b": [(0, 1, "+")], "neither": []}[kind]


def _simulate_grammar(config: SimulatorConfig, seed: int) -> tuple[SequenceDataset, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    motifs = _load_motifs(config)
    (name_a, ppm_a), (name_b, ppm_b) = motifs
    closest = config.spacing - config.decoy_max_shift
    if closest < len(ppm_a):
        problem = (
            f"spacing - decoy_max_shift is {closest} bp, shorter than motif {config.motifs[0]} ({len(ppm_a)} bp): "
            "the pair would overlap"
        )
        raise AmberInputError(problem, "data.simulate.spacing")
    longest = config.spacing + config.decoy_max_shift + len(ppm_b)
    if longest > config.length:
        problem = f"the longest planted pair is {longest} bp, longer than the {config.length} bp sequences"
        raise AmberInputError(problem, "data.simulate.length")
    counts = grammar_kind_counts(config)
    kinds = rng.permutation(np.repeat(np.arange(len(GRAMMAR_KINDS)), [counts[k] for k in GRAMMAR_KINDS]))
    codes = rng.integers(0, 4, (config.num_sequences, config.length), dtype=np.uint8)
    labels = (kinds == GRAMMAR_KINDS.index("positive")).astype(np.float32)[:, None]
    truth: list[tuple[int, str, int, int, str]] = []
    for i, kind in enumerate(kinds):
        layout = _grammar_layout(rng, config, GRAMMAR_KINDS[kind])
        if not layout:
            continue
        ppms = [motifs[j][1] for _, j, _ in layout]
        width = max(offset + len(ppm) for (offset, _, _), ppm in zip(layout, ppms, strict=True))
        mirror = rng.random() < 0.5
        origin = int(rng.integers(0, config.length - width + 1))
        for (offset, j, strand), ppm in zip(layout, ppms, strict=True):
            if mirror:  # the whole pair reverse-complemented: offsets mirrored, strands swapped
                offset, strand = width - offset - len(ppm), "-" if strand == "+" else "+"
            start = origin + offset
            instance = sample_instance(rng, ppm)
            codes[i, start : start + len(ppm)] = instance if strand == "+" else reverse_complement(instance)
            truth.append((i, config.motifs[j], start, start + len(ppm), strand))
    names = [f"sim{i:06d}" for i in range(config.num_sequences)]
    log.debug("simulated %d grammar sequences (%s), %d planted instances", config.num_sequences, counts, len(truth))
    dataset = SequenceDataset(codes_to_one_hot(codes), labels, names, [f"grammar_{name_a}_{name_b}"])
    return dataset, pd.DataFrame(truth, columns=TRUTH_COLUMNS)


def simulate_dataset(config: SimulatorConfig, seed: int) -> tuple[SequenceDataset, pd.DataFrame]:
    """Sequences, labels (one per motif, or the grammar's one) and the ground truth: one row per planted instance."""
    if config.task == "grammar":
        return _simulate_grammar(config, seed)
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
    log.debug("simulated %d sequences, %d planted instances", config.num_sequences, len(truth))
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
