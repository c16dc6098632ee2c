"""Retraining with Ray Tune: the searched architecture(s) vs uniformly sampled ones, with replicates.

Each trial trains one (architecture, replicate seed) from scratch with early stopping on
validation AUROC, reports every epoch with a checkpoint, and evaluates its best weights on the
test set. An interrupted grid resumes through ``Tuner.restore``: finished trials are kept,
unfinished ones continue from their last checkpoint. MLflow logging happens in the driver
(one writer for the store), one nested run per trial tagged ``role``, ``arch``, ``replicate``.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from ray import tune

from amber_ray.atomic import atomic_write_table
from amber_ray.child import ChildNet, save_child
from amber_ray.cluster import resolve_gpus
from amber_ray.config import ExperimentConfig, config_as_flat_dict
from amber_ray.data import Splits, load_splits
from amber_ray.errors import AmberInputError
from amber_ray.metrics import mean_auroc
from amber_ray.space import Architecture, ModelSpace
from amber_ray.tracking import RunTracker
from amber_ray.training import EarlyStopping, evaluate, make_optimizer, predict_proba, train_epoch

logger = logging.getLogger(__name__)

TRIAL_STATE = "trial.pt"
BEST_MODEL = "best_model.pt"
TUNE_NAME = "grid"


def build_grid(config: ExperimentConfig, search_dir: Path, space: ModelSpace) -> list[dict[str, Any]]:
    """Searched architecture(s) from ``final_architectures.json`` + sampled ones, each with replicates."""
    searched = searched_architectures(search_dir / "final_architectures.json", space, config.retrain.include_greedy)
    archs = [("searched", arch) for arch in searched] + [("sampled", arch) for arch in sampled_architectures(config, space)]
    return replicate_grid(config, archs)


def sampled_architectures(config: ExperimentConfig, space: ModelSpace) -> list[str]:
    """``retrain.sampled`` uniformly sampled architectures (skips with ``retrain.skip_probability``), seeded by ``seed``."""
    rng = np.random.default_rng([config.seed, 2021])
    return [space.sample(rng, config.retrain.skip_probability).to_text() for _ in range(config.retrain.sampled)]


def replicate_grid(config: ExperimentConfig, archs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """One trial per ``(role, arch)`` and replicate seed."""
    return [
        {"role": role, "arch": arch, "replicate": replicate, "seed": config.seed * 1000 + replicate}
        for role, arch in archs
        for replicate in range(config.retrain.replicates)
    ]


def searched_architectures(path: Path, space: ModelSpace, include_greedy: bool) -> list[str]:
    """The best (and greedy) architecture of a search, checked against ``space``.

    The file may have been edited by hand, and its strings name trial directories and MLflow tags.
    """
    if not path.is_file():
        raise AmberInputError("no final_architectures.json; run `amber-ray search` first", path)
    try:
        final = json.loads(path.read_text())
        searched = [final["best"]["arch"]]
        if include_greedy and "greedy" in final and final["greedy"]["arch"] not in searched:  # a random search has none
            searched.append(final["greedy"]["arch"])
    except (ValueError, KeyError, TypeError) as error:
        raise AmberInputError(f"not the final_architectures.json of a search ({type(error).__name__}: {error})", path) from None
    for arch in searched:
        try:
            space.validate(Architecture.from_text(str(arch)))
        except AmberInputError as error:
            raise AmberInputError(f"architecture {str(arch)[:80]!r}: {error.problem}", path, error.record) from None
    return searched


def train_trial(trial_config: dict[str, Any], splits: Splits, space: ModelSpace, config: ExperimentConfig) -> None:
    """The Tune trainable: one (architecture, replicate) to convergence, one report per epoch."""
    trial = trial_config["trial"]
    torch.set_num_threads(max(1, int(config.retrain.cpus_per_trial)))
    seed = trial["seed"]
    torch.manual_seed(seed)
    model = ChildNet(space, Architecture.from_text(trial["arch"]), config.train.width)
    optimizer = make_optimizer(model, config.train)
    stopper = EarlyStopping(config.train.patience)
    best_state = copy.deepcopy(model.state_dict())
    start_epoch = 0
    history: list[dict[str, float]] = []
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = torch.load(Path(directory) / TRIAL_STATE, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        best_state = state["best_model"]
        stopper = EarlyStopping(config.train.patience, **state["stopper"])
        start_epoch = state["epoch"] + 1
        history = state.get("history", [])
    started = time.perf_counter()
    for epoch in range(start_epoch, config.train.max_epochs):
        torch.manual_seed(seed * 10_000 + epoch)
        loss = train_epoch(model, optimizer, splits.train, config.train.batch_size, np.random.default_rng([seed, epoch]))
        auroc = mean_auroc(splits.valid.y, predict_proba(model, splits.valid.x))
        if stopper.step(epoch, auroc):
            best_state = copy.deepcopy(model.state_dict())
        done = stopper.should_stop or epoch == config.train.max_epochs - 1
        history.append({"epoch": epoch, "train_loss": loss, "valid_auroc": auroc, "best_valid_auroc": stopper.best_score})
        # Every epoch so far goes with each report: Tune can drop the result reported just before a
        # failure, and the tracking callback then logs that epoch with the next one.
        metrics: dict[str, Any] = {**history[-1], "done": done, "history": list(history)}
        with tempfile.TemporaryDirectory() as directory:
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "best_model": best_state,
                    "stopper": {"best_score": stopper.best_score, "best_epoch": stopper.best_epoch, "epochs_without_improvement": stopper.epochs_without_improvement},
                    "epoch": epoch,
                    "history": history,
                },
                Path(directory) / TRIAL_STATE,
            )
            if done:
                best = ChildNet(space, model.arch, config.train.width)
                best.load_state_dict(best_state)
                metrics.update(final_metrics(best, splits, stopper, epoch + 1, time.perf_counter() - started))
                save_child(best, Path(directory) / BEST_MODEL, {"label_names": splits.train.label_names, **trial})
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        if done:
            return


def final_metrics(model: ChildNet, splits: Splits, stopper: EarlyStopping, epochs: int, seconds: float) -> dict[str, Any]:
    test = evaluate(model, splits.test)
    scalars = {f"test_{key}": value for key, value in test.items() if isinstance(value, (int, float))}
    return {
        **scalars,
        "test_per_label_auroc": test["per_label_auroc"],
        "test_per_label_aupr": test["per_label_aupr"],
        "num_params": model.num_params(),
        "epochs": epochs,
        "best_epoch": stopper.best_epoch,
        "train_seconds": seconds,
    }


class MlflowTrialCallback(tune.Callback):
    """Logs every trial as a nested MLflow run of the retrain parent run, from the driver.

    Trial runs are found again by their ``trial_id`` tag after a resume, so each trial has
    exactly one run.
    """

    def __init__(self, out_dir: str, experiment: str, parent_run_id: str):
        self.out_dir = out_dir
        self.experiment = experiment
        self.parent_run_id = parent_run_id
        self._runs: dict[str, RunTracker] = {}
        self._last_logged_epoch: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks with the experiment state; MLflow clients are rebuilt on restore."""
        return {**self.__dict__, "_runs": {}, "_last_logged_epoch": {}}

    def _run_for(self, trial: Any) -> RunTracker:
        if trial.trial_id not in self._runs:
            info = trial.config["trial"]
            parent = RunTracker.attach(self.out_dir, self.parent_run_id)
            self._runs[trial.trial_id] = parent.find_child("trial_id", trial.trial_id) or RunTracker.start(
                self.out_dir,
                self.experiment,
                f"{info['role']}-{trial.trial_id}",
                tags={"role": info["role"], "arch": info["arch"], "replicate": str(info["replicate"]), "trial_id": trial.trial_id},
                parent=parent,
            )
        return self._runs[trial.trial_id]

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        run = self._run_for(trial)
        if trial.trial_id not in self._last_logged_epoch:
            self._last_logged_epoch[trial.trial_id] = max(run.metric_steps("valid_auroc"), default=-1)
        for entry in result.get("history", [result]):  # every epoch so far, see train_trial
            epoch = int(entry["epoch"])
            if epoch <= self._last_logged_epoch[trial.trial_id]:
                continue  # logged already (also after a restore from an older checkpoint: deterministic)
            self._last_logged_epoch[trial.trial_id] = epoch
            run.log_metrics({key: entry[key] for key in ("train_loss", "valid_auroc", "best_valid_auroc")}, step=epoch)
        if result.get("done"):
            final = {key: value for key, value in result.items() if key.startswith("test_") and isinstance(value, (int, float))}
            run.log_metrics({**final, "num_params": result["num_params"], "epochs": result["epochs"]})

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        finished = sum(t.status == "TERMINATED" or t is trial for t in trials)
        result = trial.last_result or {}
        logger.info(
            "trial %d/%d done: %s replicate %s, test AUROC %.4f after %s epochs",
            finished, len(trials), trial.config["trial"]["role"], trial.config["trial"]["replicate"],
            result.get("test_auroc", float("nan")), result.get("epochs", "?"),
        )
        run = self._run_for(trial)
        if trial.checkpoint is not None:
            run.log_artifact(Path(trial.checkpoint.path) / BEST_MODEL, "model")
        run.finish()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._run_for(trial).finish("FAILED")


def results_table(result_grid: tune.ResultGrid) -> pd.DataFrame:
    """One row per trial: role, arch, replicate, parameters, test metrics (mean and per label), epochs, time."""
    rows = []
    for result in result_grid:
        if result.error is not None or not result.metrics.get("done"):
            continue
        metrics = result.metrics
        row = {**{k: result.config["trial"][k] for k in ("role", "arch", "replicate")}, "num_params": metrics["num_params"]}
        row.update({key: value for key, value in metrics.items() if key.startswith("test_") and isinstance(value, (int, float))})
        row.update({f"auroc.{label}": value for label, value in metrics["test_per_label_auroc"].items()})
        row.update({f"aupr.{label}": value for label, value in metrics["test_per_label_aupr"].items()})
        row.update({"epochs": metrics["epochs"], "best_epoch": metrics["best_epoch"], "wall_seconds": metrics["train_seconds"]})
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["role", "arch", "replicate"], ascending=[False, True, True]).reset_index(drop=True)


def run_retrain(
    config: ExperimentConfig,
    search_dir: str | Path,
    out_dir: str | Path,
    resume: bool = False,
    archs: list[tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """Run (or resume) the retraining grid into ``out_dir``; returns and writes ``results.parquet``.

    The grid is the search's choice plus sampled architectures, or the given ``(role, arch)``
    pairs (e.g. the choices of several searches; then ``search_dir`` only names the work in messages).
    Ray must already be initialised.
    """
    search_dir, out_dir = Path(search_dir).resolve(), Path(out_dir).resolve()
    tune_dir = out_dir / "tune"
    if resume and not tune.Tuner.can_restore(str(tune_dir / TUNE_NAME)):
        raise AmberInputError("no retraining grid to resume; run without --resume", tune_dir)
    if not resume and (tune_dir / TUNE_NAME).exists():
        raise AmberInputError("a retraining grid already ran here; pass --resume or choose another --out", out_dir)
    splits = load_splits(config.data, config.seed)
    space = ModelSpace.from_config(config.space, splits.train.length, splits.train.num_labels)
    grid = replicate_grid(config, archs) if archs is not None else build_grid(config, search_dir, space)
    gpus = resolve_gpus(config.retrain.gpus_per_trial, "retrain.gpus_per_trial")
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, splits=splits, space=space, config=config),
        {"cpu": config.retrain.cpus_per_trial, "gpu": gpus},
    )
    parent = parent_run(out_dir, config, resume)
    callback = MlflowTrialCallback(str(out_dir), config.name, parent.run_id)
    if resume:
        tuner = tune.Tuner.restore(str(tune_dir / TUNE_NAME), trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(grid)},
            run_config=tune.RunConfig(
                name=TUNE_NAME,
                storage_path=str(tune_dir),
                failure_config=tune.FailureConfig(max_failures=config.retrain.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                callbacks=[callback],
                verbose=0,
            ),
        )
    result_grid = tuner.fit()
    errors = [result for result in result_grid if result.error is not None]
    table = results_table(result_grid)
    atomic_write_table(table, out_dir / "results.parquet")
    parent.log_artifact(out_dir / "results.parquet")
    if errors:
        parent.finish("FAILED")
        raise RuntimeError(
            f"{len(errors)} retraining trial(s) failed; resume with: amber-ray retrain CONFIG --search {search_dir} --out {out_dir} --resume"
        )
    parent.finish()
    return table


def parent_run(out_dir: Path, config: ExperimentConfig, resume: bool) -> RunTracker:
    """The retrain command's MLflow run; its id is kept in ``out_dir`` so a resume reopens it."""
    id_file = out_dir / "mlflow_run_id"
    if resume and id_file.is_file():
        return RunTracker.start(out_dir, config.name, "retrain", run_id=id_file.read_text().strip())
    parent = RunTracker.start(out_dir, config.name, "retrain", {"command": "retrain"})
    parent.log_params(config_as_flat_dict(config))
    out_dir.mkdir(parents=True, exist_ok=True)
    id_file.write_text(parent.run_id)
    return parent
