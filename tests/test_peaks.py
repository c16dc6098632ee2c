"""`amber-ray dataset`: a bgzipped genome and narrowPeak files -> labelled windows split by chromosome.

The expected labels, splits and drop counts are computed here independently, from the peak files
and the genome read with pyfaidx, one bin at a time in plain Python.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyfaidx
import pytest
from typer.testing import CliRunner

from amber_ray.cli import app
from amber_ray.data import HDF5SequenceFile, open_hdf5_dir
from amber_ray.data.simulate_genome import SimulatedGenome, simulate_genome

CHROMOSOMES = {"chr1": 120_000, "chr2": 80_000, "chr7": 60_000, "chr8": 50_000, "chr9": 50_000}
MOTIFS = ["MA0139.1", "MA0079.5"]  # CTCF, SP1
BIN, WINDOW = 200, 1000


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> SimulatedGenome:
    # Dense peaks and a wide blacklist so that every drop reason occurs.
    return simulate_genome(
        tmp_path_factory.mktemp("genome"), CHROMOSOMES, MOTIFS, seed=10, peaks_per_mb=150, blacklist_per_chromosome=3
    )


def invoke(*args: str):
    return CliRunner().invoke(app, ["dataset", *map(str, args)])


def build(genome: SimulatedGenome, out: Path, *extra: str):
    peaks = [arg for path in genome.peaks.values() for arg in ("--peaks", path)]
    return invoke(out, "--genome", genome.genome, *peaks, "--blacklist", genome.blacklist, *extra)


@pytest.fixture(scope="module")
def built(genome: SimulatedGenome, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built") / "data"
    result = build(genome, out)
    assert result.exit_code == 0, result.output
    return out


def read_bed(path: Path) -> list[tuple[str, int, int]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return [(f[0], int(f[1]), int(f[2])) for f in (line.split("\t") for line in handle if line.strip())]


def expected_label(peaks: list[tuple[str, int, int]], chrom: str, bin_start: int, bin_size: int = BIN) -> int:
    """DeepSEA's rule by hand: at least half of the bin inside one peak."""
    return int(any(c == chrom and min(e, bin_start + bin_size) - max(s, bin_start) >= bin_size / 2 for c, s, e in peaks))


def windows(directory: Path) -> dict[str, list[tuple[str, int, int, list[int]]]]:
    """Every written window as ``(chrom, start, end, labels)``, per split."""
    result = {}
    for split, file in open_hdf5_dir(directory).items():
        data = file.load_codes()
        rows = []
        for name, labels in zip(data.names, data.y):
            chrom, span = name.split(":")
            start, end = map(int, span.split("-"))
            rows.append((chrom, start, end, labels.tolist()))
        result[split] = rows
    return result


def test_labels_of_every_window_follow_the_half_overlap_rule(genome: SimulatedGenome, built: Path) -> None:
    peaks = {label: read_bed(path) for label, path in genome.peaks.items()}
    fasta = pyfaidx.Fasta(str(genome.genome))
    sidecar = json.loads((built / "dataset.json").read_text())
    assert [label["name"] for label in sidecar["labels"]] == list(peaks)
    checked = 0
    for split, rows in windows(built).items():
        file = HDF5SequenceFile(built / f"{split}.h5")
        codes = file.load_codes().codes
        for (chrom, start, end, labels), row_codes in zip(rows, codes):
            assert end - start == WINDOW
            bin_start = start + WINDOW // 2 - BIN // 2
            assert bin_start % BIN == 0
            assert labels == [expected_label(p, chrom, bin_start) for p in peaks.values()]
            assert "".join("ACGTN"[c] for c in row_codes) == str(fasta[chrom][start:end]).upper()
            checked += 1
    assert checked == sum(sidecar["counts"]["windows"].values()) > 100


def test_each_split_holds_its_chromosomes_and_background_matches_the_ratio(built: Path) -> None:
    by_split = windows(built)
    assert {split: sorted({row[0] for row in rows}) for split, rows in by_split.items()} == {
        "train": ["chr1", "chr2"],
        "valid": ["chr7"],
        "test": ["chr8", "chr9"],
    }
    for rows in by_split.values():
        positives = sum(any(row[3]) for row in rows)
        assert len(rows) - positives == positives  # background ratio 1: one background window per positive one
    sidecar = json.loads((built / "dataset.json").read_text())
    assert sidecar["split"] == {"valid_chromosomes": ["chr7"], "test_chromosomes": ["chr8", "chr9"]}
    assert sidecar["genome"]["name"] == "genome.fa.gz" and len(sidecar["genome"]["sha256"]) == 64
    assert sidecar["counts"]["windows"] == {split: len(rows) for split, rows in by_split.items()}


def test_held_out_chromosomes_are_options(genome: SimulatedGenome, tmp_path: Path) -> None:
    result = build(genome, tmp_path / "d", "--valid-chromosome", "chr2", "--test-chromosome", "chr1", "--background-ratio", "2")
    assert result.exit_code == 0, result.output
    by_split = windows(tmp_path / "d")
    assert {split: sorted({row[0] for row in rows}) for split, rows in by_split.items()} == {
        "train": ["chr7", "chr8", "chr9"],
        "valid": ["chr2"],
        "test": ["chr1"],
    }
    positives = sum(any(row[3]) for row in by_split["train"])
    assert len(by_split["train"]) == 3 * positives


@pytest.mark.parametrize(("bin_size", "window"), [(BIN, WINDOW), (150, 450), (201, 1001)])
def test_dropped_windows_are_counted_by_reason(
    genome: SimulatedGenome, built: Path, tmp_path: Path, bin_size: int, window: int
) -> None:
    if (bin_size, window) != (BIN, WINDOW):
        built = tmp_path / "d"
        result = build(genome, built, "--bin-size", bin_size, "--window", window)
        assert result.exit_code == 0, result.output
    peaks = [peak for path in genome.peaks.values() for peak in read_bed(path)]
    blacklist = read_bed(genome.blacklist)
    fasta = pyfaidx.Fasta(str(genome.genome))
    expected = {"chromosome_end": 0, "blacklist": 0, "n_rich": 0}
    kept = 0
    for chrom, length in CHROMOSOMES.items():
        sequence = str(fasta[chrom][:]).upper()
        for bin_start in range(0, length - bin_size + 1, bin_size):
            if not expected_label(peaks, chrom, bin_start, bin_size):
                continue
            start = bin_start + bin_size // 2 - window // 2
            end = start + window
            if start < 0 or end > length:
                expected["chromosome_end"] += 1
            elif any(c == chrom and s < end and e > start for c, s, e in blacklist):
                expected["blacklist"] += 1
            elif sequence[start:end].count("N") > 0.01 * window:
                expected["n_rich"] += 1
            else:
                kept += 1
    counts = json.loads((built / "dataset.json").read_text())["counts"]
    assert counts["dropped_positive"] == expected
    assert all(expected.values())  # the fixture exercises every reason
    assert kept == sum(any(row[3]) for rows in windows(built).values() for row in rows)


def test_sample_sheet_and_gc_matched_background(genome: SimulatedGenome, tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.tsv"
    sheet.write_text("label\tpath\n" + "".join(f"{label}_ChIP\t{path}\n" for label, path in genome.peaks.items()))
    out = tmp_path / "d"
    result = invoke(out, "--genome", genome.genome, "--sample-sheet", sheet, "--background", "gc")
    assert result.exit_code == 0, result.output
    assert open_hdf5_dir(out)["train"].label_names == [f"{label}_ChIP" for label in genome.peaks]
    assert json.loads((out / "dataset.json").read_text())["rule"]["background"] == "gc"


def _peak_file(tmp_path: Path, text: str, name: str = "bad.narrowPeak") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("peaks", "message"),
    [
        ("1\t1000\t1300\tp\t0\t.\t1\t1\t1\t150\n", "chromosome '1' is not in the genome (the genome has 'chr1'"),
        ("chr1\t5000\t4000\n", "start 5000 > end 4000"),
        ("chr1\t-10\t300\n", "negative start -10"),
        ("", "no intervals"),
        ("track name=x\n# nothing\n", "no intervals"),
    ],
)
def test_bad_peak_files_exit_2_and_write_nothing(genome: SimulatedGenome, tmp_path: Path, peaks: str, message: str) -> None:
    bad = _peak_file(tmp_path, peaks)
    out = tmp_path / "out"
    result = invoke(out, "--genome", genome.genome, "--peaks", genome.peaks["CTCF"], "--peaks", bad)
    assert result.exit_code == 2
    assert message in result.output and "bad.narrowPeak" in result.output
    assert len(result.output.strip().splitlines()) <= 2  # one line (the console may wrap it)
    assert not out.exists()


def test_duplicate_label_names_exit_2(genome: SimulatedGenome, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke(out, "--genome", genome.genome, "--peaks", genome.peaks["CTCF"], "--peaks", f"CTCF={genome.peaks['SP1']}")
    assert result.exit_code == 2 and "label name 'CTCF' given twice" in result.output
    assert not out.exists()


def test_genome_that_cannot_be_indexed_exits_2(genome: SimulatedGenome, tmp_path: Path) -> None:
    plain_gzip = tmp_path / "genome.fa.gz"  # gzip, not bgzip: no index can be built
    with gzip.open(plain_gzip, "wt") as handle:
        handle.write(">chr1\n" + "ACGT" * 1000 + "\n")
    out = tmp_path / "out"
    result = invoke(out, "--genome", plain_gzip, "--peaks", genome.peaks["CTCF"])
    assert result.exit_code == 2 and "cannot be indexed" in result.output
    assert not out.exists()


def test_held_out_chromosome_missing_from_the_genome_exits_2(genome: SimulatedGenome, tmp_path: Path) -> None:
    result = build(genome, tmp_path / "out", "--valid-chromosome", "7")
    assert result.exit_code == 2 and "'7' is not in the genome (the genome has 'chr7'" in result.output
    assert not (tmp_path / "out").exists()


def test_positive_bins_match_a_brute_force_overlap() -> None:
    from amber_ray.data.peaks import WindowRule, positive_bins

    rng = np.random.default_rng(0)
    starts = np.sort(rng.integers(0, 10_000, 60))
    ends = starts + rng.integers(1, 700, 60)
    rule = WindowRule(bin_size=100, min_overlap=0.3)
    expected = [b for b in range(110) if any(min(e, (b + 1) * 100) - max(s, b * 100) >= 30 for s, e in zip(starts, ends))]
    assert positive_bins(starts, ends, 110, rule).tolist() == expected


def test_every_peak_carries_its_copies_of_the_motif_around_the_summit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Instances drawn as the consensus make the planted copies exact strings to count.
    import amber_ray.data.simulate_genome as module

    monkeypatch.setattr(module, "sample_instance", lambda rng, ppm: np.argmax(ppm, axis=1).astype(np.uint8))
    sim = simulate_genome(
        tmp_path, {"chr1": 60_000}, ["MA0139.1"], seed=1, peaks_per_mb=100, copies=3, core=100, telomere=500, gap=10
    )
    consensus = "".join("ACGT"[i] for i in np.argmax(module.jaspar_motif("MA0139.1")[1], axis=1))
    reverse = consensus[::-1].translate(str.maketrans("ACGT", "TGCA"))
    genome = pyfaidx.Fasta(str(sim.genome))
    with gzip.open(sim.peaks["CTCF"], "rt") as handle:
        rows = [line.split("\t") for line in handle]
    assert len(rows) >= 4
    for row in rows:
        summit = int(row[1]) + int(row[9])
        core = str(genome["chr1"][summit - 50 : summit + 50]).upper()
        hits = sum(core[i : i + len(consensus)] in (consensus, reverse) for i in range(len(core)))
        assert hits == 3, row[3]
