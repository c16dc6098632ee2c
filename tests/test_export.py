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

from amber_ray.child import ChildNet, save_child
from amber_ray.cli import app
from amber_ray.config import OP_NAMES
from amber_ray.space import Architecture, ModelSpace

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


# Three blocks of one layer: every skip crosses a block, so it is pooled and zero-padded to the wider block.
EVERY_OP_SPACE = ModelSpace(
    input_length=40,
    num_labels=3,
    num_layers=3,
    layers_per_block=1,
    ops=OP_NAMES,
    first_filters=4,
    stem_channels=4,
    dense_units=8,
    reduction=2,
)


def trained_like(op: str) -> ChildNet:
    """A model with ``op`` in its first two layers and skips 0 -> 1, 0 -> 2 and 1 -> 2; batch-norm statistics
    moved off their initial values by one pass in training mode, so eval differs from identity statistics."""
    torch.manual_seed(0)
    net = ChildNet(EVERY_OP_SPACE, Architecture.from_text(f"{op},skip:;{op},skip:0;conv4,skip:0+1"))
    with torch.no_grad():
        net.train()(torch.from_numpy(one_hot(16, seed=3)))
    return net.eval()


@pytest.mark.parametrize("op", OP_NAMES)
def test_torchscript_export_of_every_op_matches_torch(op, tmp_path):
    net = trained_like(op)
    save_child(net, tmp_path / "model.pt", {"label_names": LABELS})
    loaded = torch.jit.load(str(export(tmp_path / "model.pt", "torchscript", tmp_path / "model.ts")))
    for n in (1, 6):
        x = torch.from_numpy(one_hot(n, seed=n))
        with torch.no_grad():
            np.testing.assert_allclose(loaded(x).numpy(), torch.sigmoid(net(x)).numpy(), atol=1e-6)


def test_unknown_format_is_refused(model, tmp_path):
    result = CliRunner().invoke(app, ["export", str(model), "--format", "tflite", "--out-file", str(tmp_path / "m")])
    assert result.exit_code == 2 and "--format: unknown format 'tflite'" in " ".join(result.output.split())
    assert not (tmp_path / "m").exists()
