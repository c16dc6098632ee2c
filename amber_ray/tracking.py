"""The one place that talks to MLflow.

Default store: ``sqlite:///<out>/mlflow.db`` with artifacts under ``<out>/mlartifacts``;
``MLFLOW_TRACKING_URI`` (e.g. an HTTP server shared by a cluster) overrides it. One experiment
per config name; one parent run per command; nested runs (retraining trials) carry the tags
``role``, ``arch`` and ``replicate`` so the UI can filter and compare them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import mlflow
import mlflow.artifacts
import mlflow.pyfunc
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient
from mlflow.types.schema import ColSpec, Schema
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from packaging.requirements import Requirement
from packaging.version import Version

from amber_ray.atomic import atomic_write_text
from amber_ray.errors import AmberInputError
from amber_ray.outputs import MLFLOW_STORE, MODEL, RUN_ID

logger = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 5000
BATCH_LIMIT = 900


def tracking_uri(out_dir: str | Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(out_dir).resolve()}/{MLFLOW_STORE}"


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store live beside it; a tracking server decides for itself."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return None


def _sqlite_file(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_abandoned_stores(store: Path) -> None:
    """Temporary stores of creations that an interrupt or a kill cut short (their process is gone)."""
    for leftover in store.parent.glob(f".{store.name}.*.tmp"):
        pid = leftover.name.split(".")[-3]
        if not pid.isdigit() or not _pid_alive(int(pid)):
            leftover.unlink(missing_ok=True)


def _create_store(store: Path, uri: str) -> None:
    """Create the SQLite store whole or not at all: migrated under a temporary name, then linked into place.

    MLflow builds a new store in many steps (tables, then migrations); an interrupt between them
    would leave a store that no later command can open. ``os.link`` refuses to replace a store
    that another process created meanwhile.
    """
    store.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_stores(store)
    tmp = store.with_name(f".{store.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        SqlAlchemyStore(f"sqlite:///{tmp}", artifact_root(uri)).engine.dispose()
        try:
            os.link(tmp, store)
        except FileExistsError:
            pass  # another command created it meanwhile: use theirs
        except OSError:  # a file system without hard links
            if not store.exists():
                os.replace(tmp, store)
    finally:
        tmp.unlink(missing_ok=True)


def _relocate_copied_store(store: Path, uri: str) -> None:
    """Point a store copied with its run directory (``cp -r``) at its own artifacts.

    The store records absolute artifact locations (``<run dir>/mlartifacts``); left alone, a
    resumed copy would write its artifacts into the original directory.
    """
    here = artifact_root(uri)
    marker = "/mlartifacts"
    with sqlite3.connect(store) as db:
        try:
            experiments = db.execute("SELECT experiment_id, artifact_location FROM experiments").fetchall()
        except sqlite3.DatabaseError:
            experiments = []  # not an MLflow store (yet): MLflow reports what is wrong with it
        for experiment_id, location in experiments:
            old = location[: location.find(marker) + len(marker)] if location and marker in location else None
            if old is None or old == here:
                continue
            logger.warning("the MLflow store %s was copied from %s: its artifact paths now point here", store, old)
            for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
                db.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                    f"WHERE experiment_id = ? AND substr({column}, 1, ?) = ?",
                    (here, len(old) + 1, experiment_id, len(old), old),
                )
    db.close()


def open_client(uri: str) -> MlflowClient:
    """A client of ``uri``; a SQLite store is created atomically if missing, and relocated if it was copied."""
    store = _sqlite_file(uri)
    if store is not None:
        if not store.exists():
            _create_store(store, uri)
        _relocate_copied_store(store, uri)
    return MlflowClient(tracking_uri=uri)


def use_store_in(directory: str | Path) -> None:
    """Make every later command of this process track into ``directory``/mlflow.db (one store per pipeline),
    unless ``MLFLOW_TRACKING_URI`` is already set."""
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(directory).resolve()}/{MLFLOW_STORE}")


def step_store_dirs(out_dir: str | Path) -> list[Path]:
    """The directories whose existing ``mlflow.db`` may hold a step's runs, in order: the step's own output
    directory, then the one above it (a pipeline's ``search/`` and ``retrain/`` share the pipeline's store)."""
    out_dir = Path(out_dir).resolve()
    return [directory for directory in (out_dir, out_dir.parent) if (directory / MLFLOW_STORE).is_file()]


def follow_pipeline_store(out_dir: str | Path) -> None:
    """Track a command resumed on its own in a pipeline's ``search/`` or ``retrain/`` into the pipeline's store
    above it, where its run is, instead of a new empty store beside it, where the run is not found.

    Nothing changes when ``MLFLOW_TRACKING_URI`` is set or ``out_dir`` has a store of its own.
    """
    stores = step_store_dirs(out_dir)
    if stores and stores[0] != Path(out_dir).resolve():
        use_store_in(stores[0])


def read_run_id(out_dir: str | Path) -> str | None:
    """The MLflow run id a command keeps in its output directory (``mlflow_run_id``), if any."""
    id_file = Path(out_dir) / RUN_ID
    if not id_file.is_file():
        return None
    return id_file.read_text().strip() or None


def write_run_id(out_dir: str | Path, run_id: str) -> None:
    """Keep ``run_id`` in ``out_dir`` for a resume (and compare, report) to reopen; written whole or not at all."""
    atomic_write_text(run_id, Path(out_dir) / RUN_ID)


def find_step_run(out_dir: str | Path, run_id: str | None = None) -> RunTracker | None:
    """The MLflow run of a step's output directory: ``run_id`` (default: the one kept there, see
    :func:`read_run_id`) in ``MLFLOW_TRACKING_URI`` or in the store beside or above it (:func:`step_store_dirs`)."""
    run_id = run_id or read_run_id(out_dir)
    return find_run(run_id, step_store_dirs(out_dir)) if run_id else None


# MLflow 3 shows an experiment without this tag as a GenAI one (traces, token usage).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# A saved view of the runs page (the UI's "shared view", read from an experiment tag): the
# retraining trials grouped by role (searched vs sampled, averaged), with their architecture,
# test AUROC/AUPR and size as columns, best first.
COMPARISON_VIEW_KEY = "amber-comparison"
COMPARISON_VIEW = {
    "searchFilter": "tags.role LIKE '%'",
    "orderByKey": "metrics.`test_auroc`",
    "orderByAsc": False,
    "selectedColumns": ["tags.`role`", "tags.`arch`", "metrics.`test_auroc`", "metrics.`test_aupr`", "metrics.`num_params`"],
    "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": "role"}]},
    "groupsExpanded": {},
}


def mark_for_model_training(client: MlflowClient, experiment_id: str) -> None:
    """Tag an experiment so the UI opens it as model training, with the comparison view saved in it."""
    for key, value in {**EXPERIMENT_KIND, f"mlflow.sharedViewState.{COMPARISON_VIEW_KEY}": json.dumps(COMPARISON_VIEW)}.items():
        client.set_experiment_tag(experiment_id, key, value)


def comparison_page(store: Path) -> str:
    """The UI's address (after host and port) of the comparison view of the store's latest experiment.

    Experiments written before the view existed are tagged here, so any run directory opens on it.
    """
    client = open_client(f"sqlite:///{store.resolve()}")
    experiments = [e for e in client.search_experiments(order_by=["last_update_time DESC"]) if e.name != "Default"]
    if not experiments:
        return "/"
    for experiment in experiments:
        mark_for_model_training(client, experiment.experiment_id)
    query = f"workflowType=machine_learning&viewStateShareKey={COMPARISON_VIEW_KEY}"
    return f"/#/experiments/{experiments[0].experiment_id}/runs?{query}"


class RunTracker:
    """A handle on one MLflow run (created, or reopened by id when a command resumes).

    As a context manager it ends the run with the block: FINISHED, KILLED when the block is
    interrupted (Ctrl-C, or SIGTERM turned into ``KeyboardInterrupt``), FAILED on any other exception.
    """

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None) -> None:
        if kind is None:
            self.finish()
        else:
            self.finish("KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED")

    @classmethod
    def start(
        cls,
        out_dir: str | Path,
        experiment: str,
        run_name: str,
        tags: Mapping[str, str] | None = None,
        run_id: str | None = None,
        parent: RunTracker | None = None,
        artifacts: str | None = None,
    ) -> RunTracker:
        """A new run (or ``run_id`` reopened); ``artifacts`` is the artifact location of an experiment it creates
        (shared storage on a cluster; default: beside a SQLite store, or the tracking server's choice)."""
        uri = tracking_uri(out_dir)
        client = open_client(uri)
        if run_id is not None:
            client.update_run(run_id, status="RUNNING")
            return cls(client, run_id)
        found = client.get_experiment_by_name(experiment)
        if found:
            experiment_id = found.experiment_id
        else:
            experiment_id = client.create_experiment(experiment, artifacts or artifact_root(uri))
            mark_for_model_training(client, experiment_id)
        all_tags = {MLFLOW_RUN_NAME: run_name, **(tags or {})}
        if parent is not None:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent.run_id
        run = client.create_run(experiment_id, tags=all_tags, run_name=run_name)
        return cls(client, run.info.run_id)

    @classmethod
    def attach(cls, out_dir: str | Path, run_id: str) -> RunTracker:
        """A handle on an existing run, leaving its status alone."""
        return cls(open_client(tracking_uri(out_dir)), run_id)

    def find_child(self, tag: str, value: str) -> RunTracker | None:
        """The nested run of this run whose ``tag`` equals ``value``, if one exists."""
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        runs = self.client.search_runs(
            [experiment_id], filter_string=f"tags.{MLFLOW_PARENT_RUN_ID} = '{self.run_id}' and tags.{tag} = '{value}'"
        )
        return RunTracker(self.client, runs[0].info.run_id) if runs else None

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [Param(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in params.items()]
        for start in range(0, len(items), BATCH_LIMIT):
            self.client.log_batch(self.run_id, params=items[start : start + BATCH_LIMIT])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        items = [
            Metric(key, float(value), int(pd.Timestamp.now().timestamp() * 1000), step or 0) for key, value in metrics.items()
        ]
        for start in range(0, len(items), BATCH_LIMIT):
            self.client.log_batch(self.run_id, metrics=items[start : start + BATCH_LIMIT])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(key, str(value)[:MAX_TAG_LENGTH]) for key, value in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_table(self, table: pd.DataFrame, artifact_file: str) -> None:
        """Log ``table`` as a parquet artifact named ``artifact_file`` (a path inside the run)."""
        artifact = Path(artifact_file)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / artifact.name
            table.to_parquet(local, index=False)
            self.client.log_artifact(self.run_id, str(local), str(artifact.parent) if artifact.parent != Path(".") else None)

    def list_artifacts(self, path: str | None = None) -> list[str]:
        return [info.path for info in self.client.list_artifacts(self.run_id, path)]

    def metric_steps(self, key: str) -> list[int]:
        return [metric.step for metric in self.client.get_metric_history(self.run_id, key)]

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)

    def details(self) -> dict[str, Any]:
        """Status, start and end time (ms since the epoch; end ``None`` while running) and params."""
        run = self.client.get_run(self.run_id)
        return {
            "status": run.info.status,
            "start_time": run.info.start_time,
            "end_time": run.info.end_time,
            "params": dict(run.data.params),
        }


def find_run(run_id: str, directories: Sequence[Path]) -> RunTracker | None:
    """The run ``run_id`` in ``MLFLOW_TRACKING_URI`` or in the ``mlflow.db`` of one of ``directories``.

    Only existing stores are opened (opening a SQLite URI would create an empty store).
    """
    uris = [os.environ["MLFLOW_TRACKING_URI"]] if os.environ.get("MLFLOW_TRACKING_URI") else []
    uris += [f"sqlite:///{Path(d).resolve()}/{MLFLOW_STORE}" for d in directories if (Path(d) / MLFLOW_STORE).is_file()]
    for uri in dict.fromkeys(uris):
        client = open_client(uri)
        try:
            client.get_run(run_id)
        except MlflowException:
            continue
        return RunTracker(client, run_id)
    return None


def serve_ui(store: Path, host: str = "127.0.0.1", port: int = 5000) -> subprocess.Popen:
    """Start ``mlflow ui`` for the SQLite ``store`` (artifacts are read from the paths it records).

    A port that is already taken is an input error (the server would fail after printing its address).
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            problem = f"cannot listen on {host}:{port} ({error.strerror or error}); choose another --port"
            raise AmberInputError(problem, "--port") from None
    _relocate_copied_store(store, f"sqlite:///{store.resolve()}")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{store.resolve()}"]
    command += ["--host", host, "--port", str(port), "--workers", "1"]
    return subprocess.Popen(command, env=env)


# --- commands that produce results ------------------------------------------------------------------
COMMAND_EXPERIMENT = "amber-ray"  # the experiment of commands that take a model, not a config (predict, variants, interpret)


def log_command_run(
    out_dir: str | Path,
    command: str,
    experiment: str = COMMAND_EXPERIMENT,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    artifacts: Sequence[str | Path] = (),
) -> str:
    """One finished MLflow run (tagged ``command``) for a command's results; returns its id.

    The store is :func:`tracking_uri` of ``out_dir``; metrics that are not finite numbers are left out.
    """
    with RunTracker.start(out_dir, experiment, command, {"command": command}) as run:
        run.log_params(params or {})
        finite = {
            key: float(value)
            for key, value in (metrics or {}).items()
            if isinstance(value, (int, float)) and math.isfinite(value)
        }
        run.log_metrics(finite)
        for path in artifacts:
            run.log_artifact(path)
    return run.run_id


# --- the final model: pyfunc flavour, Model Registry -------------------------------------------------
FINAL_MODEL_ARTIFACT = "final_model"


class SequenceModel(mlflow.pyfunc.PythonModel):
    """The pyfunc face of a final model: sequences or one-hot arrays in, one probability column per label out.

    Takes a list of strings, a Series, a DataFrame with a ``sequence`` column, or a one-hot array
    ``(N, 4, L)``; sequences must have the model's input length and only A, C, G, T, N.
    """

    # No type-hint schema: the model takes sequences or one-hot arrays, and a hint would refuse one of them.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        from amber_ray.predict import load_model

        self.model, self.labels = load_model(context.artifacts["model"], "auto")

    def predict(self, context, model_input, params=None):
        from amber_ray.inference import as_model_input, probabilities

        x = as_model_input(model_input, self.model.space.input_length)
        return pd.DataFrame(probabilities(self.model, x), columns=self.labels)


@contextmanager
def _quiet_model_artifacts() -> Iterator[None]:
    """No download progress bar, and no notes on pickling or example validation, while a model is saved or fetched."""
    saved_level = logging.getLogger("mlflow").level
    saved_bar = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        logging.getLogger("mlflow").setLevel(saved_level)
        if saved_bar is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = saved_bar


def declared_dependencies() -> list[str]:
    """amber_ray's dependencies as declared: from ``pyproject.toml`` in a source tree (a clone, or an editable
    install whose metadata may predate an edit), else from the installed package's metadata."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.is_file():
        return tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return metadata.requires("amber_ray") or []


def model_requirements() -> list[str]:
    """The logged model's pip requirements: amber_ray's own dependencies (its package travels with the
    model as code), each pinned to the version installed here, as MLflow pins what it infers. A local
    version label (``2.13.0+cpu``) is dropped: no package index serves it, and ``==2.13.0`` matches it."""
    pinned = []
    for requirement in map(Requirement, declared_dependencies()):
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # an optional extra (export, dev)
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        pinned.append(f"{requirement.name}{extras}=={Version(metadata.version(requirement.name)).public}")
    return pinned


def log_final_model(
    run: RunTracker, model_file: Path, labels: Sequence[str], input_length: int, name: str, tags: Mapping[str, Any]
) -> str:
    """Log ``model_file`` as a pyfunc model (artifact ``final_model``) of ``run`` and register it as ``name``,
    its new version tagged with ``tags``; returns the version.

    The signature names the outputs (a probability column per label) and leaves the inputs open, since
    the model takes sequences or one-hot arrays; the input example is two sequences. The amber_ray package
    is saved with it (``code/``) and its requirements pinned, so it loads where amber_ray is not installed.
    The model is saved and registered through ``run``'s client, not MLflow's fluent API, whose store is
    process-global state.
    """
    signature = ModelSignature(inputs=None, outputs=Schema([ColSpec("float", label) for label in labels]))
    example = [("ACGT" * input_length)[:input_length], ("TTGCA" * input_length)[:input_length]]
    with tempfile.TemporaryDirectory() as tmp, _quiet_model_artifacts():
        local = Path(tmp) / FINAL_MODEL_ARTIFACT
        mlflow.pyfunc.save_model(
            local,
            python_model=SequenceModel(),
            artifacts={"model": str(model_file)},
            signature=signature,
            input_example=example,
            pip_requirements=model_requirements(),
            code_paths=[str(Path(__file__).parent)],
        )
        run.client.log_artifacts(run.run_id, str(local), FINAL_MODEL_ARTIFACT)
    source = f"{run.client.get_run(run.run_id).info.artifact_uri}/{FINAL_MODEL_ARTIFACT}"
    try:
        run.client.get_registered_model(name)
    except MlflowException:
        run.client.create_registered_model(name)
    version = run.client.create_model_version(
        name, source, run_id=run.run_id, tags={key: str(value)[:MAX_TAG_LENGTH] for key, value in tags.items()}
    )
    return str(version.version)


def download_registered_model(uri: str, directory: Path) -> Path:
    """The ``model.pt`` of a registered final model ``models:/NAME/VERSION`` (from ``MLFLOW_TRACKING_URI``'s
    store), downloaded into ``directory``."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        raise AmberInputError(
            "set MLFLOW_TRACKING_URI to the store holding the Model Registry (e.g. sqlite:///RUN/mlflow.db)", uri
        )
    try:
        with _quiet_model_artifacts():  # a bar per file of the model's code, on every predict
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(directory))
    except MlflowException as error:
        raise AmberInputError(f"no such registered model ({str(error).splitlines()[0]})", uri) from None
    found = sorted(Path(local).rglob(MODEL))
    if not found:
        raise AmberInputError("the registered model holds no model.pt (not an amber_ray final model)", uri)
    return found[0]
