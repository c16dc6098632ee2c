"""The motif simulator (labels agree with the ground truth, instances look like their motif) and the reference workload."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from amber_ray.config import SimulatorConfig
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
