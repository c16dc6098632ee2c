"""An indexed reference FASTA with chromosome-name reconciliation (``chr1`` / ``1``, ``chrM`` / ``MT``)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from amber_ray.errors import AmberInputError, first_line


def _index_path(fasta: Path) -> Path:
    """``FASTA.fai`` when it exists or can be written there; else a cached index in the temp dir."""
    beside = Path(f"{fasta}.fai")
    if beside.is_file() or os.access(fasta.parent, os.W_OK):
        return beside
    digest = hashlib.sha1(str(fasta.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"amber_ray-{digest}.fai"


def without_chr(chrom: str) -> str:
    """A chromosome's name without its ``chr`` prefix (any case): ``chr1`` -> ``1``."""
    return chrom[3:] if chrom.lower().startswith("chr") else chrom


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
            raise AmberInputError(f"cannot index the reference FASTA ({first_line(error)})", self.path) from None
        self.names = list(self.fasta.keys())
        self._known = set(self.names)

    def resolve(self, chrom: str) -> str | None:
        """The FASTA's name for ``chrom``: as is, with or without ``chr``, ``M``/``MT`` alike; None if absent."""
        bare = without_chr(chrom)
        candidates = [chrom, bare, f"chr{bare}"]
        if bare.upper() in ("M", "MT"):
            candidates += ["chrM", "MT", "M", "chrMT"]
        return next((name for name in candidates if name in self._known), None)

    def require(self, chrom: str, source: str | Path, record: str | None = None) -> str:
        """The FASTA's name for ``chrom`` (:meth:`resolve`); an input error naming ``source`` and ``record`` if absent."""
        name = self.resolve(chrom)
        if name is None:
            shown = ", ".join(self.names[:5]) + (", ..." if len(self.names) > 5 else "")
            raise AmberInputError(f"chromosome {chrom!r} is not in {self.path} (it has {shown})", source, record)
        return name

    def length(self, name: str) -> int:
        return len(self.fasta[name])

    def fetch(self, name: str, start: int, end: int) -> str:
        """Bases ``[start, end)`` (0-based) of a sequence, upper case."""
        return self.fasta[name][start:end]
