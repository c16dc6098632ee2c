"""Variants of a VCF (plain, gzip or bgzip) read with pysam: one per ALT allele, the unscorable ones as side-file rows."""

from __future__ import annotations

import gzip
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from amber_ray.errors import AmberInputError

SKIPPED_COLUMNS = ["variant_id", "chrom", "pos", "ref", "alt", "reason"]
VCF_COLUMNS = "CHROM POS ID REF ALT QUAL FILTER INFO"
_ALLELE = re.compile(r"^[ACGTN]+$")


@dataclass(frozen=True)
class Variant:
    """One ALT allele of a VCF record (multi-allelic records are split into one per ALT)."""

    variant_id: str
    chrom: str
    pos: int
    ref: str
    alt: str
    record: int


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


def _describe_unreadable(path: Path, record: int) -> str:
    """:func:`_describe_data_line`, or for compressed data that ends early, that it is truncated."""
    try:
        return _describe_data_line(path, record)
    except (EOFError, OSError, zlib.error):
        return "compressed data ends early or is damaged (truncated file?)"


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
        try:
            with gzip.open(path, "rb") as source, plain.open("wb") as target:
                shutil.copyfileobj(source, target)
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise AmberInputError(f"truncated or damaged gzip file ({error})", path) from None
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
                    raise AmberInputError(_describe_unreadable(readable, number + 1), path, number + 1) from None
                number += 1
                found, rejected = _record_variants(record, number)
                variants += found
                skipped += rejected
    finally:
        pysam.set_verbosity(previous)
    if not number:
        raise AmberInputError("no variant records", path)
    return variants, skipped
