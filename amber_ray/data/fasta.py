"""A validating FASTA reader for training sequences (headers, letters, lengths, duplicates).

pyfaidx is kept for indexed genome access: it writes ``.fai`` files next to the FASTA, which
fails on read-only data directories and is pointless for files read once end to end.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from amber_ray.data.dataset import SequenceDataset, one_hot_encode
from amber_ray.errors import AmberInputError

_BAD_LETTER = re.compile(r"[^ACGTNacgtn]")


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise AmberInputError("file not found", path)
    data = path.read_bytes()
    if b"\x00" in data:
        raise AmberInputError("binary data, not a FASTA file", path)
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as error:
        raise AmberInputError(f"non-ASCII byte at offset {error.start}, not a FASTA file", path) from None


def read_fasta(path: str | Path, length: int | None = None, unique_names: bool = True) -> tuple[list[str], list[str]]:
    """Names (first word of each header) and upper-case sequences; every record is checked.

    ``unique_names=False`` accepts repeated names, for files whose records are never looked up
    by name (the positive/negative files of a binary task often have descriptive headers).
    """
    path = Path(path)
    names: list[str] = []
    chunks: list[list[str]] = []
    for line_number, line in enumerate(_read_text(path).splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith(">"):
            name = line[1:].split(maxsplit=1)[0] if line[1:].strip() else ""
            if not name:
                raise AmberInputError(f"header without a name on line {line_number}", path)
            names.append(name)
            chunks.append([])
        elif not names:
            raise AmberInputError(f"sequence data before the first '>' header on line {line_number}", path)
        else:
            chunks[-1].append(line)
    if not names:
        raise AmberInputError("no FASTA records (empty file?)", path)
    seqs = ["".join(chunk).upper() for chunk in chunks]
    _check_records(path, names, seqs, length, unique_names)
    return names, seqs


def _check_records(path: Path, names: list[str], seqs: list[str], length: int | None, unique_names: bool) -> None:
    expected = length if length is not None else len(seqs[0])
    seen: set[str] = set()
    for name, seq in zip(names, seqs):
        if unique_names and name in seen:
            raise AmberInputError("duplicate record name", path, name)
        seen.add(name)
        if not seq:
            raise AmberInputError("empty sequence", path, name)
        bad = _BAD_LETTER.search(seq)
        if bad:
            raise AmberInputError(f"letter {bad.group()!r} at position {bad.start() + 1} is not one of ACGTN", path, name)
        if len(seq) != expected:
            raise AmberInputError(f"length {len(seq)} differs from the expected {expected}", path, name)


def read_binary_fasta(positive: str | Path, negative: str | Path) -> SequenceDataset:
    """Positives vs negatives: one label, named after the positive file."""
    pos_names, pos_seqs = read_fasta(positive, unique_names=False)
    neg_names, neg_seqs = read_fasta(negative, length=len(pos_seqs[0]), unique_names=False)
    y = np.concatenate([np.ones(len(pos_seqs)), np.zeros(len(neg_seqs))]).astype(np.float32)[:, None]
    return SequenceDataset(one_hot_encode(pos_seqs + neg_seqs), y, pos_names + neg_names, [Path(positive).stem])


def read_fasta_with_labels(fasta: str | Path, labels_tsv: str | Path) -> SequenceDataset:
    """FASTA + TSV (header row; first column the sequence name, then one 0/1 column per label)."""
    names, seqs = read_fasta(fasta)
    labels_tsv = Path(labels_tsv)
    if not labels_tsv.is_file():
        raise AmberInputError("file not found", labels_tsv)
    try:
        table = pd.read_csv(labels_tsv, sep="\t", dtype={0: str}, index_col=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise AmberInputError(f"not a readable TSV ({str(error).splitlines()[0]})", labels_tsv) from None
    if table.shape[1] == 0:
        raise AmberInputError("needs a header row and at least one label column", labels_tsv)
    unknown = [name for name in table.index if name not in set(names)]
    if unknown:
        raise AmberInputError("names a sequence absent from the FASTA", labels_tsv, unknown[0])
    missing = [name for name in names if name not in table.index]
    if missing:
        raise AmberInputError("has no labels for a FASTA sequence", labels_tsv, missing[0])
    values = table.loc[names]
    bad = ~values.isin([0, 1])
    if bad.to_numpy().any():
        row, column = np.argwhere(bad.to_numpy())[0]
        raise AmberInputError(f"value {values.iat[row, column]} in column {values.columns[column]!r} is not 0 or 1", labels_tsv, names[row])
    return SequenceDataset(one_hot_encode(seqs), values.to_numpy(dtype=np.float32), names, [str(c) for c in values.columns])
