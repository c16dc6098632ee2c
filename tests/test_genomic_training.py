"""Genomic windows in training: the split by chromosome, reverse-complement batches, per-label positive weights."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from amber_ray.config import DataConfig, ExperimentConfig, SplitConfig, TrainConfig
from amber_ray.data import SequenceDataset, load_splits, one_hot_encode, write_hdf5
from amber_ray.data.augment import StrandAugmented, reverse_complement_batch
from amber_ray.data.hdf5 import HDF5SequenceFile
from amber_ray.errors import AmberInputError
from amber_ray.training import POS_WEIGHT_CAP, positive_weights, train_epoch, training_source


def test_reverse_complement_of_a_batch() -> None:
    batch = one_hot_encode(["ACGTN", "AACCG", "GATTC"])
    expected = one_hot_encode(["NACGT", "CGGTT", "GAATC"])
    np.testing.assert_array_equal(reverse_complement_batch(batch), expected)


def _dataset(n: int = 64, length: int = 12, seed: int = 0) -> SequenceDataset:
    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)]
    y = (rng.random((n, 2)) < 0.25).astype(np.float32)
    return SequenceDataset(
        one_hot_encode(seqs), y, [f"chr{1 + i % 4}:{i * 100}-{i * 100 + length}" for i in range(n)], ["a", "b"]
    )


def test_each_batch_is_read_on_one_random_strand_the_same_on_every_worker() -> None:
    data = _dataset()
    label_of = {x.tobytes(): y.tolist() for x, y in zip(data.x, data.y)}
    augmented = list(StrandAugmented(data).shard_batches(8, np.random.default_rng(5)))
    flipped = 0
    for x, y, rows in augmented:
        forward = [row.tobytes() in label_of for row in x]
        backward = [row.tobytes() in label_of for row in reverse_complement_batch(x)]
        assert all(forward) or all(backward)  # one strand for the whole batch
        original = x if all(forward) else reverse_complement_batch(x)
        assert [label_of[row.tobytes()] for row in original] == y.tolist()  # labels unchanged
        flipped += not all(forward)
        assert rows == 8
    assert 0 < flipped < len(augmented)
    shards = [list(StrandAugmented(data).shard_batches(8, np.random.default_rng(5), rank, 2)) for rank in (0, 1)]
    whole = list(StrandAugmented(data).shard_batches(8, np.random.default_rng(5)))
    for (x0, _, _), (x1, _, _), (x, _, _) in zip(*shards, whole):
        np.testing.assert_array_equal(np.concatenate([x0, x1]), x[np.r_[0:8:2, 1:8:2]])


def test_split_by_chromosome_of_named_records(tmp_path: Path) -> None:
    data = _dataset()
    fasta, tsv = tmp_path / "s.fa", tmp_path / "l.tsv"
    seqs = ["".join("ACGT"[i] for i in x.argmax(axis=0)) for x in data.x]
    fasta.write_text("".join(f">{name}\n{seq}\n" for name, seq in zip(data.names, seqs)))
    tsv.write_text("name\ta\tb\n" + "".join(f"{n}\t{int(a)}\t{int(b)}\n" for n, (a, b) in zip(data.names, data.y)))
    split = SplitConfig(valid_chromosomes=["chr2"], test_chromosomes=["chr3", "chr4"])
    config = DataConfig(kind="fasta_labels", fasta=fasta, labels_tsv=tsv, split=split)
    splits = load_splits(config, seed=0)
    chromosomes = {
        name: sorted({row.split(":")[0] for row in part.names})
        for name, part in (("train", splits.train), ("valid", splits.valid), ("test", splits.test))
    }
    assert chromosomes == {"train": ["chr1"], "valid": ["chr2"], "test": ["chr3", "chr4"]}
    assert splits.train.num_sequences + splits.valid.num_sequences + splits.test.num_sequences == 64
    assert training_source(ExperimentConfig(data=config), splits.train).__class__ is StrandAugmented  # on by default
    off = ExperimentConfig(data=config, train=TrainConfig(reverse_complement=False))
    assert training_source(off, splits.train) is splits.train
    fasta.write_text(fasta.read_text().replace(">chr1:0-12", ">seq0"))
    tsv.write_text(tsv.read_text().replace("chr1:0-12", "seq0"))
    with pytest.raises(AmberInputError, match="record seq0: a split by chromosome"):
        load_splits(config, seed=0)


def test_chromosome_keys_are_validated() -> None:
    with pytest.raises(ValueError, match="give both valid_chromosomes and test_chromosomes"):
        SplitConfig(valid_chromosomes=["chr7"])
    with pytest.raises(ValueError, match="'chr8' is in both"):
        SplitConfig(valid_chromosomes=["chr8"], test_chromosomes=["chr8"])
    assert ExperimentConfig().train.reverse_complement is None
    assert training_source(ExperimentConfig(), _dataset()).__class__ is SequenceDataset  # simulated data: off


def test_hdf5_split_must_match_the_chromosomes_it_was_built_with(tmp_path: Path) -> None:
    for split in ("train", "valid", "test"):
        write_hdf5(_dataset(), tmp_path / f"{split}.h5")
    split = SplitConfig(valid_chromosomes=["chr7"], test_chromosomes=["chr8", "chr9"])
    config = DataConfig(kind="hdf5", hdf5_dir=tmp_path, split=split)
    with pytest.raises(AmberInputError, match="needs a directory built by 'amber-ray dataset'"):
        load_splits(config, seed=0)
    (tmp_path / "dataset.json").write_text(json.dumps({"split": {"valid_chromosomes": ["chr7"], "test_chromosomes": ["chr8"]}}))
    with pytest.raises(AmberInputError, match=r"data.split.test_chromosomes \['chr8', 'chr9'\] differs"):
        load_splits(config, seed=0)
    (tmp_path / "dataset.json").write_text(json.dumps({"split": split.model_dump()}))
    assert load_splits(config, seed=0, stream_train=True).train.num_sequences == 64
    unsplit = DataConfig(kind="hdf5", hdf5_dir=tmp_path)  # a directory built from peaks is genomic windows
    assert isinstance(training_source(ExperimentConfig(data=unsplit), HDF5SequenceFile(tmp_path / "train.h5")), StrandAugmented)


def test_auto_positive_weight_is_negatives_over_positives_capped(tmp_path: Path) -> None:
    data = _dataset(n=300)
    data.y[:, 1] = 0
    data.y[:2, 1] = 1  # 2 positives in 300: 149 would exceed the cap
    write_hdf5(data, tmp_path / "train.h5", chunk_size=64)
    positives = data.y.sum(axis=0)
    expected = np.minimum((300 - positives) / positives, POS_WEIGHT_CAP)
    np.testing.assert_allclose(positive_weights("auto", data), expected, rtol=1e-6)
    np.testing.assert_allclose(positive_weights("auto", HDF5SequenceFile(tmp_path / "train.h5")), expected, rtol=1e-6)
    assert positive_weights("none", data) is None
    np.testing.assert_array_equal(positive_weights(3.0, data), [3.0, 3.0])


def test_the_loss_weighs_positives() -> None:
    data = _dataset(n=40)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4 * data.length, 2))
    nn.init.zeros_(model[1].weight)
    nn.init.zeros_(model[1].bias)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # logits stay 0: each term is log 2 times its weight
    weights = np.array([2.0, 5.0], dtype=np.float32)
    loss = train_epoch(model, optimizer, data, 40, np.random.default_rng(0), pos_weight=weights)
    expected = math.log(2) * np.mean(np.where(data.y == 1, weights, 1.0))
    assert loss == pytest.approx(expected, rel=1e-5)
    assert train_epoch(model, optimizer, data, 40, np.random.default_rng(0)) == pytest.approx(math.log(2), rel=1e-5)


def dense_units_alive(model: nn.Module, data: SequenceDataset) -> float:
    """The share of the dense layer's ReLU units that respond (> 0) to at least one of ``data``'s sequences."""
    relu = next(module for module in model.head if isinstance(module, nn.ReLU))
    outputs = []
    handle = relu.register_forward_hook(lambda module, inputs, output: outputs.append(output))
    model.eval()
    with torch.no_grad():
        model(torch.as_tensor(data.x))
    handle.remove()
    return float((outputs[0] > 0).any(dim=0).float().mean())


def test_the_dense_head_keeps_its_units_with_weighted_positives(tmp_path: Path) -> None:
    """Peaks on a simulated genome (3 motifs, 17 % positives), positives weighted (`pos_weight: auto`, about 5):
    without the head's batch norm the dense ReLU units die within the epochs (the model learns next to nothing);
    with it (`space.head_norm`, the default) every unit stays alive and the model learns the motifs."""
    from amber_ray.config import parse_config
    from amber_ray.data.peaks import WindowRule, build_dataset
    from amber_ray.data.simulate_genome import simulate_genome
    from amber_ray.space import Architecture, ModelSpace
    from amber_ray.training import fit, initial_model

    lengths = [750_000, 600_000, 400_000, 350_000, 300_000, 250_000, 300_000, 250_000, 200_000]
    genome = simulate_genome(
        tmp_path / "in", {f"chr{i}": n for i, n in enumerate(lengths, 1)}, ["MA0139.1", "MA0079.5", "MA0114.4"], peaks_per_mb=150
    )
    build_dataset(genome.genome, list(genome.peaks.items()), tmp_path / "data", WindowRule(window=400))
    outcome = {}
    for head_norm in (False, True):
        config = parse_config(
            {
                "data": {
                    "kind": "hdf5",
                    "hdf5_dir": str(tmp_path / "data"),
                    "split": {"valid_chromosomes": ["chr7"], "test_chromosomes": ["chr8", "chr9"]},
                },
                "space": {"first_filters": 16, "stem_channels": 16, "dense_units": 32, "head_norm": head_norm},
                "train": {"batch_size": 64, "max_epochs": 3, "patience": 3, "pos_weight": "auto"},
            }
        )
        splits = load_splits(config.data, 0)
        space = ModelSpace.from_config(config.space, splits.train.length, splits.train.num_labels)
        model = initial_model(space, Architecture.from_text("conv8,skip:;conv8,skip:0;conv8,skip:1;conv8,skip:2"), 1.0, 0)
        weights = positive_weights("auto", splits.train)
        result = fit(model, splits.train, splits.valid, config.train, 0, pos_weight=weights)
        outcome[head_norm] = (dense_units_alive(model, splits.valid), result.best_valid_auroc)
    assert outcome[True][0] == 1.0  # all 32 units respond to some window
    assert outcome[False][0] < 0.25  # at most 7 of 32 left
    assert outcome[True][1] > outcome[False][1]
