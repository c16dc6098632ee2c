"""Tab-separated tables from users (labels, annotations, preferred alleles), read one way."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pandas as pd

from amber_ray.errors import AmberInputError, first_line


def read_tsv(path: str | Path, required: Collection[str] = (), index_col: int | None = None) -> pd.DataFrame:
    """The table as strings (no NA guessing).

    A missing file, unreadable text or a missing column is an input error naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise AmberInputError("file not found", path)
    _check_header(path, index_col)
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, index_col=index_col)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise AmberInputError(f"not a readable TSV ({first_line(error)})", path) from None
    missing = set(required) - set(table.columns)
    if missing:
        raise AmberInputError(f"missing column(s) {sorted(missing)} (has {list(table.columns)})", path)
    return table


def _check_header(path: Path, index_col: int | None) -> None:
    """Refuse repeated or empty column names, which pandas would silently rename (``X.1``, ``Unnamed: 2``).

    The name of an index column may be empty (R's ``write.table`` leaves it so).
    """
    try:
        with path.open(encoding="utf-8") as handle:
            header = handle.readline().rstrip("\r\n")
    except UnicodeDecodeError:
        return  # reported by the table read, with the rest of the file
    names = header.split("\t")
    seen: set[str] = set()
    for position, name in enumerate(names, start=1):
        name = name.strip().strip('"')
        if not name and position - 1 != index_col and header:
            raise AmberInputError(f"column {position} of the header row has no name", path)
        if name and name in seen:
            raise AmberInputError(f"column name {name!r} appears more than once in the header row", path)
        seen.add(name)
