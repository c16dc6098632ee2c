import itertools
import re

import numpy as np
import pytest

from amber_ray.config import OP_NAMES, SpaceConfig
from amber_ray.errors import AmberInputError
from amber_ray.space import Architecture, ModelSpace


def paper_space() -> ModelSpace:
    return ModelSpace.from_config(SpaceConfig(profile="deepsea"), input_length=1000, num_labels=919)


def enumerate_architectures(num_layers: int, ops: tuple[str, ...]) -> set[str]:
    """Every architecture of a tiny space, by brute force, as canonical text."""
    skip_options = [
        list(itertools.chain.from_iterable(itertools.combinations(range(i), r) for r in range(i + 1))) for i in range(num_layers)
    ]
    return {
        Architecture(op_choice, skip_choice).to_text()
        for op_choice in itertools.product(ops, repeat=num_layers)
        for skip_choice in itertools.product(*skip_options)
    }


@pytest.mark.parametrize("num_layers,num_ops", [(1, 3), (2, 2), (3, 2), (4, 3)])
def test_size_matches_brute_force_count(num_layers, num_ops):
    space = ModelSpace(
        input_length=64, num_labels=1, num_layers=num_layers, layers_per_block=1, ops=OP_NAMES[:num_ops], reduction=1
    )
    assert space.size() == len(enumerate_architectures(num_layers, OP_NAMES[:num_ops]))


def test_paper_space_size_from_first_principles():
    # 12 layers with 7 ops each; layer i chooses a subset of its i predecessors: 0 + 1 + ... + 11 = 66 bits.
    assert paper_space().size() == 7**12 * 2**66
    assert f"{paper_space().size():.3e}" == "1.021e+30"
    # (The paper's "about 5.1e30" is 2^102 = 8^12 * 2^66: it counts 8 choices per layer.)


def test_text_form_round_trips_for_random_architectures():
    space = paper_space()
    rng = np.random.default_rng(0)
    for _ in range(200):
        arch = space.sample(rng)
        assert Architecture.from_text(arch.to_text()) == arch
    assert Architecture.from_text("conv8,skip:;dconv4,skip:0").skips == ((), (0,))


def test_uniform_sampling_skip_probability_and_op_frequencies():
    space = paper_space()
    rng = np.random.default_rng(1)
    archs = [space.sample(rng, skip_probability=0.4) for _ in range(2000)]
    assert abs(np.mean([a.skip_fraction() for a in archs]) - 0.4) < 0.01
    counts = np.array([sum(a.ops.count(op) for a in archs) for op in space.ops]) / (2000 * 12)
    assert np.allclose(counts, 1 / 7, atol=0.01)


@pytest.mark.parametrize(
    "text,problem",
    [
        ("conv8,skip:;conv4,skip:1", "layer 1"),  # skip to itself
        ("conv8,skip:;conv4,skip:5", "not an earlier layer"),
        ("conv8;conv4,skip:0", "expected 'op,skip:i+j'"),
        ("conv8,skip:;conv4,skip:x", "not '+'-joined integers"),
    ],
)
def test_bad_architecture_strings_are_clear_errors(text, problem):
    with pytest.raises(AmberInputError, match=re.escape(problem)):
        Architecture.from_text(text)


def test_space_rejects_unknown_op_and_wrong_layer_count():
    space = ModelSpace(input_length=200, num_labels=1, num_layers=2, layers_per_block=1, ops=("conv8", "maxpool"))
    with pytest.raises(AmberInputError, match="op 'conv4' is not in the space"):
        space.validate(Architecture.from_text("conv8,skip:;conv4,skip:0"))
    with pytest.raises(AmberInputError, match="has 1 layers"):
        space.validate(Architecture.from_text("conv8,skip:"))


def test_space_that_reduces_length_below_one_is_an_error():
    with pytest.raises(AmberInputError, match="leave nothing of a 251-bp input"):
        ModelSpace.from_config(SpaceConfig(profile="deepsea"), input_length=251, num_labels=1)


def test_small_profile_fits_promoter_length():
    space = ModelSpace.from_config(SpaceConfig(profile="small"), input_length=251, num_labels=1)
    assert space.block_length(space.num_blocks) == 251 // 16
