import numpy as np
import torch

from amber_ray.config import ControllerConfig, SpaceConfig
from amber_ray.controller import Controller
from amber_ray.space import ModelSpace


def make_controller(seed: int = 0, **overrides) -> Controller:
    space = ModelSpace.from_config(SpaceConfig(profile="small", num_layers=6, layers_per_block=3), input_length=251, num_labels=1)
    return Controller(space, ControllerConfig(**overrides), seed)


def test_sampling_is_seeded_and_valid():
    first, probs = make_controller(seed=1).sample(50)
    second, _ = make_controller(seed=1).sample(50)
    assert first == second
    assert probs.shape == (6, 7)
    assert torch.allclose(probs.sum(-1), torch.ones(6))
    for arch in first:
        assert all(j < i for i, sources in enumerate(arch.skips) for j in sources)


def test_log_prob_of_given_architectures_matches_sampling():
    controller = make_controller()
    decisions = controller.decide(20)
    archs = controller.to_architectures(decisions)
    rescored = controller.decide(20, given=controller.encode(archs))
    assert torch.allclose(decisions.log_prob, rescored.log_prob, atol=1e-5)
    assert torch.allclose(decisions.skip_kl, rescored.skip_kl, atol=1e-5)


def test_reinforce_learns_a_rewarded_op():
    controller = make_controller()
    for _ in range(150):
        archs, _ = controller.sample(20)
        controller.update(archs, [float(a.ops[2] == "dconv4") for a in archs])
    _, probs = controller.sample(200)
    assert probs[2, controller.space.ops.index("dconv4")] > 0.6
    assert controller.greedy().ops[2] == "dconv4"


def test_skip_regularizer_pulls_skip_fraction_to_target():
    controller = make_controller(skip_target=0.2, skip_weight=2.0, entropy_weight=0.0)
    for _ in range(150):
        archs, _ = controller.sample(20)
        controller.update(archs, [0.5] * 20)  # no reward signal: only the regularizer acts
    archs, _ = controller.sample(500)
    assert abs(np.mean([a.skip_fraction() for a in archs]) - 0.2) < 0.05


def test_state_round_trip_continues_identically():
    a = make_controller()
    for _ in range(3):
        archs, _ = a.sample(10)
        a.update(archs, list(np.linspace(0, 1, 10)))
    b = make_controller(seed=99)
    b.load_full_state(a.full_state())
    assert b.baseline == a.baseline
    archs_a, _ = a.sample(10)
    archs_b, _ = b.sample(10)
    assert archs_a == archs_b
    assert a.update(archs_a, [0.3] * 10) == b.update(archs_b, [0.3] * 10)
