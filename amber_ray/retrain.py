"""Retraining with Ray Tune: the searched architecture(s) vs uniformly sampled ones, with replicates.

Each trial trains one (architecture, replicate seed) from scratch with early stopping on
validation AUROC, reports every epoch with a checkpoint, and evaluates its best weights on the
test set. An interrupted grid resumes through ``Tuner.restore``: finished trials are kept,
unfinished ones continue from their last checkpoint. MLflow logging happens in the driver
(one writer for the store), one nested run per trial tagged ``role``, ``arch``, ``replicate``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, Self

import numpy as np
import pandas as pd
import torch
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from amber_ray import outputs, storage
from amber_ray.atomic import atomic_write_json, atomic_write_table
from amber_ray.checkpoint import CONFIG_KEY, has_checkpoint, load_checkpoint
from amber_ray.child import ChildNet, save_child
from amber_ray.cluster import require, require_storage
from amber_ray.compare import RANDOM_SEARCH_ROLE
from amber_ray.config import (
    RETRAIN_IGNORES,
    RETRAIN_RESUME_SAFE_KEYS,
    SEARCH_IGNORES,
    ExperimentConfig,
    check_resume,
    config_as_flat_dict,
    resume_conflicts,
)
from amber_ray.data import Splits, load_splits
from amber_ray.device import worker_device
from amber_ray.errors import AmberInputError
from amber_ray.final_model import TrialOutcome, register_final_model, write_final_model
from amber_ray.space import Architecture, ModelSpace
from amber_ray.tracking import RunTracker, read_run_id, write_run_id
from amber_ray.training import (
    EarlyStopping,
    FitState,
    evaluate,
    fit,
    initial_model,
    positive_weights,
    replicate_seed,
    training_source,
)

logger = logging.getLogger(__name__)


def build_grid(
    config: ExperimentConfig, search_dir: Path, space: ModelSpace, random_search_dir: Path | None = None
) -> list[dict[str, Any]]:
    """Searched architecture(s) from ``final_architectures.json``, random search's choice (when ``random_search_dir``
    holds one, role ``random_search``) and sampled ones, each with replicates."""
    searched = searched_architectures(
        search_dir / outputs.FINAL_ARCHITECTURES, space, config.retrain.include_greedy, config.retrain.include_front
    )
    archs = [("searched", arch) for arch in searched]
    if random_search_dir is not None:
        archs.append(
            (RANDOM_SEARCH_ROLE, searched_architectures(random_search_dir / outputs.FINAL_ARCHITECTURES, space, False)[0])
        )
    archs += [("sampled", arch) for arch in sampled_architectures(config, space)]
    return replicate_grid(config, archs)


def sampled_architectures(config: ExperimentConfig, space: ModelSpace) -> list[str]:
    """``retrain.sampled`` uniformly sampled architectures (skips with ``retrain.skip_probability``), seeded by ``seed``."""
    rng = np.random.default_rng([config.seed, 2021])
    return [space.sample(rng, config.retrain.skip_probability).to_text() for _ in range(config.retrain.sampled)]


def replicate_grid(config: ExperimentConfig, archs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """One trial per ``(role, arch)`` and replicate seed."""
    return [
        {"role": role, "arch": arch, "replicate": replicate, "seed": replicate_seed(config.seed, replicate)}
        for role, arch in archs
        for replicate in range(config.retrain.replicates)
    ]


def searched_architectures(path: Path, space: ModelSpace, include_greedy: bool, include_front: bool = False) -> list[str]:
    """The best (and greedy, and the reward-vs-size Pareto front's) architectures of a search, checked against ``space``.

    The file may have been edited by hand, and its strings name trial directories and MLflow tags.
    """
    if not path.is_file():
        raise AmberInputError("no final_architectures.json; run `amber-ray search` first", path)
    try:
        final = json.loads(path.read_text())
        searched = [final["best"]["arch"]]
        if include_greedy and "greedy" in final and final["greedy"]["arch"] not in searched:  # a random search has none
            searched.append(final["greedy"]["arch"])
        if include_front:
            if "pareto_front" not in final:
                raise AmberInputError("has no pareto_front (a search from before the front was written)", path)
            searched += [entry["arch"] for entry in final["pareto_front"] if entry["arch"] not in searched]
    except (ValueError, KeyError, TypeError) as error:
        raise AmberInputError(f"not the final_architectures.json of a search ({type(error).__name__}: {error})", path) from None
    for arch in searched:
        try:
            space.validate(Architecture.from_text(str(arch)))
        except AmberInputError as error:
            raise AmberInputError(f"architecture {str(arch)[:80]!r}: {error.problem}", path, error.record) from None
    return searched


def train_trial(trial_config: dict[str, Any], splits: Splits, space: ModelSpace, config: ExperimentConfig) -> None:
    """The Tune trainable: :func:`amber_ray.training.fit` of one (architecture, replicate), one report per epoch.

    Each report carries a checkpoint of the fit (resumed from ``tune.get_checkpoint()`` after a
    failure) and every epoch so far; the last one also the test metrics and the best model. The
    trial trains on the GPU Tune gave it (``retrain.gpus_per_trial`` > 0 and ``train.device``), else the CPU.
    """
    trial = trial_config["trial"]
    torch.set_num_threads(max(1, int(config.retrain.cpus_per_trial)))
    device = worker_device(config.train.device, config.retrain.gpus_per_trial)
    model = initial_model(space, Architecture.from_text(trial["arch"]), config.train.width, trial["seed"])
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:  # written on any node: a GPU's tensors load on the CPU first
            resume = torch.load(Path(directory) / outputs.TRIAL_STATE, map_location="cpu", weights_only=True)
    started = time.perf_counter()

    def report(state: FitState) -> None:
        # Every epoch so far goes with each report: Tune can drop the result reported just before a
        # failure, and the tracking callback then logs that epoch with the next one.
        metrics: dict[str, Any] = {**state.record, "done": state.done, "history": list(state.history)}
        with tempfile.TemporaryDirectory() as directory:
            torch.save(state.state_dict(), Path(directory) / outputs.TRIAL_STATE)
            if state.done:
                best = ChildNet(space, model.arch, config.train.width).to(device)
                best.load_state_dict(state.best_model)
                metrics.update(final_metrics(best, splits, state.stopper, state.epoch + 1, time.perf_counter() - started))
                save_child(best, Path(directory) / outputs.BEST_MODEL, {"label_names": splits.train.label_names, **trial})
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    train = training_source(config, splits.train)
    pos_weight = positive_weights(config.train.pos_weight, splits.train)
    fit(model, train, splits.valid, config.train, trial["seed"], report, resume, device, pos_weight)


def final_metrics(model: ChildNet, splits: Splits, stopper: EarlyStopping, epochs: int, seconds: float) -> dict[str, Any]:
    test = evaluate(model, splits.test)
    # Labels without both classes in the test set are counted, not compared: they are no test metric.
    scalars = {f"test_{key}": value for key, value in test.items() if isinstance(value, (int, float)) and key != "labels_skipped"}
    return {
        **scalars,
        "test_per_label_auroc": test["per_label_auroc"],
        "test_per_label_aupr": test["per_label_aupr"],
        "num_params": model.num_params(),
        "epochs": epochs,
        "best_epoch": stopper.best_epoch,
        "train_seconds": seconds,
    }


def trials_done(trials: list, completing: Any) -> int:
    """Trials finished, counting ``completing`` (Tune calls ``on_trial_complete`` before marking it)."""
    return sum(t.status == "TERMINATED" or t is completing for t in trials)


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

    def parent_id(self) -> str:
        """The retraining's run as kept in its directory (a restored grid's callback holds the id it was built
        with, and a resume against a store that lost that run continues in a new one), else as given."""
        id_file = Path(self.out_dir) / outputs.RUN_ID
        return id_file.read_text().strip() if id_file.is_file() else self.parent_run_id

    def _run_for(self, trial: Any) -> RunTracker:
        if trial.trial_id not in self._runs:
            info = trial.config["trial"]
            parent = RunTracker.attach(self.out_dir, self.parent_id())
            self._runs[trial.trial_id] = parent.find_child("trial_id", trial.trial_id) or RunTracker.start(
                self.out_dir,
                self.experiment,
                f"{info['role']}-{trial.trial_id}",
                tags={
                    "role": info["role"],
                    "arch": info["arch"],
                    "replicate": str(info["replicate"]),
                    "trial_id": trial.trial_id,
                },
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
        if result.get("done") and not run.metric_steps("epochs"):  # a trial restored after its last report reports it again
            final = {key: value for key, value in result.items() if key.startswith("test_") and isinstance(value, (int, float))}
            run.log_metrics({**final, "num_params": result["num_params"], "epochs": result["epochs"]})

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        finished = trials_done(trials, trial)
        result = trial.last_result or {}
        logger.debug(
            "trial %d/%d done: %s replicate %s, test AUROC %.4f after %s epochs",
            finished,
            len(trials),
            trial.config["trial"]["role"],
            trial.config["trial"]["replicate"],
            result.get("test_auroc", float("nan")),
            result.get("epochs", "?"),
        )
        run = self._run_for(trial)
        if trial.checkpoint is not None:
            with trial.checkpoint.as_directory() as directory:  # a local copy when the trials' storage is remote
                run.log_artifact(Path(directory) / outputs.BEST_MODEL, "model")
        run.finish()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._run_for(trial).finish("FAILED")


class TrialProgress(tune.Callback):
    """Calls ``on_trial(done, total, best_test_auroc)`` as trials finish (the CLI's progress bar).

    Tune pickles its callbacks with the experiment state; the hook is a live object of this
    process, so it is left out (a restored grid reports no progress through it).
    """

    def __init__(self, on_trial: Callable[[int, int, float], None] | None):
        self.on_trial = on_trial
        self.best = float("nan")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "on_trial": None}

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        auroc = (trial.last_result or {}).get("test_auroc", float("nan"))
        self.best = auroc if np.isnan(self.best) else max(self.best, auroc)
        if self.on_trial:
            self.on_trial(trials_done(trials, trial), len(trials), self.best)


def grid_results(result_grid: tune.ResultGrid) -> pd.DataFrame:
    """One row per finished trial (:func:`amber_ray.outputs.trial_row`).

    Columns: role, arch, replicate, parameters, test metrics, epochs, time.
    """
    return outputs.results_table(
        outputs.trial_row(result.config["trial"], result.metrics)
        for result in result_grid
        if result.error is None and result.metrics.get("done")
    )


def quiet_tune() -> None:
    """Silence Tune's notices that are no warning for this grid (a user's own setting wins).

    Every trial checkpoints every epoch (so an interrupted grid resumes) and keeps two, which
    makes Tune snapshot its state often and warn that this "may become a bottleneck"; its
    TensorBoard logger warns about our list-valued results (MLflow holds every metric; the report
    reads Tune's ``result.json``).
    """
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # the JSON and CSV loggers are passed explicitly
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # its configuration box and paths print even at verbose=0


def searched_outcomes(result_grid: tune.ResultGrid, fetch_dir: Path) -> list[TrialOutcome]:
    """Every finished searched trial with its best model file, its last checkpoint copied into
    ``fetch_dir`` (the trials' storage may be remote, e.g. S3)."""
    outcomes = []
    for number, result in enumerate(result_grid):
        finished = result.error is None and result.metrics.get("done") and result.checkpoint is not None
        if finished and result.config["trial"]["role"] == "searched":
            local = Path(result.checkpoint.to_directory(str(fetch_dir / str(number))))
            outcomes.append(TrialOutcome(result.config["trial"], result.metrics, local / outputs.BEST_MODEL))
    return outcomes


def run_retrain(
    config: ExperimentConfig,
    search_dir: str | Path,
    out_dir: str | Path,
    resume: bool = False,
    archs: list[tuple[str, str]] | None = None,
    on_trial: Callable[[int, int, float], None] | None = None,
    force: bool = False,
    random_search_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Run (or resume) the retraining grid into ``out_dir``; returns and writes ``results.parquet``.

    When every trial succeeded, the searched architecture's best replicate (by validation AUROC)
    becomes ``out_dir/final/`` and is registered in the Model Registry (:mod:`amber_ray.final_model`).

    The grid is the search's choice plus sampled architectures, or the given ``(role, arch)``
    pairs (e.g. the choices of several searches; then ``search_dir`` only names the work in messages).
    ``random_search_dir`` (a random search of the same config) adds its choice to the grid.
    ``on_trial`` sees each finished trial (:class:`TrialProgress`). Ray must already be initialised.
    A search made with other data or space settings is refused (:func:`search_config_conflicts`) unless
    ``force``; then the differences are a tag of the MLflow run.
    """
    search_dir, out_dir = Path(search_dir).resolve(), Path(out_dir).resolve()
    tune_dir = storage.location(config.storage, out_dir, outputs.TUNE_DIR)
    grid_path = grid_location(config, out_dir)
    if resume and not tune.Tuner.can_restore(grid_path):
        raise AmberInputError("no retraining grid to resume; run without --resume", tune_dir)
    if not resume and storage.exists(grid_path):
        raise AmberInputError(f"a retraining grid already ran here ({grid_path}); pass --resume or choose another --out", out_dir)
    if resume:
        storage.fetch_missing(config.storage, out_dir, outputs.RETRAIN_STATE)  # a replaced head: from storage
        check_grid_state(grid_path)
        check_retrain_resume(out_dir, config)
    random_search_dir = Path(random_search_dir).resolve() if random_search_dir is not None else None
    if archs is None:
        for directory in filter(None, (search_dir, random_search_dir)):
            storage.fetch_missing(config.storage, directory, (outputs.FINAL_ARCHITECTURES,))
    conflicts = search_config_conflicts(config, search_dir) if archs is None else []
    if conflicts and not force:
        raise AmberInputError(
            f"the search ran with another config ({'; '.join(conflicts)}), so its architecture and the sampled ones "
            "would not be compared on equal terms; pass --force to retrain anyway",
            outputs.search_checkpoint(search_dir),
        )
    splits = load_splits(config.data, config.seed, stream_train=True)  # an HDF5 training set goes to trials as a file handle
    space = ModelSpace.from_config(config.space, splits.train.length, splits.train.num_labels)
    grid = replicate_grid(config, archs) if archs is not None else build_grid(config, search_dir, space, random_search_dir)
    require(
        {
            "CPU": ("retrain.cpus_per_trial", config.retrain.cpus_per_trial),
            "GPU": ("retrain.gpus_per_trial", config.retrain.gpus_per_trial),
        }
    )
    require_storage(config.storage)
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, splits=splits, space=space, config=config),
        {"cpu": config.retrain.cpus_per_trial, "gpu": config.retrain.gpus_per_trial},
    )
    quiet_tune()
    with parent_run(out_dir, config, resume) as parent:
        if conflicts:
            logger.warning("retraining with a config that differs from the search's: %s", "; ".join(conflicts))
            parent.set_tags({SEARCH_CONFIG_TAG: "; ".join(conflicts)})
        try:
            callback = MlflowTrialCallback(str(out_dir), config.name, parent.run_id)
            if resume:
                tuner = tune.Tuner.restore(grid_path, trainable, resume_errored=True)
            else:
                tuner = tune.Tuner(
                    trainable,
                    param_space={"trial": tune.grid_search(grid)},
                    run_config=tune.RunConfig(
                        name=outputs.TUNE_NAME,
                        storage_path=tune_dir,  # shared by every node: trials checkpoint from where they run
                        failure_config=tune.FailureConfig(max_failures=config.retrain.max_failures),
                        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                        callbacks=[callback, TrialProgress(on_trial), JsonLoggerCallback(), CSVLoggerCallback()],
                        verbose=0,
                    ),
                )
            with GridStop() as stop:
                result_grid = tuner.fit()
            errors = [result for result in result_grid if result.error is not None]
            if errors:
                raise RuntimeError(f"{len(errors)} retraining trial(s) failed")
            if stop.received or any(not result.metrics.get("done") for result in result_grid):
                # Tune stopped the grid on a signal and saved it: the trials left continue on --resume. A signal
                # that came as the last trial ended still stops the command: it never exits 0 after one.
                stop.interrupt()
        except BaseException:
            logger.error(
                "retraining stopped; resume with: amber-ray retrain CONFIG --search %s --out %s --resume", search_dir, out_dir
            )
            raise
        table = grid_results(result_grid)
        atomic_write_table(table, out_dir / outputs.RESULTS)
        parent.log_artifact(out_dir / outputs.RESULTS)
        if any(result.config["trial"]["role"] == "searched" for result in result_grid):
            with tempfile.TemporaryDirectory() as fetched:
                final = write_final_model(searched_outcomes(result_grid, Path(fetched)), config, out_dir)
            register_final_model(parent, final, config.registered_model_name)
        storage.mirror(config.storage, out_dir, outputs.RETRAIN_OUTPUTS)
    return table


class GridStop:
    """Ctrl-C and SIGTERM during ``tuner.fit`` stop the grid the way Tune stops on Ctrl-C: its trials
    stop, its state is saved and ``fit`` returns the unfinished grid; :meth:`interrupt` then raises
    the interruption as the caller's handler of that signal would (the CLI's exits 130 or 143).

    Tune replaces the SIGINT handler while its loop runs (and leaves its own in place afterwards);
    SIGTERM is passed to it, and the caller's handlers come back when the block ends. A second
    signal, or one before Tune's loop starts, raises ``KeyboardInterrupt`` at once.
    """

    WATCHED = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)  # Tune also takes SIGUSR1 as a stop

    def __init__(self) -> None:
        self.received: list[int] = []
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():  # only there can Python handle signals
            self.previous = {signum: signal.getsignal(signum) for signum in self.WATCHED}
            signal.signal(signal.SIGINT, self.on_signal)
            signal.signal(signal.SIGTERM, self.on_signal)
        return self

    def __exit__(self, *exception: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def on_signal(self, signum: int, frame: Any) -> None:
        self.received.append(signum)
        tune_handler = signal.getsignal(signal.SIGINT)
        if not callable(tune_handler) or tune_handler == self.on_signal:
            raise KeyboardInterrupt
        tune_handler(signal.SIGINT, frame)  # Tune's: ends its loop after this step, then saves the grid

    def interrupt(self) -> NoReturn:
        """Raise the interruption of the signal received (SIGINT when Tune's own handler took it)."""
        signum = self.received[-1] if self.received else signal.SIGINT
        handler = self.previous.get(signum)
        if callable(handler):
            handler(signum, None)
        raise KeyboardInterrupt


SEARCH_CONFIG_TAG = "search_config_differs"  # the data and space keys a forced retraining changed from its search's


def search_config_conflicts(config: ExperimentConfig, search_dir: Path) -> list[str]:
    """The data and space keys (``key old -> new``) in which ``config`` differs from the config the search in
    ``search_dir`` ran with, as ``search --resume`` names them; none when its checkpoint does not record a config."""
    path = outputs.search_checkpoint(search_dir)
    if not has_checkpoint(path):
        return []
    stored = load_checkpoint(path).get(CONFIG_KEY)
    if stored is None:
        logger.warning("the search's checkpoint %s does not record its config: the retraining's is not checked", path)
        return []
    return [
        conflict
        for conflict in resume_conflicts(stored, config, frozenset(), SEARCH_IGNORES)
        if conflict.startswith(("data.", "space."))
    ]


def grid_location(config: ExperimentConfig, out_dir: Path) -> str:
    """Ray Tune's experiment directory of the retraining grid of ``out_dir``: under it, or under ``storage``."""
    return storage.location(config.storage, out_dir, outputs.TUNE_DIR, outputs.TUNE_NAME)


def check_grid_state(grid_path: str) -> None:
    """Refuse to resume a grid whose newest saved state is cut off.

    Tune copies its experiment state into the grid's storage without a rename, so a driver killed
    during that copy leaves an empty or partial file, from which ``Tuner.restore`` would start trials
    without their configuration.
    """
    state = storage.newest(grid_path, "experiment_state-")
    if state is None:
        return
    try:
        json.loads(storage.read_bytes(state))
    except ValueError:
        raise AmberInputError(
            "the retraining grid's saved state is incomplete (the run was stopped while writing it), so it cannot be "
            "resumed; retrain into a new --out",
            state,
        ) from None


def has_retrain_grid(config: ExperimentConfig, out_dir: Path) -> bool:
    return storage.exists(grid_location(config, out_dir))


def check_retrain_resume(out_dir: Path, config: ExperimentConfig) -> None:
    """Refuse to resume a grid with a config that changes what its trials train (grids written
    before the config was kept resume unchecked)."""
    stored = out_dir / outputs.RETRAIN_CONFIG
    if stored.is_file():
        check_resume(json.loads(stored.read_text()), config, RETRAIN_RESUME_SAFE_KEYS, RETRAIN_IGNORES, stored)


def parent_run(out_dir: Path, config: ExperimentConfig, resume: bool) -> RunTracker:
    """The retrain command's MLflow run; its id is kept in ``out_dir`` so a resume reopens it.

    The config is kept there too, for :func:`check_retrain_resume`; both are mirrored to ``storage``.
    A resume whose run the store does not know continues in a new run (:class:`RunTracker`), kept instead.
    """
    kept = read_run_id(out_dir) if resume else None
    parent = RunTracker.start(
        out_dir, config.name, "retrain", {"command": "retrain"}, run_id=kept, artifacts=storage.artifacts(config.storage, out_dir)
    )
    if parent.run_id == kept:
        return parent
    parent.log_params(config_as_flat_dict(config))
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(config.model_dump(mode="json"), out_dir / outputs.RETRAIN_CONFIG)
    write_run_id(out_dir, parent.run_id)
    storage.mirror(config.storage, out_dir, outputs.RETRAIN_STATE)
    return parent
