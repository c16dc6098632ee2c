"""``amber-ray convert``: DeepSEA ``.mat`` or FASTA + labels TSV -> our compact HDF5 format.

Sequences are written block by block: a MATLAB v7.3 file (DeepSEA's ``train.mat``) is read only a
block at a time, so converting it needs memory for one block, not 70 GB. A MATLAB v5 file is loaded
whole by scipy (in its stored dtype); a FASTA file is read as text and encoded block by block.
Bad input raises :class:`AmberInputError` naming the file and record, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from amber_ray.data.dataset import encode_codes, one_hot_to_codes
from amber_ray.data.deepsea import SPLITS, MatArray, deepsea_label_names, deepsea_names, open_deepsea_mat
from amber_ray.data.fasta import read_labelled_records
from amber_ray.data.hdf5 import DEFAULT_CHUNK_ROWS, open_writer
from amber_ray.errors import AmberInputError

Block = tuple[np.ndarray, np.ndarray, list[str]]  # codes uint8 (n, L), labels (n, T), names


def _write_blocks(out: Path, blocks: Iterator[Block], length: int, label_names: list[str], chunk_rows: int, source: Path) -> int:
    """Write every block to ``out`` atomically; a value the format cannot hold is an error naming ``source``."""
    with open_writer(out, length, label_names, chunk_rows) as writer:
        for codes, labels, names in blocks:
            try:
                writer.append(codes, labels, names)
            except ValueError as error:
                raise AmberInputError(str(error), source) from None
    return writer.rows


def _mat_blocks(path: Path, x: MatArray, y: MatArray, split: str, rows: int) -> Iterator[Block]:
    for start in range(0, len(x), rows):
        stop = min(start + rows, len(x))
        try:
            codes = one_hot_to_codes(np.asarray(x[start:stop], dtype=np.float32), first_row=start)
        except ValueError as error:
            raise AmberInputError(str(error), path) from None
        yield codes, np.asarray(y[start:stop]), deepsea_names(split, start, stop)


def convert_deepsea_mat(mat: str | Path, out: str | Path, split: str | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> int:
    """One DeepSEA file; ``split`` (the variables' prefix) defaults to the file's name (``train.mat`` -> ``train``)."""
    mat = Path(mat)
    if split is not None and split not in SPLITS:
        raise AmberInputError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}", mat)
    split = split or mat.stem
    if split not in SPLITS:
        raise AmberInputError(f"cannot tell the split from the file name; pass --split ({', '.join(SPLITS)})", mat)
    with open_deepsea_mat(mat, split) as (x, y):
        blocks = _mat_blocks(mat, x, y, split, chunk_rows)
        return _write_blocks(Path(out), blocks, x.shape[2], deepsea_label_names(y.shape[1]), chunk_rows, mat)


def convert_fasta_labels(fasta: str | Path, labels_tsv: str | Path, out: str | Path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> int:
    """FASTA + labels TSV, as ``data.kind: fasta_labels`` reads them, in FASTA order."""
    names, seqs, y, label_names = read_labelled_records(fasta, labels_tsv)
    blocks = (
        (encode_codes(seqs[start : start + chunk_rows]), y[start : start + chunk_rows], names[start : start + chunk_rows])
        for start in range(0, len(seqs), chunk_rows)
    )
    return _write_blocks(Path(out), blocks, len(seqs[0]), label_names, chunk_rows, Path(labels_tsv))


def convert(
    out: Path,
    mat: Path | None = None,
    split: str | None = None,
    fasta: Path | None = None,
    labels_tsv: Path | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> int:
    """The conversion the given inputs ask for (exactly one of ``mat`` or ``fasta`` + ``labels_tsv``).

    Returns the number of sequences written.
    """
    if (mat is None) == (fasta is None) or (fasta is None) != (labels_tsv is None):
        raise AmberInputError("give --mat FILE, or --fasta FILE with --labels TSV", out)
    inputs = [path for path in (mat, fasta, labels_tsv) if path is not None]
    if any(path.resolve() == out.resolve() for path in inputs):
        raise AmberInputError("the output would overwrite an input", out)
    if mat is not None:
        return convert_deepsea_mat(mat, out, split, chunk_rows)
    assert fasta is not None and labels_tsv is not None
    return convert_fasta_labels(fasta, labels_tsv, out, chunk_rows)
