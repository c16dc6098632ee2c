"""The one device rule (auto picks CUDA when present; impossible requests fail naming the option) and the one precision rule."""

import logging
import platform
import subprocess
import sys

import pytest
import torch

from amber_ray import device
from amber_ray.device import resolve_device, resolve_precision
from amber_ray.errors import AmberInputError


def test_auto_and_none_pick_cuda_only_when_present() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_misspelled_device_names_the_option() -> None:
    with pytest.raises(AmberInputError, match="unknown device 'gpu0'") as error:
        resolve_device("gpu0", source="train.device")
    assert error.value.source == "train.device"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(AmberInputError, match="'cuda' requested but this machine has 0 CUDA device"):
        resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_index_beyond_the_machine_is_a_clear_error() -> None:
    with pytest.raises(AmberInputError, match="requested but this machine has"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_a_ray_worker_without_a_gpu_uses_the_cpu_whatever_the_config_says(monkeypatch) -> None:
    from amber_ray.device import worker_device

    assert worker_device("cuda", 0) == torch.device("cpu")  # GPUs Ray did not assign belong to other workers
    monkeypatch.setenv("RAY_FAKE_CLUSTER", "1")
    assert worker_device("auto", 0.5) == resolve_device("auto")  # the fake cluster's GPUs (no CUDA): the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(AmberInputError, match="unknown device 'gpu'"):
        worker_device("gpu", 1, "train.device")


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_a_gpu_from_ray_that_torch_cannot_use_fails_naming_node_gpus_and_build(monkeypatch, device) -> None:
    """Not a silent fall-back to the CPU while the GPUs are held (a driver/wheel mismatch on a real node)."""
    import socket

    from amber_ray.device import worker_device

    monkeypatch.delenv("RAY_FAKE_CLUSTER", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    with pytest.raises(AmberInputError) as caught:
        worker_device(device, 2, "train.device")
    message = str(caught.value)
    assert message.startswith("train.device: Ray gave this worker GPU(s) 2,3 on node " + socket.gethostname())
    assert "(CUDA 12.8) sees no CUDA device" in message and "\n" not in message
    assert worker_device("cpu", 2) == torch.device("cpu")  # asked for the CPU: no CUDA needed


def tiny_fit(device: str, precision: str = "float32"):
    """Two epochs of a small child model on random data: (model, fit result, state after the last epoch)."""
    import numpy as np

    from amber_ray.config import TrainConfig
    from amber_ray.data import SequenceDataset
    from amber_ray.space import Architecture, ModelSpace
    from amber_ray.training import fit, initial_model

    rng = np.random.default_rng(0)
    x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (64, 32))].transpose(0, 2, 1).copy()
    y = (rng.random((64, 1)) < 0.5).astype(np.float32)
    data = SequenceDataset(x, y, [f"s{i}" for i in range(64)], ["label"])
    space = ModelSpace(
        input_length=32,
        num_labels=1,
        num_layers=2,
        layers_per_block=1,
        ops=("conv4", "maxpool"),
        first_filters=4,
        stem_channels=4,
        dense_units=8,
    )
    model = initial_model(space, Architecture(("conv4", "maxpool"), ((), (0,))), 1.0, 0)
    states = []
    config = TrainConfig(batch_size=16, max_epochs=2, patience=2, precision=precision)
    result = fit(model, data, data, config, 0, lambda state: states.append(state.state_dict()), device=torch.device(device))
    return model, result, states[-1]


def test_fit_trains_on_the_device_it_is_given() -> None:
    model, result, _ = tiny_fit("cpu")
    assert next(model.parameters()).device.type == "cpu" and result.epochs_run == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fit_on_cuda_in_bfloat16_keeps_float32_weights_and_resumes_on_the_cpu(tmp_path) -> None:
    """A retraining trial's checkpoint written on a GPU node is loaded on any node (map_location cpu)."""
    model, result, state = tiny_fit("cuda", "bfloat16")
    parameter = next(model.parameters())
    assert parameter.device.type == "cuda" and parameter.dtype == torch.float32
    assert 0.0 <= result.best_valid_auroc <= 1.0
    torch.save(state, tmp_path / "state.pt")
    loaded = torch.load(tmp_path / "state.pt", map_location="cpu", weights_only=True)
    assert all(tensor.device.type == "cpu" for tensor in loaded["model"].values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_with_cuda_on_a_machine_without_it_fails_naming_the_key(tmp_path) -> None:
    from typer.testing import CliRunner

    from amber_ray.cli import app

    config = tmp_path / "config.yaml"
    config.write_text("data: {simulate: {num_sequences: 100, length: 64}}\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(config),
            "--arch",
            "conv8,skip:;conv4,skip:0;maxpool,skip:;conv8,skip:1",
            "--out",
            str(out),
            "--device",
            "cuda",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "train.device" in result.output and "'cuda' requested but this machine has 0 CUDA device" in " ".join(
        result.output.split()
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "avx512f", "avx512_bf16"}, "bfloat16"),
        ({"avx2", "amx_bf16", "amx_tile"}, "bfloat16"),
        ({"avx2", "avx512f"}, "float32"),
    ],
)
def test_auto_precision_follows_the_cpus_native_bfloat16(monkeypatch, flags, expected) -> None:
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset(flags))
    precision, reason = resolve_precision("auto", torch.device("cpu"))
    assert precision == expected
    assert reason.startswith("auto: CPU has")


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_on_cuda_asks_for_native_bfloat16_only(monkeypatch, native) -> None:
    asked = {}

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        asked["including_emulation"] = including_emulation
        return native

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _=None: "Some GPU")
    assert resolve_precision("auto", torch.device("cuda"))[0] == ("bfloat16" if native else "float32")
    assert asked == {"including_emulation": False}


def test_explicit_bfloat16_without_native_support_warns_with_the_cost(monkeypatch, caplog) -> None:
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    with caplog.at_level(logging.WARNING, logger="amber_ray.device"):
        assert resolve_precision("bfloat16", torch.device("cpu"))[0] == "bfloat16"
    assert "10x slower" in caplog.text
    caplog.clear()
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    with caplog.at_level(logging.WARNING, logger="amber_ray.device"):
        assert resolve_precision("bfloat16", torch.device("cpu"))[0] == "bfloat16"
        assert resolve_precision("float32", torch.device("cpu"))[0] == "float32"
    assert caplog.text == ""


# A fresh process (the setting is process-wide) makes twelve 10 MB activations and frees them together,
# then prints how much of the 120 MB it still holds. By default glibc hands freed memory above twice its
# largest freed block (at most 64 MB) back to the kernel, to be paged in again by the next batch.
HELD_AFTER_FREE_SCRIPT = """
import os, sys, torch
from amber_ray.device import keep_freed_host_memory
if sys.argv[1] == "keep":
    assert keep_freed_host_memory()
def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
before = resident_mb()
activations = [torch.ones(2_500_000) for _ in range(12)]
del activations
print(resident_mb() - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc")
def test_freed_host_memory_is_kept_for_the_next_batch() -> None:
    def held_mb(mode: str) -> float:
        run = subprocess.run([sys.executable, "-c", HELD_AFTER_FREE_SCRIPT, mode], capture_output=True, text=True, check=True)
        return float(run.stdout)

    assert held_mb("default") < 70
    assert held_mb("keep") > 110
