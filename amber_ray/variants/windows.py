"""Ref and alt windows of the model's input length, from a VCF and a reference FASTA or from sequence pairs.

Windows. A model takes ``L`` bp (its ``space.input_length``). For a VCF record at 1-based ``POS``
the reference window is ``[POS - 1 - L//2, POS - 1 - L//2 + L)`` (0-based), so the first base of
REF sits at index ``L//2``. The alternative window keeps the same left flank, then ALT, then the
genome after REF, cut to ``L``: an insertion pushes the right flank out, a deletion pulls more of it
in, and both windows are always ``L`` bp (as Selene does for small indels). A window that would
leave the chromosome is not padded: the variant is listed in the side file instead.

Pairs. ``--ref-fasta A --alt-fasta B`` pairs records by name; sequences of another length than
``L`` are centred: shorter ones padded with ``N`` on both sides (``N`` is 0.25 per base), longer
ones cropped around their centre.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amber_ray.data.dataset import encode_codes
from amber_ray.data.fasta import read_fasta
from amber_ray.errors import AmberInputError
from amber_ray.variants.genome import ReferenceGenome
from amber_ray.variants.vcf import SKIPPED_COLUMNS, Variant, read_vcf

log = logging.getLogger(__name__)


@dataclass
class Windows:
    """Ref and alt windows ``uint8 (N, L)`` (codes 0..3 for A, C, G, T, 4 for N) and what they are.

    ``chrom`` and ``pos`` are None for sequence pairs, which have no genomic position.
    """

    variant_id: list[str]
    chrom: list[str | None]
    pos: list[int | None]
    ref: list[str]
    alt: list[str]
    ref_codes: np.ndarray
    alt_codes: np.ndarray

    def __len__(self) -> int:
        return len(self.variant_id)


def _window_pair(genome: ReferenceGenome, name: str, variant: Variant, length: int) -> tuple[str, str] | str:
    """(ref window, alt window) of ``length`` bp, or the reason the variant cannot be scored."""
    half = length // 2
    room = length - half
    if len(variant.ref) > room or len(variant.alt) > room:
        return f"allele longer than {room} bp, half the model's {length}-bp input"
    left = variant.pos - 1 - half
    end = max(left + length, variant.pos - 1 + len(variant.ref) + room - len(variant.alt))
    size = genome.length(name)
    if left < 0 or end > size:
        return f"too close to the chromosome end: the {length}-bp window {left + 1}-{end} leaves 1-{size}"
    seq = genome.fetch(name, left, end)
    found = seq[half : half + len(variant.ref)]
    if found != variant.ref:
        return f"REF {variant.ref} does not match the reference genome ({found})"
    return seq[:length], (seq[:half] + variant.alt + seq[half + len(variant.ref) :])[:length]


def _skipped_row(variant: Variant, reason: str) -> dict[str, object]:
    fields = {name: getattr(variant, name) for name in SKIPPED_COLUMNS[:-1]}
    return {**fields, "reason": reason}


def vcf_windows(vcf: str | Path, fasta: str | Path, length: int) -> tuple[Windows, list[dict[str, object]]]:
    """Windows of every scorable variant, and side-file rows (REF mismatch, chromosome end, bad allele).

    A chromosome absent from the FASTA (after ``chr`` reconciliation) is an error, not a skip: it
    means the wrong genome or naming, which would otherwise silently drop whole chromosomes.
    """
    variants, skipped = read_vcf(vcf)
    genome = ReferenceGenome(fasta)
    names: dict[str, str] = {}
    kept: list[Variant] = []
    ref_seqs, alt_seqs = [], []
    for variant in variants:
        if variant.chrom not in names:
            names[variant.chrom] = genome.require(variant.chrom, vcf, f"{variant.record} ({variant.chrom}:{variant.pos})")
        pair = _window_pair(genome, names[variant.chrom], variant, length)
        if isinstance(pair, str):
            skipped.append(_skipped_row(variant, pair))
            continue
        kept.append(variant)
        ref_seqs.append(pair[0])
        alt_seqs.append(pair[1])
    windows = Windows(
        [v.variant_id for v in kept],
        [v.chrom for v in kept],
        [v.pos for v in kept],
        [v.ref for v in kept],
        [v.alt for v in kept],
        _codes(ref_seqs, length),
        _codes(alt_seqs, length),
    )
    log.info("%d variants to score, %d not scored (see the side file)", len(windows), len(skipped))
    return windows, skipped


def _codes(seqs: list[str], length: int) -> np.ndarray:
    return encode_codes(seqs) if seqs else np.zeros((0, length), dtype=np.uint8)


# --- sequence pairs ---------------------------------------------------------------------------


def fit_length(seq: str, length: int) -> str:
    """Centre ``seq`` in ``length`` bp: pad with ``N`` on both sides (extra one on the right) or crop."""
    if len(seq) <= length:
        left = (length - len(seq)) // 2
        return "N" * left + seq + "N" * (length - len(seq) - left)
    start = (len(seq) - length) // 2
    return seq[start : start + length]


def _differing_alleles(first: str, second: str) -> tuple[str, str]:
    """The bases that differ between two equal-length sequences (e.g. an SNV), '' when not comparable."""
    if len(first) != len(second):
        return "", ""
    positions = [i for i, (a, b) in enumerate(zip(first, second)) if a != b]
    return "".join(first[i] for i in positions), "".join(second[i] for i in positions)


def pair_windows(ref_fasta: str | Path, alt_fasta: str | Path, length: int) -> Windows:
    """Windows of sequence pairs: records of the two files paired by name (each file one length)."""
    ref_names, ref_seqs = read_fasta(ref_fasta)
    alt_names, alt_seqs = read_fasta(alt_fasta)
    alt_by_name = dict(zip(alt_names, alt_seqs))
    unpaired = next((name for name in ref_names if name not in alt_by_name), None)
    if unpaired is not None:
        raise AmberInputError(f"has no record of this name in {alt_fasta}", ref_fasta, unpaired)
    known = set(ref_names)
    unpaired = next((name for name in alt_names if name not in known), None)
    if unpaired is not None:
        raise AmberInputError(f"has no record of this name in {ref_fasta}", alt_fasta, unpaired)
    seq_lengths = {len(ref_seqs[0]), len(alt_by_name[ref_names[0]])}
    if seq_lengths != {length}:
        how = "centre-padded with N" if max(seq_lengths) < length else "centred and cropped or padded"
        log.info("pairs are %s bp, the model takes %d bp: sequences are %s", "/".join(map(str, sorted(seq_lengths))), length, how)
    pairs = [(ref, alt_by_name[name]) for name, ref in zip(ref_names, ref_seqs)]
    alleles = [_differing_alleles(ref, alt) for ref, alt in pairs]
    return Windows(
        list(ref_names),
        [None] * len(pairs),
        [None] * len(pairs),
        [a for a, _ in alleles],
        [b for _, b in alleles],
        encode_codes([fit_length(ref, length) for ref, _ in pairs]),
        encode_codes([fit_length(alt, length) for _, alt in pairs]),
    )


def load_windows(
    length: int,
    vcf: Path | None = None,
    fasta: Path | None = None,
    ref_fasta: Path | None = None,
    alt_fasta: Path | None = None,
) -> tuple[Windows, list[dict[str, object]]]:
    """Windows from exactly one input mode: ``vcf`` + ``fasta``, or ``ref_fasta`` + ``alt_fasta``."""
    genomic, paired = (vcf, fasta), (ref_fasta, alt_fasta)
    if all(p is not None for p in genomic) and all(p is None for p in paired):
        return vcf_windows(vcf, fasta, length)
    if all(p is not None for p in paired) and all(p is None for p in genomic):
        return pair_windows(ref_fasta, alt_fasta, length), []
    raise AmberInputError("give either --vcf with --fasta, or --ref-fasta with --alt-fasta", "variants")
