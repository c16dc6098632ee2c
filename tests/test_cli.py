"""The `amber-ray` command: bad input is one line on stderr, exit code 2, and no output left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import assert_clean_failure, invoke

ARCH = "conv8,skip:;conv4,skip:0;maxpool,skip:;conv8,skip:1"


def fasta(path: Path, records: dict[str, str]) -> Path:
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in records.items()))
    return path


def binary_config(tmp_path: Path, positives: dict[str, str], negatives: dict[str, str], **extra) -> Path:
    raw = {
        "data": {
            "kind": "fasta_binary",
            "positive_fasta": str(fasta(tmp_path / "pos.fa", positives)),
            "negative_fasta": str(fasta(tmp_path / "neg.fa", negatives)),
        },
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "positives,negatives,fragments",
    [
        ({"p1": "ACGTACGT", "p2": "ACGTACG"}, {"n1": "ACGTACGT"}, ["pos.fa", "record p2", "length 7 differs"]),
        ({"p1": "ACGTACGT"}, {"n1": "ACGTZCGT"}, ["neg.fa", "record n1", "letter 'Z'"]),
        ({}, {"n1": "ACGTACGT"}, ["pos.fa", "no FASTA records"]),
    ],
)
def test_train_rejects_bad_fasta(tmp_path, positives, negatives, fragments):
    out = tmp_path / "out"
    result = invoke("train", str(binary_config(tmp_path, positives, negatives)), "--arch", ARCH, "--out", str(out))
    assert_clean_failure(result, out, *fragments)


def test_unknown_config_key_and_bad_architecture(tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "config.yaml"
    config.write_text("train: {batch_size: 8, epochs: 3}\n")
    assert_clean_failure(invoke("train", str(config), "--arch", ARCH, "--out", str(out)), out, "train.epochs", "unknown key")
    config.write_text("seed: 1\n")
    result = invoke("train", str(config), "--arch", "conv8,skip:;conv4,skip:3", "--out", str(out))
    assert_clean_failure(result, out, "layer 1", "skip to layer 3 is not an earlier layer")
    result = invoke("train", str(config), "--arch", "conv8,skip:;conv9,skip:0;conv8,skip:;conv8,skip:", "--out", str(out))
    assert_clean_failure(result, out, "op 'conv9' is not in the space")


def test_gpu_request_on_a_gpu_less_cluster_fails_at_once(ray_session, tmp_path):
    from amber_ray.cluster import require
    from amber_ray.errors import AmberInputError

    with pytest.raises(AmberInputError, match="'search.gpus_per_worker' asks for 1 GPU per worker, more than any node"):
        require({"GPU": ("search.gpus_per_worker", 1.0)})
    with pytest.raises(AmberInputError, match="'search.workers' asks for 3 x {CPU: 1} but this cluster can hold at most 2"):
        require({"CPU": ("search.cpus_per_worker", 1.0), "GPU": ("search.gpus_per_worker", 0.0)}, 3, "search.workers")
    require({"CPU": ("search.cpus_per_worker", 1.0), "GPU": ("search.gpus_per_worker", 0.0)}, 2, "search.workers")


def test_train_learns_on_the_real_promoter_set(promoter_fastas, tmp_path):
    """A short version of the promoter benchmark: a small-space architecture learns (AUROC >= 0.9)."""
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "kind": "fasta_binary",
                    "positive_fasta": str(promoter_fastas[0]),
                    "negative_fasta": str(promoter_fastas[1]),
                },
                "space": {"profile": "small", "first_filters": 16, "stem_channels": 16, "dense_units": 32},
                "train": {"batch_size": 128, "max_epochs": 2, "patience": 2},
            }
        )
    )
    out = tmp_path / "out"
    result = invoke("train", str(config), "--arch", ARCH, "--out", str(out))
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["auroc"] >= 0.9
    assert {"accuracy", "mcc", "sensitivity", "specificity"} <= set(metrics["test"])
    assert metrics["split"] == {"train": 13890, "valid": 1737, "test": 1737, "seed": 0}
    assert (out / "model.pt").is_file()


def test_demo_takes_overrides_and_runs_the_one_pipeline(tmp_path, monkeypatch):
    import amber_ray.pipeline
    from amber_ray.config import demo_config
    from amber_ray.errors import AmberInputError

    out = tmp_path / "demo"
    assert_clean_failure(
        invoke("demo", "--out", str(out), "--set", "search.bogus=1"), out, "--set", "search.bogus", "unknown key"
    )
    seen = {}

    def pipeline(config, out, resume, on_iteration, annotation=None, on_trial=None, on_random_iteration=None):
        seen.update(config=config, out=out, resume=resume)
        raise AmberInputError("stopped before the search")

    monkeypatch.setattr(amber_ray.pipeline, "run_pipeline", pipeline)
    result = invoke("demo", "--out", str(out), "--set", "search.iterations=2", "--set", "retrain.sampled=1")
    assert result.exit_code == 2 and "stopped before the search" in result.output
    expected = demo_config()
    expected = expected.model_copy(
        update={
            "search": expected.search.model_copy(update={"iterations": 2}),
            "retrain": expected.retrain.model_copy(update={"sampled": 1}),
        }
    )
    assert seen == {"config": expected, "out": out, "resume": True}


def test_version_is_the_installed_package_version():
    from importlib.metadata import version

    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"amber-ray {version('amber_ray')}"


def test_verbose_after_the_command_shows_our_debug_messages_only(tmp_path):
    import logging

    result = invoke("train", str(tmp_path / "missing.yaml"), "--arch", ARCH, "--out", str(tmp_path / "out"), "-v")
    assert result.exit_code == 2 and "config file not found" in result.output
    assert logging.getLogger("amber_ray").getEffectiveLevel() == logging.DEBUG
    assert not any(
        logging.getLogger(name).isEnabledFor(logging.DEBUG) for name in ("ray.tune", "mlflow", "urllib3", "matplotlib")
    )
    invoke("train", str(tmp_path / "missing.yaml"), "--arch", ARCH, "--out", str(tmp_path / "out"))
    assert logging.getLogger("amber_ray").getEffectiveLevel() == logging.INFO


def test_unknown_jaspar_group_lists_the_valid_ones_before_any_work(tmp_path):
    out = tmp_path / "out"
    result = invoke(
        "interpret",
        str(tmp_path / "absent.pt"),
        "--fasta",
        str(tmp_path / "absent.fa"),
        "--label",
        "x",
        "--out",
        str(out),
        "--jaspar",
        "vertebrate",
    )
    assert_clean_failure(
        result, out, "--jaspar", "unknown taxonomic group 'vertebrate'", "one of cnidaria,", "plants,", "vertebrates"
    )
