"""The final model in MLflow: its pyfunc face, its logging and registration, and loading it back by name.

:class:`SequenceModel` runs a final model for ``mlflow.pyfunc.load_model``; :func:`log_final_model`
logs one with pinned requirements and registers it; :func:`load_model` takes every model source a
command takes: a ``model.pt``, a directory holding one, or ``models:/NAME/VERSION``, fetched from the
Model Registry of ``MLFLOW_TRACKING_URI``'s store (a lookup only: it never creates a store).
"""

from __future__ import annotations

import logging
import os
import tempfile
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.artifacts
import mlflow.pyfunc
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import ColSpec, Schema
from packaging.requirements import Requirement
from packaging.version import Version

from amber_ray.child import ChildNet
from amber_ray.errors import AmberInputError, first_line
from amber_ray.outputs import MODEL
from amber_ray.predict import as_model_input, probabilities
from amber_ray.predict import load_model as load_model_file
from amber_ray.tracking import MAX_TAG_LENGTH, RunTracker, open_existing_client

REGISTRY_SCHEME = "models:/"

FINAL_MODEL_ARTIFACT = "final_model"


class SequenceModel(mlflow.pyfunc.PythonModel):
    """The pyfunc face of a final model: sequences or one-hot arrays in, one probability column per label out.

    Takes a list of strings, a Series, a DataFrame with a ``sequence`` column, or a one-hot array
    ``(N, 4, L)``; sequences must have the model's input length and only A, C, G, T, N.
    """

    # No type-hint schema: the model takes sequences or one-hot arrays, and a hint would refuse one of them.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        self.model, self.labels = load_model_file(context.artifacts["model"], "auto")

    def predict(self, context, model_input, params=None):
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
    store), downloaded into ``directory``. The store must exist (a lookup creates none); a store copied with
    its run directory is first pointed at the copy's artifacts, so the copy's model is the one loaded."""
    store_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not store_uri:
        raise AmberInputError(
            "set MLFLOW_TRACKING_URI to the store holding the Model Registry (e.g. sqlite:///RUN/mlflow.db)", uri
        )
    client = open_existing_client(store_uri, uri)
    try:
        with _quiet_model_artifacts():  # a bar per file of the model's code, on every predict
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(directory), tracking_uri=store_uri)
    except MlflowException as error:
        raise AmberInputError(f"no such registered model ({first_line(error)})", uri) from None
    found = sorted(Path(local).rglob(MODEL))
    if not found:
        raise AmberInputError(f"the registered model holds no model.pt ({_where_it_points(client, uri)})", uri)
    return found[0]


def _where_it_points(client: MlflowClient, uri: str) -> str:
    """Where a registered version's files are recorded, and what to do when they are gone."""
    name, _, version = uri.removeprefix(REGISTRY_SCHEME).partition("/")
    try:
        source = client.get_model_version_download_uri(name, version)
    except MlflowException:
        return "not an amber_ray final model"
    return (
        f"its source {source} is empty or gone: if its run directory was moved, run with MLFLOW_TRACKING_URI "
        "set to the mlflow.db now beside it, which points at its own files; else retrain to register it again"
    )


def load_model(source: str | Path, device: str | torch.device | None = "auto") -> tuple[ChildNet, list[str]]:
    """A model and its label names from ``source``: a ``model.pt``, a directory holding one, or a Model Registry
    URI ``models:/NAME/VERSION`` (fetched from the tracking store into a temporary directory)."""
    if not str(source).startswith(REGISTRY_SCHEME):
        return load_model_file(source, device)
    with tempfile.TemporaryDirectory() as directory:
        return load_model_file(download_registered_model(str(source), Path(directory)), device)
