import numpy as np
import pytest
import torch
from torch.nn import functional as F

from amber_ray import ops
from amber_ray.child import ChildNet, load_child, save_child
from amber_ray.config import OP_NAMES, SpaceConfig
from amber_ray.errors import AmberInputError
from amber_ray.ops import Linear, SamePool, build_op, to_channels_last
from amber_ray.space import Architecture, ModelSpace


@pytest.mark.parametrize("op", OP_NAMES)
@pytest.mark.parametrize("length", [7, 200, 251])
def test_every_op_keeps_shape(op, length):
    module = build_op(op, channels=8)
    x = torch.randn(3, 8, length)
    assert module(x).shape == x.shape


@pytest.mark.skipif(not ops.ONEDNN_LINEAR_AVAILABLE, reason="needs torch built with oneDNN")
def test_linear_runs_float32_through_onednn_with_nn_linears_results(monkeypatch):
    monkeypatch.setattr(ops, "ONEDNN_LINEAR", True)  # the route AMD CPUs take
    torch.manual_seed(0)
    layer, reference = Linear(640, 100), torch.nn.Linear(640, 100)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(32, 640, requires_grad=True)
    grad = torch.randn(32, 100)
    out, expected = layer(x), reference(x)
    assert type(out.grad_fn).__name__ == "_OneDnnLinearBackward"
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    got = torch.autograd.grad(out, (x, layer.weight, layer.bias), grad)
    want = torch.autograd.grad(expected, (x, reference.weight, reference.bias), grad)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    with torch.autocast("cpu", torch.bfloat16):  # autocast keeps its own route
        assert type(layer(x).grad_fn).__name__ != "_OneDnnLinearBackward"
    assert torch.jit.trace(layer, x.detach()).graph.findNode("aten::linear") is not None  # tracing sees F.linear
    monkeypatch.setattr(ops, "ONEDNN_LINEAR", False)  # other CPUs keep the BLAS
    assert type(layer(x).grad_fn).__name__ == "AddmmBackward0"


def test_identity_and_pools_have_no_parameters():
    for op in ("maxpool", "avgpool", "identity"):
        assert sum(p.numel() for p in build_op(op, 16).parameters()) == 0
    assert sum(p.numel() for p in build_op("dconv8", 16).parameters()) == 16 * 16 * 8 + 2 * 16


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("kernel", [3, 4])
def test_same_pool_is_the_mean_or_max_of_each_window(mode, kernel):
    """Windows of ``kernel`` positions, ``(kernel - 1) // 2`` before each one; zeros (mean) or nothing (max)
    beyond the ends. The same values and gradients in (N, C, L) and channels-last (N, C, 1, L)."""
    torch.manual_seed(kernel)
    x = torch.randn(3, 5, 17, requires_grad=True)
    left = (kernel - 1) // 2
    padded = F.pad(x, (left, kernel - 1 - left), value=0.0 if mode == "avg" else float("-inf"))
    windows = padded.unfold(-1, kernel, 1)
    expected = windows.mean(-1) if mode == "avg" else windows.amax(-1)
    grad = torch.randn_like(expected)
    (want,) = torch.autograd.grad(expected, x, grad)
    pool = SamePool(kernel, mode)
    for layout in (lambda t: t, to_channels_last):
        out = pool(layout(x))
        (got,) = torch.autograd.grad(out, x, layout(grad))
        torch.testing.assert_close(out.reshape(expected.shape), expected)
        torch.testing.assert_close(got, want)
        with torch.no_grad():  # scoring takes another route for maxima
            torch.testing.assert_close(pool(layout(x)).reshape(expected.shape), expected)


def test_random_architectures_give_one_output_per_label():
    space = ModelSpace.from_config(SpaceConfig(profile="small"), input_length=251, num_labels=5)
    rng = np.random.default_rng(0)
    for _ in range(20):
        model = ChildNet(space, space.sample(rng))
        assert model(torch.randn(2, 4, 251)).shape == (2, 5)


def test_paper_space_model_runs_on_1000bp_919_labels():
    space = ModelSpace.from_config(SpaceConfig(profile="deepsea"), input_length=1000, num_labels=919)
    arch = space.sample(np.random.default_rng(3))
    model = ChildNet(space, arch).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 4, 1000))
    assert out.shape == (2, 919)
    assert 1e6 < model.num_params() < 20e6


@pytest.mark.parametrize("seed", range(4))
def test_channels_last_training_computes_the_same_function_and_gradients(seed, monkeypatch):
    """Training runs channels-last, evaluation (N, C, L): both layouts must be one model, across
    block boundaries (pooled, zero-padded skips) and for every op."""
    space = ModelSpace.from_config(SpaceConfig(profile="deepsea"), input_length=512, num_labels=3)
    arch = space.sample(np.random.default_rng(seed))
    torch.manual_seed(seed)
    model = ChildNet(space, arch).train()
    x = torch.eye(4)[torch.randint(0, 4, (8, 512))].transpose(1, 2).contiguous()
    results = []
    for channels_last in (True, False):
        monkeypatch.setattr(model, "runs_channels_last", lambda flag=channels_last: flag)
        model.zero_grad()
        torch.manual_seed(seed)  # the same dropout masks
        out = model(x)
        out.square().sum().backward()
        results.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (out_cl, grads_cl), (out_ncl, grads_ncl) = results
    torch.testing.assert_close(out_cl, out_ncl, atol=1e-4, rtol=1e-4)
    assert grads_cl.keys() == grads_ncl.keys()
    for name, grad in grads_ncl.items():  # relative to the gradient's norm: round-off, not a layout error
        assert (grads_cl[name] - grad).norm() < 5e-3 * grad.norm(), name


def test_width_multiplier_scales_parameters():
    space = ModelSpace.from_config(SpaceConfig(profile="small"), input_length=200, num_labels=1)
    arch = Architecture.from_text("conv8,skip:;conv8,skip:0;conv8,skip:;conv8,skip:1")
    narrow, wide = ChildNet(space, arch, width=0.5), ChildNet(space, arch, width=2.0)
    assert narrow.num_params() < ChildNet(space, arch).num_params() < wide.num_params()
    assert wide(torch.randn(2, 4, 200)).shape == (2, 1)


def test_skip_changes_the_function():
    space = ModelSpace.from_config(SpaceConfig(profile="small"), input_length=200, num_labels=1)
    plain = Architecture.from_text("conv8,skip:;conv4,skip:;conv8,skip:;identity,skip:")
    skipped = Architecture.from_text("conv8,skip:;conv4,skip:;conv8,skip:;identity,skip:0+2")
    torch.manual_seed(0)
    a = ChildNet(space, plain).eval()
    b = ChildNet(space, skipped).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 4, 200)
    assert not torch.allclose(a(x), b(x))


def test_checkpoint_round_trip(tmp_path):
    space = ModelSpace.from_config(SpaceConfig(profile="small"), input_length=200, num_labels=2)
    model = ChildNet(space, space.sample(np.random.default_rng(0))).eval()
    save_child(model, tmp_path / "model.pt", {"label_names": ["a", "b"]})
    loaded, extra = load_child(tmp_path / "model.pt")
    x = torch.randn(3, 4, 200)
    assert torch.equal(model(x), loaded(x))
    assert extra == {"label_names": ["a", "b"]}
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(AmberInputError, match="bad.pt"):
        load_child(tmp_path / "bad.pt")
