"""The one device rule: auto picks CUDA when present; impossible requests fail with one line naming the option."""

import pytest
import torch

from amber_ray.device import resolve_device
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
