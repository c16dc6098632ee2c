"""`amber-ray convert`: DeepSEA .mat and FASTA + labels TSV -> the compact HDF5 format, and clean failures."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from conftest import assert_clean_failure, invoke

from amber_ray.data import HDF5SequenceFile, read_deepsea_mat, read_fasta_with_labels

SEQS = {"s1": "ACGTNACGTA", "s2": "ttttgggnnc", "s3": "GATTACAGAT", "s4": "CCCCAAAAGG", "s5": "ACGTACGTAC"}
LABELS = "name\tCTCF\tDNase\tH3K4me3\ns1\t1\t0\t1\ns2\t0\t0\t0\ns3\t1\t1\t1\ns4\t0\t1\t0\ns5\t1\t1\t0\n"


def labelled_inputs(tmp_path: Path, labels: str = LABELS, seqs: dict[str, str] = SEQS) -> tuple[Path, Path]:
    fasta = tmp_path / "seqs.fa"
    fasta.write_text("".join(f">{name}\n{seq}\n" for name, seq in seqs.items()))
    tsv = tmp_path / "labels.tsv"
    tsv.write_text(labels)
    return fasta, tsv


def test_fasta_and_labels_round_trip_through_the_compact_format(tmp_path: Path) -> None:
    fasta, tsv = labelled_inputs(tmp_path)
    out = tmp_path / "data" / "train.h5"
    result = invoke("convert", str(out), "--fasta", str(fasta), "--labels", str(tsv), "--chunk-rows", "2")
    assert result.exit_code == 0, result.output
    assert "wrote 5 sequences" in result.output
    expected = read_fasta_with_labels(fasta, tsv)
    file = HDF5SequenceFile(out)
    assert (len(file), file.length, file.label_names, file.chunk_rows) == (5, 10, ["CTCF", "DNase", "H3K4me3"], 2)
    loaded = file.load()
    np.testing.assert_array_equal(loaded.x, expected.x)  # unknown bases stay 0.25 in every row
    np.testing.assert_array_equal(loaded.y, expected.y)
    assert loaded.names == expected.names == list(SEQS)
    assert [p.name for p in out.parent.iterdir()] == ["train.h5"]


def _deepsea(n: int, length: int, labels: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, (n, length))].transpose(0, 2, 1)
    x[1, :, 3] = 0  # an all-zero column, as DeepSEA-style files may hold for unknown bases
    return np.ascontiguousarray(x), rng.integers(0, 2, (n, labels), dtype=np.uint8)


@pytest.mark.parametrize("version", ["v7.3", "v5"])
def test_deepsea_mat_converts_block_by_block_to_the_same_data(tmp_path: Path, version: str) -> None:
    x, y = _deepsea(23, 12, 10)
    mat = tmp_path / "valid.mat"
    if version == "v7.3":
        with h5py.File(mat, "w") as file:  # MATLAB v7.3: HDF5 with reversed axes
            file["validxdata"] = x.transpose(2, 1, 0)
            file["validdata"] = y.T
    else:
        scipy.io.savemat(mat, {"validxdata": x, "validdata": y})
    out = tmp_path / "valid.h5"
    result = invoke("convert", str(out), "--mat", str(mat), "--chunk-rows", "5")
    assert result.exit_code == 0, result.output
    expected, loaded = read_deepsea_mat(mat, "valid"), HDF5SequenceFile(out).load()
    np.testing.assert_array_equal(loaded.x, expected.x)
    np.testing.assert_array_equal(loaded.y, expected.y)
    assert loaded.names == expected.names and loaded.label_names == expected.label_names


@pytest.mark.parametrize(
    "labels,seqs,fragments",
    [
        (LABELS.replace("s3\t1\t1\t1", "s3\t1\t2\t1"), SEQS, ["labels.tsv", "record s3", "value '2' in column 'DNase'"]),
        (LABELS, {**SEQS, "s4": "CCCCAAAAG"}, ["seqs.fa", "record s4", "length 9 differs"]),
        (LABELS.replace("s5\t1\t1\t0\n", ""), SEQS, ["labels.tsv", "record s5", "has no row"]),
    ],
)
def test_bad_fasta_or_labels_exit_2_and_write_nothing(
    tmp_path: Path, labels: str, seqs: dict[str, str], fragments: list[str]
) -> None:
    fasta, tsv = labelled_inputs(tmp_path, labels, seqs)
    before = {p.name for p in tmp_path.iterdir()}
    assert_clean_failure(
        invoke("convert", str(tmp_path / "out.h5"), "--fasta", str(fasta), "--labels", str(tsv)),
        tmp_path,
        *fragments,
        before=before,
    )


def test_bad_mat_exits_2_mid_file_and_writes_nothing(tmp_path: Path) -> None:
    x, y = _deepsea(23, 12, 3)
    x[17, :, 4] = [1, 1, 0, 0]  # found only in the fourth block
    mat = tmp_path / "train.mat"
    with h5py.File(mat, "w") as file:
        file["trainxdata"] = x.transpose(2, 1, 0)
        file["traindata"] = y.T
    before = {p.name for p in tmp_path.iterdir()}
    result = invoke("convert", str(tmp_path / "train.h5"), "--mat", str(mat), "--chunk-rows", "5")
    assert_clean_failure(result, tmp_path, "train.mat", "sequence 17, position 4", "is not one-hot", before=before)
    y[20, 1] = 3
    scipy.io.savemat(tmp_path / "test.mat", {"testxdata": _deepsea(23, 12, 3)[0], "testdata": y})
    before = {p.name for p in tmp_path.iterdir()}
    result = invoke("convert", str(tmp_path / "test.h5"), "--mat", str(tmp_path / "test.mat"), "--chunk-rows", "5")
    assert_clean_failure(result, tmp_path, "test.mat", "sequence 20, label 1: value 3 is not 0 or 1", before=before)
    result = invoke("convert", str(tmp_path / "x.h5"), "--mat", str(mat), "--split", "training")
    assert_clean_failure(result, tmp_path, "train.mat", "--split must be one of train, valid, test", before=before)
    mat.rename(tmp_path / "deepsea.mat")
    result = invoke("convert", str(tmp_path / "x.h5"), "--mat", str(tmp_path / "deepsea.mat"))
    before = {p.name for p in tmp_path.iterdir()}
    assert_clean_failure(result, tmp_path, "deepsea.mat", "pass --split", before=before)
    result = invoke("convert", str(tmp_path / "x.h5"))
    assert_clean_failure(result, tmp_path, "give --mat FILE, or --fasta FILE with --labels TSV", before=before)
