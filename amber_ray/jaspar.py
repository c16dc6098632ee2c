"""JASPAR matrices, offline through pyjaspar's bundled database, pinned to one release.

One place for the simulator's planted motifs, the PWM baseline of the allele-specific evaluation and
the matrices that interpretation matches seqlets against. pyjaspar is imported on first use: it
pulls in Biopython, which the other data paths do not need.
"""

from __future__ import annotations

import functools
import warnings
from typing import TYPE_CHECKING

import numpy as np

from amber_ray.errors import AmberInputError

if TYPE_CHECKING:
    from pyjaspar import jaspardb

# Pinned so that a motif id means the same matrix whatever pyjaspar's default release is.
JASPAR_RELEASE = "JASPAR2024"


@functools.lru_cache(maxsize=1)
def database() -> jaspardb:
    """The pinned release's database (opened once per process)."""
    from pyjaspar import jaspardb

    return jaspardb(release=JASPAR_RELEASE)


def probabilities(motif) -> np.ndarray:
    """Position probability matrix ``(width, 4)`` (A, C, G, T) of a pyjaspar motif."""
    counts = np.array([motif.counts[base] for base in "ACGT"], dtype=np.float64).T
    return counts / counts.sum(axis=1, keepdims=True)


@functools.cache
def jaspar_motif(motif_id: str, source: str = "data.simulate.motifs") -> tuple[str, np.ndarray]:
    """Name and read-only position probability matrix ``(width, 4)`` (A, C, G, T) of a JASPAR matrix.

    An unknown id is an input error from ``source`` (the config key or option that named it).
    """
    with warnings.catch_warnings():  # pyjaspar warns, then returns None, for an unknown id
        warnings.simplefilter("ignore")
        motif = database().fetch_motif_by_id(motif_id)
    if motif is None:
        raise AmberInputError(f"{JASPAR_RELEASE} has no matrix {motif_id!r}", source)
    ppm = probabilities(motif)
    ppm.flags.writeable = False
    return str(motif.name), ppm


# The taxonomic groups of JASPAR 2024 (``tax_group`` annotations of its matrices).
TAX_GROUPS = (
    "cnidaria",
    "diatoms",
    "dictyostelium",
    "fungi",
    "insects",
    "nematodes",
    "oomycota",
    "plants",
    "trematodes",
    "urochordates",
    "vertebrates",
)


def check_tax_group(tax_group: str) -> None:
    """Refuse a taxonomic group JASPAR does not have, listing those it has."""
    if tax_group not in TAX_GROUPS:
        raise AmberInputError(f"unknown taxonomic group {tax_group!r}; one of {', '.join(TAX_GROUPS)}", "--jaspar")


@functools.lru_cache(maxsize=4)
def jaspar_collection(tax_group: str, collection: str = "CORE") -> tuple[list[str], list[str], list[np.ndarray]]:
    """IDs, names and ``(width, 4)`` probability matrices of a JASPAR collection for one taxonomic group."""
    check_tax_group(tax_group)
    with warnings.catch_warnings():  # pyjaspar warns, then returns [], for an empty selection
        warnings.simplefilter("ignore")
        motifs = database().fetch_motifs(collection=collection, tax_group=[tax_group])
    if not motifs:
        raise AmberInputError(f"{JASPAR_RELEASE} {collection} has no motifs for taxonomic group {tax_group!r}", "--jaspar")
    return [m.matrix_id for m in motifs], [str(m.name) for m in motifs], [probabilities(m) for m in motifs]


@functools.cache
def pwm_log_odds(motif_id: str, pseudo: float = 0.01, source: str = "--motif") -> tuple[str, np.ndarray]:
    """Name and log2-odds matrix ``(width, 5)`` against a uniform background; column 4 (``N``) is the mean."""
    name, ppm = jaspar_motif(motif_id, source)
    odds = np.log2((ppm + pseudo) / (1 + 4 * pseudo) / 0.25)
    return name, np.hstack([odds, odds.mean(axis=1, keepdims=True)])
