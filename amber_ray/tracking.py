"""The one place that talks to MLflow.

Default store: ``sqlite:///<out>/mlflow.db`` with artifacts under ``<out>/mlartifacts``;
``MLFLOW_TRACKING_URI`` overrides it. On a cluster it is a tracking server that outlives the head:
``mlflow server --backend-store-uri postgresql+psycopg2://... --artifacts-destination s3://...``
(the ``cloud`` extra installs the PostgreSQL driver), reached from every node. One experiment
per config name; one parent run per command; nested runs (retraining trials) carry the tags
``role``, ``arch`` and ``replicate`` so the UI can filter and compare them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import sqlite3
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from sqlalchemy.exc import SQLAlchemyError

from amber_ray.atomic import atomic_write_text
from amber_ray.errors import AmberInputError, first_line
from amber_ray.outputs import MLFLOW_STORE, RUN_ID

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
        _relocate_model_versions(db, here, marker)
    db.close()


def _relocate_model_versions(db: sqlite3.Connection, here: str | None, marker: str) -> None:
    """Point the registered model versions of a copied store at the copy's artifacts (their source and storage
    location record the original run directory), so ``models:/NAME/VERSION`` loads the copy's files."""
    try:
        versions = db.execute("SELECT name, version, source, storage_location FROM model_versions").fetchall()
    except sqlite3.DatabaseError:
        return  # no Model Registry tables (yet)
    for name, version, *locations in versions:
        moved = [
            here + location[location.find(marker) + len(marker) :]
            if here and location and marker in location and not location.startswith(here + "/")
            else location
            for location in locations
        ]
        if moved != locations:
            db.execute(
                "UPDATE model_versions SET source = ?, storage_location = ? WHERE name = ? AND version = ?",
                (*moved, name, version),
            )


def check_store(uri: str) -> None:
    """Fail with one line naming the store when ``uri``'s SQLite store exists but MLflow cannot use it: not a
    database, or of a schema this MLflow cannot open. A store that is not there yet passes (a run creates it);
    nothing is created here. Commands call it before any work, so a damaged store never costs a run."""
    store = _sqlite_file(uri)
    if store is None or not store.exists():
        return
    try:
        SqlAlchemyStore(uri, artifact_root(uri)).engine.dispose()
    except (SQLAlchemyError, MlflowException) as error:
        raise AmberInputError(
            f"not an MLflow store this MLflow can use ({first_line(error) or type(error).__name__})", store
        ) from None


def open_client(uri: str) -> MlflowClient:
    """A client of ``uri``; a SQLite store is created atomically if missing, and relocated if it was copied."""
    store = _sqlite_file(uri)
    if store is not None:
        if not store.exists():
            _create_store(store, uri)
        _relocate_copied_store(store, uri)
    return MlflowClient(tracking_uri=uri)


def open_existing_client(uri: str, source: str | Path) -> MlflowClient:
    """A client of the store ``uri`` for a lookup (``source`` names what is looked up): a SQLite store that is not
    there is an input error, never created; a damaged one is refused, a copied one relocated."""
    store = _sqlite_file(uri)
    if store is not None and not store.is_file():
        raise AmberInputError(f"no MLflow store at {store} (MLFLOW_TRACKING_URI)", source)
    check_store(uri)
    return open_client(uri)


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


# The tag of a run that continues a run its store does not know (a resume against a new or lost store).
RESUMED_FROM = "resumed_from_run_id"


def _run_resuming(client: MlflowClient, experiment_id: str, run_id: str) -> str | None:
    """The run of ``experiment_id`` tagged as continuing ``run_id``, if one was made already."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.{RESUMED_FROM} = '{run_id}'", max_results=1)
    return runs[0].info.run_id if runs else None


class RunTracker:
    """A handle on one MLflow run (created, or reopened by id when a command resumes).

    As a context manager it ends the run with the block: FINISHED, KILLED when the block is
    interrupted (Ctrl-C, or SIGTERM turned into ``KeyboardInterrupt``), FAILED on any other exception.
    A resumed run whose id the store does not know (the store was lost, or the run directory was
    copied without it) continues in a new run tagged :data:`RESUMED_FROM` with the old id; the
    caller keeps the new id (``tracker.run_id`` differs from the one it asked for).
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
        """A new run (or ``run_id`` reopened, see the class); ``artifacts`` is the artifact location of an experiment it creates
        (shared storage on a cluster; default: beside a SQLite store, or the tracking server's choice)."""
        uri = tracking_uri(out_dir)
        client = open_client(uri)
        all_tags = {MLFLOW_RUN_NAME: run_name, **(tags or {})}
        if run_id is not None:
            try:
                client.update_run(run_id, status="RUNNING")
                return cls(client, run_id)
            except MlflowException as error:
                if error.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                    raise
            logger.warning(
                "the MLflow store %s does not know run %s: continuing in a new run tagged %s", uri, run_id, RESUMED_FROM
            )
            all_tags[RESUMED_FROM] = run_id
        found = client.get_experiment_by_name(experiment)
        if found:
            experiment_id = found.experiment_id
        else:
            experiment_id = client.create_experiment(experiment, artifacts or artifact_root(uri))
            mark_for_model_training(client, experiment_id)
        if parent is not None:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent.run_id
        if run_id is not None and (earlier := _run_resuming(client, experiment_id, run_id)) is not None:
            client.update_run(earlier, status="RUNNING")  # made by a resume that stopped before keeping its id
            return cls(client, earlier)
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
