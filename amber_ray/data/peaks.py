"""``amber-ray dataset``: a genome and peak calls -> labelled windows in our HDF5 format, split by chromosome.

DeepSEA's rule (Zhou & Troyanskaya 2015) is the default: the genome is cut into 200 bp bins; a bin
is positive for a label when at least half of it lies inside one of that label's peaks; the input
is the 1,000 bp window centred on the bin. Bins positive for no label are background: kept at
``background_ratio`` background windows per positive window of the same chromosome, drawn at random
or matched to the positives' GC content. Windows that run past a chromosome end, overlap the
blacklist or hold too many unknown bases are dropped and counted (in that order of precedence).

The genome is read one chromosome at a time (pysam, plain or bgzipped FASTA with its ``.fai``), so
memory holds one chromosome's bases, one chunk of windows and the peaks. Every peak file is read
and checked before anything is written; the three split files and the sidecar ``dataset.json``
appear together or not at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pysam

from amber_ray.atomic import atomic_paths, finite_json
from amber_ray.data.dataset import UNKNOWN_CODE, encode_codes
from amber_ray.data.hdf5 import DEFAULT_CHUNK_ROWS, SPLIT_FILES, BlockWriter
from amber_ray.data.tsv import read_tsv
from amber_ray.errors import AmberInputError

log = logging.getLogger(__name__)

SIDECAR = "dataset.json"
DEEPSEA_VALID = ("chr7",)
DEEPSEA_TEST = ("chr8", "chr9")
DROP_REASONS = ("chromosome_end", "blacklist", "n_rich")
GC_STRATA = 20
_PEAK_SUFFIXES = (".gz", ".bgz", ".narrowPeak", ".broadPeak", ".bed", ".txt", ".tsv")


@dataclass(frozen=True)
class WindowRule:
    """How bins are labelled and windows cut (DeepSEA's values by default)."""

    bin_size: int = 200
    window: int = 1000
    min_overlap: float = 0.5  # fraction of the bin inside one peak
    background_ratio: float = 1.0  # background windows per positive window, per chromosome
    background: str = "random"  # or "gc": matched to the positives' GC content
    max_n_fraction: float = 0.01
    seed: int = 0

    def check(self) -> None:
        problems = {
            "--bin-size must be positive": self.bin_size < 1,
            "--window must be at least --bin-size": self.window < self.bin_size,
            "--window and --bin-size must both be even or both odd, to centre the window on the bin": (
                (self.window - self.bin_size) % 2 != 0
            ),
            "--min-overlap must be in (0, 1]": not 0 < self.min_overlap <= 1,
            "--background-ratio must be 0 or more": self.background_ratio < 0,
            "--background must be random or gc": self.background not in ("random", "gc"),
            "--max-n must be in [0, 1]": not 0 <= self.max_n_fraction <= 1,
        }
        for problem, bad in problems.items():
            if bad:
                raise AmberInputError(problem, "amber-ray dataset")


@dataclass
class Peaks:
    """One label's peaks, as sorted ``(starts, ends)`` per chromosome (0-based, end exclusive)."""

    label: str
    path: Path
    by_chromosome: dict[str, tuple[np.ndarray, np.ndarray]]
    count: int


@dataclass
class Counts:
    """Windows written and dropped, for the sidecar."""

    windows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLIT_FILES, 0))
    positives: dict[str, list[int]] = field(default_factory=dict)  # split -> per-label positive windows
    background: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLIT_FILES, 0))
    dropped_positive: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    dropped_background: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    per_chromosome: dict[str, int] = field(default_factory=dict)


def label_from_path(path: Path) -> str:
    """``CTCF.narrowPeak.gz`` -> ``CTCF``."""
    name = path.name
    while name.endswith(_PEAK_SUFFIXES):
        name = name[: name.rindex(".")]
    return name


def peak_sources(peaks: Sequence[str], sample_sheet: Path | None) -> list[tuple[str, Path]]:
    """``(label, path)`` pairs from ``--peaks [LABEL=]PATH`` and a sample sheet (columns ``label``, ``path``)."""
    sources: list[tuple[str, Path]] = []
    for given in peaks:
        label, sep, path = given.partition("=")
        sources.append((label, Path(path)) if sep else (label_from_path(Path(given)), Path(given)))
    if sample_sheet is not None:
        table = read_tsv(sample_sheet, required=("label", "path"))
        for label, path in zip(table["label"], table["path"]):
            path = Path(path)
            sources.append((label.strip(), path if path.is_absolute() else sample_sheet.parent / path))
    if not sources:
        raise AmberInputError("give peak files (--peaks) or a sample sheet (--sample-sheet)", "amber-ray dataset")
    seen: set[str] = set()
    for label, path in sources:
        if not label:
            raise AmberInputError("empty label name", path)
        if label in seen:
            raise AmberInputError(f"label name {label!r} given twice (labels must be unique)", path)
        seen.add(label)
    return sources


def _chromosome_hint(chromosome: str, known: Sequence[str]) -> str:
    """``chr1`` vs ``1``: the name the genome uses, if it uses the other convention."""
    other = chromosome.removeprefix("chr") if chromosome.startswith("chr") else f"chr{chromosome}"
    return f" (the genome has {other!r}: 'chr1' vs '1' naming)" if other in known else ""


def read_intervals(path: Path, genome_chromosomes: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """BED3+ (BED, narrowPeak, gzipped or not) -> sorted ``(starts, ends)`` per chromosome, checked.

    ``track`` and ``browser`` lines and ``#`` comments are skipped; other columns are ignored.
    """
    if not path.is_file():
        raise AmberInputError("file not found", path)
    empty = AmberInputError("no intervals (tab-separated chrom, start, end)", path)
    try:
        table = pd.read_csv(
            path,
            sep="\t",
            header=None,
            names=[0, 1, 2],
            usecols=[0, 1, 2],
            index_col=False,
            comment="#",
            dtype=str,
            keep_default_na=False,
            compression="infer",
        )
    except pd.errors.EmptyDataError:
        raise empty from None
    except ValueError as error:
        if "Too many columns specified" in str(error):  # no line has three columns
            raise empty from None
        raise AmberInputError(f"not a readable BED file ({str(error).splitlines()[0]})", path) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as error:
        raise AmberInputError(f"not a readable BED file ({str(error).splitlines()[0]})", path) from None
    table = table[~table[0].str.startswith(("track", "browser"))]
    if table.empty:
        raise empty
    coordinates = table[[1, 2]].apply(pd.to_numeric, errors="coerce")
    for row, (chrom, start, end) in enumerate(zip(table[0], coordinates[1], coordinates[2]), start=1):
        if not (np.isfinite(start) and np.isfinite(end) and start == int(start) and end == int(end)):
            raise AmberInputError("start and end must be integers", path, f"{row} ({chrom})")
        if start < 0:
            raise AmberInputError(f"negative start {int(start)}", path, f"{row} ({chrom}:{int(start)}-{int(end)})")
        if start > end:
            raise AmberInputError(f"start {int(start)} > end {int(end)}", path, f"{row} ({chrom})")
    known = set(genome_chromosomes)
    missing = sorted(set(table[0]) - known)
    if missing:
        hint = _chromosome_hint(missing[0], genome_chromosomes)
        raise AmberInputError(f"chromosome {missing[0]!r} is not in the genome{hint}", path)
    frame = pd.DataFrame(
        {"chrom": table[0].to_numpy(), "start": coordinates[1].astype(np.int64), "end": coordinates[2].astype(np.int64)}
    )
    frame = frame.sort_values(["chrom", "start", "end"], kind="stable")
    return {chrom: (group["start"].to_numpy(), group["end"].to_numpy()) for chrom, group in frame.groupby("chrom", sort=False)}


def merge_intervals(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, overlapping intervals -> their union as disjoint sorted intervals."""
    if not len(starts):
        return starts, ends
    reach = np.maximum.accumulate(ends)
    new = np.r_[True, starts[1:] >= reach[:-1]]
    group = np.cumsum(new) - 1
    return starts[new], np.maximum.reduceat(ends, np.flatnonzero(new))[: group[-1] + 1]


def positive_bins(starts: np.ndarray, ends: np.ndarray, num_bins: int, rule: WindowRule) -> np.ndarray:
    """Indices of the bins that lie at least ``min_overlap`` inside one of the peaks ``[starts, ends)``."""
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    first = starts // rule.bin_size
    last = np.minimum((ends - 1) // rule.bin_size, num_bins - 1)
    spans = np.maximum(last - first + 1, 0)
    peak = np.repeat(np.arange(len(starts)), spans)
    bins = np.repeat(first, spans) + np.arange(spans.sum()) - np.repeat(np.cumsum(spans) - spans, spans)
    overlap = np.minimum(ends[peak], (bins + 1) * rule.bin_size) - np.maximum(starts[peak], bins * rule.bin_size)
    return np.unique(bins[overlap >= rule.min_overlap * rule.bin_size])


def _overlaps(window_starts: np.ndarray, window_ends: np.ndarray, merged: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """Whether each window overlaps one of the disjoint sorted intervals ``merged``."""
    if merged is None or not len(merged[0]):
        return np.zeros(len(window_starts), dtype=bool)
    starts, ends = merged
    before = np.searchsorted(starts, window_ends, side="left") - 1  # the last interval starting before the window ends
    return (before >= 0) & (ends[np.maximum(before, 0)] > window_starts)


class Genome:
    """A FASTA (plain or bgzipped) opened with pysam, which builds a missing ``.fai`` (and ``.gzi``)."""

    def __init__(self, path: Path):
        self.path = path
        if not path.is_file():
            raise AmberInputError("file not found", path)
        try:
            self.fasta = pysam.FastaFile(str(path))
        except (OSError, ValueError) as error:
            problem = f"no usable index and it cannot be indexed ({error}); bgzip it (not gzip) and run 'samtools faidx'"
            raise AmberInputError(problem, path) from None
        self.lengths = dict(zip(self.fasta.references, map(int, self.fasta.lengths)))

    def codes(self, chromosome: str) -> np.ndarray:
        """One chromosome as ``uint8`` base codes (0..3 for A, C, G, T; 4 for anything else)."""
        return encode_codes([self.fasta.fetch(chromosome)])[0]

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with self.path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()


def _unit_counts(codes: np.ndarray, unit: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative counts of unknown and of G/C bases at every multiple of ``unit`` (``ceil(len / unit) + 1`` each).

    Every window starts and ends on a multiple of ``unit``, so these give each window's counts while
    holding a few numbers per unit instead of a cumulative sum per base. The last, partial unit is
    counted whole; only windows past the chromosome end reach it, and those are dropped.
    """
    padded = np.zeros(-(-len(codes) // unit) * unit, dtype=np.uint8)
    padded[: len(codes)] = codes
    units = padded.reshape(-1, unit)
    n = np.r_[0, np.cumsum((units == UNKNOWN_CODE).sum(axis=1, dtype=np.int64))]
    gc = np.r_[0, np.cumsum(((units == 1) | (units == 2)).sum(axis=1, dtype=np.int64))]
    return n, gc


def _choose_background(
    rng: np.random.Generator, candidates: np.ndarray, positives: np.ndarray, gc: np.ndarray, rule: WindowRule
) -> np.ndarray:
    """Background bins among ``candidates``: ``background_ratio`` per positive, random or GC-matched."""
    wanted = min(round(rule.background_ratio * len(positives)), len(candidates))
    if rule.background == "random" or wanted == 0:
        return np.sort(rng.choice(candidates, wanted, replace=False))
    strata = np.minimum((gc * GC_STRATA).astype(np.int64), GC_STRATA - 1)
    chosen = []
    for stratum, count in zip(*np.unique(strata[positives], return_counts=True)):
        pool = candidates[strata[candidates] == stratum]
        take = min(round(rule.background_ratio * count), len(pool))
        chosen.append(rng.choice(pool, take, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else candidates[:0]


def _split_of(chromosome: str, valid: Sequence[str], test: Sequence[str]) -> str:
    return "valid" if chromosome in valid else "test" if chromosome in test else "train"


def _chromosome_windows(
    genome: Genome,
    chromosome: str,
    index: int,
    peaks: list[Peaks],
    blacklist: dict[str, tuple[np.ndarray, np.ndarray]],
    rule: WindowRule,
    counts: Counts,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """One chromosome's kept windows: ``(its codes, window starts, labels, number of background windows)``.

    None for a chromosome without a positive bin (it has no background either: the ratio is per chromosome).
    """
    length = genome.lengths[chromosome]
    num_bins = length // rule.bin_size
    label_bins = [
        positive_bins(*p.by_chromosome[chromosome], num_bins, rule) if chromosome in p.by_chromosome else np.zeros(0, np.int64)
        for p in peaks
    ]
    positive = np.unique(np.concatenate(label_bins)) if label_bins else np.zeros(0, np.int64)
    if not len(positive):
        return None
    codes = genome.codes(chromosome)
    bins = np.arange(num_bins)
    starts = bins * rule.bin_size + rule.bin_size // 2 - rule.window // 2
    ends = starts + rule.window
    reason = np.full(num_bins, -1)
    inside = (starts >= 0) & (ends <= length)
    reason[~inside] = 0
    merged = blacklist.get(chromosome)
    reason[(reason < 0) & _overlaps(starts, ends, merged)] = 1
    unit = math.gcd(rule.bin_size, rule.window, abs(rule.bin_size // 2 - rule.window // 2))
    cumulative_n, cumulative_gc = _unit_counts(codes, unit)
    first, last = np.clip(starts, 0, length) // unit, np.clip(ends, 0, length) // unit
    n_count = cumulative_n[last] - cumulative_n[first]
    reason[(reason < 0) & (n_count > rule.max_n_fraction * rule.window)] = 2
    is_positive = np.zeros(num_bins, dtype=bool)
    is_positive[positive] = True
    for code, name in enumerate(DROP_REASONS):
        counts.dropped_positive[name] += int(np.sum((reason == code) & is_positive))
        counts.dropped_background[name] += int(np.sum((reason == code) & ~is_positive))
    kept_positive = positive[reason[positive] < 0]
    candidates = np.flatnonzero((reason < 0) & ~is_positive)
    gc = (cumulative_gc[last] - cumulative_gc[first]) / rule.window
    background = _choose_background(np.random.default_rng([rule.seed, index]), candidates, kept_positive, gc, rule)
    kept = np.union1d(kept_positive, background)
    labels = np.zeros((len(kept), len(peaks)), dtype=np.uint8)
    for column, found in enumerate(label_bins):
        labels[np.isin(kept, found), column] = 1
    return codes, starts[kept], labels, len(background)


def _write_windows(
    writer: BlockWriter, chromosome: str, codes: np.ndarray, starts: np.ndarray, labels: np.ndarray, window: int
) -> None:
    """Append the windows a chunk at a time, so memory holds one chunk of windows, not all of them."""
    view = np.lib.stride_tricks.sliding_window_view(codes, window)
    step = writer.file["codes"].chunks[0]
    for first in range(0, len(starts), step):
        block = starts[first : first + step]
        names = [f"{chromosome}:{start}-{start + window}" for start in block]
        writer.append(view[block], labels[first : first + step], names)


def _check_split_chromosomes(genome: Genome, valid: Sequence[str], test: Sequence[str]) -> None:
    both = sorted(set(valid) & set(test))
    if both:
        raise AmberInputError(f"chromosome {both[0]!r} is both a validation and a test chromosome", genome.path)
    for chromosome in [*valid, *test]:
        if chromosome not in genome.lengths:
            hint = _chromosome_hint(chromosome, list(genome.lengths))
            raise AmberInputError(f"held-out chromosome {chromosome!r} is not in the genome{hint}", genome.path)


def build_dataset(
    genome_path: Path,
    sources: Sequence[tuple[str, Path]],
    out: Path,
    rule: WindowRule = WindowRule(),
    blacklist_path: Path | None = None,
    valid_chromosomes: Sequence[str] = DEEPSEA_VALID,
    test_chromosomes: Sequence[str] = DEEPSEA_TEST,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_chromosome: Callable[[str, int], None] | None = None,
) -> dict:
    """Write ``out/{train,valid,test}.h5`` and ``out/dataset.json``; returns the sidecar's content.

    ``on_chromosome(name, windows)`` is called after each chromosome (a progress bar).

    Every input is read and checked first; a bad one raises :class:`AmberInputError` and nothing is written.
    """
    rule.check()
    genome = Genome(genome_path)
    _check_split_chromosomes(genome, valid_chromosomes, test_chromosomes)
    chromosomes = list(genome.lengths)
    peaks = []
    for label, path in sources:
        intervals = read_intervals(path, chromosomes)
        peaks.append(Peaks(label, path, intervals, sum(len(starts) for starts, _ in intervals.values())))
    blacklist = {}
    if blacklist_path is not None:
        blacklist = {chrom: merge_intervals(*pair) for chrom, pair in read_intervals(blacklist_path, chromosomes).items()}
    counts = Counts(positives={split: [0] * len(peaks) for split in SPLIT_FILES})
    created = not out.exists()
    try:
        held_out = (valid_chromosomes, test_chromosomes)
        return _write_dataset(genome, peaks, blacklist, rule, counts, out, blacklist_path, held_out, chunk_rows, on_chromosome)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def _write_dataset(
    genome: Genome,
    peaks: list[Peaks],
    blacklist: dict[str, tuple[np.ndarray, np.ndarray]],
    rule: WindowRule,
    counts: Counts,
    out: Path,
    blacklist_path: Path | None,
    held_out: tuple[Sequence[str], Sequence[str]],
    chunk_rows: int,
    on_chromosome: Callable[[str, int], None] | None,
) -> dict:
    """Stream the chromosomes into the three split files and write the sidecar, all or nothing."""
    valid_chromosomes, test_chromosomes = held_out
    label_names = [p.label for p in peaks]
    targets = [out / name for name in SPLIT_FILES.values()] + [out / SIDECAR]
    with atomic_paths(targets) as temporaries:
        with (
            h5py.File(temporaries[0], "w") as train,
            h5py.File(temporaries[1], "w") as valid,
            h5py.File(temporaries[2], "w") as test,
        ):
            writers = {
                split: BlockWriter(file, rule.window, label_names, chunk_rows)
                for split, file in zip(SPLIT_FILES, (train, valid, test))
            }
            for index, chromosome in enumerate(genome.lengths):
                found = _chromosome_windows(genome, chromosome, index, peaks, blacklist, rule, counts)
                if on_chromosome is not None:
                    on_chromosome(chromosome, 0 if found is None else len(found[1]))
                if found is None:
                    continue
                codes, starts, labels, background = found
                split = _split_of(chromosome, valid_chromosomes, test_chromosomes)
                _write_windows(writers[split], chromosome, codes, starts, labels, rule.window)
                counts.windows[split] += len(starts)
                counts.background[split] += background
                counts.positives[split] = [a + int(b) for a, b in zip(counts.positives[split], labels.sum(axis=0))]
                counts.per_chromosome[chromosome] = len(starts)
                log.info("%s: %d windows (%d background) -> %s", chromosome, len(starts), background, split)
        for split, written in counts.windows.items():
            if not written:
                problem = f"no {split} windows: no peak survives on its chromosomes; choose other held-out chromosomes"
                raise AmberInputError(problem, genome.path)
        sidecar = {
            "genome": {"path": str(genome.path), "name": genome.path.name, "sha256": genome.sha256()},
            "labels": [{"name": p.label, "path": str(p.path), "peaks": p.count} for p in peaks],
            "blacklist": None if blacklist_path is None else str(blacklist_path),
            "rule": asdict(rule),
            "split": {"valid_chromosomes": list(valid_chromosomes), "test_chromosomes": list(test_chromosomes)},
            "counts": asdict(counts),
        }
        temporaries[3].write_text(json.dumps(finite_json(sidecar), indent=2) + "\n")
    return sidecar


def read_sidecar(directory: Path) -> dict | None:
    """The ``dataset.json`` of a directory built from peaks, or None for other HDF5 directories."""
    path = Path(directory) / SIDECAR
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise AmberInputError(f"not valid JSON ({error})", path) from None
