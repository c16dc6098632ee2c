"""Commands that produce results write one finished MLflow run into OUT/mlflow.db (or MLFLOW_TRACKING_URI)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import tiny_net
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from amber_ray.child import save_child
from amber_ray.cli import app


@pytest.fixture(autouse=True)
def own_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def only_run(store, experiment: str):
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "FINISHED"
    return client, run


def test_train_run_holds_the_config_test_metrics_and_model(tmp_path):
    config = {
        "name": "train-run-test",
        "data": {"kind": "simulate", "simulate": {"num_sequences": 200, "length": 60, "motifs": ["MA0139.1"]}},
        "space": {
            "profile": "small",
            "num_layers": 2,
            "layers_per_block": 1,
            "first_filters": 4,
            "stem_channels": 4,
            "dense_units": 8,
        },
        "train": {"batch_size": 50, "max_epochs": 1, "threads": 1},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["train", str(tmp_path / "c.yaml"), "--arch", "conv8,skip:;conv4,skip:", "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    client, run = only_run(out, "train-run-test")
    assert run.data.tags["command"] == "train" and run.data.params["arch"] == "conv8,skip:;conv4,skip:"
    assert run.data.params["train.max_epochs"] == "1" and run.data.metrics["test_auroc"] == pytest.approx(
        metrics["test"]["auroc"]
    )
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"model.pt", "metrics.json"}


def write_snv_fastas(directory, n: int, seed: int, bases: str) -> None:
    """``ref.fa`` and ``alt.fa`` in ``directory``: ``n`` random 40-bp sequences, each alternative with base 20
    changed to ``bases[0]`` (``bases[1]`` where the reference has ``bases[0]`` there)."""
    rng = np.random.default_rng(seed)
    ref = {f"v{i}": "".join(rng.choice(list("ACGT"), 40)) for i in range(n)}
    alt = {name: seq[:20] + (bases[0] if seq[20] != bases[0] else bases[1]) + seq[21:] for name, seq in ref.items()}
    for path, records in ((directory / "ref.fa", ref), (directory / "alt.fa", alt)):
        path.write_text("".join(f">{name}\n{seq}\n" for name, seq in records.items()))


def test_variants_score_run_beside_the_table(tmp_path):
    save_child(tiny_net(labels=2, length=40), tmp_path / "m.pt", {"label_names": ["a", "b"]})
    write_snv_fastas(tmp_path, 3, seed=0, bases="AC")
    out = tmp_path / "scores"
    args = [
        "variants",
        "score",
        tmp_path / "m.pt",
        "--ref-fasta",
        tmp_path / "ref.fa",
        "--alt-fasta",
        tmp_path / "alt.fa",
        "--out-file",
        out / "s.parquet",
    ]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    _, run = only_run(out, "amber-ray")
    assert run.data.tags["command"] == "variants score" and run.data.metrics == {"scored": 3.0, "skipped": 0.0}
    assert run.data.params["ref_fasta"] == str(tmp_path / "ref.fa")


def test_variants_eval_run_holds_the_eval_summary(tmp_path):
    save_child(tiny_net(labels=1, length=40), tmp_path / "m.pt", {"label_names": ["MA0139.1_CTCF"]})
    write_snv_fastas(tmp_path, 6, seed=1, bases="GT")
    out = tmp_path / "eval"
    args = [
        "variants",
        "eval",
        tmp_path / "m.pt",
        "--ref-fasta",
        tmp_path / "ref.fa",
        "--alt-fasta",
        tmp_path / "alt.fa",
        "--out",
        out,
    ]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "eval.json").read_text())
    client, run = only_run(out, "amber-ray")
    assert run.data.tags["command"] == "variants eval" and run.data.metrics["n"] == 6
    assert run.data.metrics["model_auroc"] == pytest.approx(summary["model"]["auroc"])
    assert run.data.metrics["pwm_accuracy"] == pytest.approx(summary["pwm"]["accuracy"])
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"eval.json"}


def test_interpret_run_holds_the_seqlet_counts_and_tables(tmp_path):
    save_child(tiny_net(labels=1, length=40), tmp_path / "m.pt", {"label_names": ["MA0139.1_CTCF"]})
    rng = np.random.default_rng(2)
    (tmp_path / "in.fa").write_text("".join(f">s{i}\n{''.join(rng.choice(list('ACGT'), 40))}\n" for i in range(3)))
    out = tmp_path / "interpret"
    args = [
        "interpret",
        tmp_path / "m.pt",
        "--fasta",
        tmp_path / "in.fa",
        "--label",
        "MA0139.1_CTCF",
        "--out",
        out,
        "--top",
        1,
        "--shuffles",
        2,
    ]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    seqlets = pd.read_csv(out / "seqlets.tsv", sep="\t")
    client, run = only_run(out, "amber-ray")
    assert run.data.tags["command"] == "interpret" and run.data.params["label"] == "MA0139.1_CTCF"
    assert run.data.metrics == {"seqlets": len(seqlets), "matched_seqlets": int((seqlets.p_value <= 0.05).sum())}
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"seqlets.tsv", "motifs.tsv"} <= logged and {p.name for p in (out / "figures").glob("*.png")} <= logged
