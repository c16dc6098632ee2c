import dataclasses

import numpy as np
import pytest
import torch

from amber_ray import device
from amber_ray.child import ChildNet
from amber_ray.config import SpaceConfig
from amber_ray.data import SequenceDataset
from amber_ray.metrics import mean_auroc
from amber_ray.space import Architecture, ModelSpace
from amber_ray.supernet import Supernet, SupernetTrainer


def small_space() -> ModelSpace:
    return ModelSpace.from_config(SpaceConfig(profile="small"), input_length=64, num_labels=2)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def changed(before: dict[str, torch.Tensor], model: torch.nn.Module, prefix: str) -> bool:
    return any(not torch.equal(before[n], p) for n, p in model.named_parameters() if n.startswith(prefix))


def train_step(net: Supernet, optimizer: torch.optim.Optimizer, arch: Architecture) -> None:
    x = torch.randn(16, 4, 64)
    y = (torch.rand(16, 2) > 0.5).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x, arch), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_weight_sharing_updates_only_the_chosen_path():
    torch.manual_seed(0)
    net = Supernet(small_space())
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    a = Architecture.from_text("conv8,skip:;conv4,skip:0;dconv8,skip:;conv8,skip:1")
    b = Architecture.from_text("conv8,skip:;dconv4,skip:;dconv8,skip:0;conv4,skip:")
    train_step(net, optimizer, a)
    before = snapshot(net)
    train_step(net, optimizer, b)
    # ops used only by A are untouched by B's step (Adam momentum included) ...
    assert not changed(before, net, "layers.1.conv4.")
    assert not changed(before, net, "layers.3.conv8.")
    # ... while the ops both use, and B's own ops, move.
    for shared in ("layers.0.conv8.", "layers.2.dconv8.", "layers.1.dconv4.", "layers.3.conv4.", "stem.", "head."):
        assert changed(before, net, shared), shared


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_trainer_shares_weights_and_scores_in_either_precision(precision):
    rng = np.random.default_rng(0)
    x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (32, 64))].transpose(0, 2, 1).copy()
    data = SequenceDataset(x, (rng.random((32, 2)) > 0.5).astype(np.float32), [f"s{i}" for i in range(32)], ["a", "b"])
    trainer = SupernetTrainer(small_space(), data, data, learning_rate=1e-2, seed=0, precision=precision)
    a = Architecture.from_text("conv8,skip:;conv4,skip:0;dconv8,skip:;conv8,skip:1")
    b = Architecture.from_text("conv8,skip:;dconv4,skip:;dconv8,skip:0;conv4,skip:")
    trainer.train_pass([a], iteration=0, batch_size=32)
    before = snapshot(trainer.model)
    trainer.train_pass([b], iteration=1, batch_size=32)
    assert not changed(before, trainer.model, "layers.1.conv4.")  # the multi-tensor optimizer skips unused ops too
    assert changed(before, trainer.model, "layers.1.dconv4.") and changed(before, trainer.model, "head.")
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    scores = trainer.score([a, b])
    assert all(0.0 <= r <= 1.0 for score in scores for r in score)
    halves = trainer.score([a], all_validation=True)[0][1:]
    with torch.inference_mode(), trainer._autocast():
        probs = trainer.model(torch.from_numpy(trainer.valid_all.x), a).float().numpy()
    assert halves == pytest.approx(
        (mean_auroc(trainer.valid_all.y[0::2], probs[0::2]), mean_auroc(trainer.valid_all.y[1::2], probs[1::2]))
    )


def test_warm_up_with_uniform_architectures_updates_every_op_of_every_layer():
    torch.manual_seed(0)
    space = small_space()
    net = Supernet(space)
    initial = snapshot(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    for _ in range(60):
        train_step(net, optimizer, space.sample(rng))
    for layer in range(space.num_layers):
        for op in ("conv8", "conv4", "dconv8", "dconv4"):
            assert changed(initial, net, f"layers.{layer}.{op}."), (layer, op)


def test_supernet_path_equals_child_with_the_same_weights():
    torch.manual_seed(0)
    space = dataclasses.replace(small_space(), dropout=0.0)
    net = Supernet(space).train()
    arch = space.sample(np.random.default_rng(5))
    child = ChildNet(space, arch)
    child.load_state_dict(net.child_state_dict(arch), strict=False)  # a child's BN running statistics stay its own
    child.train()
    x = torch.randn(8, 4, 64)
    torch.manual_seed(1)
    expected = net(x, arch)
    torch.manual_seed(1)
    assert torch.allclose(child(x), expected, atol=1e-6)


@pytest.mark.parametrize(("flags", "expected"), [({"avx512f", "avx512_bf16"}, "bfloat16"), ({"avx2"}, "float32")])
def test_trainer_precision_defaults_to_auto(monkeypatch, flags, expected):
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset(flags))
    rng = np.random.default_rng(0)
    x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (8, 64))].transpose(0, 2, 1).copy()
    data = SequenceDataset(x, (rng.random((8, 2)) > 0.5).astype(np.float32), [f"s{i}" for i in range(8)], ["a", "b"])
    trainer = SupernetTrainer(small_space(), data, data, learning_rate=1e-2, seed=0)
    assert trainer.precision == expected and trainer.precision_reason.startswith("auto: CPU has")


# What the code computed before the speed work of the reference step (float32, this test's seeds).
PINNED_LOSSES = [1.5531644523143768, 1.1212263107299805, 0.8805678188800812]
PINNED_REWARDS = [0.48523243564004437, 0.4802293117510509, 0.5842636379321162]


def planted_motif_data(n: int, length: int, seed: int) -> SequenceDataset:
    """One-hot sequences; label j = motif j planted at a random position (probability 1/2 each)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, (n, length))
    motifs = [np.array([3, 2, 0, 1, 3, 1, 0, 3]), np.array([2, 2, 2, 2, 1, 2, 2, 2])]  # TGACTCAT, GGGGCGGG
    y = (rng.random((n, len(motifs))) < 0.5).astype(np.float32)
    for j, motif in enumerate(motifs):
        for i in np.flatnonzero(y[:, j]):
            start = rng.integers(0, length - len(motif) + 1)
            codes[i, start : start + len(motif)] = motif
    x = np.eye(4, dtype=np.float32)[codes].transpose(0, 2, 1).copy()
    return SequenceDataset(x, y, [f"s{i}" for i in range(n)], ["m0", "m1"])


def pinned_run() -> tuple[list[float], list[float]]:
    """Three seeded supernet passes, then three architectures' rewards, in a small reference-style space."""
    ops = ("conv8", "conv4", "dconv8", "maxpool", "avgpool", "identity")
    space = ModelSpace(
        input_length=100,
        num_labels=2,
        num_layers=4,
        layers_per_block=4,
        ops=ops,
        first_filters=16,
        reduction=1,
        stem_channels=16,
        dense_units=64,
        dropout=0.0,
    )
    trainer = SupernetTrainer(
        space, planted_motif_data(200, 100, 0), planted_motif_data(100, 100, 1), 1e-3, seed=0, precision="float32"
    )
    rng = np.random.default_rng(3)
    losses = [trainer.train_pass([space.sample(rng) for _ in range(4)], iteration, batch_size=50) for iteration in range(3)]
    return losses, [score[0] for score in trainer.score([space.sample(rng) for _ in range(3)])]


def test_rewards_of_a_fixed_seed_are_pinned():
    """Speed work must not change what the search computes (float32; Adam's sensitivity to round-off is why the tolerance)."""
    losses, rewards = pinned_run()
    assert losses == pytest.approx(PINNED_LOSSES, rel=1e-4)
    np.testing.assert_allclose(rewards, PINNED_REWARDS, atol=5e-3)


def test_scoring_together_shares_prefixes_and_equals_scoring_one_by_one():
    data = planted_motif_data(96, 64, 2)
    trainer = SupernetTrainer(small_space(), data, data, learning_rate=1e-2, seed=0, precision="float32")
    a = Architecture.from_text("conv8,skip:;conv4,skip:0;dconv8,skip:;conv8,skip:1")
    b = Architecture.from_text("conv8,skip:;conv4,skip:0;conv4,skip:1;conv4,skip:")  # a's first two layers
    c = Architecture.from_text("dconv4,skip:;conv4,skip:;dconv8,skip:0;conv4,skip:")
    trainer.train_pass([a, b, c], iteration=0, batch_size=32)
    alone = [trainer.score([arch], batch_size=64)[0] for arch in (a, b, c)]
    calls = {"stem": 0, "layer1": 0}
    trainer.model.stem.register_forward_hook(lambda *_: calls.__setitem__("stem", calls["stem"] + 1))
    trainer.model.layers[1]["conv4"].register_forward_hook(lambda *_: calls.__setitem__("layer1", calls["layer1"] + 1))
    together = trainer.score([a, b, a, c], batch_size=64)
    assert together == [alone[0], alone[1], alone[0], alone[2]]
    # per batch (96 sequences in batches of 64): one stem for all, one layer 1 for a and b, one for c
    assert calls == {"stem": 2, "layer1": 4}


def test_bfloat16_scoring_casts_the_dense_head_once():
    data = planted_motif_data(32, 64, 2)
    trainer = SupernetTrainer(small_space(), data, data, learning_rate=1e-2, seed=0, precision="bfloat16")
    archs = [small_space().sample(np.random.default_rng(seed)) for seed in range(3)]
    head_shape = list(trainer.model.head[2].weight.shape)
    with torch.profiler.profile(record_shapes=True) as profiler:
        trainer.score(archs)
    casts = [e for e in profiler.events() if e.name == "aten::_to_copy" and e.input_shapes and e.input_shapes[0] == head_shape]
    assert len(casts) == 1
