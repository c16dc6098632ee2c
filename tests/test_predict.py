"""The one batched prediction loop: same numbers whatever the batch size, mode and device restored, bad input refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import one_hot, tiny_net
from torch import nn

from amber_ray.predict import eval_mode_on, predict


def test_batches_give_the_eval_mode_outputs_and_the_mode_is_restored():
    net, x = tiny_net(), one_hot(37)
    net.train()
    with torch.no_grad():
        expected = torch.sigmoid(net.eval()(torch.from_numpy(x))).numpy()
    net.train()
    for batch_size in (1, 5, 37, 100):
        np.testing.assert_allclose(predict(net, x, batch_size, func=torch.sigmoid), expected, rtol=1e-5, atol=1e-6)
        assert net.training and all(module.training for module in net.modules())
    assert predict(net, torch.from_numpy(x)).shape == (37, 3)


def test_read_only_arrays_progress_and_prepare():
    net, x = tiny_net(), one_hot(10)
    x.flags.writeable = False  # as from Ray's object store
    seen: list[int] = []
    plain = predict(net, x, 4, on_batch=seen.append)
    assert seen == [4, 4, 2]
    codes = x.argmax(axis=1).astype(np.uint8)
    prepared = predict(net, codes, 3, prepare=lambda c: np.eye(4, dtype=np.float32)[c].transpose(0, 2, 1).copy())
    np.testing.assert_allclose(prepared, plain, rtol=1e-5, atol=1e-6)


def test_a_prepare_that_expands_rows_gives_every_output_row():
    """As variant scoring does: each row of X holds a ref and an alt sequence, scored as two rows."""
    net, x = tiny_net(), one_hot(9)
    pairs = x.reshape(9 // 3, 3, 4, 40)  # 3 rows of 3 sequences each
    expected = predict(net, x, 4)
    for batch_size in (1, 2, 3):
        got = predict(net, pairs, batch_size, prepare=lambda b: b.reshape(-1, 4, 40))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_empty_input_has_the_output_shape():
    seen: list[int] = []
    assert predict(tiny_net(labels=2), one_hot(0), on_batch=seen.append).shape == (0, 2)
    assert seen == []


def test_submodule_modes_are_restored_also_on_error():
    net = tiny_net()
    net.train()
    frozen = next(module for module in net.modules() if isinstance(module, nn.BatchNorm1d))
    frozen.eval()

    def failing(y: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        predict(net, one_hot(3), func=failing)
    assert net.training and not frozen.training
    with eval_mode_on(net):
        assert not any(module.training for module in net.modules())
    assert net.training and not frozen.training


@pytest.mark.parametrize(
    ("x", "batch_size", "error", "match"),
    [
        ([[0.0]], 8, TypeError, "NumPy array or a torch tensor"),
        (np.array(1.0), 8, ValueError, "batch axis"),
        (None, 0, ValueError, "batch_size"),
    ],
)
def test_bad_input_is_refused(x, batch_size, error, match):
    with pytest.raises(error, match=match):
        predict(tiny_net(), one_hot(2) if x is None else x, batch_size)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_device_is_restored():
    net, x = tiny_net(), one_hot(9)
    on_cpu = predict(net, x, 4)
    on_gpu = predict(net, x, 4, device="cuda")
    assert next(net.parameters()).device.type == "cpu"
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-4, atol=1e-5)
