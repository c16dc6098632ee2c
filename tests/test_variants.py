"""Variant effects: windows from VCF + FASTA and from sequence pairs, scores, side file, LDSC export,
allele-specific binding evaluation, bad input; and a model trained by `amber-ray train` on planted
motifs that sees a motif-breaking variant and ignores one far from any motif."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest
import torch
import yaml
from conftest import SHARED_DATA, assert_clean_failure, invoke, tiny_net

from amber_ray.child import save_child
from amber_ray.config import load_config
from amber_ray.data.simulate import jaspar_motif, simulate_dataset
from amber_ray.variants import (
    SCORE_COLUMNS,
    VariantEffects,
    direction_metrics,
    evaluate_pairs,
    fit_length,
    pair_windows,
    pwm_allele_scores,
    pwm_log_odds,
    score_windows,
    signed_rank,
    vcf_windows,
)

MOTIF = "MA0099.3"  # FOS::JUN, 10 bp
ALPHABET = "ACGT"
VCF_HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


def write_fasta(path: Path, records: dict[str, str]) -> Path:
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in records.items()))
    return path


def write_vcf(path: Path, rows: list[str]) -> Path:
    path.write_text(VCF_HEADER + "".join(row + "\n" for row in rows))
    return path


def tiny_model(path: Path, length: int = 40, labels: tuple[str, ...] = ("a", "b"), seed: int = 0) -> Path:
    """An untrained model with the file format of `amber-ray train`."""
    save_child(tiny_net(len(labels), length, dropout=0.0, seed=seed), path, {"label_names": list(labels)})
    return path


def random_seq(rng: np.random.Generator, length: int) -> str:
    return "".join(rng.choice(list(ALPHABET), length))


# --- (a) a trained model on planted motifs --------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """`amber-ray train` on simulated 100-bp sequences with one planted motif (seeded, one thread)."""
    folder = tmp_path_factory.mktemp("trained")
    config = {
        "name": "variants-test",
        "seed": 0,
        "data": {"kind": "simulate", "simulate": {"num_sequences": 4000, "length": 100, "motifs": [MOTIF], "prevalence": 0.5}},
        "space": {
            "profile": "small",
            "num_layers": 2,
            "layers_per_block": 1,
            "first_filters": 32,
            "stem_channels": 16,
            "dense_units": 32,
            "dropout": 0.0,
        },
        "train": {"batch_size": 64, "max_epochs": 6, "patience": 3, "learning_rate": 0.003, "threads": 1},
    }
    config_path = folder / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    result = invoke("train", config_path, "--arch", "conv8,skip:;conv8,skip:", "--out", folder / "model")
    assert result.exit_code == 0, result.output
    return folder / "model" / "model.pt", config_path


def motif_pairs(config_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Held-out simulated sequences (another seed) and one SNV each: 'core' variants put the least likely
    base at the motif's most informative position of a planted instance; 'far' variants change the
    centre of a sequence with no planted instance."""
    data, truth = simulate_dataset(load_config(config_path).data.simulate, seed=1)
    seqs = ["".join(ALPHABET[i] for i in row) for row in data.x.argmax(axis=1)]
    _, ppm = jaspar_motif(MOTIF)
    core = int(np.argmax((ppm * np.log2(np.clip(ppm, 1e-9, 1))).sum(axis=1)))
    ref, alt = {}, {}
    for row in truth.head(200).itertuples():
        pos = row.start + core if row.strand == "+" else row.end - 1 - core
        worst = ALPHABET[int(np.argmin(ppm[core]))]
        base = worst if row.strand == "+" else ALPHABET[3 - ALPHABET.index(worst)]
        name = f"core{row.Index}"
        ref[name], alt[name] = seqs[row.sequence], seqs[row.sequence][:pos] + base + seqs[row.sequence][pos + 1 :]
    for i in np.flatnonzero(data.y[:, 0] == 0)[:200]:
        seq, mid = seqs[i], 50
        ref[f"far{i}"], alt[f"far{i}"] = seq, seq[:mid] + ALPHABET[(ALPHABET.index(seq[mid]) + 1) % 4] + seq[mid + 1 :]
    return ref, alt


def test_trained_model_sees_motif_breaking_variants_and_ignores_far_ones(trained, tmp_path):
    model, config_path = trained
    ref, alt = motif_pairs(config_path)
    out = tmp_path / "scores.parquet"
    result = invoke(
        "variants",
        "score",
        model,
        "--ref-fasta",
        write_fasta(tmp_path / "ref.fa", ref),
        "--alt-fasta",
        write_fasta(tmp_path / "alt.fa", alt),
        "--out-file",
        out,
    )
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    assert list(table.columns) == SCORE_COLUMNS and len(table) == len(ref)
    core = table[table.variant_id.str.startswith("core")]
    far = table[table.variant_id.str.startswith("far")]
    assert core.ref_prob.median() > 0.8  # the intact motif is seen ...
    # ... and a broken core loses it. Judged on logits: the same drop moves a probability by how saturated the
    # reference prediction is (a logit drop of 3.8 took 0.990 down by 0.30 but 0.997 by only 0.13).
    assert (core["logit_diff"] < -2).mean() > 0.9
    assert core["diff"].median() < 0
    assert far["diff"].abs().median() < 0.03  # far from any motif: no effect
    assert far["logit_diff"].abs().median() < 0.1 * core["logit_diff"].abs().median()


def test_eval_on_motif_pairs_beats_chance_for_model_and_pwm(trained, tmp_path):
    model, config_path = trained
    ref, alt = motif_pairs(config_path)
    core = [name for name in ref if name.startswith("core")]
    result = invoke(
        "variants",
        "eval",
        model,
        "--ref-fasta",
        write_fasta(tmp_path / "ref.fa", {n: ref[n] for n in core}),
        "--alt-fasta",
        write_fasta(tmp_path / "alt.fa", {n: alt[n] for n in core}),
        "--out",
        tmp_path / "eval",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert summary["label"].startswith(MOTIF) and summary["n"] == len(core)
    assert summary["pwm"]["motif"] == MOTIF  # taken from the simulator's label name
    assert summary["model"]["auroc"] > 0.8 and summary["model"]["accuracy"] > 0.8
    assert summary["pwm"]["auroc"] > 0.95 and summary["pwm"]["accuracy"] > 0.95
    table = pd.read_parquet(tmp_path / "eval" / "eval.parquet")
    assert list(table.columns[:4]) == ["variant_id", "preferred", "model_score", "pwm_score"]
    assert table.preferred.eq(1).all() and table.model_score.between(-1, 1).all() and table.pwm_score.between(-1, 1).all()


# --- (b) VCF + FASTA in real formats ---------------------------------------------------------------


@pytest.fixture
def genome(tmp_path) -> tuple[Path, dict[str, str]]:
    """Two chromosomes named '1' and '2' (the VCF says 'chr1', 'chr2')."""
    rng = np.random.default_rng(7)
    chroms = {"1": random_seq(rng, 200), "2": random_seq(rng, 120)}
    return write_fasta(tmp_path / "genome.fa", chroms), chroms


def genome_rows(chroms: dict[str, str]) -> list[str]:
    one = chroms["1"]
    wrong = next(b for b in ALPHABET if b != one[99])
    other = [b for b in ALPHABET if b != one[129]]
    return [
        f"chr1\t80\tsnv\t{one[79]}\t{'A' if one[79] != 'A' else 'C'}\t.\tPASS\t.",
        f"chr1\t100\tmismatch\t{wrong}\t{one[99]}\t.\tPASS\t.",
        f"chr1\t110\tins\t{one[109]}\t{one[109]}GGT\t.\tPASS\t.",
        f"chr1\t120\tdel\t{one[119:123]}\t{one[119]}\t.\tPASS\t.",
        f"chr1\t130\tmulti\t{one[129]}\t{other[0]},{other[1]}\t.\tPASS\t.",
        f"chr1\t140\tsv\t{one[139]}\t<DEL>\t.\tPASS\t.",
        f"chr2\t10\tedge\t{chroms['2'][9]}\tA\t.\tPASS\t.",
        f"chr1\t60\tunsorted\t{one[59]}\t{'G' if one[59] != 'G' else 'T'}\t.\tPASS\t.",
    ]


def test_vcf_windows_follow_the_documented_layout(genome, tmp_path):
    fasta, chroms = genome
    one, half = chroms["1"], 20
    windows, skipped = vcf_windows(write_vcf(tmp_path / "v.vcf", genome_rows(chroms)), fasta, 40)
    ids = windows.variant_id
    assert ids == [
        "snv",
        "ins",
        "del",
        "multi:" + genome_rows(chroms)[4].split("\t")[4].split(",")[0],
        "multi:" + genome_rows(chroms)[4].split("\t")[4].split(",")[1],
        "unsorted",
    ]
    decoded = {
        name: ("".join(ALPHABET[c] for c in r), "".join(ALPHABET[c] for c in a))
        for name, r, a in zip(ids, windows.ref_codes, windows.alt_codes)
    }
    start = 80 - 1 - half
    ref, alt = decoded["snv"]
    assert (
        ref == one[start : start + 40]
        and alt[:half] == ref[:half]
        and alt[half + 1 :] == ref[half + 1 :]
        and alt[half] != ref[half]
    )
    start = 110 - 1 - half
    assert decoded["ins"][1] == (one[start : 110 - 1] + one[109] + "GGT" + one[110:])[:40]
    start = 120 - 1 - half
    assert decoded["del"][1] == one[start:119] + one[119] + one[123 : 123 + 40 - half - 1]
    assert all(len(r) == len(a) == 40 for r, a in decoded.values())
    reasons = {row["variant_id"]: row["reason"] for row in skipped}
    assert set(reasons) == {"mismatch", "sv", "edge"}
    assert "does not match the reference genome" in reasons["mismatch"]
    assert "too close to the chromosome end" in reasons["edge"]
    assert "symbolic" in reasons["sv"]
    assert windows.chrom[0] == "chr1" and windows.pos[0] == 80  # the VCF's naming is kept in the output


def test_score_cli_writes_table_side_file_and_ldsc(genome, tmp_path):
    fasta, chroms = genome
    vcf = write_vcf(tmp_path / "v.vcf", genome_rows(chroms))
    out = tmp_path / "out" / "scores.tsv"
    result = invoke(
        "variants",
        "score",
        tiny_model(tmp_path / "m.pt"),
        "--vcf",
        vcf,
        "--fasta",
        fasta,
        "--out-file",
        out,
        "--both-strands",
        "--ldsc-annot",
        tmp_path / "out" / "annot",
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, sep="\t")
    assert list(table.columns) == SCORE_COLUMNS and len(table) == 6 * 2
    assert list(table.label[:2]) == ["a", "b"] and table.variant_id[0] == "snv" and table.chrom[0] == "chr1"
    np.testing.assert_allclose(table["diff"], table.alt_prob - table.ref_prob, atol=1e-6)
    np.testing.assert_allclose(table.log2fc, np.log2(table.alt_prob / table.ref_prob), atol=1e-4)
    logit = np.log(table.alt_prob / (1 - table.alt_prob)) - np.log(table.ref_prob / (1 - table.ref_prob))
    np.testing.assert_allclose(table.logit_diff, logit, atol=1e-4)
    side = pd.read_csv(tmp_path / "out" / "scores.skipped.tsv", sep="\t")
    assert list(side.columns) == ["variant_id", "chrom", "pos", "ref", "alt", "reason"]
    assert sorted(side.variant_id) == ["edge", "mismatch", "sv"]
    # (d) LDSC: one file per chromosome with scored variants, sorted by BP, |diff| per label
    annot = pd.read_csv(tmp_path / "out" / "annot.1.annot.gz", sep="\t")
    assert list(annot.columns) == ["CHR", "BP", "SNP", "CM", "a", "b"]
    assert annot.CHR.eq(1).all() and annot.BP.is_monotonic_increasing and annot.SNP.iloc[0] == "unsorted"
    assert not (tmp_path / "out" / "annot.2.annot.gz").exists()  # chr2's only variant was not scored
    expected = table[table.label == "a"].set_index("variant_id")["diff"].abs()
    np.testing.assert_allclose(annot.set_index("SNP")["a"], expected.loc[annot.SNP], atol=1e-6)
    with gzip.open(tmp_path / "out" / "annot.1.annot.gz", "rt") as handle:
        assert handle.readline() == "CHR\tBP\tSNP\tCM\ta\tb\n"


def test_gzip_and_bgzip_vcfs_read_like_plain(genome, tmp_path):
    fasta, chroms = genome
    plain = write_vcf(tmp_path / "v.vcf", genome_rows(chroms))
    gzipped = tmp_path / "g.vcf.gz"
    gzipped.write_bytes(gzip.compress(plain.read_bytes()))
    bgzipped = tmp_path / "b.vcf.gz"
    pysam.tabix_compress(str(plain), str(bgzipped))
    expected = vcf_windows(plain, fasta, 40)[0]
    for path in (gzipped, bgzipped):
        windows = vcf_windows(path, fasta, 40)[0]
        assert windows.variant_id == expected.variant_id
        np.testing.assert_array_equal(windows.alt_codes, expected.alt_codes)


def test_both_strands_is_the_mean_of_forward_and_reverse_complement(tmp_path):
    rng = np.random.default_rng(3)
    from amber_ray.child import load_child

    model, _ = load_child(tiny_model(tmp_path / "m.pt"))
    seqs = {f"s{i}": random_seq(rng, 40) for i in range(5)}
    rc = {name: seq[::-1].translate(str.maketrans("ACGT", "TGCA")) for name, seq in seqs.items()}
    forward = score_windows(
        model, pair_windows(write_fasta(tmp_path / "f.fa", seqs), write_fasta(tmp_path / "r.fa", rc), 40), ["a", "b"]
    )
    both = score_windows(model, forward.windows, ["a", "b"], both_strands=True)
    np.testing.assert_allclose(both.ref_probs, (forward.ref_probs + forward.alt_probs) / 2, atol=1e-6)
    np.testing.assert_allclose(both.ref_probs, both.alt_probs, atol=1e-6)  # a pair of reverse complements


def test_pairs_are_centre_padded_or_cropped_and_keep_their_alleles(tmp_path):
    assert fit_length("ACGT", 8) == "NNACGTNN" and fit_length("ACGTA", 8) == "NACGTANN"
    assert fit_length("AACCGGTT", 4) == "CCGG"
    windows = pair_windows(write_fasta(tmp_path / "a.fa", {"p": "ACGTA"}), write_fasta(tmp_path / "b.fa", {"p": "ACTTA"}), 9)
    assert windows.ref == ["G"] and windows.alt == ["T"] and windows.chrom == [None] and windows.pos == [None]
    assert windows.ref_codes.tolist() == [[4, 4, 0, 1, 2, 3, 0, 4, 4]]


def test_paired_scores_have_null_positions(tmp_path):
    out = tmp_path / "s.parquet"
    result = invoke(
        "variants",
        "score",
        tiny_model(tmp_path / "m.pt"),
        "--ref-fasta",
        write_fasta(tmp_path / "a.fa", {"p": "ACGT" * 10}),
        "--alt-fasta",
        write_fasta(tmp_path / "b.fa", {"p": "ACGA" + "ACGT" * 9}),
        "--out-file",
        out,
    )
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    assert table.chrom.isna().all() and table.pos.isna().all() and table.ref.tolist() == ["T", "T"]


# --- evaluation helpers ------------------------------------------------------------------------------


def test_signed_rank_keeps_sign_and_order_in_minus_one_to_one():
    values = np.array([-3.0, 0.0, 0.5, 2.0, -0.1])
    ranked = signed_rank(values)
    assert ranked.min() >= -1 and ranked.max() <= 1
    np.testing.assert_array_equal(np.sign(ranked), np.sign(values))
    np.testing.assert_array_equal(np.argsort(ranked), np.argsort(values))
    assert ranked[0] == -1.0


def test_direction_metrics_count_both_orientations_and_ties_half():
    perfect = direction_metrics(np.array([1, 1, 0]), np.array([0.5, 0.2, -0.3]))
    assert perfect == {"auroc": 1.0, "aupr": 1.0, "accuracy": 1.0}
    wrong = direction_metrics(np.array([1, 1]), np.array([-0.5, -0.2]))
    # Both orientations, ranked wrong: the two positives come third and fourth, AP = (1/3 + 2/4) / 2.
    assert wrong == pytest.approx({"auroc": 0.0, "aupr": (1 / 3 + 2 / 4) / 2, "accuracy": 0.0})
    assert direction_metrics(np.array([1, 1]), np.array([0.0, 0.0]))["accuracy"] == 0.5


def test_evaluate_pairs_uses_the_preferred_allele_of_each_pair(tmp_path):
    rng = np.random.default_rng(5)
    seqs = {f"p{i}": random_seq(rng, 40) for i in range(4)}
    windows = pair_windows(write_fasta(tmp_path / "a.fa", seqs), write_fasta(tmp_path / "b.fa", seqs), 40)
    ref = np.array([[0.9], [0.2], [0.6], [0.1]], dtype=np.float32)
    alt = np.array([[0.1], [0.7], [0.5], [0.4]], dtype=np.float32)
    preferred = np.array([1, 0, 1, 0])  # the first allele wins exactly where its probability is higher
    summary, table = evaluate_pairs(VariantEffects(windows, ["MA0139.1_CTCF"], ref, alt), None, None, preferred)
    assert summary["model"] == {"auroc": 1.0, "aupr": 1.0, "accuracy": 1.0} and summary["pwm"]["motif"] == "MA0139.1"
    assert summary["pwm"]["accuracy"] == 0.5  # identical alleles: every PWM score is a tie
    assert table.preferred.tolist() == [1, 0, 1, 0] and table.model_score.tolist() == [1.0, -0.75, 0.25, -0.5]


def test_pwm_baseline_prefers_the_consensus_allele():
    _, log_odds = pwm_log_odds(MOTIF)
    _, ppm = jaspar_motif(MOTIF)
    consensus = "".join(ALPHABET[i] for i in ppm.argmax(axis=1))
    first = "A" * 15 + consensus + "A" * 15
    second = first[:19] + ("C" if first[19] != "C" else "G") + first[20:]
    codes = [np.array([[ALPHABET.index(b) for b in s]], dtype=np.uint8) for s in (first, second)]
    best_first, best_second = pwm_allele_scores(codes[0], codes[1], log_odds)
    assert best_first[0] > best_second[0]
    # the reverse-complement instance scores the same
    rc = [c[:, ::-1].copy() for c in codes]
    rc = [np.where(c < 4, 3 - c, c).astype(np.uint8) for c in rc]
    np.testing.assert_allclose(pwm_allele_scores(rc[0], rc[1], log_odds), (best_first, best_second))


def read_pairs(path: Path) -> dict[str, str]:
    records: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            records[name] = ""
        elif line.strip():
            records[name] += line.strip().upper()
    return records


def test_dsqtl_pairs_run_end_to_end(tmp_path):
    """The real dsQTL pairs through `variants eval`: both AUROCs and accuracies equal the ones recomputed
    here by brute force (model probabilities, a window-by-window PWM scan), and swapping the alleles
    turns each AUROC into 1 - AUROC."""
    folder = SHARED_DATA / "variants" / "dsqtl"
    if not (folder / "dsQTL_high.fa").is_file():
        pytest.skip("dsQTL pairs (GPL-3.0, kept out of the repository) not present in ../shared/data/variants/dsqtl")
    from sklearn.metrics import roc_auc_score

    from amber_ray.child import load_child

    high, low = read_pairs(folder / "dsQTL_high.fa"), read_pairs(folder / "dsQTL_low.fa")
    model = tiny_model(tmp_path / "m.pt", length=100, labels=("dnase",))
    result = invoke(
        "variants",
        "eval",
        model,
        "--ref-fasta",
        folder / "dsQTL_high.fa",
        "--alt-fasta",
        folder / "dsQTL_low.fa",
        "--motif",
        "MA0139.1",
        "--out",
        tmp_path / "eval",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "eval" / "eval.json").read_text())
    table = pd.read_parquet(tmp_path / "eval" / "eval.parquet")
    assert summary["n"] == len(high) == 5668 and table.variant_id.tolist() == list(high)

    # the model: high minus low probability, straight from the network
    net, _ = load_child(model)
    net.eval()
    codes = {
        name: np.array([[ALPHABET.index(b) for b in seqs[n]] for n in high]) for name, seqs in (("high", high), ("low", low))
    }
    with torch.no_grad():
        probs = {
            name: torch.sigmoid(net(torch.from_numpy(np.eye(4, dtype=np.float32)[c].transpose(0, 2, 1).copy())))[:, 0].numpy()
            for name, c in codes.items()
        }
    model_diff = probs["high"].astype(np.float64) - probs["low"]
    # the PWM: best log-odds over the windows on either strand that cover the variant (position 49 of 100)
    _, log_odds = pwm_log_odds("MA0139.1")
    width, pos = len(log_odds), 49
    assert all(np.flatnonzero(codes["high"][i] != codes["low"][i]).tolist() == [pos] for i in range(len(high)))
    reverse = log_odds[::-1][:, [3, 2, 1, 0, 4]]
    best = {}
    for name, c in codes.items():
        starts = range(pos - width + 1, pos + 1)
        forward = np.stack([log_odds[np.arange(width), c[:, s : s + width]].sum(1) for s in starts], 1)
        backward = np.stack([reverse[np.arange(width), c[:, s : s + width]].sum(1) for s in starts], 1)
        best[name] = np.maximum(forward, backward).max(1)
    np.testing.assert_allclose(table.pwm_ref, best["high"], atol=1e-9)
    np.testing.assert_allclose(table.pwm_alt, best["low"], atol=1e-9)
    pwm_diff = best["high"] - best["low"]
    ones = np.ones(len(high))
    for key, diff in (("model", model_diff), ("pwm", pwm_diff)):
        assert summary[key]["auroc"] == pytest.approx(roc_auc_score(np.r_[ones, 0 * ones], np.r_[diff, -diff]), abs=1e-9), key
        assert summary[key]["accuracy"] == pytest.approx(np.mean(np.where(diff == 0, 0.5, diff > 0)), abs=1e-9), key
    assert summary["pwm"]["auroc"] != pytest.approx(0.5, abs=0.01)  # the scan sees the variants

    swapped = invoke(
        "variants",
        "eval",
        model,
        "--ref-fasta",
        folder / "dsQTL_low.fa",
        "--alt-fasta",
        folder / "dsQTL_high.fa",
        "--motif",
        "MA0139.1",
        "--out",
        tmp_path / "swapped",
    )
    assert swapped.exit_code == 0, swapped.output
    flipped = json.loads((tmp_path / "swapped" / "eval.json").read_text())
    for key in ("model", "pwm"):
        assert flipped[key]["auroc"] == pytest.approx(1 - summary[key]["auroc"], abs=1e-9), key


# --- (c) bad input: one line naming file and record, exit 2, nothing written --------------------------


@pytest.mark.parametrize(
    "rows,fragments",
    [
        (
            ["chr1\t80\tsnv\tA\tG\t.\tPASS\t.", "chr1\t90\tshort\tA\tG"],
            ["v.vcf", "record 2", "line 4 has 5 tab-separated columns"],
        ),
        (["chr1\tx\tbadpos\tA\tG\t.\tPASS\t."], ["v.vcf", "record 1", "not a valid VCF data line"]),
        (["chr9\t80\tsnv\tA\tG\t.\tPASS\t."], ["v.vcf", "record 1 (chr9:80)", "chromosome 'chr9' is not in"]),
        ([], ["v.vcf", "no variant records"]),
    ],
)
def test_bad_vcf_is_one_line_and_writes_nothing(genome, tmp_path, rows, fragments):
    fasta, _ = genome
    out = tmp_path / "out"
    result = invoke(
        "variants",
        "score",
        tiny_model(tmp_path / "m.pt"),
        "--vcf",
        write_vcf(tmp_path / "v.vcf", rows),
        "--fasta",
        fasta,
        "--out-file",
        out / "s.parquet",
        "--ldsc-annot",
        out / "annot",
    )
    assert_clean_failure(result, out, *fragments)


def test_bad_inputs_of_other_kinds(genome, tmp_path):
    fasta, chroms = genome
    model, out = tiny_model(tmp_path / "m.pt"), tmp_path / "out"
    no_header = tmp_path / "plain.txt"
    no_header.write_text("chr1\t80\tsnv\tA\tG\t.\tPASS\t.\n")
    vcf = write_vcf(tmp_path / "v.vcf", genome_rows(chroms))
    a, b = write_fasta(tmp_path / "a.fa", {"p": "ACGT", "q": "ACGT"}), write_fasta(tmp_path / "b.fa", {"p": "ACGA"})
    cases = [
        (
            ["score", model, "--vcf", no_header, "--fasta", fasta, "--out-file", out / "s.parquet"],
            ["plain.txt", "not a VCF file"],
        ),
        (["score", model, "--vcf", vcf, "--out-file", out / "s.parquet"], ["give either --vcf with --fasta"]),
        (["score", model, "--vcf", vcf, "--fasta", fasta, "--ref-fasta", a, "--out-file", out / "s.parquet"], ["give either"]),
        (["score", model, "--vcf", vcf, "--fasta", fasta, "--out-file", out / "s.csv"], ["s.csv", ".parquet or .tsv"]),
        (
            ["score", model, "--ref-fasta", a, "--alt-fasta", b, "--out-file", out / "s.parquet"],
            ["a.fa", "record q", "no record of this name"],
        ),
        (
            ["score", model, "--ref-fasta", a, "--alt-fasta", a, "--out-file", out / "s.parquet", "--ldsc-annot", out / "x"],
            ["LDSC annotations need genomic positions"],
        ),
        (
            ["score", tmp_path / "none.pt", "--vcf", vcf, "--fasta", fasta, "--out-file", out / "s.parquet"],
            ["none.pt", "not found"],
        ),
        (
            ["score", model, "--vcf", vcf, "--fasta", fasta, "--device", "nope", "--out-file", out / "s.parquet"],
            ["--device", "'nope'"],
        ),
        (["eval", model, "--ref-fasta", a, "--alt-fasta", a, "--out", out], ["--label", "2 labels"]),
        (
            ["eval", model, "--ref-fasta", a, "--alt-fasta", a, "--label", "a", "--out", out],
            ["--motif", "names no JASPAR matrix"],
        ),
        (["eval", model, "--ref-fasta", a, "--alt-fasta", a, "--label", "a", "--motif", "MA9999.9", "--out", out], ["MA9999.9"]),
    ]
    for args, fragments in cases:
        assert_clean_failure(invoke("variants", *args), out, *fragments)


def test_preferred_table_is_checked(tmp_path):
    model, out = tiny_model(tmp_path / "m.pt", labels=("x",)), tmp_path / "out"
    a = write_fasta(tmp_path / "a.fa", {"p": "ACGT" * 10, "q": "ACGG" * 10})
    preferred = tmp_path / "pref.tsv"
    preferred.write_text("variant_id\tpreferred\np\t1\nq\t2\n")
    result = invoke(
        "variants", "eval", model, "--ref-fasta", a, "--alt-fasta", a, "--motif", MOTIF, "--preferred", preferred, "--out", out
    )
    assert_clean_failure(result, out, "pref.tsv", "record q", "not 0 or 1")


def test_job_entrypoint_builds_the_cli_call_with_absolute_outputs(monkeypatch, load_job):
    import argparse
    import sys

    job = load_job("variants")
    monkeypatch.setattr(sys, "argv", ["variants.py", "score", "m.pt", "--vcf", "v.vcf", "--out", "rel", "--ldsc-annot", "auto"])
    args, rest = job.parse_args()
    assert isinstance(args, argparse.Namespace) and args.out == str(Path("rel").resolve()) and rest == ["--vcf", "v.vcf"]
    command = job.command_line(args, rest)
    assert command[:3] == ["variants", "score", str(Path("m.pt").resolve())]
    assert command[command.index("--out-file") + 1] == str(Path("rel").resolve() / "scores.parquet")
    assert command[-2:] == ["--ldsc-annot", str(Path("rel").resolve() / "ldsc" / "annot")]
    # on a cluster, inputs and outputs on storage: URIs pass through as they are
    monkeypatch.setattr(sys, "argv", ["variants.py", "score", "s3://b/m.pt", "--out", "s3://b/v", "--ldsc-annot", "auto"])
    command = job.command_line(*job.parse_args())
    assert command[:3] == ["variants", "score", "s3://b/m.pt"]
    assert command[command.index("--out-file") + 1] == "s3://b/v/scores.parquet"
    assert command[-2:] == ["--ldsc-annot", "s3://b/v/ldsc/annot"]
