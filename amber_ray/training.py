"""Plain-torch training of one model: mini-batch epochs, prediction, early stopping.

The building blocks are public so that ``amber-ray train`` (a loop in one process) and the
Ray Tune trainable (one epoch per report, checkpoint in between) share them.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from amber_ray import outputs
from amber_ray.atomic import atomic_write_json
from amber_ray.child import ChildNet, save_child
from amber_ray.config import ExperimentConfig, TrainConfig
from amber_ray.data import load_splits
from amber_ray.data.augment import StrandAugmented
from amber_ray.data.dataset import LoadedData, TrainSource
from amber_ray.data.hdf5 import HDF5SequenceFile
from amber_ray.data.load import genomic_windows
from amber_ray.device import autocast, keep_freed_host_memory, resolve_device
from amber_ray.metrics import binary_metrics, mean_auroc, multilabel_metrics
from amber_ray.predict import model_device, predict
from amber_ray.space import Architecture, ModelSpace


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """Arrays from Ray's object store are read-only: copy those before handing them to torch."""
    return torch.from_numpy(array if array.flags.writeable else array.copy())


# auto's largest weight: a label with 1 positive in 10,000 is weighted 100, not 10,000 (which makes training unstable).
POS_WEIGHT_CAP = 100.0


def positive_weights(setting: str | float, train: TrainSource | StrandAugmented) -> np.ndarray | None:
    """``train.pos_weight`` as one weight per label (None: unweighted); ``auto`` counts the training split's labels."""
    if setting == "none":
        return None
    if setting != "auto":
        return np.full(train.num_labels, float(setting), dtype=np.float32)
    source = train.source if isinstance(train, StrandAugmented) else train
    positives = source.positive_counts() if isinstance(source, HDF5SequenceFile) else (source.y == 1).sum(axis=0)
    negatives = source.num_sequences - positives
    weights = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    return np.clip(weights, None, POS_WEIGHT_CAP).astype(np.float32)


def training_source(config: ExperimentConfig, train: TrainSource) -> TrainSource | StrandAugmented:
    """``train`` read on a random strand per batch when ``train.reverse_complement`` (or its default) says so."""
    augment = config.train.reverse_complement
    if augment is None:
        augment = genomic_windows(config.data)
    return StrandAugmented(train) if augment else train


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: TrainSource | StrandAugmented,
    batch_size: int,
    rng: np.random.Generator,
    precision: str = "float32",
    pos_weight: np.ndarray | None = None,
) -> float:
    """One pass over ``data`` (in memory, or an HDF5 file streamed by batch) on the model's device; returns the mean loss.

    ``pos_weight`` (one per label) weighs the positives in the loss (:func:`positive_weights`)."""
    model.train()
    device = model_device(model)
    total, seen = 0.0, 0
    weight = None if pos_weight is None else torch.as_tensor(pos_weight, device=device)
    for x_batch, y_batch, rows in data.shard_batches(batch_size, rng):
        x, y = as_tensor(x_batch).to(device, non_blocking=True), as_tensor(y_batch).to(device, non_blocking=True)
        with autocast(device, precision):
            logits = model(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y, pos_weight=weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * rows
        seen += rows
    return total / max(seen, 1)


def predict_proba(model: nn.Module, data: LoadedData, batch_size: int = 512) -> np.ndarray:
    """Sigmoid outputs ``(N, labels)`` of every sequence of ``data`` in eval mode (the model's train/eval mode is
    restored); a dataset of base codes is expanded to one-hot a batch at a time."""
    return predict(model, np.arange(data.num_sequences), batch_size, func=torch.sigmoid, prepare=data.one_hot)


@dataclass
class EarlyStopping:
    """Stop when the monitored score has not improved for ``patience`` epochs."""

    patience: int
    best_score: float = -np.inf
    best_epoch: int = -1
    epochs_without_improvement: int = 0

    def step(self, epoch: int, score: float) -> bool:
        """Record ``score``; return True when it is a new best."""
        if score > self.best_score:
            self.best_score, self.best_epoch, self.epochs_without_improvement = score, epoch, 0
            return True
        self.epochs_without_improvement += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.epochs_without_improvement >= self.patience


@dataclass
class FitResult:
    best_epoch: int
    best_valid_auroc: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class FitState:
    """Where a :func:`fit` stands after an epoch; :meth:`state_dict` is enough to resume it.

    ``on_epoch`` hooks get it after every epoch (``done`` on the last one, before the model is
    given its best weights): ``amber-ray train`` shows progress, a Ray Tune trial reports and
    checkpoints it.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    stopper: EarlyStopping
    best_model: dict[str, torch.Tensor]
    epoch: int = -1  # the last epoch finished
    history: list[dict[str, float]] = field(default_factory=list)
    done: bool = False

    @property
    def record(self) -> dict[str, float]:
        """The last epoch: epoch, train_loss, valid_auroc, best_valid_auroc."""
        return self.history[-1]

    def state_dict(self) -> dict[str, Any]:
        stopper = self.stopper
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "best_model": self.best_model,
            "stopper": {
                "best_score": stopper.best_score,
                "best_epoch": stopper.best_epoch,
                "epochs_without_improvement": stopper.epochs_without_improvement,
            },
            "epoch": self.epoch,
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.best_model = state["best_model"]
        self.stopper = EarlyStopping(self.stopper.patience, **state["stopper"])
        self.epoch = state["epoch"]
        self.history = list(state.get("history", []))


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)


def replicate_seed(seed: int, replicate: int) -> int:
    """The training seed of replicate ``replicate`` of an experiment seeded ``seed`` (``amber-ray train`` is replicate 0)."""
    return seed * 1000 + replicate


def initial_model(space: ModelSpace, arch: Architecture, width: float, seed: int) -> ChildNet:
    """The untrained model: its initial weights are drawn from ``seed``."""
    torch.manual_seed(seed)
    return ChildNet(space, arch, width)


def fit(
    model: nn.Module,
    train: TrainSource | StrandAugmented,
    valid: LoadedData,
    config: TrainConfig,
    seed: int,
    on_epoch: Callable[[FitState], None] | None = None,
    resume: dict[str, Any] | None = None,
    device: torch.device | None = None,
    pos_weight: np.ndarray | None = None,
) -> FitResult:
    """Train with early stopping on validation AUROC; the model ends with its best weights.

    The model is moved to ``device`` (default: where it is) before its optimizer is made. Each
    epoch is seeded from ``(seed, epoch)`` alone, so a fit resumed from the
    :meth:`FitState.state_dict` of an epoch (``resume``) continues exactly as the uninterrupted one.
    """
    keep_freed_host_memory()
    if device is not None:
        model.to(device)
    optimizer = make_optimizer(model, config)
    state = FitState(model, optimizer, EarlyStopping(config.patience), copy.deepcopy(model.state_dict()))
    if resume is not None:
        state.load_state_dict(resume)
    for epoch in range(state.epoch + 1, config.max_epochs):
        torch.manual_seed(seed * 10_000 + epoch)
        rng = np.random.default_rng([seed, epoch])
        loss = train_epoch(model, optimizer, train, config.batch_size, rng, config.precision, pos_weight)
        auroc = mean_auroc(valid.y, predict_proba(model, valid))
        if state.stopper.step(epoch, auroc):
            state.best_model = copy.deepcopy(model.state_dict())
        state.epoch = epoch
        state.history.append(
            {"epoch": epoch, "train_loss": loss, "valid_auroc": auroc, "best_valid_auroc": state.stopper.best_score}
        )
        state.done = state.stopper.should_stop or epoch == config.max_epochs - 1
        if on_epoch:
            on_epoch(state)
        if state.done:
            break
    model.load_state_dict(state.best_model)
    return FitResult(state.stopper.best_epoch, state.stopper.best_score, len(state.history), state.history)


def evaluate(model: nn.Module, data: LoadedData, batch_size: int = 512) -> dict[str, object]:
    """Test metrics: mean and per-label AUROC/AUPR, plus accuracy/MCC/... for a single binary label."""
    probs = predict_proba(model, data, batch_size)
    result = multilabel_metrics(data.y, probs, data.label_names)
    metrics: dict[str, object] = {
        "auroc": result.mean_auroc,
        "aupr": result.mean_aupr,
        "labels_skipped": result.num_skipped,
        "per_label_auroc": dict(zip(data.label_names, map(float, result.per_label_auroc))),
        "per_label_aupr": dict(zip(data.label_names, map(float, result.per_label_aupr))),
    }
    if data.num_labels == 1:
        metrics.update(binary_metrics(data.y[:, 0], probs[:, 0]))
    return metrics


def train_architecture(
    config: ExperimentConfig, arch_text: str, out: Path, on_epoch: Callable[[FitState], None] | None = None
) -> dict[str, Any]:
    """``amber-ray train``: fit one architecture on the config's data; write ``model.pt`` and ``metrics.json``.

    The model is replicate 0 of the architecture in a retraining grid of the same config: the same
    initial weights, epochs and best weights. Input is read and checked before anything is written.
    """
    arch = Architecture.from_text(arch_text)
    splits = load_splits(config.data, config.seed, stream_train=True)
    space = ModelSpace.from_config(config.space, splits.train.length, splits.train.num_labels)
    seed = replicate_seed(config.seed, 0)
    device = resolve_device(config.train.device, "train.device")
    model = initial_model(space, arch, config.train.width, seed)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    started = time.perf_counter()
    train = training_source(config, splits.train)
    pos_weight = positive_weights(config.train.pos_weight, splits.train)
    result = fit(model, train, splits.valid, config.train, seed, on_epoch, device=device, pos_weight=pos_weight)
    metrics = {
        "arch": arch.to_text(),
        "num_params": model.num_params(),
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_valid_auroc": result.best_valid_auroc,
        "train_seconds": time.perf_counter() - started,
        "device": str(device),
        "split": {
            "train": splits.train.num_sequences,
            "valid": splits.valid.num_sequences,
            "test": splits.test.num_sequences,
            "seed": config.seed,
        },
        "test": evaluate(model, splits.test),
    }
    save_child(model, out / outputs.MODEL, {"label_names": splits.train.label_names})
    atomic_write_json(metrics, out / outputs.METRICS)
    return metrics
