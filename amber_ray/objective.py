"""The search objective (``search.objective``) and the reward-vs-size Pareto front of candidates.

Genome-wide scoring runs a model billions of times, so a model several times smaller at the same
AUROC is worth finding: the objective can charge for parameters or measured inference latency
(on a log scale, so halving the size is worth the same at any size), or refuse models above a
parameter budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from amber_ray.config import ObjectiveConfig


def objective_reward(config: ObjectiveConfig, auroc: float, num_params: int, seconds: float = math.nan) -> float:
    """The search reward of an architecture with validation ``auroc``, ``num_params`` parameters and
    ``seconds`` per scored batch (measured only for ``kind: latency``)."""
    if config.kind == "auroc":
        return auroc
    if config.kind == "params":
        return auroc - config.weight * math.log10(num_params / config.reference_params)
    if config.kind == "latency":
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"objective 'latency' needs a measured latency, got {seconds}")
        return auroc - config.weight * math.log10(seconds / config.reference_seconds)
    return auroc if config.max_params is None or num_params <= config.max_params else 0.0


def pareto_front(candidates: Sequence[dict[str, Any]], value: str, size: str = "num_params") -> list[dict[str, Any]]:
    """The candidates no other candidate beats on both ``value`` (higher is better) and ``size``
    (smaller is better), smallest first; of exact ties the first listed stays."""
    front: list[dict[str, Any]] = []
    for candidate in sorted(candidates, key=lambda c: (c[size], -c[value])):
        if not front or candidate[value] > front[-1][value]:
            front.append(candidate)
    return front
