"""`amber-ray export`: the ONNX file (onnxruntime) and the TorchScript file (torch.jit.load) give the
model's probabilities for any batch size; the ONNX file carries the labels."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from conftest import one_hot, tiny_net
from typer.testing import CliRunner

from amber_ray.child import save_child
from amber_ray.cli import app

LABELS = ["a", "b", "c"]
# The second layer takes the first's output as a skip, pooled and zero-padded to its block's channels.
ARCH = "conv8,skip:;conv4,skip:0"


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.pt"
    save_child(tiny_net(labels=3, length=40, arch=ARCH), path, {"label_names": LABELS})
    return path


def expected(x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(tiny_net(labels=3, length=40, arch=ARCH).eval()(torch.from_numpy(x))).numpy()


def export(model, export_format: str, out):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = CliRunner().invoke(app, ["export", str(model), "--format", export_format, "--out-file", str(out)])
    assert result.exit_code == 0, result.output
    # Tracing would warn that the skip's zero-padding depends on a traced shape; it depends on the space alone.
    assert not [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)], [str(w.message) for w in caught]
    return out


def test_onnx_matches_torch(model, tmp_path):
    path = export(model, "onnx", tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 7):
        x = one_hot(n, seed=n)
        (probs,) = session.run(["probabilities"], {"one_hot": x})
        np.testing.assert_allclose(probs, expected(x), atol=1e-5)
    metadata = {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}
    assert json.loads(metadata["labels"]) == LABELS and metadata["input_length"] == "40"


def test_torchscript_matches_torch(model, tmp_path):
    loaded = torch.jit.load(str(export(model, "torchscript", tmp_path / "model.ts")))
    x = one_hot(5, seed=2)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(torch.from_numpy(x)).numpy(), expected(x), atol=1e-6)


def test_unknown_format_is_refused(model, tmp_path):
    result = CliRunner().invoke(app, ["export", str(model), "--format", "tflite", "--out-file", str(tmp_path / "m")])
    assert result.exit_code == 2 and "--format: unknown format 'tflite'" in " ".join(result.output.split())
    assert not (tmp_path / "m").exists()
