"""The final model of a retraining: `final/` holds the searched architecture's best replicate by validation
AUROC, registered in the Model Registry; loaded back by `models:/NAME/VERSION` (pyfunc, and `amber-ray
predict`) it predicts what `final/model.pt` does, from sequences or one-hot arrays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO
from mlflow.tracking import MlflowClient
from packaging.requirements import Requirement
from packaging.version import Version
from test_retrain import RAW, SEARCHED, search_dir
from typer.testing import CliRunner

from amber_ray.child import load_child
from amber_ray.cli import app
from amber_ray.config import parse_config
from amber_ray.data.dataset import one_hot_encode
from amber_ray.outputs import BEST_MODEL, tune_grid
from amber_ray.retrain import run_retrain

CONFIG = {
    **RAW,
    "name": "final-test",
    "train": {**RAW["train"], "max_epochs": 2},
    "retrain": {"replicates": 2, "sampled": 1, "register_as": "promoters"},
}


@pytest.fixture(scope="module")
def retrained(ray_session, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    tmp = tmp_path_factory.mktemp("final")
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)  # the run's own store, OUT/mlflow.db
    try:
        results = run_retrain(parse_config(CONFIG), search_dir(tmp), tmp / "retrain")
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    return tmp / "retrain", results


def sequences(n: int, length: int = 100, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)]


def direct(model_file: Path, seqs: list[str]) -> np.ndarray:
    """The known answer: sigmoid of the saved model's logits, computed here."""
    net, _ = load_child(model_file)
    with torch.no_grad():
        return torch.sigmoid(net.eval()(torch.from_numpy(one_hot_encode(seqs)))).numpy()


def test_final_is_the_searched_replicate_with_the_best_validation_auroc(retrained):
    out, results = retrained
    searched = results[results.role == "searched"]
    best = searched.loc[searched.best_valid_auroc.idxmax()]
    card = json.loads((out / "final" / "model.json").read_text())
    assert (card["arch"], card["replicate"], card["selected_by"]) == (SEARCHED, best.replicate, "best_valid_auroc")
    assert card["best_valid_auroc"] == pytest.approx(best.best_valid_auroc)
    assert card["test"]["auroc"] == pytest.approx(best.test_auroc) and card["num_params"] == best.num_params
    assert card["label_names"] == ["MA0139.1_CTCF", "MA0079.5_SP1"] and card["input_length"] == 100
    assert card["train"]["max_epochs"] == 2 and card["registered_model"] == "models:/promoters/1"

    trial_models = {}
    for path in tune_grid(out).glob(f"train_trial*/checkpoint_*/{BEST_MODEL}"):
        extra = torch.load(path, weights_only=True)["extra"]
        trial_models[(extra["role"], extra["replicate"])] = path
    chosen = torch.load(trial_models[("searched", card["replicate"])], weights_only=True)["state_dict"]
    final = torch.load(out / "final" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(chosen[key], final[key]) for key in chosen)


def test_registry_round_trip(retrained, monkeypatch, tmp_path):
    out, _ = retrained
    card = json.loads((out / "final" / "model.json").read_text())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{out}/mlflow.db")
    client = MlflowClient()
    version = client.get_model_version("promoters", "1")
    assert float(version.tags["test_auroc"]) == pytest.approx(card["test"]["auroc"]) and version.tags["arch"] == SEARCHED
    assert client.get_run(version.run_id).data.tags["command"] == "retrain"

    model = mlflow.pyfunc.load_model("models:/promoters/1")
    assert model.metadata.get_output_schema().input_names() == card["label_names"]
    seqs = sequences(7)
    expected = direct(out / "final" / "model.pt", seqs)
    from_strings = model.predict(seqs)
    assert list(from_strings.columns) == card["label_names"]
    np.testing.assert_allclose(from_strings.to_numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(model.predict(one_hot_encode(seqs)).to_numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(model.predict(pd.DataFrame({"sequence": seqs})).to_numpy(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="length 99, expected 100"):
        model.predict([seqs[0][1:]])

    (tmp_path / "in.fa").write_text("".join(f">s{i}\n{seq}\n" for i, seq in enumerate(seqs)))
    for source in ("models:/promoters/1", out / "final"):
        result = CliRunner().invoke(
            app, ["predict", str(source), "--fasta", str(tmp_path / "in.fa"), "--out", str(tmp_path / "p")]
        )
        assert result.exit_code == 0, result.output
        assert "Downloading artifacts" not in result.output  # MLflow's bar, once per file of the model's code
        table = pd.read_parquet(tmp_path / "p" / "predictions.parquet")
        np.testing.assert_allclose(table.probability.to_numpy().reshape(7, 2), expected, atol=1e-6)


# Loads a logged model and predicts, with amber_ray importable only from the model's own code directory.
LOAD_WITH_THE_MODELS_CODE_ONLY = """
import json, sys
from importlib.machinery import PathFinder
model_dir = sys.argv[1]

class ModelCodeOnly:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] != "amber_ray":
            return None
        spec = PathFinder.find_spec(name, path if path is not None else [model_dir + "/code"])
        if spec is None:
            raise ModuleNotFoundError(name)
        return spec

sys.meta_path.insert(0, ModelCodeOnly)
import mlflow.pyfunc
model = mlflow.pyfunc.load_model(model_dir)
import amber_ray
print(json.dumps({"package": amber_ray.__file__, "probabilities": model.predict(sys.argv[2:]).to_numpy().tolist()}))
"""


def test_the_registered_model_carries_its_code_and_pins_its_requirements(retrained, monkeypatch, tmp_path):
    """A serving environment needs no amber_ray install: the package travels in the model's ``code/``, and its
    requirements are amber_ray's dependencies (pyproject.toml), pinned to the public versions that trained it
    (``torch==2.13.0``, not the CPU build's ``2.13.0+cpu``, which no package index serves)."""
    out, _ = retrained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{out}/mlflow.db")
    local = Path(mlflow.artifacts.download_artifacts("models:/promoters/1", dst_path=str(tmp_path)))
    seqs = sequences(3)
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_WITH_THE_MODELS_CODE_ONLY, str(local), *seqs], capture_output=True, text=True, cwd=tmp_path
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    result = json.loads(loaded.stdout.splitlines()[-1])
    assert Path(result["package"]).is_relative_to(local / "code" / "amber_ray")
    np.testing.assert_allclose(result["probabilities"], direct(out / "final" / "model.pt", seqs), atol=1e-6)

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    expected = set()
    for line in declared:
        requirement = Requirement(line)
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        expected.add(f"{requirement.name}{extras}=={Version(metadata.version(requirement.name)).public}")
    assert set((local / "requirements.txt").read_text().split()) == expected


def test_an_unknown_registered_model_is_one_line(retrained, monkeypatch, tmp_path):
    out, _ = retrained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{out}/mlflow.db")
    (tmp_path / "in.fa").write_text(">s\n" + sequences(1)[0] + "\n")
    result = CliRunner().invoke(
        app, ["predict", "models:/promoters/9", "--fasta", str(tmp_path / "in.fa"), "--out", str(tmp_path / "p")]
    )
    assert result.exit_code == 2 and "models:/promoters/9: no such registered model" in " ".join(result.output.split())
    assert not (tmp_path / "p").exists()
