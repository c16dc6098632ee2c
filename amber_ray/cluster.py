"""Connecting to Ray and asking only for resources the cluster can give.

A task or actor that asks for a GPU on a cluster without one waits forever, so every GPU
request is checked against ``ray.cluster_resources()`` first and fails at once with a message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from amber_ray.errors import AmberInputError

logger = logging.getLogger(__name__)


def connect() -> None:
    """Join the cluster in ``RAY_ADDRESS`` (as inside ``ray job submit``), else start a local one."""
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)


@contextmanager
def ray_session() -> Iterator[None]:
    """:func:`connect` for the duration of a command; a Ray connection it made is shut down after it."""
    started = not ray.is_initialized()
    connect()
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def resolve_gpus(requested: float, key: str) -> float:
    """Return ``requested`` if the cluster can ever satisfy it; raise naming the config ``key`` if not."""
    if requested <= 0:
        return 0.0
    available = ray.cluster_resources().get("GPU", 0.0)
    if available < min(requested, 1.0) or (requested > 1 and available < requested):
        raise AmberInputError(
            f"config key '{key}' asks for {requested:g} GPU(s) but the Ray cluster has {available:g}; "
            f"set it to 0 to run on CPU or add GPU nodes"
        )
    return requested
