"""Variant effect prediction: VCF or allele pairs -> ref/alt windows -> scores; ASB evaluation; LDSC export.

Windows. A model takes ``L`` bp (its ``space.input_length``). For a VCF record at 1-based ``POS``
the reference window is ``[POS - 1 - L//2, POS - 1 - L//2 + L)`` (0-based), so the first base of
REF sits at index ``L//2``. The alternative window keeps the same left flank, then ALT, then the
genome after REF, cut to ``L``: an insertion pushes the right flank out, a deletion pulls more of it
in, and both windows are always ``L`` bp (as Selene does for small indels). A window that would
leave the chromosome is not padded: the variant is listed in the side file instead.

Pairs. ``--ref-fasta A --alt-fasta B`` pairs records by name; sequences of another length than
``L`` are centred: shorter ones padded with ``N`` on both sides (``N`` is 0.25 per base), longer
ones cropped around their centre.

Scores per variant and label, from probabilities clipped to ``[1e-6, 1 - 1e-6]`` for the logs:
``diff = alt - ref``, ``log2fc = log2(alt / ref)``, ``logit_diff = logit(alt) - logit(ref)``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from amber_ray.atomic import atomic_path, atomic_write_json, atomic_write_table
from amber_ray.data.dataset import codes_to_one_hot, encode_codes
from amber_ray.data.fasta import read_fasta
from amber_ray.data.simulate import jaspar_motif
from amber_ray.data.tsv import read_tsv
from amber_ray.errors import AmberInputError
from amber_ray.predict import held, label_index
from amber_ray.training import minibatch_indices

log = logging.getLogger(__name__)

EPS = 1e-6
SCORE_COLUMNS = ["variant_id", "chrom", "pos", "ref", "alt", "label", "ref_prob", "alt_prob", "diff", "log2fc", "logit_diff"]
SKIPPED_COLUMNS = ["variant_id", "chrom", "pos", "ref", "alt", "reason"]
VCF_COLUMNS = "CHROM POS ID REF ALT QUAL FILTER INFO"
_ALLELE = re.compile(r"^[ACGTN]+$")
_JASPAR_ID = re.compile(r"^(MA\d{4}\.\d+)")

OnBatch = Callable[[int], None]


def _clipped(probs: np.ndarray) -> np.ndarray:
    return np.clip(probs, EPS, 1 - EPS)


def _logit(probs: np.ndarray) -> np.ndarray:
    return np.log(probs / (1 - probs))


# Effect of a variant from ref and alt probabilities, per label.
EFFECT_SCORES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "diff": lambda ref, alt: alt - ref,
    "log2fc": lambda ref, alt: np.log2(_clipped(alt) / _clipped(ref)),
    "logit_diff": lambda ref, alt: _logit(_clipped(alt)) - _logit(_clipped(ref)),
}


@dataclass(frozen=True)
class Variant:
    """One ALT allele of a VCF record (multi-allelic records are split into one per ALT)."""

    variant_id: str
    chrom: str
    pos: int
    ref: str
    alt: str
    record: int


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


@dataclass
class VariantEffects:
    """Predictions ``(N, labels)`` for the ref and alt windows of each variant."""

    windows: Windows
    label_names: list[str]
    ref_probs: np.ndarray
    alt_probs: np.ndarray

    def score(self, name: str) -> np.ndarray:
        """``(N, labels)`` matrix of one of :data:`EFFECT_SCORES`."""
        if name not in EFFECT_SCORES:
            raise AmberInputError(f"unknown score {name!r}; one of {list(EFFECT_SCORES)}", "score")
        return EFFECT_SCORES[name](self.ref_probs.astype(np.float64), self.alt_probs.astype(np.float64))

    def table(self) -> pd.DataFrame:
        """Long format: one row per variant and label, variant-major, columns :data:`SCORE_COLUMNS`."""
        w, labels = self.windows, len(self.label_names)

        def per_variant(values: Sequence[object], dtype: str) -> pd.Series:
            return pd.Series(np.repeat(np.asarray(values, dtype=object), labels)).astype(dtype)

        columns = {
            "variant_id": per_variant(w.variant_id, "string"),
            "chrom": per_variant(w.chrom, "string"),
            "pos": per_variant([pd.NA if p is None else p for p in w.pos], "Int64"),
            "ref": per_variant(w.ref, "string"),
            "alt": per_variant(w.alt, "string"),
            "label": pd.Series(np.tile(np.asarray(self.label_names, dtype=object), len(w))).astype("string"),
            "ref_prob": self.ref_probs.ravel(),
            "alt_prob": self.alt_probs.ravel(),
        }
        columns.update({name: self.score(name).ravel() for name in EFFECT_SCORES})
        return pd.DataFrame(columns, columns=SCORE_COLUMNS)


# --- model ------------------------------------------------------------------------------------


@torch.no_grad()
def predict_codes(model: nn.Module, codes: np.ndarray, both_strands: bool = False) -> np.ndarray:
    """Sigmoid outputs ``(N, labels)`` of one batch of codes ``(N, L)``, on the model's device, returned on
    the CPU; with ``both_strands`` the mean of the forward and reverse-complement predictions. The caller
    sets eval mode."""
    x = torch.from_numpy(codes_to_one_hot(codes)).to(next(model.parameters()).device)
    probs = torch.sigmoid(model(x))
    if both_strands:  # A, C, G, T order: complementing is reversing the channel axis
        probs = (probs + torch.sigmoid(model(x.flip((1, 2))))) / 2
    return probs.float().cpu().numpy()


def score_windows(
    model: nn.Module,
    windows: Windows,
    label_names: list[str],
    batch_size: int = 64,
    both_strands: bool = False,
    on_batch: OnBatch | None = None,
) -> VariantEffects:
    """Predict ref and alt windows in batches of ``batch_size`` variants; the model's mode is restored."""
    ref_parts, alt_parts = [], []
    with held(model):
        for index in minibatch_indices(len(windows), batch_size, None):
            ref_parts.append(predict_codes(model, windows.ref_codes[index], both_strands))
            alt_parts.append(predict_codes(model, windows.alt_codes[index], both_strands))
            if on_batch:
                on_batch(len(index))
    empty = np.zeros((0, len(label_names)), dtype=np.float32)
    ref = np.concatenate(ref_parts) if ref_parts else empty
    alt = np.concatenate(alt_parts) if alt_parts else empty
    return VariantEffects(windows, label_names, ref, alt)


# --- VCF --------------------------------------------------------------------------------------


def _open_text(path: Path):
    """Plain or gzip/bgzip text, by the file's magic bytes."""
    with path.open("rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", errors="replace") if gzipped else path.open(errors="replace")


def _describe_data_line(path: Path, record: int) -> str:
    """Why the ``record``-th data line (1-based) of a VCF cannot be parsed, with its line number."""
    with _open_text(path) as handle:
        seen = 0
        for line_number, line in enumerate(handle, start=1):
            if line.startswith("#"):
                continue
            seen += 1
            if seen == record:
                columns = line.rstrip("\r\n").split("\t")
                if len(columns) < 8:
                    return f"line {line_number} has {len(columns)} tab-separated columns; a VCF data line needs 8 ({VCF_COLUMNS})"
                return f"line {line_number} is not a valid VCF data line ({line.strip()[:60]!r})"
    return "cannot be parsed"


def _record_variants(record, number: int) -> tuple[list[Variant], list[dict[str, object]]]:
    """Split one pysam record into variants; alleles that cannot be scored become side-file rows."""
    ref = record.ref.upper()
    alts = [alt.upper() for alt in record.alts or ()]
    chrom, pos = record.chrom, record.pos
    skipped_row = {"variant_id": record.id or f"{chrom}:{pos}:{ref}:.", "chrom": chrom, "pos": pos, "ref": ref, "alt": "."}
    if not alts:
        return [], [{**skipped_row, "reason": "no ALT allele"}]
    variants, skipped = [], []
    for alt in alts:
        variant_id = record.id if record.id and len(alts) == 1 else f"{record.id or f'{chrom}:{pos}:{ref}'}:{alt}"
        if not _ALLELE.match(ref) or not _ALLELE.match(alt):
            reason = "REF or ALT is not a sequence of A, C, G, T, N (symbolic, breakend or '*' allele)"
            skipped.append({**skipped_row, "variant_id": variant_id, "alt": alt, "reason": reason})
        else:
            variants.append(Variant(variant_id, chrom, pos, ref, alt, number))
    return variants, skipped


def _is_plain_gzip(path: Path) -> bool:
    """gzip but not BGZF (whose header carries a 'BC' extra field): htslib cannot read it as a VCF."""
    with path.open("rb") as handle:
        head = handle.read(14)
    return head[:2] == b"\x1f\x8b" and not (len(head) == 14 and head[3] & 4 and head[12:14] == b"BC")


@contextmanager
def _htslib_readable(path: Path) -> Iterator[Path]:
    """``path``, or for plain gzip a decompressed temporary copy (removed afterwards)."""
    if not _is_plain_gzip(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="amber_ray-vcf-") as folder:
        plain = Path(folder) / path.name.removesuffix(".gz")
        with gzip.open(path, "rb") as source, plain.open("wb") as target:
            shutil.copyfileobj(source, target)
        yield plain


def read_vcf(path: str | Path) -> tuple[list[Variant], list[dict[str, object]]]:
    """Variants of a VCF (plain, gzip or bgzip) in file order, multi-allelic records split per ALT.

    Sorting is not required. Records whose alleles cannot be scored (no ALT, symbolic ALT) come
    back as side-file rows; an unparsable record is an error naming the file, record and line.
    """
    path = Path(path)
    if not path.is_file():
        raise AmberInputError("file not found", path)
    with _htslib_readable(path) as readable:
        return _read_vcf_records(path, readable)


def _read_vcf_records(path: Path, readable: Path) -> tuple[list[Variant], list[dict[str, object]]]:
    import pysam

    previous = pysam.set_verbosity(0)  # htslib would print its own warnings to stderr
    try:
        try:
            vcf = pysam.VariantFile(str(readable))
        except (ValueError, OSError, NotImplementedError):
            problem = f"not a VCF file: needs '##fileformat=VCF...' and a '#CHROM' header line ({VCF_COLUMNS})"
            raise AmberInputError(problem, path) from None
        variants, skipped = [], []
        number = 0
        with vcf:
            records = iter(vcf)
            while True:
                try:
                    record = next(records)
                except StopIteration:
                    break
                except (OSError, ValueError):
                    raise AmberInputError(_describe_data_line(readable, number + 1), path, number + 1) from None
                number += 1
                found, rejected = _record_variants(record, number)
                variants += found
                skipped += rejected
    finally:
        pysam.set_verbosity(previous)
    if not number:
        raise AmberInputError("no variant records", path)
    return variants, skipped


# --- reference genome -------------------------------------------------------------------------


def _index_path(fasta: Path) -> Path:
    """``FASTA.fai`` when it exists or can be written there; else a cached index in the temp dir."""
    beside = Path(f"{fasta}.fai")
    if beside.is_file() or os.access(fasta.parent, os.W_OK):
        return beside
    digest = hashlib.sha1(str(fasta.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"amber_ray-{digest}.fai"


class ReferenceGenome:
    """An indexed reference FASTA (pyfaidx; plain or bgzip) with chromosome-name reconciliation."""

    def __init__(self, path: str | Path):
        import pyfaidx

        self.path = Path(path)
        if not self.path.is_file():
            raise AmberInputError("file not found", self.path)
        try:
            self.fasta = pyfaidx.Fasta(
                str(self.path), indexname=str(_index_path(self.path)), as_raw=True, sequence_always_upper=True
            )
        except (pyfaidx.FastaIndexingError, pyfaidx.UnsupportedCompressionFormat, OSError, ValueError) as error:
            raise AmberInputError(f"cannot index the reference FASTA ({str(error).splitlines()[0]})", self.path) from None
        self.names = list(self.fasta.keys())
        self._known = set(self.names)

    def resolve(self, chrom: str) -> str | None:
        """The FASTA's name for ``chrom``: as is, with or without ``chr``, ``M``/``MT`` alike; None if absent."""
        bare = chrom[3:] if chrom.lower().startswith("chr") else chrom
        candidates = [chrom, bare, f"chr{bare}"]
        if bare.upper() in ("M", "MT"):
            candidates += ["chrM", "MT", "M", "chrMT"]
        return next((name for name in candidates if name in self._known), None)

    def length(self, name: str) -> int:
        return len(self.fasta[name])

    def fetch(self, name: str, start: int, end: int) -> str:
        """Bases ``[start, end)`` (0-based) of a sequence, upper case."""
        return self.fasta[name][start:end]


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


def vcf_windows(
    vcf: str | Path, fasta: str | Path, length: int
) -> tuple[Windows, list[dict[str, object]]]:
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
            name = genome.resolve(variant.chrom)
            if name is None:
                shown = ", ".join(genome.names[:5]) + (", ..." if len(genome.names) > 5 else "")
                problem = f"chromosome {variant.chrom!r} is not in {genome.path} (it has {shown})"
                raise AmberInputError(problem, vcf, f"{variant.record} ({variant.chrom}:{variant.pos})")
            names[variant.chrom] = name
        pair = _window_pair(genome, names[variant.chrom], variant, length)
        if isinstance(pair, str):
            skipped.append(_skipped_row(variant, pair))
            continue
        kept.append(variant)
        ref_seqs.append(pair[0])
        alt_seqs.append(pair[1])
    windows = Windows(
        [v.variant_id for v in kept], [v.chrom for v in kept], [v.pos for v in kept],
        [v.ref for v in kept], [v.alt for v in kept], _codes(ref_seqs, length), _codes(alt_seqs, length),
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
        list(ref_names), [None] * len(pairs), [None] * len(pairs),
        [a for a, _ in alleles], [b for _, b in alleles],
        encode_codes([fit_length(ref, length) for ref, _ in pairs]),
        encode_codes([fit_length(alt, length) for _, alt in pairs]),
    )


# --- output -----------------------------------------------------------------------------------


def side_file(out: str | Path) -> Path:
    """Where the not-scored variants of ``out`` go: ``scores.parquet`` -> ``scores.skipped.tsv``."""
    out = Path(out)
    return out.with_name(f"{out.name.removesuffix('.tsv').removesuffix('.parquet')}.skipped.tsv")


def check_score_output(out: Path, ldsc_score: str = "diff") -> None:
    """Fail before any work when the table name or the LDSC score is not one we can write."""
    if out.suffix not in (".parquet", ".tsv"):
        raise AmberInputError("output must end in .parquet or .tsv", out)
    if ldsc_score not in EFFECT_SCORES:
        raise AmberInputError(f"unknown score {ldsc_score!r}; one of {list(EFFECT_SCORES)}", "--ldsc-score")


def _chrom_number(chrom: str) -> str:
    """LDSC's CHR: the chromosome without its ``chr`` prefix."""
    return chrom[3:] if chrom.lower().startswith("chr") else chrom


def ldsc_annotations(effects: VariantEffects, score: str = "diff") -> dict[str, pd.DataFrame]:
    """Per chromosome, LDSC annotation rows sorted by BP: CHR, BP, SNP, CM, one ``|score|`` column per label.

    CM is 0 (ldsc takes genetic distances from the reference panel's .bim, not from .annot).
    Rows must match the reference panel's .bim rows for ``ldsc.py --l2``: score the panel's SNPs.
    """
    w = effects.windows
    if any(chrom is None for chrom in w.chrom):
        raise AmberInputError("LDSC annotations need genomic positions: score a VCF, not sequence pairs", "--ldsc-annot")
    values = np.abs(effects.score(score))
    columns = [re.sub(r"\s+", "_", label) for label in effects.label_names]
    table = pd.DataFrame({"CHR": [_chrom_number(c) for c in w.chrom], "BP": w.pos, "SNP": w.variant_id, "CM": 0.0})
    table = pd.concat([table, pd.DataFrame(values, columns=columns)], axis=1)
    return {str(chrom): group.sort_values("BP", kind="stable") for chrom, group in table.groupby("CHR", sort=True)}


def ldsc_path(prefix: str | Path, chrom: str) -> Path:
    return Path(f"{prefix}.{chrom}.annot.gz")


def write_scores(
    effects: VariantEffects,
    skipped: list[dict[str, object]],
    out: str | Path,
    ldsc_prefix: str | Path | None = None,
    ldsc_score: str = "diff",
) -> list[Path]:
    """Write the score table (parquet, or TSV by extension), its side file and LDSC files; returns the paths.

    Everything is computed before the first file is written, and each file is written atomically.
    """
    out = Path(out)
    check_score_output(out, ldsc_score)
    annotations = ldsc_annotations(effects, ldsc_score) if ldsc_prefix is not None else {}
    table = effects.table()
    atomic_write_table(table, out)
    atomic_write_table(pd.DataFrame(skipped, columns=SKIPPED_COLUMNS), side_file(out))
    written = [out, side_file(out)]
    for chrom, rows in annotations.items():
        path = ldsc_path(ldsc_prefix, chrom)
        with atomic_path(path) as tmp:
            rows.to_csv(tmp, sep="\t", index=False, compression="gzip")
        written.append(path)
    return written


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


# --- allele-specific binding evaluation -------------------------------------------------------


def signed_rank(values: np.ndarray) -> np.ndarray:
    """Rank transform to [-1, 1] that keeps sign and order: ``sign(x) * rank(|x|) / n`` (ties averaged)."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return values
    ranks = pd.Series(np.abs(values)).rank(method="average").to_numpy()
    return np.sign(values) * ranks / len(values)


def direction_metrics(preferred: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """AUROC and accuracy of ``score > 0`` (first allele up) against ``preferred`` (1: first allele).

    The AUROC counts every pair in both orientations (score with its label, minus score with the
    flipped label), so it does not depend on which allele is listed first and is defined even when
    every pair prefers the first allele (dsQTL high/low files). A zero score counts half right.
    """
    preferred = np.asarray(preferred, dtype=np.int64)
    score = np.asarray(score, dtype=np.float64)
    auroc = roc_auc_score(np.concatenate([preferred, 1 - preferred]), np.concatenate([score, -score]))
    right = np.where(score == 0, 0.5, (score > 0) == (preferred == 1))
    return {"auroc": float(auroc), "accuracy": float(right.mean())}


@functools.lru_cache(maxsize=None)
def pwm_log_odds(motif_id: str, pseudo: float = 0.01) -> tuple[str, np.ndarray]:
    """Name and log2-odds matrix ``(width, 5)`` against a uniform background; column 4 (``N``) is the mean."""
    try:
        name, ppm = jaspar_motif(motif_id)
    except AmberInputError as error:
        raise AmberInputError(error.problem, "--motif") from None
    odds = np.log2((ppm + pseudo) / (1 + 4 * pseudo) / 0.25)
    return name, np.hstack([odds, odds.mean(axis=1, keepdims=True)])


def _window_scores(codes: np.ndarray, log_odds: np.ndarray) -> np.ndarray:
    """Best-strand log-odds ``(N, L - width + 1)`` of every window of codes ``(N, L)``."""
    width = len(log_odds)
    windows = np.lib.stride_tricks.sliding_window_view(codes, width, axis=1)
    positions = np.arange(width)
    reverse = log_odds[::-1][:, [3, 2, 1, 0, 4]]  # reverse complement: A<->T, C<->G, N stays
    return np.maximum(log_odds[positions, windows].sum(-1), reverse[positions, windows].sum(-1))


def pwm_allele_scores(first: np.ndarray, second: np.ndarray, log_odds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best PWM log-odds of each allele over the windows (either strand) that overlap the variant.

    The variant is where the two sequences differ; for identical pairs, the centre.
    """
    width, length = len(log_odds), first.shape[1]
    if width > length:
        raise AmberInputError(f"motif is {width} bp, longer than the {length}-bp sequences", "--motif")
    differs = first != second
    differs[~differs.any(axis=1), length // 2] = True
    cumulative = np.concatenate([np.zeros((len(first), 1), dtype=np.int64), np.cumsum(differs, axis=1)], axis=1)
    overlaps = (cumulative[:, width:] - cumulative[:, :-width]) > 0
    best = [np.where(overlaps, _window_scores(codes, log_odds), -np.inf).max(axis=1) for codes in (first, second)]
    return best[0], best[1]


def motif_for_label(label: str, motif: str | None) -> str:
    """The JASPAR id to use: ``motif`` if given, else the id a simulator label starts with."""
    if motif:
        return motif
    match = _JASPAR_ID.match(label)
    if not match:
        raise AmberInputError(f"label {label!r} names no JASPAR matrix: give --motif (e.g. MA0139.1)", "--motif")
    return match.group(1)


def read_preferred(path: Path | None, variant_ids: list[str]) -> np.ndarray:
    """1 where the first (ref / ``--ref-fasta``) allele is preferred; from a TSV (``variant_id``, ``preferred``)
    or, without one, 1 for every pair (e.g. dsQTL high-sensitivity allele first)."""
    if path is None:
        return np.ones(len(variant_ids), dtype=np.int64)
    table = read_tsv(path, required=("variant_id", "preferred"))
    bad = table.index[~table["preferred"].isin(["0", "1"])]
    if len(bad):
        raise AmberInputError(f"preferred {table.at[bad[0], 'preferred']!r} is not 0 or 1", path, table.at[bad[0], "variant_id"])
    values = dict(zip(table["variant_id"], table["preferred"].astype(int)))
    absent = next((v for v in variant_ids if v not in values), None)
    if absent is not None:
        raise AmberInputError("has no row for this scored variant", path, absent)
    return np.array([values[v] for v in variant_ids], dtype=np.int64)


def evaluate_pairs(
    effects: VariantEffects, label: str | None, motif: str | None, preferred: np.ndarray
) -> tuple[dict[str, object], pd.DataFrame]:
    """Allele-specific binding: model (first - second probability of ``label``) vs PWM log-odds, side by side.

    Both scores are rank-transformed to [-1, 1] with :func:`signed_rank` (sign and order kept), so
    the AUROCs are those of the raw scores and the accuracies those of their signs.
    """
    column = label_index(effects.label_names, label)
    motif_id = motif_for_label(effects.label_names[column], motif)
    motif_name, log_odds = pwm_log_odds(motif_id)
    w = effects.windows
    pwm_ref, pwm_alt = pwm_allele_scores(w.ref_codes, w.alt_codes, log_odds)
    ref_prob, alt_prob = effects.ref_probs[:, column], effects.alt_probs[:, column]
    model_score = signed_rank(ref_prob.astype(np.float64) - alt_prob)
    pwm_score = signed_rank(pwm_ref - pwm_alt)
    summary = {
        "label": effects.label_names[column],
        "n": len(w),
        "model": direction_metrics(preferred, model_score),
        "pwm": {"motif": motif_id, "motif_name": motif_name, **direction_metrics(preferred, pwm_score)},
    }
    table = pd.DataFrame(
        {
            "variant_id": pd.Series(w.variant_id, dtype="string"),
            "preferred": preferred,
            "model_score": model_score,
            "pwm_score": pwm_score,
            "ref_prob": ref_prob,
            "alt_prob": alt_prob,
            "pwm_ref": pwm_ref,
            "pwm_alt": pwm_alt,
        }
    )
    return summary, table


def write_eval(summary: dict[str, object], table: pd.DataFrame, out: str | Path) -> list[Path]:
    """``OUT/eval.parquet`` then ``OUT/eval.json`` (each atomic)."""
    out = Path(out)
    atomic_write_table(table, out / "eval.parquet")
    atomic_write_json(summary, out / "eval.json")
    return [out / "eval.parquet", out / "eval.json"]
