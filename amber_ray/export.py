"""``amber-ray export``: a model as TorchScript or ONNX, for serving without amber_ray.

The exported graph is the model followed by a sigmoid: input ``one_hot`` ``float32 (N, 4, L)``
(A, C, G, T rows; 0.25 each for an unknown base), output ``probabilities`` ``(N, labels)`` in the
order of the model's labels, which ONNX files also carry as metadata (``labels``, ``input_length``).
The batch size is free; the length is the model's.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from amber_ray.atomic import atomic_path
from amber_ray.errors import AmberInputError
from amber_ray.predict import StrandProbabilities
from amber_ray.registry import load_model

FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 17


def _example(model: nn.Module) -> torch.Tensor:
    return torch.full((2, 4, model.space.input_length), 0.25)


def export_torchscript(model: nn.Module, path: Path) -> None:
    # Traced without autograd, as the checker re-traces it: ops that take another kernel under
    # autograd (max pooling, see ops.SamePool) would otherwise give two graphs and fail its check.
    with torch.no_grad():
        traced = torch.jit.trace(StrandProbabilities(model).eval(), _example(model))
    with atomic_path(path) as tmp:
        torch.jit.save(traced, str(tmp))


def export_onnx(model: nn.Module, path: Path, labels: list[str]) -> None:
    try:
        import onnx
    except ImportError:
        raise AmberInputError("ONNX export needs the onnx package: pip install 'amber_ray[export]'", "--format") from None

    with atomic_path(path) as tmp, warnings.catch_warnings():
        # torch notes that it cannot fold strided slices into constants: the graph is right, only not folded there
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(
            StrandProbabilities(model).eval(),
            (_example(model),),
            str(tmp),
            input_names=["one_hot"],
            output_names=["probabilities"],
            dynamic_axes={"one_hot": {0: "batch"}, "probabilities": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
        graph = onnx.load(str(tmp))
        onnx.helper.set_model_props(graph, {"labels": json.dumps(labels), "input_length": str(model.space.input_length)})
        onnx.save(graph, str(tmp))


def export_model(source: str | Path, export_format: str, out: str | Path) -> Path:
    """Write the model ``source`` (any source :func:`amber_ray.registry.load_model` takes) to ``out`` as ``export_format``."""
    if export_format not in FORMATS:
        raise AmberInputError(f"unknown format {export_format!r}; one of {', '.join(FORMATS)}", "--format")
    model, labels = load_model(source, "cpu")
    model.eval()
    out = Path(out)
    if export_format == "torchscript":
        export_torchscript(model, out)
    else:
        export_onnx(model, out, labels)
    return out
