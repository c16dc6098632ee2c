"""One search iteration, the same in this process and on Ray.

An iteration (AMBER / ENAS, and every other strategy on the same supernet and budget):

1. the policy samples ``archs_per_iteration`` architectures;
2. the supernet scores them on validation data: reward = the search objective of their
   validation AUROC (``search.objective``: AUROC alone by default);
3. the policy learns from the rewards (policy steps, a new generation, or nothing for uniform
   sampling);
4. the policy samples one architecture per supernet mini-batch and the supernet trains one pass
   on them.

Before the first iteration the supernet warms up for one pass with uniformly sampled
architectures. The Ray driver (:mod:`amber_ray.search.loop`) and the in-process loop
(:mod:`amber_ray.search.local`) both run :func:`run_iteration`; they differ only in where the
policy and the supernet live, so for one seed they give the same history.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from amber_ray.config import ObjectiveConfig
from amber_ray.objective import objective_reward
from amber_ray.policy import Policy
from amber_ray.space import Architecture, ModelSpace
from amber_ray.supernet import SupernetTrainer

WARMUP_ITERATION = -1

# (validation AUROC, AUROC on half 1, AUROC on half 2, parameters, seconds per scored batch)
Score = tuple[float, float, float, int, float]


class TextPolicy(Protocol):
    """A policy that talks in architecture strings (what crosses between processes)."""

    def sample(self, n: int) -> tuple[list[str], np.ndarray]: ...

    def update(self, archs: list[str], rewards: list[float]) -> dict[str, float]: ...


class SupernetPool(Protocol):
    """The supernet replicas of a search, however many and wherever they run."""

    def train_pass(self, archs: list[str], iteration: int, batch_size: int) -> float:
        """One pass, one architecture per global mini-batch; the mean loss."""
        ...

    def score(self, archs: list[str], all_validation: bool = False) -> list[Score]: ...


class PolicyEndpoint:
    """A :class:`~amber_ray.policy.Policy` behind architecture strings and numpy arrays."""

    def __init__(self, policy: Policy):
        self.policy = policy

    def sample(self, n: int) -> tuple[list[str], np.ndarray]:
        archs, op_probs = self.policy.sample(n)
        return [arch.to_text() for arch in archs], op_probs.numpy()

    def greedy(self) -> str | None:
        arch = self.policy.greedy()
        return arch.to_text() if arch is not None else None

    def update(self, archs: list[str], rewards: list[float]) -> dict[str, float]:
        return self.policy.update([Architecture.from_text(a) for a in archs], rewards)

    def state(self) -> dict:
        return self.policy.full_state()

    def load(self, state: dict) -> None:
        self.policy.load_full_state(state)


@dataclass(frozen=True)
class Schedule:
    """How much one iteration does."""

    archs_per_iteration: int
    train_batches: int
    batch_size: int
    objective: ObjectiveConfig


@dataclass
class Iteration:
    """What one iteration produced: its history rows, the policy's statistics, the op probabilities sampled from."""

    rows: list[dict[str, Any]]
    stats: dict[str, float]
    op_probs: list[list[float]]


def score_with(trainer: SupernetTrainer, archs: list[str], all_validation: bool, measure_latency: bool) -> list[Score]:
    """Score architectures on one supernet replica; the latency is measured only when the objective needs it."""
    parsed = [Architecture.from_text(a) for a in archs]
    scores = trainer.score(parsed, all_validation=all_validation)
    return [
        (*score, trainer.model.path_num_params(arch), trainer.latency(arch) if measure_latency else math.nan)
        for score, arch in zip(scores, parsed)
    ]


def warmup_archs(space: ModelSpace, seed: int, batches: int) -> list[str]:
    """The warm-up pass's architectures: uniform ops, each skip present with probability 0.5."""
    rng = np.random.default_rng([seed, 7])
    return [space.sample(rng, 0.5).to_text() for _ in range(batches)]


def rewards_of(scored: Sequence[Score], objective: ObjectiveConfig) -> list[float]:
    """The search reward of each scored architecture under ``objective``."""
    return [objective_reward(objective, auroc, params, seconds) for auroc, _, _, params, seconds in scored]


def run_iteration(policy: TextPolicy, supernet: SupernetPool, iteration: int, schedule: Schedule) -> Iteration:
    """One iteration (see the module's docstring)."""
    archs, op_probs = policy.sample(schedule.archs_per_iteration)
    scored = supernet.score(archs)
    rewards = rewards_of(scored, schedule.objective)
    stats = policy.update(archs, rewards)
    train_archs, _ = policy.sample(schedule.train_batches)
    stats["supernet_loss"] = supernet.train_pass(train_archs, iteration, schedule.batch_size)
    stats["iteration"] = iteration
    rows = [
        {
            "iteration": iteration,
            "sample": k,
            "arch": arch,
            "reward": reward,
            "num_params": params,
            "reward_half1": half1,
            "reward_half2": half2,
            "auroc": auroc,
        }
        for k, (arch, reward, (auroc, half1, half2, params, _)) in enumerate(zip(archs, rewards, scored))
    ]
    return Iteration(rows, stats, op_probs.tolist())
