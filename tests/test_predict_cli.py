"""`amber-ray predict`: FASTA, BED + genome and tiled bigWig tracks give the model's own probabilities
for the documented windows; bad input is one line, exit 2, nothing written; each run is an MLflow run."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyBigWig
import pytest
import torch
from conftest import invoke, tiny_net
from mlflow.tracking import MlflowClient

from amber_ray.child import save_child
from amber_ray.data.dataset import one_hot_encode

LENGTH = 40
LABELS = ["a", "b", "c"]


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "model.pt"
    save_child(tiny_net(labels=len(LABELS), length=LENGTH, dropout=0.0), path, {"label_names": LABELS})
    return path


@pytest.fixture(autouse=True)
def own_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def direct(seqs: list[str], both_strands: bool = False) -> np.ndarray:
    """The known answer: sigmoid of the model's logits, computed here without amber_ray's prediction code."""
    net = tiny_net(labels=len(LABELS), length=LENGTH, dropout=0.0).eval()
    x = torch.from_numpy(one_hot_encode(seqs))
    with torch.no_grad():
        probs = torch.sigmoid(net(x))
        if both_strands:
            probs = (probs + torch.sigmoid(net(x.flip((1, 2))))) / 2
    return probs.numpy()


def random_seq(rng: np.random.Generator, length: int) -> str:
    return "".join(rng.choice(list("ACGT"), length))


@pytest.fixture
def genome(tmp_path) -> dict[str, str]:
    rng = np.random.default_rng(3)
    chroms = {"chr1": random_seq(rng, 200), "chr2": random_seq(rng, 100)}
    (tmp_path / "genome.fa").write_text("".join(f">{name}\n{seq}\n" for name, seq in chroms.items()))
    return chroms


def test_fasta_rows_per_sequence_and_label_and_an_mlflow_run(model, tmp_path):
    rng = np.random.default_rng(0)
    seqs = {f"s{i}": random_seq(rng, LENGTH) for i in range(5)}
    seqs["s5"] = "N" * 5 + seqs["s0"][5:]
    (tmp_path / "in.fa").write_text("".join(f">{name}\n{seq}\n" for name, seq in seqs.items()))
    out = tmp_path / "out"
    result = invoke("predict", model, "--fasta", tmp_path / "in.fa", "--out", out, "--batch-size", 4)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "predictions.parquet")
    assert list(table.columns) == ["name", "chrom", "start", "end", "label", "probability"]
    assert list(table.name) == [name for name in seqs for _ in LABELS] and list(table.label) == LABELS * len(seqs)
    assert table.chrom.isna().all() and table.start.isna().all()
    np.testing.assert_allclose(table.probability.to_numpy().reshape(-1, 3), direct(list(seqs.values())), atol=1e-6)

    client = MlflowClient(f"sqlite:///{out}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("amber-ray").experiment_id])
    assert run.data.tags["command"] == "predict" and run.data.metrics["predicted"] == 6
    assert run.data.metrics["mean_probability.b"] == pytest.approx(float(direct(list(seqs.values()))[:, 1].mean()), abs=1e-6)

    both = tmp_path / "both"
    assert invoke("predict", model, "--fasta", tmp_path / "in.fa", "--out", both, "--tsv", "--both-strands").exit_code == 0
    table = pd.read_csv(both / "predictions.tsv", sep="\t")
    np.testing.assert_allclose(table.probability.to_numpy().reshape(-1, 3), direct(list(seqs.values()), True), atol=1e-6)


def test_bed_windows_are_centred_and_padded_or_cropped(model, genome, tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("track name=test\nchr1\t50\t60\tshort\nchr1\t0\t10\tedge\nchr2\t20\t90\n")
    out = tmp_path / "out"
    result = invoke("predict", model, "--bed", bed, "--genome", tmp_path / "genome.fa", "--out", out)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "predictions.parquet")
    one, two = genome["chr1"], genome["chr2"]
    # centres 55, 5 and 55; each window starts 20 bp before its centre
    expected = [one[35:75], "N" * 15 + one[0:25], two[35:75]]
    assert list(table.name.unique()) == ["short", "edge", "chr2:20-90"]
    assert list(table.start[::3]) == [35, -15, 35] and list(table.end[::3]) == [75, 25, 75]
    np.testing.assert_allclose(table.probability.to_numpy().reshape(-1, 3), direct(expected), atol=1e-6)


def read_track(path: Path, chrom: str) -> list[tuple[int, int, float]]:
    with pyBigWig.open(str(path)) as track:
        return track.intervals(chrom) or []


def test_tiles_are_one_bigwig_per_label_with_the_windows_predictions(model, genome, tmp_path):
    out = tmp_path / "out"
    result = invoke("predict", model, "--genome", tmp_path / "genome.fa", "--tile", 10, "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.bw")) == ["a.bw", "b.bw", "c.bw"]
    for chrom, seq in genome.items():
        # bin k covers [10k, 10k + 10); its window [10k - 15, 10k + 25) must lie on the chromosome
        bins = [k for k in range(len(seq) // 10) if 10 * k - 15 >= 0 and 10 * k + 25 <= len(seq)]
        expected = direct([seq[10 * k - 15 : 10 * k + 25] for k in bins])
        for index, label in enumerate(LABELS):
            intervals = read_track(out / f"{label}.bw", chrom)
            assert [(start, end) for start, end, _ in intervals] == [(10 * k, 10 * k + 10) for k in bins]
            np.testing.assert_allclose([value for _, _, value in intervals], expected[:, index], atol=1e-6)

    regions = tmp_path / "regions.bed"
    regions.write_text("chr1\t100\t130\nchr1\t120\t150\n")  # overlapping: merged into 100-150
    out = tmp_path / "regions"
    assert (
        invoke("predict", model, "--genome", tmp_path / "genome.fa", "--tile", 10, "--regions", regions, "--out", out).exit_code
        == 0
    )
    intervals = read_track(out / "a.bw", "chr1")
    assert [(s, e) for s, e, _ in intervals] == [(s, s + 10) for s in range(100, 150, 10)] and read_track(
        out / "a.bw", "chr2"
    ) == []
    expected = direct([genome["chr1"][s - 15 : s + 25] for s in range(100, 150, 10)])[:, 0]
    np.testing.assert_allclose([v for _, _, v in intervals], expected, atol=1e-6)


def test_a_track_per_label_beyond_the_soft_open_file_limit(tmp_path, genome, monkeypatch):
    """A bigWig per label stays open while tiles are written (919 for a DeepSEA model): the soft limit on
    open files is raised for them, and a hard limit too low is a one-line error with nothing written."""
    labels = [f"label{i}" for i in range(120)]
    many = tmp_path / "many.pt"
    save_child(tiny_net(labels=len(labels), length=LENGTH, dropout=0.0), many, {"label_names": labels})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = len(os.listdir("/proc/self/fd")) + 40
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        result = invoke("predict", many, "--genome", tmp_path / "genome.fa", "--tile", 10, "--out", tmp_path / "out")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("*.bw"))) == 120
    np.testing.assert_allclose(
        [v for _, _, v in read_track(tmp_path / "out" / "label119.bw", "chr2")],
        direct_many(genome["chr2"], len(labels))[:, 119],
        atol=1e-6,
    )

    command = [
        sys.executable,
        "-m",
        "amber_ray.cli",
        "predict",
        str(many),
        "--genome",
        str(tmp_path / "genome.fa"),
        "--tile",
        "10",
        "--out",
        str(tmp_path / "capped"),
    ]
    capped = subprocess.run(
        command, capture_output=True, text=True, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))
    )
    assert capped.returncode == 2, capped.stderr
    assert "needs" in capped.stderr and "may open at most 100 (ulimit -Hn)" in " ".join(capped.stderr.split())
    assert not (tmp_path / "capped").exists()


def direct_many(seq: str, labels: int) -> np.ndarray:
    """Probabilities of the tiled windows of ``seq`` (step 10) under the many-label model."""
    net = tiny_net(labels=labels, length=LENGTH, dropout=0.0).eval()
    windows = [seq[10 * k - 15 : 10 * k + 25] for k in range(len(seq) // 10) if 10 * k - 15 >= 0 and 10 * k + 25 <= len(seq)]
    with torch.no_grad():
        return torch.sigmoid(net(torch.from_numpy(one_hot_encode(windows)))).numpy()


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("missing_fasta", ["nope.fa", "file not found"]),
        ("short_sequence", ["in.fa", "record s1", "length 39, expected 40"]),
        ("bad_letter", ["in.fa", "record s0", "letter 'X'"]),
        ("bad_bed_line", ["r.bed", "record 2 (line 2)", "a BED line needs chrom, start and end"]),
        ("bed_not_integer", ["r.bed", "record 1 (line 1)", "must be integers"]),
        ("bed_off_chromosome", ["r.bed", "record 1 (line 1)", "leaves the chromosome (length 200)"]),
        ("bed_unknown_chromosome", ["r.bed", "record 1 (line 1)", "chromosome 'chr9' is not in"]),
        ("tile_longer_than_input", ["--tile", "STEP 41"]),
        ("no_mode", ["give --fasta F"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(model, genome, tmp_path, case, fragments):
    fasta, bed, reference = tmp_path / "in.fa", tmp_path / "r.bed", tmp_path / "genome.fa"
    good = random_seq(np.random.default_rng(1), LENGTH)
    records = {"short_sequence": {"s0": good, "s1": good[1:]}, "bad_letter": {"s0": good[:-1] + "X"}}.get(case, {"s0": good})
    fasta.write_text("".join(f">{name}\n{seq}\n" for name, seq in records.items()))
    bed.write_text(
        {
            "bad_bed_line": "chr1\t10\t20\nchr1\t10\n",
            "bed_not_integer": "chr1\tten\t20\n",
            "bed_off_chromosome": "chr1\t150\t201\n",
            "bed_unknown_chromosome": "chr9\t1\t20\n",
        }.get(case, "chr1\t10\t20\n")
    )
    arguments = {
        "missing_fasta": ["--fasta", tmp_path / "nope.fa"],
        "short_sequence": ["--fasta", fasta],
        "bad_letter": ["--fasta", fasta],
        "tile_longer_than_input": ["--genome", reference, "--tile", 41],
        "no_mode": ["--genome", reference],
    }.get(case, ["--bed", bed, "--genome", reference])
    out = tmp_path / "out"
    result = invoke("predict", model, *arguments, "--out", out)
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert line.startswith("error:") and all(fragment in line for fragment in fragments), line
    assert not out.exists() or not any(out.iterdir())


def test_duplicate_fasta_names_are_refused_unless_allowed(model, tmp_path):
    rng = np.random.default_rng(4)
    seqs = [("s0", random_seq(rng, LENGTH)), ("s1", random_seq(rng, LENGTH)), ("s0", random_seq(rng, LENGTH))]
    (tmp_path / "in.fa").write_text("".join(f">{name}\n{seq}\n" for name, seq in seqs))
    out = tmp_path / "out"
    refused = invoke("predict", model, "--fasta", tmp_path / "in.fa", "--out", out)
    line = " ".join(refused.output.split())
    assert refused.exit_code == 2 and line.startswith("error:"), refused.output
    assert all(fragment in line for fragment in ("in.fa", "record s0", "duplicate record name", "--allow-duplicate-names")), line
    assert not out.exists() or not any(out.iterdir())

    allowed = invoke("predict", model, "--fasta", tmp_path / "in.fa", "--out", out, "--allow-duplicate-names")
    assert allowed.exit_code == 0, allowed.output
    table = pd.read_parquet(out / "predictions.parquet")
    assert list(table.name[::3]) == ["s0", "s1", "s0"]
    np.testing.assert_allclose(table.probability.to_numpy().reshape(-1, 3), direct([seq for _, seq in seqs]), atol=1e-6)
    assert json.loads((out / "summary.json").read_text())["duplicate_names"] == 1


def test_a_prediction_in_another_format_replaces_the_earlier_one(model, genome, tmp_path):
    rng = np.random.default_rng(5)
    (tmp_path / "in.fa").write_text("".join(f">s{i}\n{random_seq(rng, LENGTH)}\n" for i in range(3)))
    out = tmp_path / "out"
    fasta = ["predict", model, "--fasta", tmp_path / "in.fa", "--out", out]
    runs = [
        (fasta, {"predictions.parquet"}),
        ([*fasta, "--tsv"], {"predictions.tsv"}),
        (fasta, {"predictions.parquet"}),
        (["predict", model, "--genome", tmp_path / "genome.fa", "--tile", 10, "--out", out], {"a.bw", "b.bw", "c.bw"}),
        ([*fasta, "--tsv"], {"predictions.tsv"}),
    ]
    before: set[str] = set()
    for arguments, expected in runs:
        result = invoke(*arguments)
        assert result.exit_code == 0, result.output
        assert {p.name for p in out.iterdir() if p.name.startswith("predictions.") or p.suffix == ".bw"} == expected
        removed = json.loads((out / "summary.json").read_text())["removed_stale_outputs"]
        assert sorted(Path(p).name for p in removed) == sorted(before - expected)
        before = expected


def test_tile_regions_without_a_window_are_named(model, genome, tmp_path):
    """A bin's 40-bp window runs from 15 bp before it to 25 bp after: none fits for a region at a chromosome's start."""
    reference, regions = tmp_path / "genome.fa", tmp_path / "regions.bed"
    regions.write_text("chr1\t0\t10\nchr2\t90\t100\n")
    out = tmp_path / "short"
    result = invoke("predict", model, "--genome", reference, "--tile", 10, "--regions", regions, "--out", out)
    line = " ".join(result.output.split())
    assert result.exit_code == 2 and line.startswith("error:"), result.output
    assert all(fragment in line for fragment in ("regions.bed", "chr1:0-10, chr2:90-100", "nothing to tile")), line
    assert not out.exists() or not any(out.iterdir())

    regions.write_text("chr1\t0\t10\nchr1\t100\t130\n")
    out = tmp_path / "mixed"
    result = invoke("predict", model, "--genome", reference, "--tile", 10, "--regions", regions, "--out", out)
    assert result.exit_code == 0, result.output
    assert [(s, e) for s, e, _ in read_track(out / "a.bw", "chr1")] == [(100, 110), (110, 120), (120, 130)]
    assert json.loads((out / "summary.json").read_text())["without_windows"] == ["chr1:0-10"]


def test_bed_windows_padded_past_a_chromosome_end_are_counted(model, genome, tmp_path):
    bed = tmp_path / "r.bed"
    # windows [35, 75) on chr1, [-15, 25) on chr1 and [75, 115) on chr2 (length 100): the last two padded
    bed.write_text("chr1\t50\t60\nchr1\t0\t10\nchr2\t90\t100\n")
    out = tmp_path / "out"
    result = invoke("predict", model, "--bed", bed, "--genome", tmp_path / "genome.fa", "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["padded_windows"] == 2
    table = pd.read_parquet(out / "predictions.parquet")
    expected = [genome["chr1"][35:75], "N" * 15 + genome["chr1"][:25], genome["chr2"][75:] + "N" * 15]
    np.testing.assert_allclose(table.probability.to_numpy().reshape(-1, 3), direct(expected), atol=1e-6)


def test_job_entrypoint_makes_every_path_absolute(monkeypatch, load_job):
    import sys

    job = load_job("predict")
    monkeypatch.setattr(
        sys, "argv", ["predict.py", "final", "--bed", "r.bed", "--genome", "g.fa", "--out", "rel", "--both-strands"]
    )
    command = job.command_line(*job.parse_args())
    assert command == [
        "predict",
        str(Path("final").resolve()),
        "--out",
        str(Path("rel").resolve()),
        "--bed",
        str(Path("r.bed").resolve()),
        "--genome",
        str(Path("g.fa").resolve()),
        "--both-strands",
    ]
    monkeypatch.setattr(sys, "argv", ["predict.py", "models:/demo/1", "--fasta", "in.fa"])
    assert job.command_line(*job.parse_args())[1] == "models:/demo/1"
    monkeypatch.setattr(sys, "argv", ["predict.py", "s3://b/final", "--fasta", "s3://b/in.fa", "--out", "s3://b/pred"])
    assert job.command_line(*job.parse_args()) == ["predict", "s3://b/final", "--out", "s3://b/pred", "--fasta", "s3://b/in.fa"]
