"""Tab-separated tables from users (labels, annotations, preferred alleles), read one way."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pandas as pd

from amber_ray.errors import AmberInputError


def read_tsv(path: str | Path, required: Collection[str] = (), index_col: int | None = None) -> pd.DataFrame:
    """The table as strings (no NA guessing); a missing file, unreadable text or a missing column is an input error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise AmberInputError("file not found", path)
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, index_col=index_col)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise AmberInputError(f"not a readable TSV ({str(error).splitlines()[0]})", path) from None
    missing = set(required) - set(table.columns)
    if missing:
        raise AmberInputError(f"missing column(s) {sorted(missing)} (has {list(table.columns)})", path)
    return table
