"""Connecting to Ray and asking only for resources the cluster can give, now or once it has scaled.

A task or actor that asks for more than any node can hold waits forever, so every request is
checked first against what the cluster can become: the nodes that are up, and the node types its
autoscaler can start (read from the cluster config the autoscaler reports to the GCS, or from the
autoscaling config file of the head's autoscaler process). A request no node type could ever hold
fails at once naming its config key; one that only has to wait for the autoscaler is logged and
goes on, and Ray's own demand makes the autoscaler start the nodes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ray
import ray._private.state
import yaml
from ray.experimental.internal_kv import _internal_kv_get

from amber_ray.device import fake_cluster
from amber_ray.errors import AmberInputError

logger = logging.getLogger(__name__)

AUTOSCALING_STATUS_KEY = "__autoscaling_status"  # ray._private.ray_constants.DEBUG_AUTOSCALING_STATUS
DESCRIBED_RESOURCES = ("CPU", "GPU")


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


@dataclass(frozen=True)
class NodeKind:
    """A node that is up (``count`` 1) or a node type the autoscaler can start ``count`` of (None: no limit)."""

    name: str
    resources: Mapping[str, float]
    count: int | None = 1

    def holds(self, request: Mapping[str, float]) -> int:
        """How many ``request`` bundles one such node holds."""
        return min(math.floor(self.resources.get(name, 0.0) / amount + 1e-9) for name, amount in request.items())

    def describe(self) -> str:
        resources = ", ".join(f"{name} {self.resources[name]:g}" for name in DESCRIBED_RESOURCES if self.resources.get(name))
        limit = "" if self.count == 1 else f", up to {self.count if self.count is not None else 'any number'}"
        return f"{self.name} ({resources or 'no CPU/GPU'}{limit})"


def require(resources: Mapping[str, tuple[str, float]], count: int = 1, count_key: str | None = None) -> None:
    """Check ``count`` bundles of ``resources`` (``{"GPU": ("search.gpus_per_worker", 1.0), ...}``) against the cluster.

    Returns at once when the nodes up now hold them. Otherwise raises :class:`AmberInputError`
    naming the config key when no node that is up and no node type of the autoscaler could ever
    hold one bundle (or all ``count`` of them: ``count_key``), and else logs what is awaited.
    """
    request = {name: amount for name, (_, amount) in resources.items() if amount > 0}
    live = live_nodes()
    if not request or sum(kind.holds(request) for kind in live) >= count:
        return
    node_types, known = autoscaler_node_types()
    possible = live + node_types
    if known and not any(kind.holds(request) for kind in possible):
        raise AmberInputError(too_big_message(resources, request, possible))
    capacity = sum(math.inf if kind.count is None else kind.holds(request) * kind.count for kind in possible)
    if known and capacity < count:
        raise AmberInputError(
            f"config key '{count_key}' asks for {count} x {bundle_text(request)} but this cluster can hold at most "
            f"{capacity:g} ({'; '.join(kind.describe() for kind in possible)})"
        )
    startable = [kind.name for kind in node_types if kind.holds(request)] or ["unknown"]
    logger.info(
        "waiting for the autoscaler: %d x %s (%s) do not fit the nodes up now; node types that can hold them: %s",
        count,
        bundle_text(request),
        ", ".join(key for key, amount in resources.values() if amount > 0),
        ", ".join(startable),
    )


def too_big_message(resources: Mapping[str, tuple[str, float]], request: Mapping[str, float], possible: list[NodeKind]) -> str:
    """The keys of the resources that no node has enough of (all requested ones when only their combination fails)."""
    short = [name for name in request if all(kind.resources.get(name, 0.0) < request[name] for kind in possible)] or list(request)
    keys = " and ".join(f"config key '{resources[name][0]}' asks for {request[name]:g} {name}" for name in short)
    largest = ", ".join(f"{name} {max(kind.resources.get(name, 0.0) for kind in possible):g}" for name in short)
    return (
        f"{keys} per worker, more than any node of this cluster has, up now or startable by its autoscaler "
        f"({'; '.join(kind.describe() for kind in possible)}); the most on one node is {largest}"
    )


def bundle_text(request: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{name}: {amount:g}" for name, amount in request.items()) + "}"


def live_nodes() -> list[NodeKind]:
    return [NodeKind(f"node {node['NodeID'][:8]}", dict(node["Resources"])) for node in ray.nodes() if node["Alive"]]


def autoscaler_node_types(wait_s: float = 10.0) -> tuple[list[NodeKind], bool]:
    """The worker node types the autoscaler can start, and whether they are known.

    Without an autoscaler (a local cluster, nodes started by hand) the list is empty and known:
    the nodes up now are all there will be. With one whose node types cannot be read here (the
    driver is not on the head, or a node type leaves its resources to be detected at launch),
    unknown: then no request is refused up front. Waits up to ``wait_s`` for a fresh cluster's
    first autoscaler report.
    """
    node_types = reported_cluster_config()
    if node_types is None:
        status = autoscaling_status(wait_s)
        if status is None:
            return [], False
        arguments = monitor_arguments(status.get("monitor_pid"))
        if arguments is None:
            return [], False
        config_path = next((arg.partition("=")[2] for arg in arguments if arg.startswith("--autoscaling-config=")), None)
        if config_path is None:
            return [], True
        try:
            node_types = node_types_from_config(yaml.safe_load(Path(config_path).expanduser().read_text()))
        except (OSError, yaml.YAMLError, AttributeError):
            return [], False
    return node_types, all(kind.resources for kind in node_types)


def autoscaling_status(wait_s: float) -> dict | None:
    """The monitor's last report (``ray status`` reads it too), or None if it has not reported within ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while not (status := _internal_kv_get(AUTOSCALING_STATUS_KEY)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return json.loads(status) if status else None


def monitor_arguments(pid: int | None) -> list[str] | None:
    """The command line of this cluster's autoscaler monitor when it runs on this host (the head), else None."""
    if pid is None:
        return None
    try:
        arguments = Path(f"/proc/{int(pid)}/cmdline").read_bytes().decode().split("\0")
    except (OSError, ValueError):
        return None
    mine = f"--gcs-address={ray.get_runtime_context().gcs_address}" in arguments
    return arguments if mine and any(arg.endswith("monitor.py") for arg in arguments) else None


def reported_cluster_config() -> list[NodeKind] | None:
    """Node groups an autoscaler reported to the GCS (Ray's own v1 autoscaler does not), if any."""
    config = ray._private.state.state.get_cluster_config()
    if config is None or not config.node_group_configs:
        return None
    return [
        NodeKind(group.name, dict(group.resources), None if group.max_count < 0 else group.max_count)
        for group in config.node_group_configs
    ]


def node_types_from_config(config: Mapping) -> list[NodeKind]:
    """Worker node types of a Ray autoscaling config (``available_node_types``; the head is a live node)."""
    default_max = config.get("max_workers")
    return [
        NodeKind(
            name,
            {key: float(value) for key, value in node_type.get("resources", {}).items()},
            node_type.get("max_workers", default_max),
        )
        for name, node_type in config.get("available_node_types", {}).items()
        if name != config.get("head_node_type")
    ]


def multi_node() -> bool:
    """Whether work may run on more than one node: several nodes are up, or the autoscaler has worker node types."""
    return len(live_nodes()) > 1 or bool(autoscaler_node_types()[0])


def require_storage(storage: str | None) -> None:
    """On a cluster of several nodes, ``storage`` is required, before any work starts.

    Tune trials and the search checkpoint are written from whichever node runs them, and a
    replaced head must find them: a local ``--out`` on the head is not shared, and Tune refuses a
    local storage path on worker nodes only once the trials run, after the whole search.
    """
    if storage is None and multi_node():
        raise AmberInputError(
            "config key 'storage' is not set but this Ray cluster has (or can start) several nodes; set storage "
            "to a location every node reaches (s3://bucket/prefix, or a path every node mounts)"
        )


def refuse_shared_gpus(gpus_per_worker: float, workers: int, device: str | None) -> None:
    """Fractional GPUs for several data-parallel workers put two NCCL ranks on one GPU, which NCCL refuses.

    Allowed where the group is not NCCL: ``train.device: cpu`` (gloo), or Ray's fake cluster
    whose GPUs are Ray resources only (its workers run on the CPU, see :func:`amber_ray.device.worker_device`).
    """
    fractional = gpus_per_worker > 0 and gpus_per_worker != int(gpus_per_worker)
    if fractional and workers > 1 and str(device) != "cpu" and not fake_cluster():
        raise AmberInputError(
            f"config key 'search.gpus_per_worker' is {gpus_per_worker:g} with 'search.workers' {workers}: two data-parallel "
            "workers would share one GPU, and NCCL refuses two ranks on one device; give each worker whole GPUs "
            "(search.gpus_per_worker: 1) or use one worker"
        )
