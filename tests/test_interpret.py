"""Interpretation: attributions peak on planted motifs, seqlets match them in JASPAR, the model is left as found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from amber_ray import interpret
from amber_ray.child import load_child
from amber_ray.cli import app
from amber_ray.config import parse_config
from amber_ray.data import one_hot_encode, simulate_dataset
from amber_ray.errors import AmberInputError
from amber_ray.ops import SamePool
from amber_ray.predict import label_index
from amber_ray.training import train_architecture

# Block 0 holds a stride-1 max-pool (needs our DeepLIFT rule); the skip 1 -> 3 crosses a length reduction.
ARCH = "conv8,skip:;maxpool,skip:0;conv4,skip:;avgpool,skip:1"
MOTIFS = ["MA0105.4", "MA0079.5"]  # NFKB1 (13 bp), SP1 (9 bp): JASPAR vertebrates
SHUFFLES = 8


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, object, pd.DataFrame]:
    """A model trained by ``amber-ray train``'s code on simulated data, and the simulator's planting table."""
    config = parse_config(
        {
            "seed": 0,
            "data": {"kind": "simulate", "simulate": {"num_sequences": 1000, "length": 100, "motifs": MOTIFS, "prevalence": 0.5}},
            "train": {"batch_size": 64, "learning_rate": 0.003, "max_epochs": 8, "patience": 3, "width": 0.5},
        }
    )
    out = tmp_path_factory.mktemp("interpret_model")
    train_architecture(config, ARCH, out)
    dataset, truth = simulate_dataset(config.data.simulate, config.seed)
    return out / "model.pt", dataset, truth


@pytest.fixture(scope="module")
def explained(trained) -> dict[str, tuple[np.ndarray, interpret.Attributions]]:
    """DeepLIFT/SHAP of each label on 30 sequences that carry its motif."""
    model_path, dataset, _ = trained
    model, _ = load_child(model_path)
    result = {}
    for index, motif in enumerate(MOTIFS):
        rows = np.flatnonzero(dataset.y[:, index] == 1)[:30]
        result[motif] = rows, interpret.deeplift_shap(model, dataset.x[rows], index, n_shuffles=SHUFFLES, device="cpu")
    return result


def planted_mask(truth: pd.DataFrame, motif: str, rows: np.ndarray, length: int) -> np.ndarray:
    mask = np.zeros((len(rows), length), dtype=bool)
    for k, row in enumerate(rows):
        for hit in truth[(truth["motif_id"] == motif) & (truth["sequence"] == row)].itertuples():
            mask[k, hit.start : hit.end] = True
    return mask


@pytest.mark.parametrize("motif", MOTIFS)
def test_attributions_peak_on_planted_motifs(trained, explained, motif):
    _, dataset, truth = trained
    rows, attributions = explained[motif]
    inside = planted_mask(truth, motif, rows, dataset.length)
    magnitude = np.abs(attributions.scores.sum(axis=1))
    assert magnitude[inside].mean() > 3 * magnitude[~inside].mean()


@pytest.mark.parametrize("motif", MOTIFS)
def test_attributions_add_up_to_the_logit_difference(explained, motif):
    """Every op of the architecture has a DeepLIFT rule (or is linear): sums match the logit change."""
    _, attributions = explained[motif]
    scale = np.abs(attributions.logits - attributions.reference_logits).mean()
    assert attributions.convergence_delta.max() < 1e-3 * max(scale, 1.0)


@pytest.mark.parametrize("motif", MOTIFS)
def test_seqlets_match_the_planted_jaspar_motif(trained, explained, motif):
    """On planted instances, TOMTOM ranks the planted matrix (any version of its base id) among the top 10."""
    _, dataset, truth = trained
    rows, attributions = explained[motif]
    seqlets = interpret.call_seqlets(attributions.scores)
    inside = planted_mask(truth, motif, rows, dataset.length)
    on_planted = seqlets[[inside[s.example_idx, s.start : s.end].mean() >= 0.5 for s in seqlets.itertuples()]]
    assert len(on_planted) >= 5
    indices, p_values = interpret.match_seqlets(dataset.x[rows], on_planted, "vertebrates", n_nearest=10)
    ids = interpret.jaspar_motifs("vertebrates")[0]
    base_id = motif.split(".")[0]
    recovered = [any(ids[i].split(".")[0] == base_id for i in nearest) for nearest in indices]
    assert np.mean(recovered) >= 0.3
    assert (p_values[:, 0] < 0.01).mean() >= 0.5


def test_same_pool_rule_is_exact():
    """Against a one-layer max SamePool model, the rule's multipliers reproduce the output change exactly."""
    from tangermeme.deep_lift_shap import deep_lift_shap

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv1d(4, 3, 5, padding=2), SamePool(4, "max"), torch.nn.Flatten(), torch.nn.Linear(3 * 40, 1)
    ).eval()
    x = torch.eye(4)[torch.randint(0, 4, (6, 40))].transpose(1, 2).contiguous()
    result = deep_lift_shap(
        net,
        x,
        n_shuffles=4,
        random_state=0,
        additional_nonlinear_ops=interpret.DEEPLIFT_RULES,
        return_references=True,
        device="cpu",
    )
    with torch.no_grad():
        reference = net(result.references.reshape(-1, 4, 40).float()).reshape(6, 4).mean(dim=1)
        expected = net(x)[:, 0] - reference
    assert torch.allclose(result.attributions.sum(dim=(1, 2)), expected, atol=1e-5)


def test_mode_and_device_are_restored(trained):
    model_path, dataset, _ = trained
    model, _ = load_child(model_path)
    model.train()
    interpret.deeplift_shap(model, dataset.x[:2], 0, n_shuffles=2, device="cpu")
    interpret.saturation_mutagenesis(model, dataset.x[:1], 0, device="cpu")
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    interpret.deeplift_shap(model, dataset.x[:2], 0, n_shuffles=2, device="cpu")
    assert not any(m.training for m in model.modules())
    assert next(model.parameters()).device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_model_comes_back_from_the_gpu(trained):
    model_path, dataset, _ = trained
    model, _ = load_child(model_path)
    on_gpu = interpret.deeplift_shap(model, dataset.x[:4], 0, n_shuffles=2, device="cuda")
    on_cpu = interpret.deeplift_shap(model, dataset.x[:4], 0, n_shuffles=2, device="cpu")
    assert next(model.parameters()).device.type == "cpu" and not model.training
    np.testing.assert_allclose(on_gpu.scores, on_cpu.scores, atol=1e-4)


def test_saturation_mutagenesis_is_the_logit_change(trained):
    model_path, dataset, _ = trained
    model, _ = load_child(model_path)
    x = dataset.x[:1].copy()
    effects = interpret.saturation_mutagenesis(model, x, 1, device="cpu")
    mutant = x.copy()
    mutant[0, :, 7] = np.eye(4, dtype=np.float32)[(x[0, :, 7].argmax() + 1) % 4]
    with torch.no_grad():
        logits = model(torch.from_numpy(np.concatenate([x, mutant])))[:, 1].numpy()
    assert effects[0, (x[0, :, 7].argmax() + 1) % 4, 7] == pytest.approx(logits[1] - logits[0], abs=1e-4)
    assert np.all(effects[0][x[0] == 1] == 0)


def test_bad_label_names_the_label_and_the_model_labels():
    with pytest.raises(AmberInputError, match=r"label 'CTCF' is not one of the model's labels: MA0105.4_NFKB1, MA0079.5_SP1"):
        label_index(["MA0105.4_NFKB1", "MA0079.5_SP1"], "CTCF", "model.pt")


def test_unknown_base_is_an_input_error_naming_the_record():
    x = one_hot_encode(["ACGT", "ACNT"])
    with pytest.raises(AmberInputError, match="seqs.fa: record s2: has a base other than A, C, G, T"):
        interpret.check_one_hot(x, ["s1", "s2"], "seqs.fa")


def write_fasta(path: Path, dataset, rows: np.ndarray) -> Path:
    seqs = ["".join("ACGT"[b] for b in dataset.x[row].argmax(axis=0)) for row in rows]
    path.write_text("".join(f">{dataset.names[row]}\n{seq}\n" for row, seq in zip(rows, seqs)))
    return path


def test_cli_bad_label_is_one_line_exit_2(trained, tmp_path):
    model_path, dataset, _ = trained
    fasta = write_fasta(tmp_path / "seqs.fa", dataset, np.arange(3))
    result = CliRunner().invoke(
        app, ["interpret", str(model_path), "--fasta", str(fasta), "--label", "CTCF", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert "label 'CTCF' is not one of the model's labels: MA0105.4_NFKB1, MA0079.5_SP1" in result.output
    assert not (tmp_path / "out").exists()


def test_cli_writes_table_arrays_and_figures(trained, tmp_path):
    model_path, dataset, _ = trained
    fasta = write_fasta(tmp_path / "seqs.fa", dataset, np.flatnonzero(dataset.y[:, 0] == 1)[:12])
    out = tmp_path / "out"
    args = [
        "interpret",
        str(model_path),
        "--fasta",
        str(fasta),
        "--label",
        "MA0105.4_NFKB1",
        "--out",
        str(out),
        "--top",
        "2",
        "--shuffles",
        "4",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "seqlets.tsv", sep="\t")
    assert list(table.columns) == interpret.SEQLET_COLUMNS
    arrays = np.load(out / "attributions.npz")
    assert arrays["attributions"].shape == (12, 4, 100) and arrays["ism"].shape == (2, 4, 100)
    assert sorted(p.name for p in (out / "figures").glob("*.png")) == sorted(interpret.FIGURES)
