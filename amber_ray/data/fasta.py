"""A validating FASTA reader for training sequences (headers, letters, lengths, duplicates).

pyfaidx is not used here: it writes ``.fai`` files next to the FASTA, which fails on read-only data
directories and is pointless for files read once end to end. Every error names the file and the
record (its name, or its number when it has no name yet).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from amber_ray.data.dataset import SequenceDataset, one_hot_encode
from amber_ray.data.memory import check_fits_in_memory
from amber_ray.data.tsv import read_tsv
from amber_ray.errors import AmberInputError

log = logging.getLogger(__name__)
_BAD_LETTER = re.compile(r"[^ACGTNacgtn]")
GZIP_MAGIC = b"\x1f\x8b"


def _read_text(path: Path) -> str:
    """The file as text; a missing file, NUL bytes or invalid UTF-8 are input errors."""
    if not path.is_file():
        raise AmberInputError("file not found", path)
    data = path.read_bytes()
    if data.startswith(GZIP_MAGIC):
        raise AmberInputError("gzip-compressed; decompress it first (gunzip)", path)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise AmberInputError(f"NUL byte at offset {nul}: binary data, not a FASTA file", path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise AmberInputError(f"byte at offset {error.start} is not UTF-8: binary data, not a FASTA file", path) from None


def _parse_records(path: Path, text: str) -> tuple[list[str], list[str]]:
    """Names and sequences as written; ``splitlines`` also accepts CRLF line endings."""
    names: list[str] = []
    chunks: list[list[str]] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith(">"):
            words = line[1:].split(maxsplit=1)
            if not words:
                raise AmberInputError(f"header without a name on line {line_number}", path, len(names) + 1)
            names.append(words[0])
            chunks.append([])
        elif not names:
            raise AmberInputError(f"sequence data on line {line_number} before the first '>' header", path)
        else:
            chunks[-1].append(line)
    if not names:
        raise AmberInputError("no FASTA records (empty file?)", path)
    return names, ["".join(chunk) for chunk in chunks]


def _check_unique(path: Path, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise AmberInputError("duplicate record name", path, name)
        seen.add(name)


def check_records(path: str | Path, names: list[str], seqs: list[str], length: int | None) -> None:
    """Every sequence non-empty, of ACGTN only and of one length (``length`` if given); errors name ``path`` and the record."""
    for name, seq in zip(names, seqs, strict=True):
        if not seq:
            raise AmberInputError("empty sequence", path, name)
        bad = _BAD_LETTER.search(seq)
        if bad:
            raise AmberInputError(f"letter {bad.group()!r} at position {bad.start() + 1} is not one of ACGTN", path, name)
        if length is not None and len(seq) != length:
            raise AmberInputError(f"length {len(seq)}, expected {length}", path, name)
        if len(seq) != len(seqs[0]):
            raise AmberInputError(f"length {len(seq)} differs from the first record's {len(seqs[0])}", path, name)


def read_fasta(path: str | Path, length: int | None = None, *, unique_names: bool = True) -> tuple[list[str], list[str]]:
    """Names (first word of each header) and upper-case sequences of one length (``length`` if given).

    Names must be unique unless ``unique_names`` is false: only readers that never use names as
    keys pass false (real sets such as the CNNProm non-promoters have descriptive, repeated headers).
    """
    path = Path(path)
    names, seqs = _parse_records(path, _read_text(path))
    if unique_names:
        _check_unique(path, names)
    check_records(path, names, seqs, length)
    return names, [seq.upper() for seq in seqs]


def read_binary_fasta(positive: str | Path, negative: str | Path) -> SequenceDataset:
    """Positives vs negatives: one label, named after the positive file's stem.

    The file a record comes from is its label, so names are kept as they are and may repeat.
    """
    if Path(positive).resolve() == Path(negative).resolve():
        raise AmberInputError("the same file is given as positives and negatives", negative)
    pos_names, pos_seqs = read_fasta(positive, unique_names=False)
    neg_names, neg_seqs = read_fasta(negative, length=len(pos_seqs[0]), unique_names=False)
    names, seqs = pos_names + neg_names, pos_seqs + neg_seqs
    repeats = len(names) - len(set(names))
    if repeats:
        log.warning("%d repeated sequence names in %s and %s (names are not used as keys here)", repeats, positive, negative)
    y = np.concatenate([np.ones(len(pos_seqs)), np.zeros(len(neg_seqs))]).astype(np.float32)[:, None]
    _check_one_hot_fits(
        f"{positive} and {negative}",
        seqs,
        1,
        "split the sequences into train, valid and test FASTA files with a labels TSV each (one 0/1 column), convert "
        "each once (amber-ray convert DIR/train.h5 --fasta FILE --labels TSV) and use data.kind: hdf5, which streams them",
    )
    return SequenceDataset(one_hot_encode(seqs), y, names, [Path(positive).stem])


def _read_label_table(path: Path) -> pd.DataFrame:
    """The TSV as strings, indexed by its first column; its first line must be a header."""
    table = read_tsv(path, index_col=0)
    if table.shape[1] == 0:
        raise AmberInputError("needs a header row and at least one label column", path)
    duplicated = table.index[table.index.duplicated()]
    if len(duplicated):
        raise AmberInputError("more than one row for this sequence", path, duplicated[0])
    return table


def _label_values(path: Path, table: pd.DataFrame) -> np.ndarray:
    """``float32`` 0/1 values; anything else is an error naming the row and column."""
    numbers = table.apply(pd.to_numeric, errors="coerce")
    bad = ~numbers.isin([0, 1]).to_numpy()
    if bad.any():
        row, column = np.argwhere(bad)[0]
        value = table.iat[row, column]
        raise AmberInputError(f"value {value!r} in column {table.columns[column]!r} is not 0 or 1", path, table.index[row])
    return numbers.to_numpy(dtype=np.float32)


def read_labelled_records(fasta: str | Path, labels_tsv: str | Path) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """Names, sequences (as text), ``float32 (N, T)`` 0/1 labels in FASTA order, and label names.

    FASTA + TSV (header row; first column the sequence name, then one 0/1 column per label).
    """
    names, seqs = read_fasta(fasta)
    labels_tsv = Path(labels_tsv)
    table = _read_label_table(labels_tsv)
    known = set(names)
    if table.index.name in known:
        raise AmberInputError("the first line names a sequence: the header row (name, label names) is missing", labels_tsv)
    unknown = [name for name in table.index if name not in known]
    if unknown:
        raise AmberInputError(f"names a sequence absent from {fasta}", labels_tsv, unknown[0])
    listed = set(table.index)
    missing = [name for name in names if name not in listed]
    if missing:
        raise AmberInputError("has no row for this FASTA sequence", labels_tsv, missing[0])
    table = table.loc[names]
    return names, seqs, _label_values(labels_tsv, table), [str(c) for c in table.columns]


def read_fasta_with_labels(fasta: str | Path, labels_tsv: str | Path) -> SequenceDataset:
    """FASTA + TSV (see :func:`read_labelled_records`), one-hot encoded."""
    names, seqs, y, label_names = read_labelled_records(fasta, labels_tsv)
    _check_one_hot_fits(
        fasta,
        seqs,
        len(label_names),
        "split it into train, valid and test files, convert each once (amber-ray convert DIR/train.h5 --fasta FILE "
        "--labels TSV) and use data.kind: hdf5, which streams them",
    )
    return SequenceDataset(one_hot_encode(seqs), y, names, label_names)


def _check_one_hot_fits(source: str | Path, seqs: list[str], num_labels: int, streamed_route: str) -> None:
    """Refuse sequences whose encoding would not fit, before encoding them: base codes (1 byte per base), then
    one-hot float32 (16 bytes per base), and float32 labels."""
    bases = len(seqs) * len(seqs[0]) if seqs else 0
    check_fits_in_memory(source, bases * (1 + 16) + len(seqs) * num_labels * 4, streamed_route)
