"""examples/python_api.py runs search -> retrain -> predict from Python and its final model learned the motif."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import REPO


@pytest.mark.slow
def test_example_runs_and_its_final_model_predicts_new_sequences(ray_session, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unset-after-the-test")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the example points it at its own store; restored afterwards
    spec = importlib.util.spec_from_file_location("python_api", REPO / "examples" / "python_api.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    auroc = example.main(tmp_path)
    card = json.loads((tmp_path / "retrain" / "final" / "model.json").read_text())
    assert card["registered_model"] == "models:/python-api/1" and card["input_length"] == 60
    assert auroc > 0.7  # an untrained or mis-loaded model is near 0.5 on the new sequences
