"""Search-step benchmark; prints one JSON object.

``--workload reference`` is the workload of ``shared/bench/REFERENCE_WORKLOAD.md`` (2,000
simulated 200-bp sequences, 6 layers x 6 ops with skips, 32 filters, dense 1000, 1,600 train /
400 validation; per controller step one supernet pass with an architecture per mini-batch of
100, 10 architectures scored, one controller update). It runs twice in the same process: once
without Ray (``local``) and once through the search's Ray actors (``ray``: a controller actor and
one supernet worker), so the Ray overhead is their ratio.

``--workload deepsea`` times the paper's space (1,000 bp, 919 labels, 12 layers) on random data:
seconds per 1,000 training sequences and per architecture scored on 1,000 sequences, and the
projected cost of the paper's schedule on this device.

FLOPs are those of convolutions and matrix products (torch's FlopCounterMode on meta tensors)
for the architectures actually run; the peak is a conv1d of the workload's shapes in a tight loop
in the same process and precision, in the better of the two memory layouts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from amber_ray.config import ControllerConfig, SearchConfig, SpaceConfig
from amber_ray.controller import Controller
from amber_ray.data import SequenceDataset
from amber_ray.data.simulate import reference_workload
from amber_ray.ops import to_channels_last
from amber_ray.space import Architecture, ModelSpace
from amber_ray.supernet import Supernet, SupernetTrainer

REFERENCE_OPS = ("conv8", "conv4", "dconv8", "maxpool", "avgpool", "identity")
REFERENCE_BATCH = 100
REFERENCE_ARCHS_PER_STEP = 10
# The paper's schedule, for the projection of the deepsea workload.
PAPER_ITERATIONS = 300
PAPER_ARCHS_PER_ITERATION = 100
PAPER_VALID_SEQUENCES = 8_000
DEEPSEA_TRAIN_SEQUENCES = 4_400_000


def reference_space() -> ModelSpace:
    return ModelSpace(
        input_length=200,
        num_labels=3,
        num_layers=6,
        layers_per_block=6,
        ops=REFERENCE_OPS,
        first_filters=32,
        reduction=1,
        stem_channels=32,
        dense_units=1000,
        dropout=0.0,
    )


def reference_splits() -> tuple[SequenceDataset, SequenceDataset]:
    x, y = reference_workload()
    names = [f"seq{i}" for i in range(len(x))]
    labels = ["TGACTCAT", "GCCACGTGGC", "GGGGCGGGGC"]
    return SequenceDataset(x[:1600], y[:1600], names[:1600], labels), SequenceDataset(x[1600:], y[1600:], names[1600:], labels)


def random_dataset(n: int, length: int, labels: int, seed: int) -> SequenceDataset:
    rng = np.random.default_rng(seed)
    x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (n, length))].transpose(0, 2, 1).copy()
    y = (rng.random((n, labels)) < 0.05).astype(np.float32)
    return SequenceDataset(x, y, [f"seq{i}" for i in range(n)], [f"label{j}" for j in range(labels)])


class LocalSearch:
    """The controller and one supernet trainer in this process."""

    def __init__(self, space: ModelSpace, train: SequenceDataset, valid: SequenceDataset, precision: str):
        self.trainer = SupernetTrainer(space, train, valid, learning_rate=1e-3, seed=0, precision=precision)
        self.controller = Controller(space, ControllerConfig(), seed=0)

    def sample(self, n: int) -> list[str]:
        return [arch.to_text() for arch in self.controller.sample(n)[0]]

    def train_pass(self, archs: list[str], step: int) -> None:
        self.trainer.train_pass([Architecture.from_text(a) for a in archs], step, REFERENCE_BATCH)

    def score(self, archs: list[str]) -> list[float]:
        return [score[0] for score in self.trainer.score([Architecture.from_text(a) for a in archs])]

    def update(self, archs: list[str], rewards: list[float]) -> None:
        self.controller.update([Architecture.from_text(a) for a in archs], rewards)

    def peak_rss_mb(self) -> dict[str, float]:
        return {"driver": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

    def close(self) -> None:
        pass


class RaySearch:
    """The same loop through the search's actors: the driver moves architecture strings only."""

    def __init__(self, space: ModelSpace, train: SequenceDataset, valid: SequenceDataset, precision: str, threads: int):
        import ray

        from amber_ray.search.actors import ControllerActor, SupernetWorker

        self.ray = ray
        ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 1024**2)
        config = SearchConfig(cpus_per_worker=threads, supernet_learning_rate=1e-3, precision=precision)
        self.controller = ControllerActor.options(num_cpus=0).remote(space, ControllerConfig(), 0)
        self.worker = SupernetWorker.options(num_cpus=threads).remote(space, train, valid, config, 0, threads)
        self.pids = ray.get([actor.__ray_call__.remote(lambda _: os.getpid()) for actor in (self.controller, self.worker)])

    def sample(self, n: int) -> list[str]:
        return self.ray.get(self.controller.sample.remote(n))[0]

    def train_pass(self, archs: list[str], step: int) -> None:
        self.ray.get(self.worker.train_pass.remote(archs, step, REFERENCE_BATCH))

    def score(self, archs: list[str]) -> list[float]:
        return [score[0] for score in self.ray.get(self.worker.score.remote(archs))]

    def update(self, archs: list[str], rewards: list[float]) -> None:
        self.ray.get(self.controller.update.remote(archs, rewards))

    def peak_rss_mb(self) -> dict[str, float]:
        peaks = {"driver": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        for name, pid in zip(("controller_actor", "supernet_worker"), self.pids):
            peaks[name] = process_peak_rss_mb(pid)
        return peaks

    def close(self) -> None:
        self.ray.shutdown()


def process_peak_rss_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of a process on this machine."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed_steps(search: LocalSearch | RaySearch, steps: int, batches: int) -> tuple[dict[str, list[float]], list[tuple[list[str], list[str]]]]:
    """Run ``steps`` controller steps; per-phase seconds and the architectures each step ran."""
    timings: dict[str, list[float]] = {"step": [], "train": [], "score": [], "controller": []}
    ran = []
    for step in range(steps):
        started = time.perf_counter()
        train_archs = search.sample(batches)
        search.train_pass(train_archs, step)
        trained = time.perf_counter()
        archs = search.sample(REFERENCE_ARCHS_PER_STEP)
        rewards = search.score(archs)
        scored = time.perf_counter()
        search.update(archs, rewards)
        done = time.perf_counter()
        for key, value in (("step", done - started), ("train", trained - started), ("score", scored - trained), ("controller", done - scored)):
            timings[key].append(value)
        ran.append((train_archs, archs))
    return timings, ran


def summarise(timings: dict[str, list[float]], train_sequences: int) -> dict[str, float]:
    """Medians over the steps after the first."""
    median = {key: statistics.median(values[1:]) for key, values in timings.items()}
    return {
        "seconds_per_step": median["step"],
        "supernet_pass_seconds": median["train"],
        "score_seconds_per_arch": median["score"] / REFERENCE_ARCHS_PER_STEP,
        "controller_seconds": median["controller"],
        "archs_scored_per_second": REFERENCE_ARCHS_PER_STEP / median["score"],
        "train_sequences_per_second": train_sequences / median["train"],
    }


class FlopCounter:
    """FLOPs of convolutions and matmuls of one architecture on one batch, counted on meta tensors."""

    def __init__(self, space: ModelSpace):
        with torch.device("meta"):
            self.model = Supernet(space)
        self.space = space
        self.cache: dict[tuple[str, int, bool], int] = {}

    def __call__(self, arch: str, batch: int, backward: bool) -> int:
        key = (arch, batch, backward)
        if key not in self.cache:
            x = torch.empty(batch, 4, self.space.input_length, device="meta")
            with FlopCounterMode(display=False) as counter:
                out = self.model(x, Architecture.from_text(arch))
                if backward:
                    out.sum().backward()
            self.model.zero_grad(set_to_none=True)
            self.cache[key] = counter.get_total_flops()
        return self.cache[key]

    def step_flops(self, train_archs: Sequence[str], train_sequences: int, scored: Sequence[str], valid_sequences: int) -> int:
        batch_sizes = [min(REFERENCE_BATCH, train_sequences - i * REFERENCE_BATCH) for i in range(len(train_archs))]
        train = sum(self(arch, batch, True) for arch, batch in zip(train_archs, batch_sizes))
        return train + sum(self(arch, valid_sequences, False) for arch in scored)


def conv_peak_gflops(shapes: Sequence[tuple[int, int, int, int]], precision: str, seconds: float = 1.0) -> float:
    """Best GFLOP/s of a forward conv1d (batch, channels, length, kernel) in a tight loop.

    Both memory layouts are tried (``(N, C, L)`` and the supernet's channels-last ``(N, C, 1, L)``),
    so the peak is the better of the two.
    """
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    best = 0.0
    for batch, channels, length, kernel in shapes:
        x = torch.randn(batch, channels, length + kernel - 1, dtype=dtype)
        weight = torch.randn(channels, channels, kernel, dtype=dtype)
        flops = 2 * batch * channels * channels * kernel * length
        layouts = [(F.conv1d, x, weight), (F.conv2d, to_channels_last(x), weight.unsqueeze(2))]
        with torch.inference_mode():
            for conv, inputs, weights in layouts:
                conv(inputs, weights)
                calls, started = 0, time.perf_counter()
                while time.perf_counter() - started < seconds:
                    conv(inputs, weights)
                    calls += 1
                best = max(best, flops * calls / (time.perf_counter() - started) / 1e9)
    return best


def run_reference(steps: int, threads: int, precision: str, modes: Sequence[str]) -> dict[str, object]:
    space = reference_space()
    train, valid = reference_splits()
    batches = -(-train.num_sequences // REFERENCE_BATCH)
    counter = FlopCounter(space)
    peak = conv_peak_gflops([(REFERENCE_BATCH, 32, 200, 8)], precision)
    result: dict[str, object] = {"conv_peak_gflops": peak}
    factories: dict[str, Callable[[], LocalSearch | RaySearch]] = {
        "local": lambda: LocalSearch(space, train, valid, precision),
        "ray": lambda: RaySearch(space, train, valid, precision, threads),
    }
    for mode in modes:
        search = factories[mode]()
        try:
            timings, ran = timed_steps(search, steps, batches)
            summary = summarise(timings, train.num_sequences)
            flops = [counter.step_flops(t, train.num_sequences, s, valid.num_sequences) for t, s in ran[1:]]
            summary["gflop_per_step"] = statistics.median(flops) / 1e9
            summary["achieved_gflops"] = sum(flops) / sum(timings["step"][1:]) / 1e9
            summary["fraction_of_conv_peak"] = summary["achieved_gflops"] / peak
            summary["peak_rss_mb"] = search.peak_rss_mb()
            result[mode] = summary
        finally:
            search.close()
    if "local" in result and "ray" in result:
        result["ray_overhead"] = result["ray"]["seconds_per_step"] / result["local"]["seconds_per_step"] - 1
    result["supernet_params"] = Supernet(space).num_params()
    return result


def run_deepsea(precision: str, train_batches: int, scored_archs: int) -> dict[str, object]:
    """The paper's space on random data: training and scoring throughput, and the paper's schedule projected."""
    config = SpaceConfig(profile="deepsea")
    space = ModelSpace.from_config(config, input_length=1000, num_labels=919)
    batch = SearchConfig().batch_size
    train = random_dataset(batch * (train_batches + 1), 1000, 919, seed=0)
    valid = random_dataset(1000, 1000, 919, seed=1)
    trainer = SupernetTrainer(space, train, valid, learning_rate=1e-3, seed=0, precision=precision)
    rng = np.random.default_rng(0)
    warm, timed = [space.sample(rng)], [space.sample(rng) for _ in range(train_batches)]
    trainer.train_pass(warm, iteration=0, batch_size=batch)
    started = time.perf_counter()
    trainer.train_pass(timed, iteration=1, batch_size=batch)
    train_seconds = time.perf_counter() - started
    archs = [space.sample(rng) for _ in range(scored_archs)]
    started = time.perf_counter()
    trainer.score(archs, batch_size=250)
    score_seconds = (time.perf_counter() - started) / scored_archs
    counter = FlopCounter(space)
    train_flops = sum(counter(arch.to_text(), batch, True) for arch in timed)
    shapes = [(batch, space.block_channels(b), space.block_length(b), 8) for b in range(space.num_blocks)]
    peak = conv_peak_gflops(shapes, precision)
    per_1000_train = train_seconds / (train_batches * batch) * 1000
    projected = PAPER_ITERATIONS * (
        PAPER_ARCHS_PER_ITERATION * score_seconds * PAPER_VALID_SEQUENCES / 1000 + per_1000_train * DEEPSEA_TRAIN_SEQUENCES / 1000
    )
    return {
        "supernet_params": trainer.model.num_params(),
        "train_seconds_per_1000_sequences": per_1000_train,
        "score_seconds_per_arch_on_1000_sequences": score_seconds,
        "train_achieved_gflops": train_flops / train_seconds / 1e9,
        "conv_peak_gflops": peak,
        "train_fraction_of_conv_peak": train_flops / train_seconds / 1e9 / peak,
        "projected_paper_schedule_hours": projected / 3600,
        "projection": f"{PAPER_ITERATIONS} iterations x ({PAPER_ARCHS_PER_ITERATION} archs on {PAPER_VALID_SEQUENCES} validation "
        f"sequences + one pass over {DEEPSEA_TRAIN_SEQUENCES} training sequences)",
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=["reference", "deepsea"], default="reference")
    parser.add_argument("--mode", choices=["local", "ray", "both"], default="both", help="reference workload only")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--deepsea-batches", type=int, default=8, help="timed training batches of the deepsea workload")
    parser.add_argument("--deepsea-archs", type=int, default=2, help="architectures scored in the deepsea workload")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    torch.set_num_threads(args.threads)
    result: dict[str, object] = {
        "workload": args.workload,
        "precision": args.precision,
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
        "cpu_count": os.cpu_count(),
    }
    if args.workload == "reference":
        modes = ["local", "ray"] if args.mode == "both" else [args.mode]
        result.update(steps=args.steps, **run_reference(args.steps, args.threads, args.precision, modes))
    else:
        result.update(run_deepsea(args.precision, args.deepsea_batches, args.deepsea_archs))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
