"""Search policies: what proposes the architectures a search scores, and learns from their rewards.

Every strategy of ``search.strategy`` is a :class:`Policy`, so the search loop runs each of them
on the same supernet, budget and final choice: the LSTM controller (``enas``), uniform sampling
(``random``, the ablation) and regularized evolution (``evolution``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch

from amber_ray.config import EvolutionConfig, SearchConfig
from amber_ray.controller import Controller, UniformPolicy, finite_rewards, iteration_stats
from amber_ray.space import Architecture, ModelSpace


class Policy(Protocol):
    """Proposes architectures and learns from their rewards; its whole state round-trips through a dict."""

    def sample(self, n: int) -> tuple[list[Architecture], torch.Tensor]:
        """``n`` architectures and the op probabilities per layer ``(layers, ops)`` they were drawn with."""
        ...

    def update(self, archs: Sequence[Architecture], rewards: Sequence[float]) -> dict[str, float]:
        """Learn from one iteration's scored architectures; returns the iteration's statistics."""
        ...

    def greedy(self) -> Architecture | None:
        """The policy's single most likely architecture, or None where it has no mode."""
        ...

    def full_state(self) -> dict: ...

    def load_full_state(self, state: dict) -> None: ...


class RegularizedEvolution:
    """Regularized ("aging") evolution, Real et al. 2019, "Regularized Evolution for Image Classifier
    Architecture Search".

    Until the population holds ``population`` scored architectures, samples are uniform. Then each
    sample is a child: ``tournament`` members drawn at random, the best of them mutated once (one
    layer's op changed, or one skip connection flipped). ``update`` adds the scored architectures
    and removes the oldest beyond ``population``: every architecture dies of age, so one lucky
    reward on a supernet that is still learning cannot stay forever.

    Args:
        space: the model space.
        config: population and tournament sizes (``search.evolution``).
        skip_probability: of each skip in the uniform samples of the first generation.
        seed: seeds the sampling.
    """

    def __init__(self, space: ModelSpace, config: EvolutionConfig, skip_probability: float = 0.4, seed: int = 0):
        self.space = space
        self.config = config
        self.skip_probability = skip_probability
        self.rng = np.random.default_rng([seed, 2])
        self.population: list[tuple[str, float]] = []  # oldest first

    def mutate(self, arch: Architecture) -> Architecture:
        """One op changed to another, or one skip flipped; each possible mutation equally likely."""
        ops, skips = list(arch.ops), [set(s) for s in arch.skips]
        op_choices = self.space.num_layers * (len(self.space.ops) - 1)
        choice = int(self.rng.integers(op_choices + self.space.num_skip_choices))
        if choice < op_choices:
            layer, shift = divmod(choice, len(self.space.ops) - 1)
            current = self.space.ops.index(ops[layer])
            ops[layer] = self.space.ops[(current + 1 + shift) % len(self.space.ops)]
        else:
            choice -= op_choices
            layer = 1
            while choice >= layer:  # layer i has i skip choices
                choice -= layer
                layer += 1
            skips[layer] ^= {choice}
        return Architecture(tuple(ops), tuple(tuple(sorted(s)) for s in skips))

    def child(self) -> Architecture:
        drawn = self.rng.choice(len(self.population), self.config.tournament, replace=False)
        parent = max(drawn, key=lambda i: (self.population[i][1], -i))  # the best; the older of equals
        return self.mutate(Architecture.from_text(self.population[parent][0]))

    def sample(self, n: int) -> tuple[list[Architecture], torch.Tensor]:
        if len(self.population) < self.config.population:
            archs = [self.space.sample(self.rng, self.skip_probability) for _ in range(n)]
        else:
            archs = [self.child() for _ in range(n)]
        return archs, op_frequencies(self.space, archs)

    def greedy(self) -> Architecture | None:
        """The best living member of the population."""
        if not self.population:
            return None
        return Architecture.from_text(max(reversed(self.population), key=lambda member: member[1])[0])

    def update(self, archs: Sequence[Architecture], rewards: Sequence[float]) -> dict[str, float]:
        reward = finite_rewards(rewards)
        self.population.extend((arch.to_text(), float(r)) for arch, r in zip(archs, reward))
        del self.population[: max(0, len(self.population) - self.config.population)]
        living = np.array([member[1] for member in self.population])
        return {"baseline": float(living.mean()), "population_best": float(living.max()), **iteration_stats(archs, reward)}

    def full_state(self) -> dict:
        return {"rng": copy.deepcopy(self.rng.bit_generator.state), "population": list(self.population)}

    def load_full_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.population = [(arch, float(reward)) for arch, reward in state["population"]]


def op_frequencies(space: ModelSpace, archs: Sequence[Architecture]) -> torch.Tensor:
    """Share of ``archs`` choosing each op per layer ``(layers, ops)``: the sampling distribution a policy without one reports."""
    counts = torch.zeros(space.num_layers, len(space.ops))
    for arch in archs:
        for layer, op in enumerate(arch.ops):
            counts[layer, space.ops.index(op)] += 1
    return counts / max(1, len(archs))


POLICIES: dict[str, Callable[[ModelSpace, SearchConfig, int], Policy]] = {
    "enas": lambda space, search, seed: Controller(space, search.controller, seed),
    "random": lambda space, search, seed: UniformPolicy(space, search.controller, seed),
    "evolution": lambda space, search, seed: RegularizedEvolution(space, search.evolution, search.controller.skip_target, seed),
}


def make_policy(space: ModelSpace, search: SearchConfig, seed: int) -> Policy:
    """The policy of ``search.strategy``."""
    return POLICIES[search.strategy](space, search, seed)
