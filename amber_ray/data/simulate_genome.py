"""A simulated genome with peak calls, in the formats labs have: bgzipped FASTA + index, narrowPeak, blacklist BED.

Bases are i.i.d. uniform, except the first ``telomere`` bases of each chromosome and one gap in its
middle, which are ``N`` (as assembly gaps are). Each label is one JASPAR motif: its peaks are placed
uniformly at random on every chromosome (``peaks_per_mb`` per label), are ``peak_width`` wide, and
one instance of the motif, sampled from its probability matrix on a random strand, is planted at the
summit (the peak's centre). A few short blacklist intervals are drawn per chromosome. Peaks of
different labels may overlap; a later instance then overwrites an earlier one.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pysam

from amber_ray.data.simulate import reverse_complement, sample_instance
from amber_ray.jaspar import jaspar_motif

_LETTERS = np.frombuffer(b"ACGTN", dtype=np.uint8)


@dataclass
class SimulatedGenome:
    """Paths of the written files."""

    genome: Path
    peaks: dict[str, Path]  # label -> narrowPeak.gz
    blacklist: Path


def _write_fasta(path: Path, chromosomes: dict[str, np.ndarray]) -> None:
    """Plain FASTA, bgzipped and indexed (``.fai`` and ``.gzi``) with pysam; the plain file is removed."""
    plain = path.with_suffix("")
    with plain.open("wb") as handle:
        for name, codes in chromosomes.items():
            handle.write(f">{name}\n".encode())
            for start in range(0, len(codes), 80):
                handle.write(_LETTERS[codes[start : start + 80]].tobytes() + b"\n")
    pysam.tabix_compress(str(plain), str(path), force=True)
    plain.unlink()
    pysam.faidx(str(path))


def simulate_genome(
    directory: Path,
    chromosome_lengths: dict[str, int],
    motif_ids: list[str],
    seed: int = 0,
    peaks_per_mb: float = 100.0,
    peak_width: int = 300,
    telomere: int = 2000,
    gap: int = 1000,
    blacklist_per_chromosome: int = 2,
) -> SimulatedGenome:
    """Write ``genome.fa.gz`` (+ index), ``<label>.narrowPeak.gz`` per motif and ``blacklist.bed`` under ``directory``."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    motifs = [jaspar_motif(motif_id, "motif_ids") for motif_id in motif_ids]
    labels = [
        name if [n for n, _ in motifs].count(name) == 1 else f"{name}_{motif_id}"
        for motif_id, (name, _) in zip(motif_ids, motifs)
    ]
    labels = [label.replace("::", "_").replace("/", "_") for label in labels]
    sequences: dict[str, np.ndarray] = {}
    rows: dict[str, list[str]] = {label: [] for label in labels}
    blacklist: list[str] = []
    for chrom, length in chromosome_lengths.items():
        codes = rng.integers(0, 4, length, dtype=np.uint8)
        codes[:telomere] = 4
        middle = length // 2
        codes[middle : middle + gap] = 4
        for label, (_, ppm) in zip(labels, motifs):
            count = rng.poisson(peaks_per_mb * length / 1e6)
            starts = np.sort(rng.integers(telomere, length - peak_width, count))
            for start in starts:
                summit = peak_width // 2
                instance = sample_instance(rng, ppm)
                if rng.random() < 0.5:
                    instance = reverse_complement(instance)
                at = start + summit - len(ppm) // 2
                codes[at : at + len(ppm)] = instance
                signal = rng.uniform(5, 50)
                rows[label].append(
                    f"{chrom}\t{start}\t{start + peak_width}\t{label}_peak{len(rows[label])}\t1000\t.\t"
                    f"{signal:.2f}\t{signal / 2:.2f}\t{signal / 3:.2f}\t{summit}"
                )
        for start in np.sort(rng.integers(telomere, length - 2000, blacklist_per_chromosome)):
            blacklist.append(f"{chrom}\t{start}\t{start + int(rng.integers(200, 1500))}")
        sequences[chrom] = codes
    genome = directory / "genome.fa.gz"
    _write_fasta(genome, sequences)
    peaks = {}
    for label, lines in rows.items():
        peaks[label] = directory / f"{label}.narrowPeak.gz"
        with gzip.open(peaks[label], "wt") as handle:
            handle.write("".join(line + "\n" for line in lines))
    blacklist_path = directory / "blacklist.bed"
    blacklist_path.write_text("".join(line + "\n" for line in blacklist))
    return SimulatedGenome(genome, peaks, blacklist_path)
