"""The one device rule (auto picks CUDA when present; impossible requests fail naming the option) and the one precision rule."""

import logging

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


@pytest.mark.parametrize(
    ("flags", "expected"),
    [({"avx2", "avx512f", "avx512_bf16"}, "bfloat16"), ({"avx2", "amx_bf16", "amx_tile"}, "bfloat16"), ({"avx2", "avx512f"}, "float32")],
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
