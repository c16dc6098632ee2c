"""The final model of a retraining: the searched architecture's best replicate, in ``OUT/final/``.

Of every finished trial of a searched architecture, the one with the highest best validation
AUROC (the score early stopping kept its weights by; the test set plays no part in the choice)
becomes ``final/model.pt`` (the trial's best weights, in :func:`amber_ray.child.save_child`'s
format, readable by every command that takes a model) and ``final/model.json`` (architecture,
labels, input length, training config, test metrics and how it was chosen). Nothing here imports
Ray: :func:`amber_ray.retrain.run_retrain` hands over the trials; :func:`register_final_model` logs the
model through :mod:`amber_ray.registry` and notes its ``models:/NAME/VERSION`` in the card.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amber_ray import outputs
from amber_ray.atomic import atomic_path, atomic_write_json
from amber_ray.config import ExperimentConfig
from amber_ray.predict import load_model
from amber_ray.registry import log_final_model
from amber_ray.tracking import RunTracker

logger = logging.getLogger(__name__)

SELECTED_BY = "best_valid_auroc"


@dataclass
class TrialOutcome:
    """A finished trial: its ``trial`` config (role, arch, replicate, seed), last report and best model file."""

    trial: dict[str, Any]
    metrics: dict[str, Any]
    model_file: Path


@dataclass
class FinalModel:
    directory: Path
    card: dict[str, Any]  # final/model.json

    @property
    def model_file(self) -> Path:
        return self.directory / outputs.MODEL

    def scalar_metrics(self) -> dict[str, float]:
        """The card's numbers: test metrics (``test_auroc``, ...), best validation AUROC, parameters."""
        test = {f"test_{key}": value for key, value in self.card["test"].items() if isinstance(value, (int, float))}
        return {**test, SELECTED_BY: self.card[SELECTED_BY], "num_params": self.card["num_params"]}


def best_searched_trial(trials: Iterable[TrialOutcome]) -> TrialOutcome:
    """The searched trial with the highest best validation AUROC (ties: the lowest replicate)."""
    searched = [t for t in trials if t.trial["role"] == "searched" and t.metrics.get(SELECTED_BY) is not None]
    if not searched:
        raise ValueError("no finished trial of a searched architecture to choose the final model from")
    return max(searched, key=lambda t: (t.metrics[SELECTED_BY], -int(t.trial["replicate"])))


def model_card(
    chosen: TrialOutcome, config: ExperimentConfig, label_names: list[str], input_length: int, num_params: int
) -> dict[str, Any]:
    metrics = chosen.metrics
    test = {key.removeprefix("test_"): value for key, value in metrics.items() if key.startswith("test_")}
    return {
        "experiment": config.name,
        "arch": chosen.trial["arch"],
        "role": chosen.trial["role"],
        "replicate": int(chosen.trial["replicate"]),
        "seed": int(chosen.trial["seed"]),
        "selected_by": SELECTED_BY,
        SELECTED_BY: float(metrics[SELECTED_BY]),
        "label_names": label_names,
        "input_length": input_length,
        "num_params": num_params,
        "epochs": metrics.get("epochs"),
        "best_epoch": metrics.get("best_epoch"),
        "train": config.train.model_dump(mode="json"),
        "space": config.space.model_dump(mode="json"),
        "test": test,
    }


def write_final_model(trials: Iterable[TrialOutcome], config: ExperimentConfig, retrain_dir: Path) -> FinalModel:
    """Copy the chosen trial's best model to ``retrain_dir/final/model.pt`` and write ``model.json`` beside it."""
    chosen = best_searched_trial(trials)
    directory = retrain_dir / outputs.FINAL_DIR
    previous = read_card(directory)
    if previous.get("arch") == chosen.trial["arch"] and previous.get("replicate") == int(chosen.trial["replicate"]):
        return FinalModel(directory, previous)  # a resumed grid that chose the same trial again
    model, labels = load_model(chosen.model_file, "cpu")
    card = model_card(chosen, config, labels, model.space.input_length, model.num_params())
    with atomic_path(directory / outputs.MODEL) as tmp:
        shutil.copyfile(chosen.model_file, tmp)
    atomic_write_json(card, directory / outputs.FINAL_CARD)
    return FinalModel(directory, card)


def read_card(directory: Path) -> dict[str, Any]:
    """``final/model.json``, or an empty dict when there is none yet."""
    path = directory / outputs.FINAL_CARD
    return json.loads(path.read_text()) if path.is_file() else {}


def register_final_model(run: RunTracker, final: FinalModel, name: str) -> str:
    """Log the final model to ``run`` and register it as ``name`` (tags: its metrics, architecture and
    replicate); returns ``models:/NAME/VERSION``, also kept in the card. A model registered already is kept."""
    if final.card.get("registered_model"):
        return final.card["registered_model"]
    tags = {
        **final.scalar_metrics(),
        "arch": final.card["arch"],
        "replicate": final.card["replicate"],
        "selected_by": SELECTED_BY,
    }
    version = log_final_model(run, final.model_file, final.card["label_names"], final.card["input_length"], name, tags)
    final.card["registered_model"] = f"models:/{name}/{version}"
    atomic_write_json(final.card, final.directory / outputs.FINAL_CARD)
    run.log_artifact(final.directory / outputs.FINAL_CARD, outputs.FINAL_DIR)
    run.set_tags({"final_model": final.card["registered_model"]})
    logger.info(
        "final model: %s replicate %d (%s %.4f), registered as %s",
        final.card["arch"],
        final.card["replicate"],
        SELECTED_BY,
        final.card[SELECTED_BY],
        final.card["registered_model"],
    )
    return final.card["registered_model"]
