"""Readers, the HDF5 format, splits and loading: good files round-trip, bad ones name file and record."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from amber_ray.config import DataConfig, SimulatorConfig, SplitConfig
from amber_ray.data import (
    HDF5SequenceFile,
    SequenceDataset,
    load_search_data,
    load_splits,
    one_hot_encode,
    read_binary_fasta,
    read_deepsea_dir,
    read_deepsea_mat,
    read_fasta,
    read_fasta_with_labels,
    read_label_annotation,
    stratified_split,
    write_hdf5,
)
from amber_ray.data.dataset import one_hot_to_codes
from amber_ray.errors import AmberInputError


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def _random_dataset(n: int, length: int, labels: int, seed: int = 0) -> SequenceDataset:
    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list("ACGTN"), length)) for _ in range(n)]
    y = (rng.random((n, labels)) < 0.4).astype(np.float32)
    return SequenceDataset(one_hot_encode(seqs), y, [f"s{i}" for i in range(n)], [f"l{j}" for j in range(labels)])


# --- one-hot and the dataset -------------------------------------------------------------------


def test_one_hot_encode_orders_acgt_and_spreads_unknown_bases() -> None:
    x = one_hot_encode(["ACGTN", "acgtn"])
    expected = np.array([[1, 0, 0, 0, 0.25], [0, 1, 0, 0, 0.25], [0, 0, 1, 0, 0.25], [0, 0, 0, 1, 0.25]], dtype=np.float32)
    assert x.dtype == np.float32 and x.shape == (2, 4, 5)
    np.testing.assert_array_equal(x[0], expected)
    np.testing.assert_array_equal(x[1], expected)


def test_one_hot_encode_refuses_mixed_lengths() -> None:
    with pytest.raises(ValueError, match="one length"):
        one_hot_encode(["ACGT", "ACG"])


def test_dataset_properties_and_subset() -> None:
    data = _random_dataset(10, 7, 3)
    assert (data.num_sequences, data.length, data.num_labels) == (10, 7, 3)
    part = data.subset([4, 1])
    assert part.names == ["s4", "s1"]
    np.testing.assert_array_equal(part.x, data.x[[4, 1]])
    np.testing.assert_array_equal(part.y, data.y[[4, 1]])


# --- FASTA -------------------------------------------------------------------------------------


def test_read_fasta_accepts_crlf_multiline_and_lower_case(tmp_path: Path) -> None:
    path = _write(tmp_path / "ok.fa", ">one some description\r\nACGT\r\nacgn\r\n\r\n>two\r\nTTTTGGGG\r\n")
    names, seqs = read_fasta(path, length=8)
    assert names == ["one", "two"]
    assert seqs == ["ACGTACGN", "TTTTGGGG"]


BAD_FASTAS = [
    ("empty", b"", "no FASTA records", None),
    ("blank", b"\n\n", "no FASTA records", None),
    ("nul", b">a\nAC\x00GT\n", "NUL byte", None),
    ("latin1", b">a\nAC\xe9GT\n", "not UTF-8", None),
    ("before_header", b"ACGT\n>a\nACGT\n", "before the first '>' header", None),
    ("bad_letter", b">a\nACGT\n>b\nACGX\n", "letter 'X' at position 4", "record b"),
    ("bad_letter_multiline", b">a\nACGT\nAC-T\n", "letter '-' at position 7", "record a"),
    ("bad_lower_case_letter", b">a\nacgt\nacxt\n", "letter 'x' at position 7", "record a"),
    ("lengths", b">a\nACGT\n>b\nACG\n", "length 3 differs from the first record's 4", "record b"),
    ("duplicate", b">a\nACGT\n>a desc\nACGT\n", "duplicate record name", "record a"),
    ("empty_record", b">a\nACGT\n>b\n>c\nACGT\n", "empty sequence", "record b"),
    ("nameless", b">a\nACGT\n>\nACGT\n", "header without a name on line 3", "record 2"),
]


@pytest.mark.parametrize(("stem", "content", "problem", "record"), BAD_FASTAS, ids=[case[0] for case in BAD_FASTAS])
def test_read_fasta_rejects_bad_input_naming_file_and_record(
    tmp_path: Path, stem: str, content: bytes, problem: str, record: str | None
) -> None:
    path = _write(tmp_path / f"{stem}.fa", content)
    with pytest.raises(AmberInputError) as caught:
        read_fasta(path)
    message = str(caught.value)
    assert str(path) in message and problem in message
    assert "\n" not in message
    if record is not None:
        assert record in message


def test_read_fasta_checks_the_expected_length(tmp_path: Path) -> None:
    path = _write(tmp_path / "short.fa", ">a\nACGT\n>b\nACGT\n")
    with pytest.raises(AmberInputError, match=r"short\.fa: record a: length 4, expected 5"):
        read_fasta(path, length=5)


def test_read_fasta_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AmberInputError, match="missing.fa: file not found"):
        read_fasta(tmp_path / "missing.fa")


def test_read_binary_fasta_labels_positives_after_the_file_stem(tmp_path: Path) -> None:
    positive = _write(tmp_path / "promoters.fa", ">p1\nACGT\n>p2\nAAAA\n")
    negative = _write(tmp_path / "background.fa", ">n1\nCCCC\n")
    data = read_binary_fasta(positive, negative)
    assert data.label_names == ["promoters"]
    assert data.names == ["p1", "p2", "n1"]
    np.testing.assert_array_equal(data.y[:, 0], [1, 1, 0])
    np.testing.assert_array_equal(data.x[2], one_hot_encode(["CCCC"])[0])


def test_read_binary_fasta_requires_one_length_and_two_files(tmp_path: Path) -> None:
    positive = _write(tmp_path / "pos.fa", ">p1\nACGT\n")
    with pytest.raises(AmberInputError, match=r"neg\.fa: record n1: length 5, expected 4"):
        read_binary_fasta(positive, _write(tmp_path / "neg.fa", ">n1\nACGTA\n"))
    with pytest.raises(AmberInputError, match=r"pos\.fa: the same file is given as positives and negatives"):
        read_binary_fasta(positive, positive)


def test_read_binary_fasta_allows_repeated_names(tmp_path: Path) -> None:
    positive = _write(tmp_path / "pos.fa", ">gene one\nACGT\n>gene two\nACGA\n")
    data = read_binary_fasta(positive, _write(tmp_path / "neg.fa", ">gene three\nTTTT\n"))
    assert data.names == ["gene", "gene", "gene"]
    with pytest.raises(AmberInputError, match=r"pos\.fa: record gene: duplicate record name"):
        read_fasta(positive)


@pytest.fixture
def labelled_fasta(tmp_path: Path) -> Path:
    return _write(tmp_path / "seqs.fa", ">s1\nACGT\n>s2\nCCCC\n>s3\nGGGG\n")


def test_read_fasta_with_labels_follows_fasta_order(tmp_path: Path, labelled_fasta: Path) -> None:
    tsv = _write(tmp_path / "labels.tsv", "name\tCTCF\tSP1\ns3\t1\t0\ns1\t0\t1\ns2\t1\t1\n")
    data = read_fasta_with_labels(labelled_fasta, tsv)
    assert data.label_names == ["CTCF", "SP1"] and data.names == ["s1", "s2", "s3"]
    np.testing.assert_array_equal(data.y, [[0, 1], [1, 1], [1, 0]])


BAD_TSVS = [
    ("unknown", "name\tA\ns1\t1\ns2\t0\ns3\t1\nghost\t1\n", "names a sequence absent from", "record ghost"),
    ("missing_row", "name\tA\ns1\t1\ns3\t0\n", "has no row for this FASTA sequence", "record s2"),
    ("not_binary", "name\tA\tB\ns1\t1\t0\ns2\t0\t2\ns3\t1\t0\n", "value '2' in column 'B' is not 0 or 1", "record s2"),
    ("text_value", "name\tA\ns1\t1\ns2\tyes\ns3\t1\n", "value 'yes' in column 'A'", "record s2"),
    ("no_header", "s1\t1\ns2\t0\ns3\t1\n", "header row", None),
    ("duplicate", "name\tA\ns1\t1\ns1\t0\ns2\t0\ns3\t1\n", "more than one row", "record s1"),
    ("only_names", "name\ns1\ns2\ns3\n", "at least one label column", None),
    ("empty", "", "not a readable TSV", None),
]


@pytest.mark.parametrize(("stem", "content", "problem", "record"), BAD_TSVS, ids=[case[0] for case in BAD_TSVS])
def test_read_fasta_with_labels_rejects_bad_tables(
    tmp_path: Path, labelled_fasta: Path, stem: str, content: str, problem: str, record: str | None
) -> None:
    tsv = _write(tmp_path / f"{stem}.tsv", content)
    with pytest.raises(AmberInputError) as caught:
        read_fasta_with_labels(labelled_fasta, tsv)
    message = str(caught.value)
    assert str(tsv) in message and problem in message
    if record is not None:
        assert record in message


# --- DeepSEA .mat ------------------------------------------------------------------------------


def _deepsea_arrays(n: int, length: int, labels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB-order arrays: x ``(N, 4, L)`` uint8 one-hot, y ``(N, T)`` uint8."""
    rng = np.random.default_rng(seed)
    x = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, (n, length))].transpose(0, 2, 1)
    return np.ascontiguousarray(x), rng.integers(0, 2, (n, labels), dtype=np.uint8)


def _write_v73(path: Path, split: str, x: np.ndarray, y: np.ndarray) -> None:
    """As MATLAB v7.3 saves it: an HDF5 file with every array's axes reversed."""
    with h5py.File(path, "w") as file:
        file[f"{split}xdata"] = x.transpose(2, 1, 0)
        file[f"{split}data"] = y.T


def _write_deepsea_dir(directory: Path, length: int = 12, labels: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    sizes = [("train", 20), ("valid", 6), ("test", 8)]
    arrays = {split: _deepsea_arrays(n, length, labels, seed) for seed, (split, n) in enumerate(sizes)}
    _write_v73(directory / "train.mat", "train", *arrays["train"])
    for split in ("valid", "test"):
        x, y = arrays[split]
        scipy.io.savemat(directory / f"{split}.mat", {f"{split}xdata": x, f"{split}data": y})
    return arrays


def test_read_deepsea_dir_reads_both_mat_formats(tmp_path: Path) -> None:
    arrays = _write_deepsea_dir(tmp_path)
    assert h5py.is_hdf5(tmp_path / "train.mat") and not h5py.is_hdf5(tmp_path / "valid.mat")
    splits = read_deepsea_dir(tmp_path)
    for split in ("train", "valid", "test"):
        data, (x, y) = getattr(splits, split), arrays[split]
        assert data.x.dtype == np.float32 and data.y.dtype == np.float32
        np.testing.assert_array_equal(data.x, x)
        np.testing.assert_array_equal(data.y, y)
        assert data.label_names == ["label_0", "label_1", "label_2"]
        assert data.names[0] == f"{split}_0"


def test_load_splits_reads_a_deepsea_directory(tmp_path: Path) -> None:
    _write_deepsea_dir(tmp_path)
    splits = load_splits(DataConfig(kind="deepsea", deepsea_dir=tmp_path), seed=0)
    assert (splits.train.num_sequences, splits.valid.num_sequences, splits.test.num_sequences) == (20, 6, 8)


def test_deepsea_v73_errors_name_the_file(tmp_path: Path) -> None:
    x, y = _deepsea_arrays(5, 10, 2, 0)
    path = tmp_path / "train.mat"
    with h5py.File(path, "w") as file:
        file["trainxdata"] = x.transpose(2, 1, 0)
    with pytest.raises(AmberInputError, match=r"train\.mat: no variable 'traindata'"):
        read_deepsea_mat(path, "train")
    with h5py.File(path, "w") as file:
        file["trainxdata"] = np.zeros((10, 3, 5), dtype=np.uint8)  # axis of 3, not 4
        file["traindata"] = y.T
    with pytest.raises(AmberInputError, match=r"train\.mat: 'trainxdata' has shape \(5, 3, 10\)"):
        read_deepsea_mat(path, "train")
    with h5py.File(path, "w") as file:
        file["trainxdata"] = x.transpose(2, 1, 0)
        file["traindata"] = np.zeros((2, 4), dtype=np.uint8)  # 4 rows for 5 sequences
    with pytest.raises(AmberInputError, match="has 5 sequences but 'traindata' has 4 rows"):
        read_deepsea_mat(path, "train")
    with h5py.File(path, "w") as file:
        file["trainxdata"] = x.transpose(2, 1, 0)
        file.create_dataset("traindata", data=["a", "b"], dtype=h5py.string_dtype())
    with pytest.raises(AmberInputError, match="'traindata' has dtype object, not numbers"):
        read_deepsea_mat(path, "train")


def test_deepsea_v5_errors_name_the_file(tmp_path: Path) -> None:
    x, y = _deepsea_arrays(5, 10, 2, 0)
    path = tmp_path / "valid.mat"
    scipy.io.savemat(path, {"validxdata": x, "wrongname": y})
    with pytest.raises(AmberInputError, match=r"valid\.mat: no variable 'validdata'"):
        read_deepsea_mat(path, "valid")
    scipy.io.savemat(path, {"validxdata": x[:, :2], "validdata": y})
    with pytest.raises(AmberInputError, match=r"'validxdata' has shape \(5, 2, 10\)"):
        read_deepsea_mat(path, "valid")
    scipy.io.savemat(path, {"validxdata": x, "validdata": y[:3]})
    with pytest.raises(AmberInputError, match="has 5 sequences but 'validdata' has 3 rows"):
        read_deepsea_mat(path, "valid")
    scipy.io.savemat(path, {"validxdata": x, "validdata": np.array(["ab", "cd"])})
    with pytest.raises(AmberInputError, match="'validdata' has dtype <U2, not numbers"):
        read_deepsea_mat(path, "valid")
    _write(path, b"this is not a MATLAB file at all, just some text" * 4)
    with pytest.raises(AmberInputError, match=r"valid\.mat: not a readable \.mat file"):
        read_deepsea_mat(path, "valid")


def test_deepsea_dir_requires_matching_splits(tmp_path: Path) -> None:
    _write_deepsea_dir(tmp_path)
    x, y = _deepsea_arrays(4, 12, 5, 9)  # 5 labels where train has 3
    scipy.io.savemat(tmp_path / "test.mat", {"testxdata": x, "testdata": y})
    with pytest.raises(AmberInputError, match=r"test\.mat: 12 bp x 5 labels, but train\.mat has 12 bp x 3"):
        read_deepsea_dir(tmp_path)
    (tmp_path / "valid.mat").unlink()
    with pytest.raises(AmberInputError, match=r"valid\.mat: file not found"):
        read_deepsea_dir(tmp_path)


# --- our HDF5 format ---------------------------------------------------------------------------


def test_hdf5_round_trip_keeps_unknown_bases(tmp_path: Path) -> None:
    data = _random_dataset(50, 9, 3)
    assert (data.x == 0.25).any()
    path = tmp_path / "data.h5"
    write_hdf5(data, path, chunk_size=8)
    assert [p.name for p in tmp_path.iterdir()] == ["data.h5"]  # no temporary file left behind
    file = HDF5SequenceFile(path)
    assert (len(file), file.length, file.num_labels, file.label_names) == (50, 9, 3, data.label_names)
    loaded = file.load()
    np.testing.assert_array_equal(loaded.x, data.x)
    np.testing.assert_array_equal(loaded.y, data.y)
    assert loaded.names == data.names and loaded.x.dtype == np.float32


def test_hdf5_is_compact_codes_and_packed_label_bits(tmp_path: Path) -> None:
    data = _random_dataset(20, 30, 11)
    write_hdf5(data, tmp_path / "data.h5", chunk_size=8)
    with h5py.File(tmp_path / "data.h5", "r") as file:
        assert (file["codes"].dtype, file["codes"].shape, file["codes"].chunks) == (np.uint8, (20, 30), (8, 30))
        assert (file["labels"].dtype, file["labels"].shape) == (np.uint8, (20, 2))  # 11 labels in 2 bytes
        assert file.attrs["format_version"] == 2


def test_hdf5_shard_batches_cover_every_sequence_once_in_a_seeded_order(tmp_path: Path) -> None:
    data = _random_dataset(45, 6, 2)
    data.names = [str(i) for i in range(45)]
    path = tmp_path / "data.h5"
    write_hdf5(data, path, chunk_size=10)
    file = HDF5SequenceFile(path, window_rows=20)
    order = file.subset(np.arange(45))  # the row number travels with each sequence through its codes
    codes_of = {order.codes[i].tobytes(): i for i in range(45)}

    def rows(seed: int, rank: int = 0, world_size: int = 1) -> list[int]:
        batches = list(file.shard_batches(8, np.random.default_rng(seed), rank, world_size))
        assert [size for _, _, size in batches] == [8] * 5 + [5]
        x = np.concatenate([x for x, _, _ in batches])
        found = [codes_of[code.tobytes()] for code in one_hot_to_codes(x)]
        np.testing.assert_array_equal(np.concatenate([y for _, y, _ in batches]), data.y[found])
        return found

    assert len(codes_of) == 45  # random sequences: all distinct
    first = rows(3)
    assert sorted(first) == list(range(45)) and first != list(range(45))
    assert rows(3) == first and rows(4) != first
    halves = [rows(3, rank, 2) for rank in (0, 1)]
    assert sorted(halves[0] + halves[1]) == list(range(45))
    assert halves[0][:4] == first[0:8:2] and halves[1][:4] == first[1:8:2]


def test_write_hdf5_refuses_values_it_cannot_store(tmp_path: Path) -> None:
    data = _random_dataset(4, 5, 1)
    data.x[0, :, 0] = [0.7, 0.1, 0.1, 0.1]
    with pytest.raises(ValueError, match="sequence 0, position 0: .* is not one-hot"):
        write_hdf5(data, tmp_path / "soft.h5")
    data = _random_dataset(4, 5, 1)
    data.y[2, 0] = 0.5
    with pytest.raises(ValueError, match="sequence 2, label 0: value 0.5 is not 0 or 1"):
        write_hdf5(data, tmp_path / "soft.h5")
    assert not list(tmp_path.iterdir())


def test_hdf5_reads_the_first_layout(tmp_path: Path) -> None:
    data = _random_dataset(12, 7, 3)
    with h5py.File(tmp_path / "old.h5", "w") as file:
        file.create_dataset("x", data=(data.x * 4).astype(np.uint8), chunks=(5, 4, 7))
        file["y"] = data.y
        file["names"] = data.names
        file.attrs["label_names"] = data.label_names
    loaded = HDF5SequenceFile(tmp_path / "old.h5").load()
    np.testing.assert_array_equal(loaded.x, data.x)
    np.testing.assert_array_equal(loaded.y, data.y)
    assert loaded.names == data.names


def test_hdf5_rejects_files_of_another_layout(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as file:
        file["x"] = np.zeros((3, 4, 5), dtype=np.uint8)
        file["y"] = np.zeros((3, 1), dtype=np.float32)
    with pytest.raises(AmberInputError, match=r"other\.h5: no dataset 'names'"):
        HDF5SequenceFile(path)
    with h5py.File(path, "w") as file:
        file["x"] = np.zeros((3, 5, 5), dtype=np.uint8)
        file["y"] = np.zeros((3, 1), dtype=np.float32)
        file["names"] = ["a", "b", "c"]
    with pytest.raises(AmberInputError, match=r"'x' is uint8 \(3, 5, 5\), expected uint8 \(N, 4, L\)"):
        HDF5SequenceFile(path)
    _write(path, b"not hdf5")
    with pytest.raises(AmberInputError, match=r"other\.h5: not a readable HDF5 file"):
        HDF5SequenceFile(path)


def test_load_splits_reads_an_hdf5_directory(tmp_path: Path) -> None:
    for seed, (split, n) in enumerate([("train", 30), ("valid", 5), ("test", 6)]):
        write_hdf5(_random_dataset(n, 8, 2, seed), tmp_path / f"{split}.h5")
    splits = load_splits(DataConfig(kind="hdf5", hdf5_dir=tmp_path), seed=0)
    assert (splits.train.num_sequences, splits.valid.num_sequences, splits.test.num_sequences) == (30, 5, 6)
    np.testing.assert_array_equal(splits.valid.x, _random_dataset(5, 8, 2, 1).x)
    opened = load_search_data(DataConfig(kind="hdf5", hdf5_dir=tmp_path), seed=0)
    assert isinstance(opened.train, HDF5SequenceFile) and len(opened.train) == 30  # opened, not loaded


# --- splits and loading ------------------------------------------------------------------------


def test_stratified_split_is_seeded_disjoint_and_stratified() -> None:
    data = _random_dataset(400, 5, 2)
    splits = stratified_split(data, valid=0.1, test=0.2, seed=7)
    parts = [splits.train.names, splits.valid.names, splits.test.names]
    assert [len(p) for p in parts] == [280, 40, 80]
    assert sorted(name for part in parts for name in part) == sorted(data.names)
    again = stratified_split(data, valid=0.1, test=0.2, seed=7)
    assert again.test.names == splits.test.names and again.valid.names == splits.valid.names
    assert stratified_split(data, valid=0.1, test=0.2, seed=8).test.names != splits.test.names
    for part in (splits.valid, splits.test):
        np.testing.assert_allclose(part.y.mean(axis=0), data.y.mean(axis=0), atol=0.03)


def test_stratified_split_falls_back_when_combinations_are_rare() -> None:
    data = _random_dataset(60, 5, 12)  # 12 labels: nearly every combination is unique
    splits = stratified_split(data, valid=0.2, test=0.2, seed=0)
    assert [s.num_sequences for s in (splits.train, splits.valid, splits.test)] == [36, 12, 12]
    single = SequenceDataset(data.x[:5], np.zeros((5, 1), dtype=np.float32), data.names[:5], ["l"])
    single.y[0] = 1  # one positive: not even the first label can stratify, and two splits get negatives only
    with pytest.raises(AmberInputError, match="no label has both classes among the 1 valid record"):
        stratified_split(single, valid=0.2, test=0.2, seed=0, source="single.tsv")


def test_load_splits_from_fasta_configs(tmp_path: Path) -> None:
    positive = _write(tmp_path / "pos.fa", "".join(f">p{i}\nACGTACGT\n" for i in range(20)))
    negative = _write(tmp_path / "neg.fa", "".join(f">n{i}\nTTTTACGT\n" for i in range(30)))
    split = SplitConfig(valid=0.2, test=0.2)
    config = DataConfig(kind="fasta_binary", positive_fasta=positive, negative_fasta=negative, split=split)
    splits = load_splits(config, seed=1)
    assert [s.num_sequences for s in (splits.train, splits.valid, splits.test)] == [30, 10, 10]
    assert splits.test.y.sum() == 4  # stratified: 40 % positives in every split
    tsv = _write(tmp_path / "labels.tsv", "id\tpos\n" + "".join(f"p{i}\t{i % 2}\n" for i in range(20)))
    labelled = load_splits(DataConfig(kind="fasta_labels", fasta=positive, labels_tsv=tsv), seed=1)
    assert labelled.train.label_names == ["pos"] and labelled.train.num_sequences == 16


def test_load_splits_simulates_by_default() -> None:
    config = DataConfig(simulate=SimulatorConfig(num_sequences=100, length=50, motifs=["MA0079.5"]))
    splits = load_splits(config, seed=0)
    assert [s.num_sequences for s in (splits.train, splits.valid, splits.test)] == [80, 10, 10]
    assert splits.train.label_names == ["MA0079.5_SP1"]


def test_read_label_annotation(tmp_path: Path) -> None:
    table = read_label_annotation(_write(tmp_path / "ann.tsv", "label\tcategory\tnote\nl0\tTF\tx\nl1\tDNase\t\n"))
    assert list(table["category"]) == ["TF", "DNase"]
    with pytest.raises(AmberInputError, match=r"bad\.tsv: missing column\(s\) \['category'\]"):
        read_label_annotation(_write(tmp_path / "bad.tsv", "label\tkind\nl0\tTF\n"))
    with pytest.raises(AmberInputError, match=r"dup\.tsv: record l0: label listed more than once"):
        read_label_annotation(_write(tmp_path / "dup.tsv", "label\tcategory\nl0\tTF\nl0\tDNase\n"))
    with pytest.raises(AmberInputError, match=r"gap\.tsv: record l1: empty category"):
        read_label_annotation(_write(tmp_path / "gap.tsv", "label\tcategory\nl0\tTF\nl1\t\n"))
    with pytest.raises(AmberInputError, match="file not found"):
        read_label_annotation(tmp_path / "none.tsv")


# --- the real promoter data --------------------------------------------------------------------


def test_reads_the_arabidopsis_promoter_set(promoter_fastas: tuple[Path, Path]) -> None:
    positives, negatives = promoter_fastas
    data = read_binary_fasta(positives, negatives)
    assert (data.num_sequences, data.length, data.num_labels) == (5905 + 11459, 251, 1)
    assert int(data.y.sum()) == 5905 and data.label_names == ["arabidopsis_nontata_promoters"]
    assert data.names[0] == "FP000001"
    np.testing.assert_allclose(data.x.sum(axis=1), 1.0)


def test_promoter_job_config_reads_the_copy_in_the_repository(promoter_fastas: tuple[Path, Path]) -> None:
    """jobs/configs/promoters.yaml names the shipped files, unchanged since MANIFEST.md recorded them."""
    import hashlib
    import re

    from amber_ray.config import load_config

    root = Path(__file__).resolve().parents[1]
    config = load_config(root / "jobs" / "configs" / "promoters.yaml")
    assert (config.data.positive_fasta, config.data.negative_fasta) == tuple(p.resolve() for p in promoter_fastas)
    folder = promoter_fastas[0].parent
    manifest = (folder / "MANIFEST.md").read_text()
    recorded = dict(re.findall(r"^\| (\S+\.fa) \|.*\| ([0-9a-f]{64}) \|$", manifest, flags=re.MULTILINE))
    assert set(recorded) == {p.name for p in promoter_fastas}
    for path in promoter_fastas:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == recorded[path.name], path.name
    assert {"LICENSE", "SOURCE_README"} <= {p.name for p in folder.iterdir()}
    assert "MIT License" in (folder / "LICENSE").read_text()
