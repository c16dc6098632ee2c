"""Soak benchmark: a long simulated search with tiny settings, watching memory; prints one JSON object.

The search is the real one (``run_search``: controller and supernet actors, a checkpoint and
MLflow logging every iteration) on a local Ray started by this process, so every Ray process
(GCS, raylet, the actors) descends from it. After each iteration the resident set size (VmRSS
from ``/proc``) of the driver and of the ``ray::`` processes (the controller and supernet actors,
and Ray's per-node agents) is logged to stderr. Memory
must not grow by more than ``--max-growth`` after warm-up (``--warmup`` iterations); the final
JSON object says whether it did, and the exit code is 1 when it did not hold.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import ray
from measure import resident_bytes

from amber_ray.config import ExperimentConfig, parse_config
from amber_ray.search.loop import run_search

logger = logging.getLogger("soak")


def soak_config(iterations: int) -> ExperimentConfig:
    """A search small enough for about a second per iteration on one CPU core."""
    return parse_config(
        {
            "name": "soak",
            "seed": 0,
            "data": {
                "kind": "simulate",
                "simulate": {"num_sequences": 600, "length": 100, "motifs": ["MA0139.1", "MA0079.5"], "prevalence": 0.4},
                "split": {"valid": 0.2, "test": 0.1},
            },
            "space": {"profile": "small", "first_filters": 8, "stem_channels": 8, "dense_units": 16},
            "search": {
                "iterations": iterations,
                "archs_per_iteration": 4,
                "warmup_batch_size": 100,
                "batch_size": 100,
                "top_k": 3,
            },
        }
    )


def parent_and_name(pid: int) -> tuple[int, str]:
    """Parent pid and command line of ``pid`` (``(-1, "")`` when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return -1, ""
    return int(stat.rsplit(")", 1)[1].split()[1]), cmdline


def actor_pids(root: int) -> dict[int, str]:
    """Descendants of ``root`` that run a Ray actor (process title ``ray::<Class>...``)."""
    table = {int(entry): parent_and_name(int(entry)) for entry in os.listdir("/proc") if entry.isdigit()}
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, stack = {}, [root]
    while stack:
        for child in children.get(stack.pop(), []):
            stack.append(child)
            name = table[child][1]
            if name.startswith("ray::") and not name.startswith("ray::IDLE"):
                found[child] = name.split()[0]
    return found


def sample_memory(iteration: int) -> dict[str, int]:
    actors = actor_pids(os.getpid())
    driver = resident_bytes() // 1024
    workers = sum(resident_bytes(pid) // 1024 for pid in actors)
    total = driver + workers
    return {"iteration": iteration, "driver_kib": driver, "actors_kib": workers, "total_kib": total, "actors": len(actors)}


def actor_titles() -> list[str]:
    """Process titles of the actors being measured, for the record."""
    return sorted(actor_pids(os.getpid()).values())


def growth(samples: list[dict[str, int]], warmup: int, key: str) -> dict[str, float]:
    """RSS right after warm-up, at the end, and the relative growth between them."""
    after = next(s for s in samples if s["iteration"] >= warmup)[key]
    end = samples[-1][key]
    return {"after_warmup_kib": after, "end_kib": end, "growth": (end - after) / after, "peak_kib": max(s[key] for s in samples)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20, help="iterations before the baseline RSS is taken")
    parser.add_argument("--max-growth", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: a temporary one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    samples: list[dict[str, int]] = []
    titles: list[str] = []

    def on_iteration(stats: dict[str, float]) -> None:
        sample = sample_memory(int(stats["iteration"]))
        titles[:] = actor_titles()
        samples.append(sample)
        logger.info(json.dumps(sample))

    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run_search(soak_config(args.iterations), args.out or Path(tmp) / "run", on_iteration=on_iteration)
    finally:
        ray.shutdown()
    total = growth(samples, args.warmup, "total_kib")
    result = {
        "iterations": args.iterations,
        "warmup": args.warmup,
        "seconds": round(time.perf_counter() - started, 1),
        "total": total,
        "driver": growth(samples, args.warmup, "driver_kib"),
        "actors": growth(samples, args.warmup, "actors_kib"),
        "measured_processes": ["driver", *titles],
        "max_growth": args.max_growth,
        "passed": total["growth"] <= args.max_growth,
    }
    print(json.dumps(result))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
