"""Variant scores as LDSC annotations: ``PREFIX.<chr>.annot.gz``, one ``|score|`` column per label."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from amber_ray.errors import AmberInputError
from amber_ray.variants.genome import without_chr

if TYPE_CHECKING:
    from amber_ray.variants.score import VariantEffects


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
    table = pd.DataFrame({"CHR": [without_chr(c) for c in w.chrom], "BP": w.pos, "SNP": w.variant_id, "CM": 0.0})
    table = pd.concat([table, pd.DataFrame(values, columns=columns)], axis=1)
    return {str(chrom): group.sort_values("BP", kind="stable") for chrom, group in table.groupby("CHR", sort=True)}


def ldsc_path(prefix: str | Path, chrom: str) -> Path:
    return Path(f"{prefix}.{chrom}.annot.gz")
