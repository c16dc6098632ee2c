import hashlib
import re

import numpy as np
import pytest

from amber_ray.config import SimulatorConfig
from amber_ray.data import (
    one_hot_encode,
    read_binary_fasta,
    read_fasta,
    read_fasta_with_labels,
    reference_workload,
    simulate_dataset,
    stratified_split,
)
from amber_ray.errors import AmberInputError


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_one_hot_order_and_unknown_letters():
    x = one_hot_encode(["ACGTN", "acgtn"])
    assert x.shape == (2, 4, 5) and x.dtype == np.float32
    assert np.array_equal(x[0, :, :4], np.eye(4))
    assert np.allclose(x[0, :, 4], 0.25)
    assert np.array_equal(x[0], x[1])


def test_windows_line_endings_and_wrapped_records_are_read(tmp_path):
    path = write(tmp_path, "crlf.fa", ">a desc\r\nACGT\r\nAC\r\n>b\r\nTTTTGG\r\n")
    assert read_fasta(path) == (["a", "b"], ["ACGTAC", "TTTTGG"])


@pytest.mark.parametrize(
    "content,problem,record",
    [
        (">a\nACGT\n>b\nACG\n", "length 3 differs from the expected 4", "b"),
        (">a\nACGT\n>b\nACXT\n", "letter 'X' at position 3", "b"),
        (">a\nACGT\n>a\nACGT\n", "duplicate record name", "a"),
        ("", "no FASTA records", None),
        ("ACGT\n>a\nACGT\n", "before the first '>' header", None),
        (">a\n\n>b\nACGT\n", "empty sequence", "a"),
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "binary data", None),
        (b">a\nAC\xc3\xa9T\n", "non-ASCII byte", None),
    ],
)
def test_bad_fasta_is_one_clear_line_naming_file_and_record(tmp_path, content, problem, record):
    path = write(tmp_path, "bad.fa", content)
    with pytest.raises(AmberInputError, match=re.escape(problem)) as error:
        read_fasta(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    if record:
        assert f"record {record}" in message


def test_expected_length_is_enforced(tmp_path):
    path = write(tmp_path, "ok.fa", ">a\nACGT\n")
    with pytest.raises(AmberInputError, match="length 4 differs from the expected 5"):
        read_fasta(path, length=5)


def test_labelled_fasta_and_its_errors(tmp_path):
    fasta = write(tmp_path, "s.fa", ">s1\nACGT\n>s2\nGGGG\n")
    labels = write(tmp_path, "l.tsv", "name\tctcf\tsp1\ns2\t1\t0\ns1\t0\t1\n")
    data = read_fasta_with_labels(fasta, labels)
    assert data.label_names == ["ctcf", "sp1"]
    assert data.y.tolist() == [[0, 1], [1, 0]]
    unknown = write(tmp_path, "u.tsv", "name\tctcf\ns1\t1\ns2\t0\ns9\t1\n")
    with pytest.raises(AmberInputError, match=r"u\.tsv: record s9: names a sequence absent from the FASTA"):
        read_fasta_with_labels(fasta, unknown)
    missing = write(tmp_path, "m.tsv", "name\tctcf\ns1\t1\n")
    with pytest.raises(AmberInputError, match="record s2: has no labels"):
        read_fasta_with_labels(fasta, missing)
    not_binary = write(tmp_path, "b.tsv", "name\tctcf\ns1\t1\ns2\t7\n")
    with pytest.raises(AmberInputError, match="record s2: value 7 in column 'ctcf' is not 0 or 1"):
        read_fasta_with_labels(fasta, not_binary)


def test_real_promoter_set_reads_completely(promoter_fastas):
    data = read_binary_fasta(*promoter_fastas)
    assert data.x.shape == (5905 + 11459, 4, 251)
    assert data.y.sum() == 5905
    assert data.label_names == ["arabidopsis_nontata_promoters"]


def test_split_is_seeded_stratified_and_disjoint():
    data, _ = simulate_dataset(SimulatorConfig(num_sequences=1000, length=50, motifs=["MA0079.5"], prevalence=0.3), seed=0)
    splits = stratified_split(data, valid=0.1, test=0.1, seed=4)
    again = stratified_split(data, valid=0.1, test=0.1, seed=4)
    assert splits.test.names == again.test.names
    assert (splits.train.num_sequences, splits.valid.num_sequences, splits.test.num_sequences) == (800, 100, 100)
    assert not set(splits.train.names) & (set(splits.valid.names) | set(splits.test.names))
    rate = data.y.mean()
    for part in (splits.train, splits.valid, splits.test):
        assert abs(part.y.mean() - rate) < 0.02


def test_simulator_labels_match_ground_truth_and_motifs_are_planted():
    config = SimulatorConfig(num_sequences=300, length=120, motifs=["MA0139.1", "MA0079.5"], prevalence=0.4)
    data, truth = simulate_dataset(config, seed=1)
    again, _ = simulate_dataset(config, seed=1)
    assert np.array_equal(data.x, again.x)
    for j, motif_id in enumerate(config.motifs):
        planted = set(truth.loc[truth.motif_id == motif_id, "sequence"])
        assert planted == set(np.flatnonzero(data.y[:, j]))
    assert 0.3 < data.y.mean() < 0.5
    # planted SP1 instances match the matrix far better than random positions
    from amber_ray.data.simulate import jaspar_motif

    _, ppm = jaspar_motif("MA0079.5")
    log_odds = np.log(ppm + 1e-3) - np.log(0.25)

    def score(i, start, strand):
        window = data.x[i, :, start : start + len(ppm)]
        if strand == "-":
            window = window[::-1, ::-1]
        return float((window.T * log_odds).sum())

    sp1 = truth[truth.motif_id == "MA0079.5"]
    planted_scores = [score(r.sequence, r.start, r.strand) for r in sp1.itertuples()]
    rng = np.random.default_rng(0)
    background = [score(int(i), int(s), "+") for i, s in zip(rng.integers(0, 300, 500), rng.integers(0, 120 - len(ppm), 500))]
    assert np.mean(planted_scores) > np.mean(background) + 5


def test_unknown_motif_id_is_a_clear_error():
    with pytest.raises(AmberInputError, match="JASPAR has no matrix 'MA9999.9'"):
        simulate_dataset(SimulatorConfig(num_sequences=5, motifs=["MA9999.9"]), seed=0)


def test_reference_workload_reproduces_the_published_checksum():
    x, y = reference_workload()
    assert x.shape == (2000, 4, 200) and y.shape == (2000, 3)
    digest = hashlib.sha256(np.ascontiguousarray(x.transpose(0, 2, 1)).tobytes() + y.tobytes()).hexdigest()
    assert digest == "ff46300e129a25bb27411d135c2b2417d3406f12d67ef5d1e4276cedc78f4537"
