"""The bad-input corpus (``tests/data/bad``) through the real command line.

Every case must end with exit code 2, one ``error:`` line naming the file (and the record or key
where there is one), no traceback, and nothing written to ``--out``. Files that merely look odd
(Windows line endings, a byte-order mark, lower case, N) must be accepted, and VCF records that
cannot be scored (REF differs from the genome) are listed beside the scores rather than fatal. DeepSEA ``.mat`` cases
are written by :func:`write_mat_case` (binary files are easier to read as the code that makes them).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import yaml
from conftest import assert_clean_failure, invoke, tiny_net
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amber_ray.config import OP_NAMES, ExperimentConfig, load_config, parse_config, parse_overrides, resolve_data_paths
from amber_ray.data import read_binary_fasta, read_deepsea_mat, read_fasta, read_fasta_with_labels
from amber_ray.errors import AmberInputError
from amber_ray.space import Architecture

BAD = Path(__file__).resolve().parent / "data" / "bad"
ARCH = "conv8,skip:;conv4,skip:0;maxpool,skip:;conv8,skip:1"
# Sections and keys the config fuzzer mixes (valid ones, so that it gets past the unknown-key check).
CONFIG_KEYS = [
    "name",
    "seed",
    "data",
    "space",
    "train",
    "search",
    "retrain",
    "kind",
    "simulate",
    "num_sequences",
    "length",
    "split",
    "valid",
    "profile",
    "ops",
    "num_layers",
    "batch_size",
    "iterations",
    "workers",
    "controller",
    "temperature",
    "positive_fasta",
    "max_failures",
]
TINY = {"space": {"first_filters": 4, "stem_channels": 4, "dense_units": 8}, "train": {"batch_size": 16, "max_epochs": 1}}


def write_config(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"data": data, **TINY}))
    return path


def train(config: Path, out: Path, arch: str = ARCH):
    return invoke("train", config, "--arch", arch, "--out", out)


def binary(positive: str, negative: str = "negatives.fa") -> dict:
    folder = BAD / "fasta"
    return {"kind": "fasta_binary", "positive_fasta": str(folder / positive), "negative_fasta": str(folder / negative)}


def labelled(fasta: str = "sequences.fa", labels: str = "labels.tsv") -> dict:
    return {"kind": "fasta_labels", "fasta": str(BAD / "labels" / fasta), "labels_tsv": str(BAD / "labels" / labels)}


FASTA_CASES = [
    ("wrong_length.fa", ["wrong_length.fa", "record pos7", "length 61 differs from the first record's 64"]),
    ("bad_letter.fa", ["bad_letter.fa", "record pos4", "letter 'X' at position 31"]),
    ("empty.fa", ["empty.fa", "no FASTA records"]),
    ("binary_garbage.fa", ["binary_garbage.fa", "binary data, not a FASTA file"]),
    ("gzipped.fa", ["gzipped.fa", "gzip-compressed"]),
    ("latin1_header.fa", ["latin1_header.fa", "not UTF-8"]),
    ("header_without_name.fa", ["header_without_name.fa", "record 3", "header without a name"]),
    ("sequence_before_header.fa", ["sequence_before_header.fa", "before the first '>' header"]),
]


@pytest.mark.parametrize("name,fragments", FASTA_CASES, ids=[c[0] for c in FASTA_CASES])
def test_bad_fasta_is_rejected(tmp_path, name, fragments):
    out = tmp_path / "out"
    assert_clean_failure(train(write_config(tmp_path, binary(name)), out), out, *fragments)


def test_duplicate_names_are_rejected_where_names_are_keys(tmp_path):
    out = tmp_path / "out"
    result = train(write_config(tmp_path, labelled(fasta="duplicate_names.fa")), out)
    assert_clean_failure(result, out, "duplicate_names.fa", "record s3", "duplicate record name")


def test_windows_line_endings_bom_lower_case_and_n_are_accepted(tmp_path):
    """The reader gives the same records as for a plain copy (LF, no byte-order mark, upper case)."""
    odd = BAD / "fasta" / "windows_line_endings.fa"
    dataset = read_binary_fasta(odd, BAD / "fasta" / "negatives.fa")
    assert dataset.names == [f"pos{i}" for i in range(20)] + [f"neg{i}" for i in range(20)]
    assert dataset.label_names == ["windows_line_endings"] and dataset.y[:, 0].tolist() == [1.0] * 20 + [0.0] * 20
    assert_one_hot_of(dataset.x[:1], ["TGGCCAAAATNTGGTGGGGTCTGACTGATGTAATAGACCCCAAAAGGGCGTCCTTTCGTGTGGC"])
    plain = tmp_path / "plain.fa"
    plain.write_text(odd.read_bytes().decode("utf-8-sig").replace("\r\n", "\n").upper().replace(">POS", ">pos"))
    assert read_fasta(odd) == read_fasta(plain)
    np.testing.assert_array_equal(dataset.x[:20], read_binary_fasta(plain, BAD / "fasta" / "negatives.fa").x[:20])


LABEL_CASES = [
    ("no_header.tsv", ["no_header.tsv", "header row"]),
    ("not_binary.tsv", ["not_binary.tsv", "record s5", "value '2' in column 'CTCF' is not 0 or 1"]),
    ("text_value.tsv", ["text_value.tsv", "record s3", "value 'yes'"]),
    ("missing_value.tsv", ["missing_value.tsv", "record s6", "column 'SP1'"]),
    ("extra_column.tsv", ["extra_column.tsv", "not a readable TSV", "line 4"]),  # record s2 has a fourth field
    ("unknown_sequence.tsv", ["unknown_sequence.tsv", "record ghost", "absent from"]),
    ("missing_row.tsv", ["missing_row.tsv", "record s4", "has no row"]),
    ("duplicate_row.tsv", ["duplicate_row.tsv", "record s2", "more than one row"]),
    ("empty.tsv", ["empty.tsv", "not a readable TSV"]),
    ("duplicate_label_column.tsv", ["duplicate_label_column.tsv", "column name 'CTCF' appears more than once"]),
    ("empty_label_column.tsv", ["empty_label_column.tsv", "column 2 of the header row has no name"]),
    ("constant_label.tsv", ["constant_label.tsv", "label 'SP1' is 0 in every record"]),
]


@pytest.mark.parametrize("name,fragments", LABEL_CASES, ids=[c[0] for c in LABEL_CASES])
def test_bad_label_table_is_rejected(tmp_path, name, fragments):
    out = tmp_path / "out"
    assert_clean_failure(train(write_config(tmp_path, labelled(labels=name)), out), out, *fragments)


# FASTA data loaded whole: base codes (1 byte per base) then one-hot float32 (16), and float32 labels.
FASTA_MEMORY_CASES = [
    # 12 records of 64 bp with 2 labels
    ("fasta_labels", labelled(), 12 * 64 * 17 + 12 * 2 * 4, ["sequences.fa: loading it whole", "needs 13.2 kB but 6.6 kB"]),
    # 20 positives and 20 negatives of 64 bp, one label
    ("fasta_binary", binary("positives.fa"), 40 * 64 * 17 + 40 * 4, ["positives.fa and", "needs 43.7 kB but 21.8 kB"]),
]


@pytest.mark.parametrize("kind,data,need,fragments", FASTA_MEMORY_CASES, ids=[c[0] for c in FASTA_MEMORY_CASES])
def test_fasta_larger_than_memory_is_refused_before_encoding(tmp_path, monkeypatch, kind, data, need, fragments):
    """Sequences whose one-hot encoding cannot be held: one line naming the file, the size and the streamed
    route, instead of the process being killed for memory; with exactly enough memory it trains."""
    from amber_ray.data import memory

    config, out = write_config(tmp_path, data), tmp_path / "out"
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: need // 2)
    assert_clean_failure(
        train(config, out), out, *fragments, "amber-ray convert DIR/train.h5 --fasta FILE --labels TSV", "data.kind: hdf5"
    )
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: need)
    result = train(config, out)
    assert result.exit_code == 0, result.output


# --- DeepSEA .mat -------------------------------------------------------------------------------


def mat_arrays(n: int, length: int = 32, labels: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB-order arrays: x ``(N, 4, L)`` one-hot uint8, y ``(N, T)`` uint8."""
    rng = np.random.default_rng(seed)
    x = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, (n, length))].transpose(0, 2, 1)
    return np.ascontiguousarray(x), rng.integers(0, 2, (n, labels), dtype=np.uint8)


def write_v73(path: Path, variables: dict[str, np.ndarray]) -> None:
    """As MATLAB v7.3 saves: HDF5 with every array's axes reversed."""
    with h5py.File(path, "w") as file:
        for key, value in variables.items():
            if value.dtype.kind == "U":
                file.create_dataset(key, data=value.astype(object), dtype=h5py.string_dtype())
            else:
                file[key] = value.T


def write_mat_case(directory: Path, case: str) -> None:
    """A DeepSEA directory whose ``train.mat`` (v7.3) is broken as ``case`` says."""
    directory.mkdir()
    for seed, split in enumerate(("valid", "test"), start=1):
        x, y = mat_arrays(8, seed=seed)
        scipy.io.savemat(directory / f"{split}.mat", {f"{split}xdata": x, f"{split}data": y})
    x, y = mat_arrays(24)
    train = {
        "wrong_keys": {"trainx": x, "trainy": y},
        "wrong_shape": {"trainxdata": x[:, :3], "traindata": y},
        "wrong_count": {"trainxdata": x, "traindata": y[:20]},
        "wrong_dtype": {"trainxdata": x, "traindata": np.array(["yes", "no"] * 12)},
        "other_length": {"trainxdata": mat_arrays(24, length=40)[0], "traindata": y},
    }.get(case)
    if train is None:
        (directory / "train.mat").write_bytes(b"MATLAB 5.0 MAT-file, but cut short" + bytes(20))
    else:
        write_v73(directory / "train.mat", train)


MAT_CASES = [
    ("wrong_keys", ["train.mat", "no variable 'trainxdata'"]),
    ("wrong_shape", ["train.mat", "'trainxdata' has shape (24, 3, 32)"]),
    ("wrong_count", ["train.mat", "24 sequences but 'traindata' has 20 rows"]),
    ("wrong_dtype", ["train.mat", "'traindata' has dtype object, not numbers"]),
    ("other_length", ["valid.mat", "32 bp x 2 labels, but train.mat has 40 bp"]),
    ("truncated", ["train.mat", "not a readable .mat file"]),
]


@pytest.mark.parametrize("case,fragments", MAT_CASES, ids=[c[0] for c in MAT_CASES])
def test_bad_deepsea_mat_is_rejected(tmp_path, case, fragments):
    write_mat_case(tmp_path / "deepsea", case)
    out = tmp_path / "out"
    result = train(write_config(tmp_path, {"kind": "deepsea", "deepsea_dir": str(tmp_path / "deepsea")}), out)
    assert_clean_failure(result, out, *fragments)


def test_deepsea_mat_larger_than_memory_is_refused_before_loading(tmp_path, monkeypatch):
    """A train.mat that cannot be held whole: one line naming it, its size and the streamed route, instead of
    the process being killed for memory; with exactly enough memory it loads."""
    from amber_ray.data import deepsea, memory

    directory = tmp_path / "deepsea"
    directory.mkdir()
    for seed, split in enumerate(deepsea.SPLITS):
        x, y = mat_arrays(24, seed=seed)
        write_v73(directory / f"{split}.mat", {f"{split}xdata": x, f"{split}data": y})
    config, out = write_config(tmp_path, {"kind": "deepsea", "deepsea_dir": str(directory)}), tmp_path / "out"
    # train.mat: 24 x 4 x 32 one-hot and 24 x 2 labels, read as uint8 (1 byte) and held as float32 (4 bytes)
    need = (24 * 4 * 32 + 24 * 2) * (1 + 4)
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: need // 2)
    result = train(config, out)
    assert_clean_failure(
        result,
        out,
        "train.mat: loading it whole as float32 needs 15.6 kB but 7.8 kB is available",
        f"amber-ray convert DIR/train.h5 --mat {directory / 'train.mat'}",
        "data.kind: hdf5",
    )
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: need)
    assert deepsea.read_deepsea_mat(directory / "train.mat", "train").num_sequences == 24


# --- configs and architectures ------------------------------------------------------------------


CONFIG_CASES = [
    ("unknown_key.yaml", ["unknown_key.yaml", "config key 'search.archs': unknown key"]),
    ("wrong_type.yaml", ["wrong_type.yaml", "config key 'train.batch_size'", "integer"]),
    ("negative_size.yaml", ["negative_size.yaml", "config key 'search.batch_size'", "greater than 0"]),
    ("zero_workers.yaml", ["zero_workers.yaml", "config key 'search.workers'"]),
    ("bad_op.yaml", ["bad_op.yaml", "config key 'space.ops.1'"]),
    ("not_a_mapping.yaml", ["not_a_mapping.yaml", "a config must be a YAML mapping"]),
    ("broken_yaml.yaml", ["broken_yaml.yaml", "not valid YAML"]),
    ("python_object.yaml", ["python_object.yaml", "not valid YAML"]),
    ("missing_data_file.yaml", ["no_such_file.fa", "file not found"]),
    ("too_deep_for_length.yaml", ["model space", "leave nothing of a 64-bp input"]),
    ("traversal_name.yaml", ["traversal_name.yaml", "config key 'name'"]),
    ("negative_seed.yaml", ["negative_seed.yaml", "config key 'seed'", "greater than or equal to 0"]),
    ("negative_search_seed.yaml", ["negative_search_seed.yaml", "config key 'search.seed'"]),
    ("infinite_learning_rate.yaml", ["infinite_learning_rate.yaml", "config key 'train.learning_rate'", "finite"]),
    ("nan_dropout.yaml", ["nan_dropout.yaml", "config key 'space.dropout'", "finite"]),
    ("huge_learning_rate.yaml", ["huge_learning_rate.yaml", "config key 'train.learning_rate'", "less than or equal to 1"]),
    ("duplicate_key.yaml", ["duplicate_key.yaml", "key 'max_epochs' given twice (line 5)"]),
    ("latin1.yaml", ["latin1.yaml", "byte at offset 5 is not UTF-8"]),
]


@pytest.mark.parametrize("name,fragments", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_is_rejected(tmp_path, monkeypatch, name, fragments):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert_clean_failure(train(BAD / "configs" / name, out), out, *fragments)
    assert not (tmp_path / "unsafe-yaml-ran.txt").exists()


SET_CASES = [
    ("seed.x=1", ["--set", "config key 'seed.x': unknown key (seed is a value, not a section)"]),
    ("train.max_epochs.x=5", ["--set", "config key 'train.max_epochs.x': unknown key"]),
    ("train.learning_rate=1e300", ["config key 'train.learning_rate'", "less than or equal to 1"]),
]


@pytest.mark.parametrize("assignment,fragments", SET_CASES, ids=[c[0] for c in SET_CASES])
def test_bad_set_is_rejected_before_training(tmp_path, assignment, fragments):
    out = tmp_path / "out"
    config = write_config(tmp_path, binary("positives.fa"))
    assert_clean_failure(invoke("train", config, "--arch", ARCH, "--out", out, "--set", assignment), out, *fragments)


ARCH_CASES = [
    ("conv8,skip:;conv9,skip:0;maxpool,skip:;conv8,skip:1", ["architecture", "layer 1", "op 'conv9' is not in the space"]),
    ("conv8,skip:;conv4,skip:3;maxpool,skip:;conv8,skip:1", ["architecture", "layer 1", "skip to layer 3 is not an earlier"]),
    ("conv8,skip:;conv4,skip:1;maxpool,skip:;conv8,skip:1", ["architecture", "layer 1", "skip to layer 1"]),
    ("conv8,skip:;conv4,skip:0", ["architecture", "2 layers, the space has 4"]),
    ("conv8;conv4", ["architecture", "layer 0", "expected 'op,skip:i+j'"]),
    ("conv8,skip:;conv4,skip:a;maxpool,skip:;conv8,skip:", ["architecture", "layer 1", "not '+'-joined integers"]),
    ("conv8,skip:;conv4,skip:0+0;maxpool,skip:;conv8,skip:", ["architecture", "layer 1", "sorted and unique"]),
    ("", ["architecture", "layer 0"]),
]


@pytest.mark.parametrize("arch,fragments", ARCH_CASES, ids=[f"arch{i}" for i in range(len(ARCH_CASES))])
def test_bad_architecture_string_is_rejected(tmp_path, arch, fragments):
    out = tmp_path / "out"
    assert_clean_failure(train(write_config(tmp_path, binary("positives.fa")), out, arch), out, *fragments)


def test_gpu_request_on_a_gpu_less_cluster_is_rejected_by_search(ray_session, tmp_path):
    """Through a separate process joined to the test cluster (the command shuts its Ray down)."""
    import ray

    out = tmp_path / "out"
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "RAY_AUTH_MODE": "disabled", "COLUMNS": "400"}
    result = subprocess.run(
        [sys.executable, "-m", "amber_ray.cli", "search", str(BAD / "configs" / "gpu_on_cpu_cluster.yaml"), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in (
        "gpu_on_cpu_cluster.yaml",
        "'search.gpus_per_worker' asks for 1 GPU per worker",
        "the most on one node is GPU 0",
    ):
        assert fragment in errors[0], errors[0]
    assert not out.exists() or not any(out.iterdir())


# --- degenerate data: refused before scikit-learn, naming the file ------------------------------


def test_too_few_records_to_split_are_rejected(tmp_path):
    out = tmp_path / "out"
    result = train(write_config(tmp_path, binary("one_positive.fa", "one_negative.fa")), out)
    assert_clean_failure(result, out, "one_positive.fa", "2 record(s) cannot be split", "leave 0 train, 1 valid, 1 test")


def test_split_that_leaves_no_training_set_is_rejected(tmp_path):
    out = tmp_path / "out"
    config = write_config(tmp_path, {**binary("positives.fa"), "split": {"valid": 0.6, "test": 0.39}})
    assert_clean_failure(train(config, out), out, "positives.fa", "40 record(s) cannot be split", "leave 0 train")


def test_split_where_no_label_varies_is_rejected(tmp_path):
    """One negative among 20 positives: at least one of the three splits holds positives only."""
    out = tmp_path / "out"
    result = train(write_config(tmp_path, binary("positives.fa", "one_negative.fa")), out)
    assert_clean_failure(result, out, "positives.fa", "no label has both classes among the", "AUROC is undefined")


# --- outputs: checked before the work, nothing left behind ---------------------------------------


def test_out_naming_an_existing_file_is_rejected_before_training(tmp_path):
    out = tmp_path / "taken"
    out.write_text("keep me\n")
    result = train(write_config(tmp_path, binary("positives.fa")), out)
    assert result.exit_code == 2 and "is an existing file" in result.output and "Traceback" not in result.output
    assert "train " not in result.output  # no epoch ran
    assert out.read_text() == "keep me\n"


def test_out_inside_a_file_is_rejected(tmp_path):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "out"
    result = train(write_config(tmp_path, binary("positives.fa")), out)
    assert result.exit_code == 2 and "file: is an existing file" in result.output, result.output


def test_directory_where_an_output_file_goes_is_rejected_before_training(tmp_path):
    out = tmp_path / "out"
    (out / "model.pt").mkdir(parents=True)
    result = train(write_config(tmp_path, binary("positives.fa")), out)
    assert result.exit_code == 2, result.output
    assert "model.pt: is a directory" in result.output and "train " not in result.output
    assert sorted(p.name for p in out.iterdir()) == ["model.pt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_out_is_rejected_before_training(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        result = train(write_config(tmp_path, binary("positives.fa")), out)
    finally:
        out.chmod(0o755)
    assert result.exit_code == 2 and "cannot write here" in result.output, result.output


@pytest.mark.parametrize("command", ["train", "search", "report"])
def test_empty_out_is_refused(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, binary("positives.fa"))
    args = {"train": ["train", config, "--arch", ARCH], "search": ["search", config], "report": ["report", tmp_path]}[command]
    option = "--out-file" if command == "report" else "--out"
    result = invoke(*args, option, "")
    assert result.exit_code == 2 and option in result.output and "must not be empty" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_train_writes_with_the_umask_and_strict_json(tmp_path):
    """Others on a shared machine can read the outputs (umask 022), and metrics.json holds no bare NaN."""
    import json

    out = tmp_path / "out"
    previous = os.umask(0o022)
    try:
        result = train(write_config(tmp_path, binary("windows_line_endings.fa")), out)
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    for name in ("model.pt", "metrics.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name
    json.loads((out / "metrics.json").read_text(), parse_constant=lambda name: pytest.fail(f"bare {name} in metrics.json"))


# --- VCF (variant effects) ------------------------------------------------------------------------


@pytest.fixture
def variant_inputs(tmp_path) -> tuple[Path, Path]:
    """An untrained model in the format of ``amber-ray train`` and a copy of the corpus genome
    (its index is written beside it, so not into the repository)."""
    from amber_ray.child import save_child

    model = tmp_path / "model.pt"
    save_child(tiny_net(2, 40, dropout=0.0), model, {"label_names": ["a", "b"]})
    genome = tmp_path / "genome.fa"
    genome.write_bytes((BAD / "vcf" / "genome.fa").read_bytes())
    return model, genome


def score_variants(model: Path, genome: Path, vcf: str, out: Path):
    return invoke("variants", "score", model, "--vcf", BAD / "vcf" / vcf, "--fasta", genome, "--out-file", out / "scores.parquet")


VCF_CASES = [
    ("missing_columns.vcf", ["missing_columns.vcf", "record 2", "has 4 tab-separated columns"]),
    ("bad_position.vcf", ["bad_position.vcf", "record 1", "not a valid VCF data line"]),
    ("unknown_chromosome.vcf", ["unknown_chromosome.vcf", "record 1 (chr9:80)", "chromosome 'chr9' is not in"]),
    ("no_records.vcf", ["no_records.vcf", "no variant records"]),
    ("no_header.vcf", ["no_header.vcf", "not a VCF file"]),
    ("binary_garbage.vcf", ["binary_garbage.vcf", "not a VCF file"]),
    ("truncated.vcf.gz", ["truncated.vcf.gz", "truncated or damaged gzip file"]),
]


@pytest.mark.parametrize("name,fragments", VCF_CASES, ids=[c[0] for c in VCF_CASES])
def test_bad_vcf_is_rejected(variant_inputs, tmp_path, name, fragments):
    out = tmp_path / "out"
    assert_clean_failure(score_variants(*variant_inputs, name, out), out, *fragments)


def test_vcf_records_that_cannot_be_scored_are_listed_not_fatal(variant_inputs, tmp_path):
    """A REF that disagrees with the genome skips that record (listed with the reason); multi-allelic
    records are split per ALT; an unsorted VCF is read as it is."""
    import pandas as pd

    scored = {}
    for name in ("ref_mismatch.vcf", "multi_allelic.vcf", "unsorted.vcf"):
        out = tmp_path / name
        result = score_variants(*variant_inputs, name, out)
        assert result.exit_code == 0, result.output
        scored[name] = pd.read_parquet(out / "scores.parquet").variant_id.unique().tolist()
    skipped = pd.read_csv(tmp_path / "ref_mismatch.vcf" / "scores.skipped.tsv", sep="\t")
    assert skipped.variant_id.tolist() == ["mismatch"] and "does not match the reference genome" in skipped.reason[0]
    assert scored["ref_mismatch.vcf"] == ["snv1", "snv2"]
    assert sorted(scored["multi_allelic.vcf"]) == ["multi:C", "multi:G", "snv1"]
    assert sorted(scored["unsorted.vcf"]) == ["snv1", "snv2"]


def test_truncated_bgzip_vcf_is_rejected(variant_inputs, tmp_path):
    import pysam

    plain = tmp_path / "many.vcf"
    lines = (BAD / "vcf" / "unsorted.vcf").read_text().splitlines(keepends=True)
    header, records = [line for line in lines if line.startswith("#")], [line for line in lines if not line.startswith("#")]
    plain.write_text("".join(header + records * 4000))
    pysam.tabix_compress(str(plain), str(tmp_path / "many.vcf.gz"))
    data = (tmp_path / "many.vcf.gz").read_bytes()
    (tmp_path / "cut.vcf.gz").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    model, genome = variant_inputs
    cut = tmp_path / "cut.vcf.gz"
    result = invoke("variants", "score", model, "--vcf", cut, "--fasta", genome, "--out-file", out / "scores.parquet")
    assert_clean_failure(result, out, "cut.vcf.gz")


def test_variant_scores_are_all_written_or_none(variant_inputs, tmp_path):
    """The side file's name is taken by a directory: refused before scoring, no scores.tsv left behind."""
    out = tmp_path / "out"
    (out / "scores.skipped.tsv").mkdir(parents=True)
    model, genome = variant_inputs
    vcf = BAD / "vcf" / "unsorted.vcf"
    result = invoke("variants", "score", model, "--vcf", vcf, "--fasta", genome, "--out-file", out / "scores.tsv")
    assert result.exit_code == 2 and "scores.skipped.tsv: is a directory" in result.output, result.output
    assert sorted(p.name for p in out.iterdir()) == ["scores.skipped.tsv"]


def damaged_model(model: Path, case: str) -> Path:
    """``model`` (from :func:`variant_inputs`) damaged as ``case`` says."""
    import torch

    damaged = model.with_name(f"{case}.pt")
    if case == "truncated":
        data = model.read_bytes()
        damaged.write_bytes(data[: len(data) // 2])
        return damaged
    payload = torch.load(model, weights_only=True)
    if case == "not_a_model":
        payload = {"weights": torch.zeros(3)}
    elif case == "labels_mismatch":
        payload["extra"] = {"label_names": ["a", "b", "c"]}
    elif case == "bad_arch":
        payload["arch"] = "conv8,skip:;conv9,skip:0"
    torch.save(payload, damaged)
    return damaged


MODEL_CASES = [
    ("truncated", ["truncated.pt", "not a readable amber_ray model checkpoint"]),
    ("not_a_model", ["not_a_model.pt", "not an amber_ray model"]),
    ("labels_mismatch", ["labels_mismatch.pt", "3 label names for a model with 2 outputs"]),
    ("bad_arch", ["bad_arch.pt", "stored architecture", "op 'conv9' is not in the space"]),
]


@pytest.mark.parametrize("case,fragments", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_damaged_model_is_rejected_naming_it(variant_inputs, tmp_path, case, fragments):
    model, genome = variant_inputs
    out = tmp_path / "out"
    result = invoke(
        "variants",
        "score",
        damaged_model(model, case),
        "--vcf",
        BAD / "vcf" / "unsorted.vcf",
        "--fasta",
        genome,
        "--out-file",
        out / "scores.parquet",
    )
    assert_clean_failure(result, out, *fragments)


# --- cluster resources that can never be met ------------------------------------------------------

RESOURCE_CASES = [
    (
        "cpus_beyond_node.yaml",
        ["cpus_beyond_node.yaml", "'search.cpus_per_worker' asks for 64 CPU per worker", "the most on one node is CPU 2"],
    ),
    (
        "workers_beyond_cluster.yaml",
        ["workers_beyond_cluster.yaml", "'search.workers' asks for 64 x {CPU: 1}", "can hold at most 2"],
    ),
]


@pytest.mark.parametrize("name,fragments", RESOURCE_CASES, ids=[c[0] for c in RESOURCE_CASES])
def test_cpu_request_beyond_the_cluster_is_rejected_by_search(ray_session, tmp_path, name, fragments):
    """Through a separate process joined to the 2-CPU test cluster; a hang fails by the timeout."""
    import ray

    out = tmp_path / "out"
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "RAY_AUTH_MODE": "disabled", "COLUMNS": "400"}
    result = subprocess.run(
        [sys.executable, "-m", "amber_ray.cli", "search", str(BAD / "configs" / name), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert not out.exists()


# --- property-based: a parser either raises AmberInputError or parses to what its input says ------

PROPERTY = settings(
    max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
FASTA_TEXT = st.text(alphabet=">ACGTNacgtnXx \t\r\n", max_size=200)
# Mostly well-formed FASTA (records of one length, any line ending, wrapped, lower case, spaces), so that
# many examples parse and their parse is checked.
FASTA_RECORDS = st.integers(1, 12).flatmap(
    lambda length: st.lists(
        st.tuples(
            st.text(alphabet="ab1>", min_size=1, max_size=3),
            st.text(alphabet="ACGTNacgtn", min_size=length, max_size=length),
            st.integers(1, length),
            st.sampled_from(["\n", "\r\n", " \n", "\n\n"]),
        ),
        min_size=1,
        max_size=4,
    ).map(
        lambda records: "".join(
            f">{name} note{end}" + end.join(seq[i : i + width] for i in range(0, len(seq), width)) + end
            for name, seq, width, end in records
        )
    )
)


def parse_or_none(parse, *args):
    """What ``parse`` returns, or None where it raised an input error (any other exception fails the test)."""
    try:
        return parse(*args)
    except AmberInputError:
        return None


def fasta_records(text: str) -> tuple[list[str], str]:
    """The known answer for FASTA text: each header's first word, and every sequence line's letters, upper case."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return [line[1:].split()[0] for line in lines if line.startswith(">")], "".join(
        line for line in lines if not line.startswith(">")
    ).upper()


def assert_one_hot_of(x: np.ndarray, seqs: list[str]) -> None:
    """``x (N, 4, L)`` encodes ``seqs``: A, C, G, T one-hot, N as 0.25 in every row."""
    codes = {"A": [1, 0, 0, 0], "C": [0, 1, 0, 0], "G": [0, 0, 1, 0], "T": [0, 0, 0, 1], "N": [0.25] * 4}
    expected = np.array([[codes[base] for base in seq] for seq in seqs], dtype=np.float32).transpose(0, 2, 1)
    np.testing.assert_array_equal(x, expected)


@PROPERTY
@given(data=st.one_of(st.binary(max_size=300), FASTA_TEXT.map(str.encode), FASTA_RECORDS.map(str.encode)))
def test_fasta_reader_never_raises_anything_but_input_errors(tmp_path, data):
    path = tmp_path / "fuzz.fa"
    path.write_bytes(data)
    parsed = parse_or_none(read_fasta, path)
    if parsed is None:
        return
    names, seqs = parsed
    expected_names, letters = fasta_records(data.decode("utf-8-sig"))
    assert names == expected_names and len(set(names)) == len(names) and len(seqs) == len(names)
    assert "".join(seqs) == letters and set(letters) <= set("ACGTN")
    assert len({len(seq) for seq in seqs}) == 1 and seqs[0]


@PROPERTY
@given(fasta=FASTA_TEXT | FASTA_RECORDS, table=st.text(alphabet='s123\t\n name01x"', max_size=120))
def test_labelled_fasta_reader_never_raises_anything_but_input_errors(tmp_path, fasta, table):
    (tmp_path / "fuzz.fa").write_text(fasta)
    (tmp_path / "fuzz.tsv").write_text(table)
    dataset = parse_or_none(read_fasta_with_labels, tmp_path / "fuzz.fa", tmp_path / "fuzz.tsv")
    if dataset is None:
        return
    names, seqs = read_fasta(tmp_path / "fuzz.fa")  # the FASTA alone parses, and sets the order
    assert dataset.names == names
    assert_one_hot_of(dataset.x, seqs)
    assert dataset.y.shape == (len(names), len(dataset.label_names)) and set(np.unique(dataset.y)) <= {0.0, 1.0}
    assert dataset.label_names and all(dataset.label_names)


@pytest.fixture(scope="module")
def valid_v5_mat(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("mat") / "valid.mat"
    x, y = mat_arrays(3, length=8)
    scipy.io.savemat(path, {"validxdata": x, "validdata": y}, do_compression=True)
    # The header's free text holds the time of writing: fixed here, so that every run fuzzes the same bytes.
    return b"MATLAB 5.0 MAT-file".ljust(116) + path.read_bytes()[116:]


@PROPERTY
@given(cut=st.integers(0, 10_000), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=4))
def test_mat_reader_never_raises_anything_but_input_errors(tmp_path, valid_v5_mat, cut, flips):
    """A valid MATLAB v5 file, truncated and with a few bytes changed."""
    data = bytearray(valid_v5_mat[: cut % (len(valid_v5_mat) + 1)])
    for position, value in flips:
        if data:
            data[position % len(data)] ^= value
    path = tmp_path / "valid.mat"
    path.write_bytes(bytes(data))
    dataset = parse_or_none(read_deepsea_mat, path, "valid")
    if dataset is None:
        return
    # What survives damage parses to the file's arrays, never to other ones.
    x, y = mat_arrays(3, length=8)
    np.testing.assert_array_equal(dataset.x, x.astype(np.float32))
    np.testing.assert_array_equal(dataset.y, y.astype(np.float32))


@PROPERTY
@given(text=st.text(alphabet="conv8dikpmaxvgtyl,:;+0123456789 -", max_size=80))
def test_architecture_parser_never_raises_anything_but_input_errors(text):
    arch = parse_or_none(Architecture.from_text, text)
    if arch is None:
        return
    assert Architecture.from_text(arch.to_text()) == arch
    # The canonical text is the input less its spaces: no layer, op or skip is dropped or added.
    assert arch.to_text() == text.replace(" ", "")
    for layer, (op, skips) in enumerate(zip(arch.ops, arch.skips)):
        assert op in OP_NAMES and list(skips) == sorted(set(skips)) and all(0 <= j < layer for j in skips)


YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(CONFIG_KEYS), inner, max_size=4),
    max_leaves=12,
)


@PROPERTY
@given(raw=st.dictionaries(st.sampled_from(CONFIG_KEYS), YAML_VALUES, max_size=5))
def test_config_parser_never_raises_anything_but_input_errors(raw):
    config = parse_or_none(parse_config, raw)
    if config is not None:
        assert_config_holds(config, raw)


def assert_config_holds(config: ExperimentConfig, raw: dict) -> None:
    """``config`` validates again to itself and keeps every integer value ``raw`` gave (none is dropped)."""
    assert parse_config(config.model_dump(mode="json")) == config

    def integers(values: dict, prefix: tuple[str, ...] = ()):
        for key, value in values.items():
            if isinstance(value, dict):
                yield from integers(value, (*prefix, key))
            elif type(value) is int:
                yield (*prefix, key), value

    for path, value in integers(raw):
        held = config
        for key in path:
            held = getattr(held, key)
        assert held == value, (path, value, held)


@PROPERTY
@given(
    data=st.one_of(
        st.text(max_size=120).map(str.encode),
        st.binary(max_size=120),
        st.dictionaries(st.sampled_from(CONFIG_KEYS), YAML_VALUES, max_size=5).map(lambda raw: yaml.safe_dump(raw).encode()),
    )
)
def test_config_file_reader_never_raises_anything_but_input_errors(tmp_path, data):
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    config = parse_or_none(load_config, path)
    if config is not None:
        raw = yaml.safe_load(data.decode("utf-8-sig")) or {}
        assert config == resolve_data_paths(parse_config(raw), tmp_path)
        assert_config_holds(config, raw)


@PROPERTY
@given(
    labels=st.integers(1, 3).flatmap(
        lambda t: st.lists(st.lists(st.integers(0, 1), min_size=t, max_size=t), min_size=1, max_size=14)
    ),
    valid=st.floats(0.05, 0.6),
    test=st.floats(0.05, 0.39),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_gives_three_scorable_splits_or_an_input_error(labels, valid, test, seed):
    """Whatever the data, the split never reaches scikit-learn's errors: three non-empty splits, each with
    a label of both classes, or an error naming the data."""
    from amber_ray.data import SequenceDataset, stratified_split

    y = np.array(labels, dtype=np.float32)
    names, label_names = [f"s{i}" for i in range(len(y))], [f"l{j}" for j in range(y.shape[1])]
    dataset = SequenceDataset(np.zeros((len(y), 4, 8), np.float32), y, names, label_names)
    try:
        splits = stratified_split(dataset, valid, test, seed, "fuzz.tsv")
    except AmberInputError as error:
        assert "fuzz.tsv" in str(error)
        return
    for part in (splits.train, splits.valid, splits.test):
        assert part.num_sequences > 0
        assert any(len(np.unique(part.y[:, j])) == 2 for j in range(part.num_labels))


@PROPERTY
@given(
    assignments=st.lists(
        st.text(alphabet="search.wokr=12[]{}:, ", max_size=20)
        | st.tuples(
            st.sampled_from(["search.workers", "seed", "seed.x", "search.controller.hidden_size", "search", "train.wokers"]),
            st.text(alphabet="12[]{}:, ab", max_size=8),
        ).map("=".join),
        max_size=3,
    )
)
def test_override_parser_never_raises_anything_but_input_errors(assignments):
    nested = parse_or_none(parse_overrides, assignments)
    if nested is None:
        return
    paths = [assignment.partition("=")[0] for assignment in assignments]
    for index, assignment in enumerate(assignments):
        key, _, value = assignment.partition("=")
        later = paths[index + 1 :]
        if any(other == key or other.startswith(key + ".") or key.startswith(other + ".") for other in later):
            continue  # a later assignment replaced this one
        held = nested
        for part in key.split("."):
            held = held[part]
        assert held == yaml.safe_load(value), (assignment, nested)
    assert "seed.x" not in paths and "train.wokers" not in paths  # outside the schema: refused
