"""The MLflow store a command logs to is checked before any work, a registry lookup never creates one, and a
copied run directory's registered model is the copy's."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import assert_clean_failure, invoke, tiny_net

from amber_ray.child import save_child
from amber_ray.data.dataset import one_hot_encode
from amber_ray.final_model import FinalModel, register_final_model
from amber_ray.tracking import RunTracker

LENGTH = 40
NOT_A_DATABASE = b"this file is not a database\n" * 40


def sequences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), LENGTH)) for _ in range(n)]


@pytest.fixture
def fasta(tmp_path) -> Path:
    path = tmp_path / "in.fa"
    path.write_text("".join(f">s{i}\n{seq}\n" for i, seq in enumerate(sequences(3))))
    return path


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "model.pt"
    save_child(tiny_net(labels=2, length=LENGTH), path, {"label_names": ["a", "b"]})
    return path


def damaged(out: Path, kind: str) -> Path:
    """``out/mlflow.db`` that MLflow cannot use: not a database, or of a schema it does not know (a later MLflow's)."""
    out.mkdir(parents=True, exist_ok=True)
    store = out / "mlflow.db"
    if kind == "not a database":
        store.write_bytes(NOT_A_DATABASE)
    else:
        RunTracker.start(out, "made-here", "a run").finish()
        with sqlite3.connect(store) as db:
            db.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
        db.close()
    return store


KINDS = ["not a database", "unknown schema"]


@pytest.mark.parametrize("kind", KINDS)
def test_predict_refuses_a_damaged_store_before_predicting(tmp_path, monkeypatch, model, fasta, kind):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "p"
    damaged(out, kind)
    before = sorted(p.name for p in out.iterdir())
    result = invoke("predict", model, "--fasta", fasta, "--out", out)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "mlflow.db" in result.output
    assert "Traceback" not in result.output and sorted(p.name for p in out.iterdir()) == before  # no predictions


@pytest.mark.parametrize("kind", KINDS)
def test_train_refuses_a_damaged_store_before_training(tmp_path, monkeypatch, kind):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    records = sequences(60)  # enough for a split with both classes everywhere: training runs unless refused
    (tmp_path / "pos.fa").write_text("".join(f">p{i}\n{s}\n" for i, s in enumerate(records[:30])))
    (tmp_path / "neg.fa").write_text("".join(f">n{i}\n{s}\n" for i, s in enumerate(records[30:])))
    data = {"kind": "fasta_binary", "positive_fasta": str(tmp_path / "pos.fa"), "negative_fasta": str(tmp_path / "neg.fa")}
    raw = {"data": data, "space": {"first_filters": 4, "stem_channels": 4, "dense_units": 8}, "train": {"max_epochs": 1}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    damaged(out, kind)
    result = invoke(
        "train", tmp_path / "config.yaml", "--arch", "conv8,skip:;conv4,skip:0;maxpool,skip:;conv8,skip:1", "--out", out
    )
    assert result.exit_code == 2, result.output
    assert "mlflow.db" in result.output and "Traceback" not in result.output
    assert not (out / "model.pt").exists() and not (out / "metrics.json").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_ui_refuses_a_damaged_store_in_one_line(tmp_path, kind):
    store = damaged(tmp_path / "run", kind)
    result = invoke("ui", store.parent, "--port", "5999")
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "mlflow.db" in result.output


def test_a_registry_lookup_in_a_missing_store_creates_nothing(tmp_path, monkeypatch, fasta):
    nowhere = tmp_path / "nowhere"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{nowhere}/mlflow.db")
    result = invoke("predict", "models:/demo/1", "--fasta", fasta, "--out", tmp_path / "p")
    assert_clean_failure(result, tmp_path / "p", "mlflow.db")
    assert not nowhere.exists()


def test_a_copied_run_directorys_registered_model_is_the_copys(tmp_path, monkeypatch, fasta):
    """The original directory is gone after the copy: the copy's store must lead to the copy's files."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    original, copy = tmp_path / "original", tmp_path / "copy"
    final = original / "final"
    final.mkdir(parents=True)
    net = tiny_net(labels=2, length=LENGTH, seed=3)
    save_child(net, final / "model.pt", {"label_names": ["a", "b"]})
    card = {
        "label_names": ["a", "b"],
        "input_length": LENGTH,
        "arch": net.arch.to_text(),
        "replicate": 0,
        "test": {"auroc": 0.5},
        "best_valid_auroc": 0.5,
        "num_params": net.num_params(),
    }
    run = RunTracker.start(original, "copied", "retrain")
    assert register_final_model(run, FinalModel(final, card), "copied") == "models:/copied/1"
    run.finish()
    shutil.copytree(original, copy)
    shutil.rmtree(original)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{copy}/mlflow.db")
    result = invoke("predict", "models:/copied/1", "--fasta", fasta, "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "p" / "predictions.parquet")
    with torch.no_grad():
        expected = torch.sigmoid(net.eval()(torch.from_numpy(one_hot_encode(sequences(3))))).numpy()
    assert np.allclose(table["probability"].to_numpy().reshape(3, 2), expected, atol=1e-6)
    assert not original.exists()
