"""Search -> retrain -> predict from Python, on a tiny simulated task (a couple of minutes on a laptop CPU).

    python examples/python_api.py [OUT]      # default OUT: amber-python-api

The same calls as ``amber-ray search``, ``retrain`` and ``predict``: a config, a local Ray session,
one MLflow store in ``OUT/mlflow.db``, and the final model of ``OUT/retrain/final/`` (also
registered in that store as ``models:/python-api/1``) used on new sequences.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

from amber_ray import cluster
from amber_ray.config import ExperimentConfig, parse_config
from amber_ray.data.simulate import simulate_dataset
from amber_ray.predict import probabilities
from amber_ray.registry import load_model
from amber_ray.retrain import run_retrain
from amber_ray.search.loop import run_search
from amber_ray.tracking import use_store_in

TINY = {
    "name": "python-api",
    "seed": 0,
    "data": {"kind": "simulate", "simulate": {"num_sequences": 1000, "length": 60, "motifs": ["MA0079.5"], "prevalence": 0.5}},
    "space": {"profile": "small", "first_filters": 8, "stem_channels": 8, "dense_units": 16},
    "train": {"batch_size": 50, "max_epochs": 3, "patience": 2},
    "search": {"iterations": 4, "archs_per_iteration": 4, "warmup_batch_size": 50, "batch_size": 50, "final_samples": 0},
    "retrain": {"replicates": 2, "sampled": 1},
}

log = logging.getLogger(__name__)


def tiny_config() -> ExperimentConfig:
    """A config as ``amber-ray`` reads from YAML, here from a dict (``load_config(path)`` reads a file)."""
    return parse_config(TINY)


def search_and_retrain(config: ExperimentConfig, out: Path) -> Path:
    """The search, then the retraining of its choice beside sampled architectures; returns ``final/``."""
    use_store_in(out)  # one MLflow store for both steps, as the demo does
    with cluster.ray_session():  # a local Ray (or the cluster in RAY_ADDRESS), shut down afterwards
        final = run_search(config, out / "search")
        log.info("searched architecture: %s (reward %.3f)", final["best"]["arch"], final["best"]["reward"])
        results = run_retrain(config, out / "search", out / "retrain")
    log.info("retrained:\n%s", results.groupby("role")["test_auroc"].describe()[["count", "mean", "std"]])
    return out / "retrain" / "final"


def predict_new_sequences(final_dir: Path, config: ExperimentConfig) -> pd.DataFrame:
    """Probabilities of freshly simulated sequences (another seed), with their true labels."""
    data, _ = simulate_dataset(config.data.simulate, seed=123)
    model, labels = load_model(final_dir, device="auto")  # also a model.pt or "models:/python-api/1"
    probs = probabilities(model, data.x)  # one-hot (N, 4, L); amber_ray.inference.as_model_input takes strings
    table = pd.DataFrame(probs, columns=labels)
    table["truth"] = data.y[:, 0]
    return table


def main(out: Path) -> float:
    config = tiny_config()
    final_dir = search_and_retrain(config, out)
    table = predict_new_sequences(final_dir, config)
    auroc = float(roc_auc_score(table["truth"], table.iloc[:, 0]))
    log.info("final model %s: AUROC %.3f on %d new sequences", final_dir, auroc, len(table))
    return auroc


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "amber-python-api"))
