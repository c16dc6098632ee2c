"""The search in this process, without Ray: the reference loop to read, time and test against.

The policy and one supernet trainer live here; each iteration is the same
:func:`~amber_ray.search.core.run_iteration` the Ray driver runs, so for one seed and config
the history equals the Ray search's. No checkpoints, no MLflow, no final choice: those belong to
the driver (:mod:`amber_ray.search.loop`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from amber_ray.config import SearchConfig
from amber_ray.data import HDF5SequenceFile, SequenceDataset
from amber_ray.policy import make_policy
from amber_ray.search.core import (
    WARMUP_ITERATION,
    PolicyEndpoint,
    Schedule,
    Score,
    run_iteration,
    score_with,
    warmup_archs,
)
from amber_ray.space import Architecture, ModelSpace
from amber_ray.supernet import SupernetTrainer


class LocalSearch:
    """The policy of ``search.strategy`` and one supernet trainer in this process.

    It is a :class:`~amber_ray.search.core.TextPolicy` and a
    :class:`~amber_ray.search.core.SupernetPool` at once, so each phase can also be run (and
    timed) on its own.

    Args:
        space: the model space.
        train, valid: the search's training and validation data.
        search: the search settings (strategy, schedule, learning rate, precision).
        seed: the search seed (``ExperimentConfig.search_seed``).
        device: where the supernet runs (``cpu``, ``cuda``, ``auto``).
    """

    def __init__(
        self,
        space: ModelSpace,
        train: SequenceDataset | HDF5SequenceFile,
        valid: SequenceDataset | HDF5SequenceFile,
        search: SearchConfig,
        seed: int,
        device: str = "cpu",
    ):
        self.space = space
        self.search = search
        self.seed = seed
        self.trainer = SupernetTrainer(
            space,
            train,
            valid,
            search.supernet_learning_rate,
            seed,
            valid_max_sequences=search.valid_max_sequences,
            device=device,
            precision=search.precision,
        )
        self.policy = PolicyEndpoint(make_policy(space, search, seed))
        batches = self.trainer.num_batches(search.batch_size, search.train_batches_per_iteration)
        self.schedule = Schedule(search.archs_per_iteration, batches, search.batch_size, search.objective)
        self.history: list[dict[str, Any]] = []
        self.stats: list[dict[str, float]] = []

    def precision(self) -> tuple[str, str]:
        return self.trainer.precision, self.trainer.precision_reason

    def sample(self, n: int) -> tuple[list[str], np.ndarray]:
        return self.policy.sample(n)

    def update(self, archs: list[str], rewards: list[float]) -> dict[str, float]:
        return self.policy.update(archs, rewards)

    def train_pass(self, archs: list[str], iteration: int, batch_size: int) -> float:
        return self.trainer.train_pass([Architecture.from_text(a) for a in archs], iteration, batch_size)

    def score(self, archs: list[str], all_validation: bool = False) -> list[Score]:
        return score_with(self.trainer, archs, all_validation, self.search.objective.kind == "latency")

    def warm_up(self) -> None:
        """One pass of the supernet with uniformly sampled architectures, as the Ray driver's."""
        batch = self.search.warmup_batch_size
        self.train_pass(warmup_archs(self.space, self.seed, self.trainer.num_batches(batch)), WARMUP_ITERATION, batch)

    def run_iteration(self, iteration: int) -> dict[str, float]:
        result = run_iteration(self, self, iteration, self.schedule)
        self.history.extend(result.rows)
        self.stats.append(result.stats)
        return result.stats

    def run(self) -> list[dict[str, Any]]:
        """Warm-up and ``search.iterations`` iterations; the history of every scored architecture."""
        self.warm_up()
        for iteration in range(self.search.iterations):
            self.run_iteration(iteration)
        return self.history
