"""Genome windows of the model's input length: BED regions, and tiles along chromosomes.

Regions. A BED line (``chrom start end [name ...]``, 0-based, half-open) becomes the ``L``-bp
window centred on the region: it starts at ``(start + end) // 2 - L // 2``. A region longer than
``L`` is cropped to its centre, a shorter one takes its genomic flanks, and where the window runs
off the chromosome the missing bases are ``N`` (0.25 per base). A region that itself leaves the
chromosome, or names one the genome lacks, is an input error.

Tiles. ``--tile STEP`` cuts each chromosome (or each region of ``--regions``, overlapping regions
merged) into bins of ``STEP`` bp from its start; a bin's value is the prediction of the ``L``-bp
window centred on the bin (window start ``bin start + STEP // 2 - L // 2``). Bins whose window
would leave the chromosome get no value (a gap in the track); a stretch with no bin left is listed,
and if no stretch has one that is an input error naming them; ``STEP`` may not exceed ``L``. The
windows of a stretch are strided views of its base codes, so a chromosome is never copied ``L``
times.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from amber_ray.data.dataset import encode_codes
from amber_ray.errors import AmberInputError
from amber_ray.variants.genome import ReferenceGenome

HEADER_PREFIXES = ("#", "track", "browser")


@dataclass(frozen=True)
class Region:
    chrom: str  # the genome's name for it
    start: int
    end: int
    name: str


def _bed_fields(path: Path, record: str, line: str) -> tuple[str, int, int, str]:
    fields = line.split("\t") if "\t" in line else line.split()
    if len(fields) < 3:
        raise AmberInputError(f"{len(fields)} column(s); a BED line needs chrom, start and end", path, record)
    try:
        start, end = int(fields[1]), int(fields[2])
    except ValueError:
        raise AmberInputError(f"start {fields[1]!r} and end {fields[2]!r} must be integers", path, record) from None
    if start < 0 or end <= start:
        raise AmberInputError(f"start {start} and end {end}: need 0 <= start < end", path, record)
    name = fields[3].strip() if len(fields) > 3 and fields[3].strip() else f"{fields[0]}:{start}-{end}"
    return fields[0], start, end, name


def read_bed(path: str | Path, genome: ReferenceGenome) -> list[Region]:
    """Every region of a BED file, checked against ``genome`` (chromosome known, region on it)."""
    path = Path(path)
    if not path.is_file():
        raise AmberInputError("file not found", path)
    regions: list[Region] = []
    for line_number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip() or line.startswith(HEADER_PREFIXES):
            continue
        record = f"{len(regions) + 1} (line {line_number})"
        chrom, start, end, name = _bed_fields(path, record, line)
        resolved = genome.require(chrom, path, record)
        size = genome.length(resolved)
        if end > size:
            raise AmberInputError(f"region {chrom}:{start}-{end} leaves the chromosome (length {size})", path, record)
        regions.append(Region(resolved, start, end, name))
    if not regions:
        raise AmberInputError("no regions (empty BED file?)", path)
    return regions


def centred_window(genome: ReferenceGenome, region: Region, length: int) -> tuple[int, str]:
    """Start and bases of the ``length``-bp window centred on ``region`` (``N`` beyond the chromosome)."""
    left = (region.start + region.end) // 2 - length // 2
    size = genome.length(region.chrom)
    first, last = max(left, 0), min(left + length, size)
    return left, "N" * (first - left) + genome.fetch(region.chrom, first, last) + "N" * (left + length - last)


def region_windows(genome: ReferenceGenome, regions: list[Region], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Window starts ``(N,)`` and base codes ``uint8 (N, L)`` of each region's centred window."""
    windows = [centred_window(genome, region, length) for region in regions]
    return np.array([start for start, _ in windows], dtype=np.int64), encode_codes([seq for _, seq in windows])


def padded_windows(genome: ReferenceGenome, regions: list[Region], starts: np.ndarray, length: int) -> int:
    """How many of the windows starting at ``starts`` run past a chromosome end (their bases there are ``N``)."""
    return sum(start < 0 or start + length > genome.length(region.chrom) for region, start in zip(regions, starts.tolist()))


@dataclass(frozen=True)
class TileStretch:
    """The bins of one stretch ``[start, end)`` of a chromosome that have a window on it."""

    chrom: str
    start: int  # the stretch (a chromosome or a merged region)
    end: int
    first_bin: int  # start of its first bin with a value
    bins: int
    step: int
    length: int

    def bin_starts(self) -> np.ndarray:
        return self.first_bin + self.step * np.arange(self.bins, dtype=np.int64)

    def bin_ends(self) -> np.ndarray:
        return np.minimum(self.bin_starts() + self.step, self.end)

    def window_offset(self) -> int:
        return self.step // 2 - self.length // 2

    def windows(self, genome: ReferenceGenome) -> np.ndarray:
        """Base codes ``uint8 (bins, L)`` of the bins' windows: a strided view of the stretch's bases."""
        first = self.first_bin + self.window_offset()
        last = first + (self.bins - 1) * self.step + self.length
        codes = encode_codes([genome.fetch(self.chrom, first, last)])[0]
        return sliding_window_view(codes, self.length)[:: self.step]


def merged_stretches(genome: ReferenceGenome, regions: list[Region] | None) -> list[tuple[str, int, int]]:
    """``(chrom, start, end)`` to tile, in the genome's order: whole chromosomes, or the regions merged."""
    if regions is None:
        return [(name, 0, genome.length(name)) for name in genome.names]
    order = {name: index for index, name in enumerate(genome.names)}
    merged: list[tuple[str, int, int]] = []
    for region in sorted(regions, key=lambda r: (order[r.chrom], r.start, r.end)):
        if merged and merged[-1][0] == region.chrom and region.start <= merged[-1][2]:
            merged[-1] = (region.chrom, merged[-1][1], max(merged[-1][2], region.end))
        else:
            merged.append((region.chrom, region.start, region.end))
    return merged


@dataclass(frozen=True)
class TilePlan:
    """The stretches to tile, and those (``chrom:start-end``) none of whose bins has a window on the chromosome."""

    stretches: list[TileStretch]
    without_windows: list[str]


def tile_plan(
    genome: ReferenceGenome, length: int, step: int, regions: list[Region] | None = None, source: str | Path | None = None
) -> TilePlan:
    """The stretches to tile with ``step``-bp bins and how many bins of each have a window on the chromosome.

    A stretch without any such bin (a region at a chromosome end, on a chromosome shorter than the
    window) is left out and listed; when every stretch is, it is an input error that names them,
    against ``source`` (the regions' file) or the genome.
    """
    if not 1 <= step <= length:
        raise AmberInputError(f"STEP {step} must be between 1 and the model's input length {length}", "--tile")
    plan, without_windows = [], []
    for chrom, start, end in merged_stretches(genome, regions):
        offset, size = step // 2 - length // 2, genome.length(chrom)
        count = -(-(end - start) // step)
        k = np.arange(count, dtype=np.int64)
        window_starts = start + k * step + offset
        valid = k[(window_starts >= 0) & (window_starts + length <= size)]
        if len(valid):  # a contiguous run of bins
            plan.append(TileStretch(chrom, start, end, start + int(valid[0]) * step, len(valid), step, length))
        else:
            without_windows.append(f"{chrom}:{start}-{end}")
    if not plan:
        offset = step // 2 - length // 2
        shown = ", ".join(without_windows[:5]) + (f" and {len(without_windows) - 5} more" if len(without_windows) > 5 else "")
        what = "region" if regions is not None else "chromosome"
        raise AmberInputError(
            f"no {step}-bp bin of {what}(s) {shown} has its {length}-bp window (bin start {offset:+d} to "
            f"{offset + length:+d}) on the chromosome: nothing to tile",
            source or genome.path,
        )
    return TilePlan(plan, without_windows)
