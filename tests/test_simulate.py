"""The motif simulator (labels agree with the ground truth, instances look like their motif) and the reference workload."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from amber_ray.config import SimulatorConfig, parse_config
from amber_ray.data import SequenceDataset, reference_workload, simulate_dataset
from amber_ray.data.simulate import jaspar_motif, reverse_complement
from amber_ray.errors import AmberInputError

REFERENCE_SHA256 = "ff46300e129a25bb27411d135c2b2417d3406f12d67ef5d1e4276cedc78f4537"
CONFIG = SimulatorConfig(num_sequences=300, length=100, motifs=["MA0139.1", "MA0099.3", "MA0079.5"], prevalence=0.4)


@pytest.fixture(scope="module")
def simulated() -> tuple[SequenceDataset, pd.DataFrame]:
    return simulate_dataset(CONFIG, seed=11)


def _codes(data: SequenceDataset) -> np.ndarray:
    return data.x.argmax(axis=1)


def test_reference_workload_matches_the_published_checksum() -> None:
    x, y = reference_workload()
    assert x.shape == (2000, 4, 200) and y.shape == (2000, 3)
    assert x.dtype == np.float32 and y.dtype == np.float32
    digest = hashlib.sha256(np.ascontiguousarray(x.transpose(0, 2, 1)).tobytes() + y.tobytes()).hexdigest()
    assert digest == REFERENCE_SHA256


def test_simulated_sequences_are_one_hot_with_named_labels(simulated: tuple[SequenceDataset, pd.DataFrame]) -> None:
    data, _ = simulated
    assert (data.num_sequences, data.length, data.num_labels) == (300, 100, 3)
    np.testing.assert_array_equal(data.x.sum(axis=1), 1.0)
    assert data.label_names == ["MA0139.1_CTCF", "MA0099.3_FOS::JUN", "MA0079.5_SP1"]
    assert 0.25 < data.y.mean() < 0.55


def test_labels_match_the_ground_truth(simulated: tuple[SequenceDataset, pd.DataFrame]) -> None:
    data, truth = simulated
    expected = np.zeros_like(data.y)
    for motif_index, motif_id in enumerate(CONFIG.motifs):
        expected[truth.loc[truth["motif_id"] == motif_id, "sequence"].unique(), motif_index] = 1
    np.testing.assert_array_equal(data.y, expected)
    widths = truth["motif_id"].map({motif_id: len(jaspar_motif(motif_id)[1]) for motif_id in CONFIG.motifs})
    np.testing.assert_array_equal(truth["end"] - truth["start"], widths)
    assert truth["start"].min() >= 0 and truth["end"].max() <= CONFIG.length
    assert set(truth["strand"]) == {"+", "-"}


def test_planted_instances_never_overlap(simulated: tuple[SequenceDataset, pd.DataFrame]) -> None:
    _, truth = simulated
    for _, rows in truth.groupby("sequence"):
        rows = rows.sort_values("start")
        assert (rows["start"].to_numpy()[1:] >= rows["end"].to_numpy()[:-1]).all()


def _consensus_match(codes: np.ndarray, ppm: np.ndarray) -> float:
    return float((codes == ppm.argmax(axis=1)).mean())


def test_planted_instances_match_their_motif_far_more_than_background(simulated: tuple[SequenceDataset, pd.DataFrame]) -> None:
    data, truth = simulated
    codes = _codes(data)
    rng = np.random.default_rng(0)
    for motif_id, rows in truth.groupby("motif_id"):
        ppm = jaspar_motif(motif_id)[1]
        planted = []
        for row in rows.itertuples():
            instance = codes[row.sequence, row.start : row.end]
            planted.append(_consensus_match(instance if row.strand == "+" else reverse_complement(instance), ppm))
        unlabelled = np.flatnonzero(data.y[:, CONFIG.motifs.index(motif_id)] == 0)
        starts = rng.integers(0, CONFIG.length - len(ppm) + 1, len(unlabelled))
        background = [_consensus_match(codes[i, s : s + len(ppm)], ppm) for i, s in zip(unlabelled, starts)]
        assert np.mean(planted) > 0.6, motif_id
        assert np.mean(background) < 0.35, motif_id


def test_simulation_is_seeded() -> None:
    config = SimulatorConfig(num_sequences=40, length=60, motifs=["MA0079.5"])
    first, truth = simulate_dataset(config, seed=5)
    second, truth_again = simulate_dataset(config, seed=5)
    np.testing.assert_array_equal(first.x, second.x)
    pd.testing.assert_frame_equal(truth, truth_again)
    assert not np.array_equal(simulate_dataset(config, seed=6)[0].x, first.x)


def test_several_instances_per_sequence_and_no_overwrite_when_full() -> None:
    config = SimulatorConfig(num_sequences=50, length=30, motifs=["MA0079.5"], prevalence=0.9, instances_per_sequence=4)
    data, truth = simulate_dataset(config, seed=0)
    per_sequence = truth.groupby("sequence").size()
    # 9-bp instances in 30 bp: at most 3 fit side by side, and at least 2 always do.
    assert per_sequence.max() == 3 and per_sequence.min() >= 2
    np.testing.assert_array_equal(np.flatnonzero(data.y[:, 0]), per_sequence.index)


def test_unknown_or_too_long_motifs_are_input_errors() -> None:
    with pytest.raises(AmberInputError, match="no matrix 'MA9999.1'"):
        simulate_dataset(SimulatorConfig(num_sequences=5, motifs=["MA0079.5", "MA9999.1"]), seed=0)
    with pytest.raises(AmberInputError, match="motif MA0139.1 is 19 bp, longer than the 10 bp sequences"):
        simulate_dataset(SimulatorConfig(num_sequences=5, length=10, motifs=["MA0139.1"]), seed=0)


PRESENCE_SHA256 = "b05d92f81c665bab614b53d6c2e306dbc66f713d441eac11a1a965c96f5bf5db"


def test_presence_task_is_unchanged_bit_for_bit(simulated: tuple[SequenceDataset, pd.DataFrame]) -> None:
    """The digest was taken before ``task: grammar`` existed: the default task draws exactly as it did."""
    data, truth = simulated
    assert CONFIG.task == "presence"
    digest = hashlib.sha256(data.x.tobytes() + data.y.tobytes() + truth.to_csv(index=False).encode()).hexdigest()
    assert digest == PRESENCE_SHA256


# --- task: grammar ---------------------------------------------------------------------------------

GRAMMAR = SimulatorConfig(
    task="grammar", num_sequences=600, length=100, motifs=["MA0079.5", "MA0114.4"], prevalence=0.4,
    spacing=30, spacing_tolerance=2, decoy_min_shift=5, decoy_max_shift=10,
    wrong_spacing_fraction=0.5, wrong_orientation_fraction=0.25,
)  # fmt: skip
# 600 sequences: 240 positive; of the 360 negatives 180 wrong spacing, 90 wrong orientation, 30 + 30 + 30.
GRAMMAR_COUNTS = {"positive": 240, "wrong_spacing": 180, "wrong_orientation": 90, "only_a": 30, "only_b": 30, "neither": 30}


@pytest.fixture(scope="module")
def grammar() -> tuple[SequenceDataset, pd.DataFrame]:
    return simulate_dataset(GRAMMAR, seed=3)


def _pair_spacing(a: pd.Series, b: pd.Series) -> int:
    """Start-to-start distance of B after A, read on A's strand."""
    return int(b["start"] - a["start"]) if a["strand"] == "+" else int(a["end"] - b["end"])


def _classify(truth: pd.DataFrame, config: SimulatorConfig) -> dict[int, str]:
    """Each sequence's kind, read off the ground truth alone (the rule restated independently)."""
    id_a, id_b = config.motifs
    kinds = {}
    for i in range(config.num_sequences):
        rows = truth[truth["sequence"] == i]
        a, b = rows[rows["motif_id"] == id_a], rows[rows["motif_id"] == id_b]
        assert len(a) <= 1 and len(b) <= 1 and len(rows) == len(a) + len(b)
        if a.empty or b.empty:
            kinds[i] = "only_a" if len(a) else "only_b" if len(b) else "neither"
            continue
        a, b = a.iloc[0], b.iloc[0]
        off = abs(_pair_spacing(a, b) - config.spacing)
        if a["strand"] == b["strand"] and off <= config.spacing_tolerance:
            kinds[i] = "positive"
        elif a["strand"] == b["strand"]:
            assert config.decoy_min_shift <= off <= config.decoy_max_shift, (i, off)
            kinds[i] = "wrong_spacing"
        else:
            # One motif flipped in place: the pair still sits at a right start-to-start distance in
            # the frame it was laid out in, which is one of the two strands.
            forward, reverse = int(b["start"] - a["start"]), int(a["end"] - b["end"])
            assert min(abs(forward - config.spacing), abs(reverse - config.spacing)) <= config.spacing_tolerance, i
            kinds[i] = "wrong_orientation"
    return kinds


def test_grammar_labels_follow_the_rule_and_the_kinds_have_the_configured_counts(
    grammar: tuple[SequenceDataset, pd.DataFrame],
) -> None:
    data, truth = grammar
    assert data.label_names == ["grammar_SP1_HNF4A"] and data.y.shape == (600, 1)
    kinds = _classify(truth, GRAMMAR)
    np.testing.assert_array_equal(data.y[:, 0], [float(kinds[i] == "positive") for i in range(600)])
    assert pd.Series(kinds).value_counts().to_dict() == GRAMMAR_COUNTS
    assert data.y.mean() == pytest.approx(GRAMMAR.prevalence)


def test_grammar_pairs_cover_the_tolerance_both_strands_and_both_decoy_sides(
    grammar: tuple[SequenceDataset, pd.DataFrame],
) -> None:
    _, truth = grammar
    kinds = _classify(truth, GRAMMAR)
    spacings: dict[str, set[int]] = {"positive": set(), "wrong_spacing": set()}
    strands: dict[str, set[str]] = {"positive": set(), "wrong_orientation": set()}
    flipped = set()
    for i, rows in truth.groupby("sequence"):
        if len(rows) < 2:
            continue
        a, b = rows.iloc[0], rows.iloc[1]
        assert (a["motif_id"], b["motif_id"]) == tuple(GRAMMAR.motifs)  # A listed before B
        assert b["start"] >= a["end"] or a["start"] >= b["end"]  # never overlapping
        if kinds[i] in spacings:
            spacings[kinds[i]].add(_pair_spacing(a, b) - GRAMMAR.spacing)
        if kinds[i] in strands:
            strands[kinds[i]].add(a["strand"] + b["strand"])
        if kinds[i] == "wrong_orientation":  # B at the right distance on A's strand: B was flipped, else A
            flipped.add("B" if abs(_pair_spacing(a, b) - GRAMMAR.spacing) <= GRAMMAR.spacing_tolerance else "A")
    assert spacings["positive"] == set(range(-2, 3))
    assert spacings["wrong_spacing"] == set(range(-10, -4)) | set(range(5, 11))
    assert strands["positive"] == {"++", "--"}
    assert strands["wrong_orientation"] == {"+-", "-+"} and flipped == {"A", "B"}
    assert truth["start"].min() >= 0 and truth["end"].max() <= GRAMMAR.length


def test_grammar_instances_read_as_their_motif_on_their_strand(grammar: tuple[SequenceDataset, pd.DataFrame]) -> None:
    data, truth = grammar
    codes = _codes(data)
    for motif_id, rows in truth.groupby("motif_id"):
        ppm = jaspar_motif(motif_id)[1]
        on_strand, other_strand = [], []
        for row in rows.itertuples():
            instance = codes[row.sequence, row.start : row.end]
            flipped = reverse_complement(instance)
            on_strand.append(_consensus_match(instance if row.strand == "+" else flipped, ppm))
            other_strand.append(_consensus_match(flipped if row.strand == "+" else instance, ppm))
        assert np.mean(on_strand) > 0.6, motif_id
        assert np.mean(other_strand) < 0.4, motif_id  # neither motif is palindromic


def test_grammar_is_seeded() -> None:
    config = SimulatorConfig(**{**GRAMMAR.model_dump(), "num_sequences": 60})
    first, truth = simulate_dataset(config, seed=5)
    second, truth_again = simulate_dataset(config, seed=5)
    np.testing.assert_array_equal(first.x, second.x)
    pd.testing.assert_frame_equal(truth, truth_again)
    assert not truth.equals(simulate_dataset(config, seed=6)[1])


@pytest.mark.parametrize(
    ("update", "key"),
    [
        ({"motifs": ["MA0079.5"]}, "motifs"),
        ({"motifs": ["MA0079.5", "MA0114.4", "MA0139.1"]}, "motifs"),
        ({"decoy_min_shift": 2}, "decoy_min_shift"),
        ({"decoy_max_shift": 4}, "decoy_max_shift"),
        ({"decoy_max_shift": 30}, "decoy_max_shift"),
        ({"length": 40}, "length"),
        ({"wrong_spacing_fraction": 0.8, "wrong_orientation_fraction": 0.3}, "wrong_orientation_fraction"),
    ],
)
def test_bad_grammar_configs_name_the_key(update: dict[str, object], key: str) -> None:
    raw = {"data": {"simulate": {**GRAMMAR.model_dump(), **update}}}
    with pytest.raises(AmberInputError, match=rf"data\.simulate.*\b{key}\b"):
        parse_config(raw)
    # The same settings are fine for the presence task, which ignores the grammar keys.
    parse_config({"data": {"simulate": {**raw["data"]["simulate"], "task": "presence"}}})


def test_grammar_pairs_that_do_not_fit_the_motifs_are_input_errors() -> None:
    # B (HNF4A) is 13 bp: the farthest pair, 30 + 10 + 13 bp, does not fit in 45 bp.
    with pytest.raises(AmberInputError, match=r"data\.simulate\.length.*53 bp, longer than the 45 bp"):
        simulate_dataset(SimulatorConfig(**{**GRAMMAR.model_dump(), "length": 45}), seed=0)
    # A (SP1) is 9 bp: a pair 12 - 10 = 2 bp apart would overlap.
    with pytest.raises(AmberInputError, match=r"data\.simulate\.spacing.*shorter than motif MA0079\.5"):
        simulate_dataset(SimulatorConfig(**{**GRAMMAR.model_dump(), "spacing": 12, "decoy_min_shift": 3}), seed=0)
