"""Data larger than memory: the search streaming an HDF5 file vs the in-memory path; prints one JSON object.

A synthetic training set (default 1,000,000 x 1,000 bp, 919 labels, as DeepSEA's) is written to
disk in the compact format, block by block. Two search iterations then run with 2 supernet
workers streaming it (``data.kind: hdf5``): the policy samples and scores architectures on
validation data, then the supernet trains ``--batches`` global mini-batches. The same two
iterations run again with the in-memory path on a training set that fits (``--in-memory-sequences``),
for the throughput comparison.

Reported per path: peak RSS of each worker process and of the driver (``VmHWM``), object-store
use (plasma, after the workers took their data and after each iteration) and sequences per second
of supernet training and of scoring, per wall-clock second and per worker CPU second (medians
over ``--repeats`` alternated runs of each path). Target: peak RSS per process <= 2 GB whatever the data size,
streamed training throughput within 10 % of in-memory. The warm-up pass is skipped: it is one pass
over the whole training set, hours on a CPU at this size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import ray
from measure import resident_bytes
from ray._private.internal_api import memory_summary

from amber_ray.config import ExperimentConfig, parse_config
from amber_ray.data import SearchData, SequenceDataset, load_search_data
from amber_ray.data.dataset import codes_to_one_hot
from amber_ray.data.hdf5 import SPLIT_FILES, open_writer
from amber_ray.search.core import Score
from amber_ray.search.loop import SearchDriver

T = TypeVar("T")
THROUGHPUTS = (
    "train_sequences_per_second",
    "train_sequences_per_worker_cpu_second",
    "score_sequences_per_second",
    "score_sequences_per_worker_cpu_second",
)
GIB = 1024**3
TARGET_RSS_BYTES = 2 * GIB


def random_block(rng: np.random.Generator, rows: int, length: int, labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random bases; labels 1 with probability 0.05 (a DeepSEA-like sparsity)."""
    return rng.integers(0, 4, (rows, length), dtype=np.uint8), (rng.random((rows, labels)) < 0.05).astype(np.uint8)


def write_synthetic(path: Path, sequences: int, length: int, labels: int, seed: int, block: int = 8192) -> None:
    """Written block by block: the driver never holds more than one block."""
    rng = np.random.default_rng(seed)
    with open_writer(path, length, [f"label{j}" for j in range(labels)]) as writer:
        for start in range(0, sequences, block):
            rows = min(block, sequences - start)
            codes, y = random_block(rng, rows, length, labels)
            writer.append(codes, y, [f"seq{i}" for i in range(start, start + rows)])


def in_memory(sequences: int, length: int, labels: int, seed: int) -> SequenceDataset:
    codes, y = random_block(np.random.default_rng(seed), sequences, length, labels)
    return SequenceDataset(
        codes_to_one_hot(codes), y.astype(np.float32), [f"seq{i}" for i in range(sequences)], [f"label{j}" for j in range(labels)]
    )


def experiment(data_dir: Path, args: argparse.Namespace) -> ExperimentConfig:
    return parse_config(
        {
            "name": "large-data",
            "seed": 0,
            "data": {"kind": "hdf5", "hdf5_dir": str(data_dir)},
            "space": {"profile": "small", "first_filters": 16, "stem_channels": 16, "dense_units": 64},
            "search": {
                # Uniform sampling: both paths then train and score the same architectures (the
                # controller's choices would follow each path's rewards, and so would the compute).
                "strategy": "random",
                "iterations": 2,
                "archs_per_iteration": args.archs,
                "batch_size": args.batch_size,
                "train_batches_per_iteration": args.batches,
                "valid_max_sequences": args.valid_sequences,
                "workers": 2,
                "cpus_per_worker": 1,
                "final_samples": 0,
            },
        }
    )


class TimedDriver(SearchDriver):
    """The search driver, timing supernet training and scoring in wall-clock and in the workers' CPU seconds.

    CPU seconds (summed over the workers' processes) hardly change when other processes load the
    machine, so they compare the two data paths more fairly than wall-clock time on a busy host.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        self.seconds = {"train": 0.0, "score": 0.0}
        self.cpu_seconds = {"train": 0.0, "score": 0.0}
        super().__init__(*args, **kwargs)

    def workers_cpu_seconds(self) -> float:
        return sum(ray.get([worker.__ray_call__.remote(lambda _: time.process_time()) for worker in self.workers]))

    def timed(self, phase: str, step: Callable[[], T]) -> T:
        cpu, started = self.workers_cpu_seconds(), time.perf_counter()
        result = step()
        self.seconds[phase] += time.perf_counter() - started
        self.cpu_seconds[phase] += self.workers_cpu_seconds() - cpu
        return result

    def train_pass(self, archs: list[str], iteration: int, batch_size: int) -> float:
        return self.timed("train", lambda: super(TimedDriver, self).train_pass(archs, iteration, batch_size))

    def score(self, archs: list[str], all_validation: bool = False) -> list[Score]:
        return self.timed("score", lambda: super(TimedDriver, self).score(archs, all_validation))


def object_store_bytes() -> int:
    summary = memory_summary(address=ray.get_runtime_context().gcs_address, stats_only=True)
    match = re.search(r"Plasma memory usage (\d+) MiB", summary)
    return int(match.group(1)) * 1024**2 if match else -1


def run_path(config: ExperimentConfig, data: SearchData, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Two search iterations; throughput, object store and peak RSS of every worker."""
    driver = TimedDriver(config, out, data)
    try:
        store = [object_store_bytes()]
        for iteration in range(2):
            driver.run_iteration(iteration)
            store.append(object_store_bytes())
        pids = ray.get([worker.__ray_call__.remote(lambda _: os.getpid()) for worker in driver.workers])
        worker_rss = [resident_bytes(pid, peak=True) for pid in pids]
    finally:
        driver.close()
    trained = 2 * args.batches * args.batch_size
    scored = 2 * args.archs * min(args.valid_sequences, data.valid.num_sequences)
    return {
        "train_sequences": data.train.num_sequences,
        "train_seconds": driver.seconds["train"],
        "train_sequences_per_second": trained / driver.seconds["train"],
        "train_sequences_per_worker_cpu_second": trained / driver.cpu_seconds["train"],
        "score_seconds": driver.seconds["score"],
        "score_sequences_per_second": scored / driver.seconds["score"],
        "score_sequences_per_worker_cpu_second": scored / driver.cpu_seconds["score"],
        "object_store_bytes": store,
        "object_store_peak_bytes": max(store),
        "worker_peak_rss_bytes": worker_rss,
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the throughputs over the repeats, maxima of memory, and every repeat's figures."""
    return {
        "train_sequences": runs[0]["train_sequences"],
        **{key: float(np.median([run[key] for run in runs])) for key in THROUGHPUTS},
        "object_store_peak_bytes": max(run["object_store_peak_bytes"] for run in runs),
        "worker_peak_rss_bytes": [max(rss) for rss in zip(*(run["worker_peak_rss_bytes"] for run in runs))],
        "repeats": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=1_000_000, help="Training sequences written to disk.")
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--labels", type=int, default=919)
    parser.add_argument("--valid-sequences", type=int, default=2000, help="Validation sequences (all used for scoring).")
    parser.add_argument("--in-memory-sequences", type=int, default=20_000, help="Training set of the in-memory path.")
    parser.add_argument("--batches", type=int, default=20, help="Global mini-batches of supernet training per iteration.")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--archs", type=int, default=4, help="Architectures scored per iteration.")
    parser.add_argument("--repeats", type=int, default=3, help="Runs of each path, alternated; throughputs are medians.")
    parser.add_argument("--dir", type=Path, default=None, help="Where to write the data (default: a temporary directory).")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        write_synthetic(root / "data" / SPLIT_FILES["train"], args.sequences, args.length, args.labels, seed=1)
        write_seconds = time.perf_counter() - started
        for seed, split in ((2, "valid"), (3, "test")):
            write_synthetic(root / "data" / SPLIT_FILES[split], args.valid_sequences, args.length, args.labels, seed)
        file_bytes = (root / "data" / SPLIT_FILES["train"]).stat().st_size
        config = experiment(root / "data", args)

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            streamed_data = load_search_data(config.data, config.seed)
            driver_peak_streamed = resident_bytes(peak=True)  # the driver's part in streaming: before it builds the in-memory set
            valid = streamed_data.valid.subset(np.arange(args.valid_sequences)).to_one_hot()
            memory_data = SearchData(in_memory(args.in_memory_sequences, args.length, args.labels, seed=4), valid)
            runs: dict[str, list[dict[str, Any]]] = {"streamed": [], "in_memory": []}
            for repeat in range(args.repeats):  # alternated, so that load from other processes hits both alike
                order = [("streamed", streamed_data), ("in_memory", memory_data)]
                for name, data in order if repeat % 2 == 0 else order[::-1]:
                    runs[name].append(run_path(config, data, root / f"{name}{repeat}", args))
        finally:
            ray.shutdown()

    streamed, memory = summary(runs["streamed"]), summary(runs["in_memory"])
    peak = max(streamed["worker_peak_rss_bytes"] + [driver_peak_streamed])
    ratio = streamed["train_sequences_per_second"] / memory["train_sequences_per_second"]
    cpu_ratio = streamed["train_sequences_per_worker_cpu_second"] / memory["train_sequences_per_worker_cpu_second"]
    result = {
        "sequences": args.sequences,
        "length": args.length,
        "labels": args.labels,
        "train_file_bytes": file_bytes,
        "write_seconds": write_seconds,
        "workers": 2,
        "iterations": 2,
        "repeats": args.repeats,
        "batches_per_iteration": args.batches,
        "batch_size": args.batch_size,
        "archs_per_iteration": args.archs,
        "valid_sequences": args.valid_sequences,
        "streamed": streamed,
        "in_memory": {"sequences": args.in_memory_sequences, **memory},
        "driver_peak_rss_bytes": {"streamed": driver_peak_streamed, "after_in_memory": resident_bytes(peak=True)},
        "streamed_peak_rss_bytes": peak,
        "streamed_vs_in_memory_train_throughput": ratio,
        "streamed_vs_in_memory_train_throughput_per_cpu_second": cpu_ratio,
        "target": {"peak_rss_bytes": TARGET_RSS_BYTES, "throughput_ratio": 0.9},
        "meets_rss_target": peak <= TARGET_RSS_BYTES,
        "meets_throughput_target": {"wall_clock": ratio >= 0.9, "per_cpu_second": cpu_ratio >= 0.9},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
