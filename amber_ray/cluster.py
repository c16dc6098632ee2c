"""Connecting to Ray and asking only for resources the cluster can give.

A task or actor that asks for a GPU on a cluster without one waits forever, so every GPU
request is checked against ``ray.cluster_resources()`` first and fails at once with a message.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from amber_ray.errors import AmberInputError

logger = logging.getLogger(__name__)


def connect() -> None:
    """Join the cluster in ``RAY_ADDRESS`` (as inside ``ray job submit``), else start a local one.

    ``ray.init`` replaces the SIGTERM handler with a bare ``sys.exit``; the caller's one is put back.
    """
    if ray.is_initialized():
        return
    on_sigterm = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if on_sigterm is not None:
        signal.signal(signal.SIGTERM, on_sigterm)


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


def check_cpus(per_unit: float, per_unit_key: str, units: int = 1, units_key: str | None = None) -> None:
    """Raise naming the config keys if ``units`` actors of ``per_unit`` CPUs each can never all run at once.

    Ray would queue such a request forever without a word: one unit needs a node with that many
    CPUs, and ``units`` of them (the search's workers train together) need that many in the cluster.
    """
    nodes = [node.get("Resources", {}).get("CPU", 0.0) for node in ray.nodes() if node.get("Alive")]
    largest, total = max(nodes, default=0.0), sum(nodes)
    if per_unit > largest:
        raise AmberInputError(f"config key '{per_unit_key}' asks for {per_unit:g} CPUs but the largest Ray node has {largest:g}")
    if units_key is not None and per_unit * units > total:
        raise AmberInputError(
            f"config keys '{units_key}' x '{per_unit_key}' ask for {units} x {per_unit:g} CPUs at once but the Ray cluster "
            f"has {total:g}; lower {units_key} to at most {math.floor(total / per_unit)} or add nodes"
        )
