"""The files of ``amber-ray variants score``: the score table, its side file of variants not scored, and LDSC
annotations; checked before any work, each written atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from amber_ray.atomic import atomic_paths, write_table
from amber_ray.errors import AmberInputError
from amber_ray.variants.ldsc import ldsc_annotations, ldsc_path
from amber_ray.variants.score import EFFECT_SCORES, VariantEffects
from amber_ray.variants.vcf import SKIPPED_COLUMNS


def side_file(out: str | Path) -> Path:
    """Where the not-scored variants of ``out`` go: ``scores.parquet`` -> ``scores.skipped.tsv``."""
    out = Path(out)
    return out.with_name(f"{out.name.removesuffix('.tsv').removesuffix('.parquet')}.skipped.tsv")


def check_score_output(out: Path, ldsc_score: str = "diff") -> None:
    """Fail before any work when the table name or the LDSC score is not one we can write."""
    if out.suffix not in (".parquet", ".tsv"):
        raise AmberInputError("output must end in .parquet or .tsv", out)
    for path in (out, side_file(out)):
        if path.is_dir():
            raise AmberInputError("is a directory; the output writes a file here", path)
    if ldsc_score not in EFFECT_SCORES:
        raise AmberInputError(f"unknown score {ldsc_score!r}; one of {list(EFFECT_SCORES)}", "--ldsc-score")


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
    written = [out, side_file(out), *(ldsc_path(ldsc_prefix, chrom) for chrom in annotations)]
    with atomic_paths(written) as (table_tmp, skipped_tmp, *ldsc_tmps):
        write_table(effects.table(), table_tmp, out)
        write_table(pd.DataFrame(skipped, columns=SKIPPED_COLUMNS), skipped_tmp, side_file(out))
        for rows, tmp in zip(annotations.values(), ldsc_tmps):
            rows.to_csv(tmp, sep="\t", index=False, compression="gzip")
    return written
