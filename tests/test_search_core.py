"""The search core: one iteration shared by the Ray driver and the in-process loop; regularized
evolution and the cost-aware objective against known answers on surrogate spaces (no supernet)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from amber_ray.config import EvolutionConfig, ObjectiveConfig, SearchConfig, parse_config
from amber_ray.objective import objective_reward, pareto_front
from amber_ray.policy import RegularizedEvolution, make_policy
from amber_ray.search.core import PolicyEndpoint, Schedule, Score, run_iteration
from amber_ray.space import Architecture, ModelSpace

SPACE = ModelSpace(
    input_length=60,
    num_labels=1,
    num_layers=4,
    layers_per_block=2,
    ops=("conv8", "conv4", "dconv8", "dconv4", "maxpool", "avgpool", "identity"),
)
TARGET = Architecture(("dconv8", "conv4", "maxpool", "conv8"), ((), (), (0,), (1, 2)))


def skip_pairs(arch: Architecture) -> set[tuple[int, int]]:
    return {(layer, source) for layer, sources in enumerate(arch.skips) for source in sources}


class Surrogate:
    """A supernet stand-in whose AUROC is a known function of the architecture: the share of its
    decisions (op per layer, skip or not per pair) that agree with ``TARGET``."""

    def __init__(self, params=lambda arch: 1000):
        self.params = params

    def auroc(self, arch: Architecture) -> float:
        ops = sum(a == b for a, b in zip(arch.ops, TARGET.ops))
        wrong_skips = len(skip_pairs(arch) ^ skip_pairs(TARGET))
        return 0.5 + 0.5 * (ops + SPACE.num_skip_choices - wrong_skips) / (SPACE.num_layers + SPACE.num_skip_choices)

    def score(self, archs: list[str], all_validation: bool = False) -> list[Score]:
        scored = []
        for arch in map(Architecture.from_text, archs):
            auroc = self.auroc(arch)
            scored.append((auroc, auroc, auroc, self.params(arch), math.nan))
        return scored

    def train_pass(self, archs: list[str], iteration: int, batch_size: int) -> float:
        return 0.0


def surrogate_history(
    strategy: str, seed: int, iterations: int, objective: ObjectiveConfig, supernet=None, stop_at_optimum: bool = False
) -> pd.DataFrame:
    search = SearchConfig(strategy=strategy, evolution=EvolutionConfig(population=20, tournament=5), objective=objective)
    policy = PolicyEndpoint(make_policy(SPACE, search, seed))
    supernet = supernet or Surrogate()
    schedule = Schedule(archs_per_iteration=10, train_batches=1, batch_size=1, objective=objective)
    rows = []
    for iteration in range(iterations):
        rows += run_iteration(policy, supernet, iteration, schedule).rows
        if stop_at_optimum and any(row["arch"] == TARGET.to_text() for row in rows[-10:]):
            break
    return pd.DataFrame(rows)


def samples_to_optimum(history: pd.DataFrame) -> int | None:
    hits = np.flatnonzero(history.arch.to_numpy() == TARGET.to_text())
    return int(hits[0]) + 1 if len(hits) else None


def test_evolution_finds_the_best_architecture_of_a_surrogate_space_faster_than_uniform_sampling():
    """153,664 architectures, one optimum. Uniform sampling (skip probability 0.4) hits it with
    probability about 8e-6 per sample; within 2,000 samples it should not, in any of 5 seeds."""
    objective = ObjectiveConfig()
    evolution = [
        samples_to_optimum(surrogate_history("evolution", seed, 200, objective, stop_at_optimum=True)) for seed in range(5)
    ]
    uniform = [samples_to_optimum(surrogate_history("random", seed, 200, objective, stop_at_optimum=True)) for seed in range(5)]
    assert all(n is not None and n <= 2000 for n in evolution), evolution
    assert uniform == [None] * 5, uniform


def test_mutation_changes_exactly_one_decision_and_aging_drops_the_oldest():
    evolution = RegularizedEvolution(SPACE, EvolutionConfig(population=3, tournament=2), seed=1)
    for _ in range(200):
        parent = SPACE.sample(evolution.rng)
        child = evolution.mutate(parent)
        changed = sum(a != b for a, b in zip(parent.ops, child.ops)) + int(
            np.abs(parent.skip_matrix() - child.skip_matrix()).sum()
        )
        assert changed == 1 and set(child.ops) <= set(SPACE.ops)
    archs = [SPACE.sample(evolution.rng) for _ in range(4)]
    evolution.update(archs, [0.9, 0.1, 0.2, 0.3])
    assert [arch for arch, _ in evolution.population] == [a.to_text() for a in archs[1:]]  # the best one aged out
    assert evolution.greedy() == archs[3]
    state = evolution.full_state()
    first = [a.to_text() for a in evolution.sample(5)[0]]
    evolution.load_full_state(state)
    assert [a.to_text() for a in evolution.sample(5)[0]] == first


def test_the_cost_term_decides_the_chosen_architecture_when_accuracy_ties_nearly():
    """Two kinds of architectures: with a dense layer everywhere (conv8 in layer 0) 100x more
    parameters and 0.01 more AUROC. AUROC alone chooses the big one; a parameter penalty of 0.01
    per decade chooses the cheap one; a hard budget the cheap one too."""

    class Sized(Surrogate):
        def score(self, archs, all_validation=False):
            scored = []
            for arch in map(Architecture.from_text, archs):
                big = arch.ops[0] == "conv8"
                scored.append((0.9 + 0.01 * big, 0.0, 0.0, 100_000 if big else 1_000, math.nan))
            return scored

    def chosen(objective: ObjectiveConfig) -> pd.Series:
        history = surrogate_history("random", 0, 5, objective, Sized())
        return history.loc[history.reward.idxmax()]

    assert chosen(ObjectiveConfig()).num_params == 100_000
    assert chosen(ObjectiveConfig(kind="params", weight=0.01)).num_params == 1_000
    assert chosen(ObjectiveConfig(kind="budget", max_params=10_000)).num_params == 1_000
    assert objective_reward(ObjectiveConfig(kind="params", weight=0.01), 0.9, 1_000_000) == pytest.approx(0.9 - 0.01)
    assert objective_reward(ObjectiveConfig(kind="latency", weight=0.1, reference_seconds=0.01), 0.9, 1, 0.1) == pytest.approx(
        0.8
    )


def test_pareto_front_keeps_what_no_candidate_beats_on_both_auroc_and_size():
    candidates = [
        {"arch": "a", "num_params": 100, "auroc": 0.80},
        {"arch": "b", "num_params": 500, "auroc": 0.90},
        {"arch": "c", "num_params": 400, "auroc": 0.85},
        {"arch": "d", "num_params": 300, "auroc": 0.79},  # beaten by a
        {"arch": "e", "num_params": 600, "auroc": 0.90},  # ties b in AUROC, larger
    ]
    assert [c["arch"] for c in pareto_front(candidates, "auroc")] == ["a", "c", "b"]


def search_config(strategy: str):
    return parse_config(
        {
            "name": "core-test",
            "seed": 3,
            "data": {
                "kind": "simulate",
                "simulate": {"num_sequences": 400, "length": 60, "motifs": ["MA0079.5"], "prevalence": 0.5},
                "split": {"valid": 0.2, "test": 0.1},
            },
            "space": {"profile": "small", "first_filters": 8, "stem_channels": 8, "dense_units": 16},
            "search": {
                "strategy": strategy,
                "iterations": 3,
                "archs_per_iteration": 6,
                "warmup_batch_size": 50,
                "batch_size": 50,
                "final_samples": 0,
                "precision": "float32",
                "evolution": {"population": 6, "tournament": 3},
            },
        }
    )


@pytest.mark.parametrize("strategy", ["enas", "evolution"])
def test_ray_search_and_in_process_loop_give_the_same_history(ray_session, tmp_path, strategy):
    from amber_ray.data import load_splits
    from amber_ray.outputs import history_table
    from amber_ray.search.local import LocalSearch
    from amber_ray.search.loop import run_search

    config = search_config(strategy)
    run_search(config, tmp_path)
    ray_history = pd.read_parquet(tmp_path / "history.parquet")

    splits = load_splits(config.data, config.seed)
    space = ModelSpace.from_config(config.space, splits.train.length, splits.train.num_labels)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the supernet worker (search.cpus_per_worker 1)
    try:
        local = LocalSearch(space, splits.train, splits.valid, config.search, config.search_seed).run()
    finally:
        torch.set_num_threads(threads)
    pd.testing.assert_frame_equal(history_table(local), ray_history)


def test_retrain_arch_front_takes_every_architecture_of_the_front(tmp_path):
    import json

    from amber_ray.errors import AmberInputError
    from amber_ray.retrain import searched_architectures

    small, big = "conv4,skip:;identity,skip:;conv4,skip:;identity,skip:", TARGET.to_text()
    final = {"best": {"arch": big}, "pareto_front": [{"arch": small}, {"arch": big}]}
    path = tmp_path / "final_architectures.json"
    path.write_text(json.dumps(final))
    assert searched_architectures(path, SPACE, include_greedy=False) == [big]
    assert searched_architectures(path, SPACE, include_greedy=False, include_front=True) == [big, small]
    path.write_text(json.dumps({"best": {"arch": big}}))
    with pytest.raises(AmberInputError, match="no pareto_front"):
        searched_architectures(path, SPACE, include_greedy=False, include_front=True)


def test_report_draws_the_candidates_and_their_front(tmp_path):
    from amber_ray.report.figures import pareto_front as draw_front
    from amber_ray.report.parts import RunParts, SearchPart

    candidates = [
        {"arch": "a", "num_params": 100, "rescored_auroc": 0.80, "rescored_reward": 0.80},
        {"arch": "b", "num_params": 500, "rescored_auroc": 0.90, "rescored_reward": 0.90},
        {"arch": "d", "num_params": 300, "rescored_auroc": 0.79, "rescored_reward": 0.79},
    ]
    front = pareto_front(candidates, "rescored_auroc")
    final = {
        "best": {"arch": "b"},
        "selection": {"candidates": candidates, "objective": {"kind": "auroc"}},
        "pareto_front": front,
    }
    figure = draw_front(RunParts(search=SearchPart(tmp_path, final=final)))
    ax = figure.axes[0]
    candidates_drawn, front_drawn, chosen = (collection.get_offsets().tolist() for collection in ax.collections)
    assert sorted(map(tuple, candidates_drawn)) == [(100, 0.80), (300, 0.79), (500, 0.90)]
    assert front_drawn == [[100, 0.80], [500, 0.90]] and chosen == [[500, 0.90]]
    assert ax.get_xscale() == "log" and ax.get_title().startswith("2 of 3 candidates on the front")


def test_a_search_stored_before_the_objective_and_evolution_keys_resumes_with_their_defaults():
    from amber_ray.config import RESUME_SAFE_KEYS, SEARCH_IGNORES, ExperimentConfig, resume_conflicts

    config = ExperimentConfig()
    stored = config.model_dump(mode="json")
    del stored["search"]["objective"], stored["search"]["evolution"]
    assert resume_conflicts(stored, config, RESUME_SAFE_KEYS, SEARCH_IGNORES) == []
    costly = parse_config({"search": {"objective": {"kind": "params"}}})
    assert resume_conflicts(stored, costly, RESUME_SAFE_KEYS, SEARCH_IGNORES) == ["search.objective.kind 'auroc' -> 'params'"]


def test_a_resumed_search_refuses_changes_to_what_its_supernet_trains_on_and_takes_the_retrainings_settings():
    from amber_ray.config import RESUME_SAFE_KEYS, SEARCH_IGNORES, resume_conflicts

    stored = parse_config({}).model_dump(mode="json")
    weighted = parse_config({"train": {"pos_weight": "auto", "reverse_complement": True}})
    assert resume_conflicts(stored, weighted, RESUME_SAFE_KEYS, SEARCH_IGNORES) == [
        "train.pos_weight 'none' -> 'auto'",
        "train.reverse_complement 'None' -> 'True'",
    ]
    longer = parse_config({"train": {"max_epochs": 50, "learning_rate": 3e-4, "device": "cpu"}, "retrain": {"sampled": 3}})
    assert resume_conflicts(stored, longer, RESUME_SAFE_KEYS, SEARCH_IGNORES) == []
