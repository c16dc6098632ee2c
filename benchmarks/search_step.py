"""Search-step benchmark; prints one JSON object.

``--workload reference`` is the workload of ``shared/bench/REFERENCE_WORKLOAD.md`` (2,000
simulated 200-bp sequences, 6 layers x 6 ops with skips, 32 filters, dense 1000, 1,600 train /
400 validation; per controller step one supernet pass with an architecture per mini-batch of
100, 10 architectures scored, one controller update). It runs twice, taking turns step by step:
once in this process without Ray (``local``) and once through the search's Ray actors (``ray``: a
controller actor and one supernet worker), so the Ray overhead is their ratio.

``--workload deepsea`` times the paper's space (1,000 bp, 919 labels, 12 layers) on random data:
seconds per 1,000 training sequences and per architecture scored on 1,000 sequences, and the
projected cost of the paper's schedule on this device.

FLOPs are those of convolutions and matrix products (torch's FlopCounterMode on meta tensors)
for the architectures actually run, counted per kind. Each kind's peak is measured in the same
process, precision and device: a conv1d of the workload's shapes in a tight loop (the better of
the two memory layouts) and the dense head's matrix products (on CPU the better of the BLAS and
oneDNN). The floor of a step is its convolution FLOPs over the conv peak plus its matmul FLOPs
over the matmul peak: the time a step would take with every such kernel at its peak and nothing
else costing time. ``fraction_of_floor`` is floor / measured step (1.0 = at the floor; the target
is 0.7).

What the floor leaves out is reported beside it: the memory traffic a training pass cannot avoid
outside matrix products (Adam's update of every trained parameter after each batch and, in
bfloat16, autocast's copies of those weights and of their gradients), over this machine's
measured copy bandwidth (``memory_floor_seconds_per_step``), and the step's fraction of both
floors together (``fraction_of_compute_and_memory_floor``).

``--precision auto`` (the default, as ``search.precision``) picks bfloat16 only where the device
runs it natively; the JSON says what it chose and why. ``--device cuda`` runs the same workload on
a GPU. ``--profile`` adds, for one extra reference step run in this process, the time of each kind
of work as a fraction of that step (self time of torch's ops by name: CPU time on CPU, kernel time
on CUDA), with the controller's sampling and update as one kind; ``python_and_gaps`` is the rest of
the step's wall time (Python, the autograd engine, numpy, the profiler's own cost).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from measure import random_dataset, resident_bytes
from torch.autograd import DeviceType
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from amber_ray.config import SearchConfig, SpaceConfig
from amber_ray.data import SequenceDataset
from amber_ray.data.simulate import reference_workload
from amber_ray.device import resolve_device, resolve_precision
from amber_ray.errors import AmberInputError
from amber_ray.ops import ONEDNN_LINEAR_AVAILABLE, onednn_matmul, to_channels_last
from amber_ray.search.local import LocalSearch
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
FLOOR_TARGET = 0.7
# Bytes moved per trained parameter per batch: Adam reads the parameter, its gradient and both moments and
# writes the parameter and moments (7 float32 values); bfloat16 autocast copies the weight to bfloat16
# (4 bytes read, 2 written) and its bfloat16 gradient back to float32 (2 read, 4 written).
ADAM_BYTES_PER_PARAMETER = 28
BFLOAT16_CAST_BYTES_PER_PARAMETER = 12
# Kinds of work in a profile, first match wins: (kind, substrings of torch's op names).
PROFILE_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("optimizer", ("adam", "sgd", "_foreach_", "optimizer.", "zero_")),
    ("matmul_conv", ("conv", "aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "linear")),
    ("batch_norm", ("batch_norm",)),
    ("relu", ("relu", "threshold_backward")),
    ("pooling", ("pool", "aten::maximum")),
    ("add", ("aten::add", "aten::sum", "aten::div")),
    (
        "casts_copies_pads",
        ("aten::to", "aten::_to_copy", "aten::copy_", "aten::clone", "aten::contiguous", "pad", "aten::cat"),
    ),
)
CONTROLLER_PHASE = "benchmark:controller"


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


def reference_search_config(precision: str, threads: int = 1, gpus: float = 0) -> SearchConfig:
    """The reference workload's search: the ENAS controller's defaults, supernet learning rate 1e-3."""
    return SearchConfig(cpus_per_worker=threads, gpus_per_worker=gpus, supernet_learning_rate=1e-3, precision=precision)


class InProcessSearch:
    """The search's in-process loop (:class:`amber_ray.search.local.LocalSearch`), phase by phase."""

    def __init__(self, space: ModelSpace, train: SequenceDataset, valid: SequenceDataset, precision: str, device: torch.device):
        self.search = LocalSearch(space, train, valid, reference_search_config(precision), seed=0, device=str(device))

    def precision(self) -> tuple[str, str]:
        return self.search.precision()

    def sample(self, n: int) -> list[str]:
        return self.search.sample(n)[0]

    def train_pass(self, archs: list[str], step: int) -> None:
        self.search.train_pass(archs, step, REFERENCE_BATCH)

    def score(self, archs: list[str]) -> list[float]:
        return [score[0] for score in self.search.score(archs)]

    def update(self, archs: list[str], rewards: list[float]) -> None:
        self.search.update(archs, rewards)

    def peak_rss_mb(self) -> dict[str, float]:
        return {"driver": resident_bytes(peak=True) / 2**20}

    def close(self) -> None:
        pass


class RaySearch:
    """The same loop through the search's actors: the driver moves architecture strings only."""

    def __init__(
        self,
        space: ModelSpace,
        train: SequenceDataset,
        valid: SequenceDataset,
        precision: str,
        device: torch.device,
        threads: int,
    ):
        import ray

        from amber_ray.search.actors import ControllerActor, SupernetWorker

        self.ray = ray
        gpus = 1 if device.type == "cuda" else 0
        ray.init(num_cpus=threads, num_gpus=gpus, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 1024**2)
        config = reference_search_config(precision, threads, gpus)
        self.controller = ControllerActor.options(num_cpus=0).remote(space, config, 0)
        self.worker = SupernetWorker.options(num_cpus=threads, num_gpus=gpus).remote(space, train, valid, config, 0, threads)
        self.pids = ray.get([actor.__ray_call__.remote(lambda _: os.getpid()) for actor in (self.controller, self.worker)])

    def precision(self) -> tuple[str, str]:
        return self.ray.get(self.worker.precision.remote())

    def sample(self, n: int) -> list[str]:
        return self.ray.get(self.controller.sample.remote(n))[0]

    def train_pass(self, archs: list[str], step: int) -> None:
        self.ray.get(self.worker.train_pass.remote(archs, step, REFERENCE_BATCH))

    def score(self, archs: list[str]) -> list[float]:
        return [score[0] for score in self.ray.get(self.worker.score.remote(archs))]

    def update(self, archs: list[str], rewards: list[float]) -> None:
        self.ray.get(self.controller.update.remote(archs, rewards))

    def peak_rss_mb(self) -> dict[str, float]:
        peaks = {"driver": resident_bytes(peak=True) / 2**20}
        for name, pid in zip(("controller_actor", "supernet_worker"), self.pids):
            peaks[name] = resident_bytes(pid, peak=True) / 2**20
        return peaks

    def close(self) -> None:
        self.ray.shutdown()


def run_step(
    search: InProcessSearch | RaySearch, step: int, batches: int
) -> tuple[dict[str, float], tuple[list[str], list[str]]]:
    """One controller step: per-phase seconds, and the architectures trained and scored.

    The controller's work is labelled for the profiler, which counts it as one kind.
    """
    started = time.perf_counter()
    with torch.profiler.record_function(CONTROLLER_PHASE):
        train_archs = search.sample(batches)
    search.train_pass(train_archs, step)
    trained = time.perf_counter()
    with torch.profiler.record_function(CONTROLLER_PHASE):
        archs = search.sample(REFERENCE_ARCHS_PER_STEP)
    rewards = search.score(archs)
    scored = time.perf_counter()
    with torch.profiler.record_function(CONTROLLER_PHASE):
        search.update(archs, rewards)
    done = time.perf_counter()
    phases = {"step": done - started, "train": trained - started, "score": scored - trained, "controller": done - scored}
    return phases, (train_archs, archs)


def timed_steps(
    searches: dict[str, InProcessSearch | RaySearch], steps: int, batches: int
) -> dict[str, tuple[dict[str, list[float]], list[tuple[list[str], list[str]]]]]:
    """Run ``steps`` controller steps of each search, taking turns step by step; per search, the per-phase
    seconds and the architectures each step ran.

    Taking turns puts both searches under the same machine load, which drifts on shared machines over
    the minute a mode takes: run one after the other, the same build's Ray overhead measured 7-15 %.
    """
    runs = {mode: ({"step": [], "train": [], "score": [], "controller": []}, []) for mode in searches}
    for step in range(steps):
        for mode, search in searches.items():
            phases, archs = run_step(search, step, batches)
            timings, ran = runs[mode]
            for key, value in phases.items():
                timings[key].append(value)
            ran.append(archs)
    return runs


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
    """FLOPs of one architecture on one batch, counted on meta tensors: ``{"conv": ..., "matmul": ...}``."""

    def __init__(self, space: ModelSpace):
        with torch.device("meta"):
            self.model = Supernet(space)
        self.space = space
        self.cache: dict[tuple[str, int, bool], dict[str, int]] = {}

    def __call__(self, arch: str, batch: int, backward: bool) -> dict[str, int]:
        key = (arch, batch, backward)
        if key not in self.cache:
            x = torch.empty(batch, 4, self.space.input_length, device="meta")
            with FlopCounterMode(display=False) as counter:
                out = self.model(x, Architecture.from_text(arch))
                if backward:
                    out.sum().backward()
            self.model.zero_grad(set_to_none=True)
            kinds = {"conv": 0, "matmul": 0}
            for op, flops in counter.get_flop_counts()["Global"].items():
                kinds["conv" if "convolution" in str(op) else "matmul"] += flops
            self.cache[key] = kinds
        return self.cache[key]

    def step_memory_bytes(self, train_archs: Sequence[str], precision: str) -> int:
        """Bytes a training pass moves outside matrix products: Adam's updates and (bfloat16) autocast's copies."""
        per_parameter = ADAM_BYTES_PER_PARAMETER + (BFLOAT16_CAST_BYTES_PER_PARAMETER if precision == "bfloat16" else 0)
        return per_parameter * sum(self.model.path_num_params(Architecture.from_text(arch)) for arch in train_archs)

    def step_flops(
        self, train_archs: Sequence[str], train_sequences: int, scored: Sequence[str], valid_sequences: int
    ) -> dict[str, int]:
        """FLOPs per kind of one controller step: a training pass and the scoring of ``scored``."""
        batch_sizes = [min(REFERENCE_BATCH, train_sequences - i * REFERENCE_BATCH) for i in range(len(train_archs))]
        runs = [self(arch, batch, True) for arch, batch in zip(train_archs, batch_sizes)]
        runs += [self(arch, valid_sequences, False) for arch in scored]
        return {kind: sum(run[kind] for run in runs) for kind in ("conv", "matmul")}


def floor_seconds(flops: dict[str, int], peaks: dict[str, float]) -> float:
    """Seconds with every convolution and matmul at its kind's measured peak and nothing else costing time."""
    return sum(flops[kind] / (peaks[kind] * 1e9) for kind in flops)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_loop(call: Callable[[], object], work: int, device: torch.device, seconds: float, window: float = 0.1) -> float:
    """Best rate of ``call`` in billions of ``work`` units (FLOPs, bytes) per second, over windows of about
    ``window`` seconds, for about ``seconds`` in all.

    The best window rather than the mean: on a shared machine it is the one least slowed by other work.
    """
    call()
    _synchronize(device)
    best, started = 0.0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        calls, window_started = 0, time.perf_counter()
        while calls == 0 or time.perf_counter() - window_started < window:
            call()
            calls += 1
        _synchronize(device)
        best = max(best, work * calls / (time.perf_counter() - window_started) / 1e9)
    return best


def _dtype(precision: str) -> torch.dtype:
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


def conv_peak_gflops(
    shapes: Sequence[tuple[int, int, int, int]], precision: str, device: torch.device, seconds: float = 1.0
) -> float:
    """Best GFLOP/s of a forward conv1d (batch, channels, length, kernel) in a tight loop.

    Both memory layouts are tried (``(N, C, L)`` and the supernet's channels-last ``(N, C, 1, L)``),
    so the peak is the better of the two.
    """
    best = 0.0
    for batch, channels, length, kernel in shapes:
        x = torch.randn(batch, channels, length + kernel - 1, dtype=_dtype(precision), device=device)
        weight = torch.randn(channels, channels, kernel, dtype=_dtype(precision), device=device)
        flops = 2 * batch * channels * channels * kernel * length
        layouts = [(F.conv1d, x, weight), (F.conv2d, to_channels_last(x), weight.unsqueeze(2))]
        with torch.inference_mode():
            for conv, inputs, weights in layouts:
                best = max(best, _peak_loop(functools.partial(conv, inputs, weights), flops, device, seconds))
    return best


def matmul_peak_gflops(
    shapes: Sequence[tuple[int, int, int]], precision: str, device: torch.device, seconds: float = 1.0
) -> float:
    """Best GFLOP/s of ``(m, k) @ (k, n)`` over ``shapes`` (m, k, n) in a tight loop.

    On CPU both of torch's routes are timed, the BLAS's (``a @ b``) and oneDNN's (the kernel
    ``amber_ray.ops.Linear`` runs), so the peak is the better of the two.
    """
    best = 0.0
    with torch.inference_mode():
        for m, k, n in shapes:
            a = torch.randn(m, k, dtype=_dtype(precision), device=device)
            b = torch.randn(k, n, dtype=_dtype(precision), device=device)
            routes: list[Callable[[], object]] = [functools.partial(torch.matmul, a, b)]
            if device.type == "cpu" and ONEDNN_LINEAR_AVAILABLE:
                b_rows = b.t().contiguous()
                routes.append(functools.partial(onednn_matmul, a, b_rows))
            for route in routes:
                best = max(best, _peak_loop(route, 2 * m * k * n, device, seconds))
    return best


def copy_bandwidth_gbs(device: torch.device, megabytes: int = 256, seconds: float = 1.0) -> float:
    """Best GB/s (bytes read plus written) of copying one large tensor into another."""
    source = torch.empty(megabytes * 2**18, device=device).fill_(1.0)
    target = torch.empty_like(source)
    return _peak_loop(lambda: target.copy_(source), 2 * source.numel() * source.element_size(), device, seconds)


def head_matmul_shapes(space: ModelSpace, batches: Sequence[int]) -> list[tuple[int, int, int]]:
    """The dense head's large matrix products, forward and both backward products, per batch size."""
    flat = space.block_channels(space.num_blocks - 1) * space.block_length(space.num_blocks)
    shapes = []
    for batch in batches:
        shapes += [(batch, flat, space.dense_units), (batch, space.dense_units, flat), (space.dense_units, batch, flat)]
    return shapes


def profile_kind(name: str, phases: Sequence[str]) -> str:
    """The kind of work of a profiled op (``PROFILE_KINDS``); every op under the controller phase is ``controller``."""
    if name == CONTROLLER_PHASE or CONTROLLER_PHASE in phases:
        return "controller"
    lowered = name.lower()
    for kind, patterns in PROFILE_KINDS:
        if any(pattern in lowered for pattern in patterns):
            return kind
    return "other_ops"


def profile_step(search: InProcessSearch, step: int, batches: int, device: torch.device) -> dict[str, object]:
    """One reference step under torch.profiler: each kind of work's self time as a fraction of the step."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        started = time.perf_counter()
        run_step(search, step, batches)
        _synchronize(device)
        wall = time.perf_counter() - started
    seconds: dict[str, float] = {}
    for event in profiler.events():
        if event.device_type != DeviceType.CPU:  # a GPU kernel: already in its op's self device time
            continue
        phases, parent = [], event.cpu_parent
        while parent is not None:
            phases.append(parent.name)
            parent = parent.cpu_parent
        own = event.self_device_time_total if device.type == "cuda" else event.self_cpu_time_total
        kind = profile_kind(event.name, phases)
        seconds[kind] = seconds.get(kind, 0.0) + own / 1e6
    fractions = {kind: value / wall for kind, value in sorted(seconds.items(), key=lambda item: -item[1])}
    fractions["python_and_gaps"] = max(0.0, 1.0 - sum(fractions.values()))
    return {"profiled_step_seconds": wall, "fraction_of_step": fractions}


def run_reference(
    steps: int,
    threads: int,
    requested_precision: str,
    precision: str,
    device: torch.device,
    modes: Sequence[str],
    profile: bool,
) -> dict[str, object]:
    """The reference workload in each of ``modes``: the searches resolve ``requested_precision`` themselves
    (and report what they chose); ``precision`` is its resolution here, for the peaks."""
    space = reference_space()
    train, valid = reference_splits()
    batches = -(-train.num_sequences // REFERENCE_BATCH)
    counter = FlopCounter(space)
    peaks = {
        "conv": conv_peak_gflops([(REFERENCE_BATCH, 32, 200, 8)], precision, device),
        "matmul": matmul_peak_gflops(head_matmul_shapes(space, [REFERENCE_BATCH, valid.num_sequences]), precision, device),
    }
    bandwidth = copy_bandwidth_gbs(device)
    result: dict[str, object] = {"peak_gflops": peaks, "copy_bandwidth_gbs": bandwidth}
    factories: dict[str, Callable[[], InProcessSearch | RaySearch]] = {
        "local": lambda: InProcessSearch(space, train, valid, requested_precision, device),
        "ray": lambda: RaySearch(space, train, valid, requested_precision, device, threads),
    }
    searches: dict[str, InProcessSearch | RaySearch] = {}
    try:
        for mode in modes:
            searches[mode] = factories[mode]()
        for mode, (timings, ran) in timed_steps(searches, steps, batches).items():
            search = searches[mode]
            summary: dict[str, object] = dict(summarise(timings, train.num_sequences))
            summary["precision"], summary["precision_reason"] = search.precision()
            flops = [counter.step_flops(t, train.num_sequences, s, valid.num_sequences) for t, s in ran[1:]]
            floor = statistics.median(floor_seconds(f, peaks) for f in flops)
            summary["gflop_per_step"] = {kind: statistics.median(f[kind] for f in flops) / 1e9 for kind in peaks}
            summary["achieved_gflops"] = sum(sum(f.values()) for f in flops) / sum(timings["step"][1:]) / 1e9
            summary["floor_seconds_per_step"] = floor
            summary["fraction_of_floor"] = floor / summary["seconds_per_step"]
            summary[f"target_seconds_per_step_at_{FLOOR_TARGET:.0%}_of_floor"] = floor / FLOOR_TARGET
            memory = statistics.median(counter.step_memory_bytes(t, summary["precision"]) for t, _ in ran[1:])
            summary["memory_gb_per_step"] = memory / 1e9
            summary["memory_floor_seconds_per_step"] = memory / (bandwidth * 1e9)
            summary["fraction_of_compute_and_memory_floor"] = (floor + summary["memory_floor_seconds_per_step"]) / summary[
                "seconds_per_step"
            ]
            result[mode] = summary
        for mode, search in searches.items():  # before the profile, whose own bookkeeping grows the driver
            result[mode]["peak_rss_mb"] = search.peak_rss_mb()
        if "local" in searches and profile:
            result["local"]["profile"] = profile_step(searches["local"], steps, batches, device)
    finally:
        for search in searches.values():
            search.close()
    if "local" in result and "ray" in result:
        result["ray_overhead"] = result["ray"]["seconds_per_step"] / result["local"]["seconds_per_step"] - 1
    result["supernet_params"] = Supernet(space).num_params()
    return result


def run_deepsea(precision: str, device: torch.device, train_batches: int, scored_archs: int) -> dict[str, object]:
    """The paper's space on random data: training and scoring throughput, and the paper's schedule projected."""
    config = SpaceConfig(profile="deepsea")
    space = ModelSpace.from_config(config, input_length=1000, num_labels=919)
    batch = SearchConfig().batch_size
    train = random_dataset(batch * (train_batches + 1), 1000, 919, seed=0)
    valid = random_dataset(1000, 1000, 919, seed=1)
    trainer = SupernetTrainer(space, train, valid, learning_rate=1e-3, seed=0, device=str(device), precision=precision)
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
    train_flops = sum(sum(counter(arch.to_text(), batch, True).values()) for arch in timed)
    shapes = [(batch, space.block_channels(b), space.block_length(b), 8) for b in range(space.num_blocks)]
    peak = conv_peak_gflops(shapes, trainer.precision, device)
    per_1000_train = train_seconds / (train_batches * batch) * 1000
    projected = PAPER_ITERATIONS * (
        PAPER_ARCHS_PER_ITERATION * score_seconds * PAPER_VALID_SEQUENCES / 1000 + per_1000_train * DEEPSEA_TRAIN_SEQUENCES / 1000
    )
    return {
        "precision": trainer.precision,
        "precision_reason": trainer.precision_reason,
        "supernet_params": trainer.model.num_params(),
        "train_seconds_per_1000_sequences": per_1000_train,
        "score_seconds_per_arch_on_1000_sequences": score_seconds,
        "train_achieved_gflops": train_flops / train_seconds / 1e9,
        "conv_peak_gflops": peak,
        "train_fraction_of_conv_peak": train_flops / train_seconds / 1e9 / peak,
        "projected_paper_schedule_hours": projected / 3600,
        "projection": f"{PAPER_ITERATIONS} iterations x ({PAPER_ARCHS_PER_ITERATION} archs on {PAPER_VALID_SEQUENCES} validation "
        f"sequences + one pass over {DEEPSEA_TRAIN_SEQUENCES} training sequences)",
        "peak_rss_mb": resident_bytes(peak=True) / 2**20,
    }


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (``/proc/cpuinfo``; the platform's processor elsewhere)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=["reference", "deepsea"], default="reference")
    parser.add_argument("--mode", choices=["local", "ray", "both"], default="both", help="reference workload only")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--profile", action="store_true", help="reference workload: profile one extra step in this process")
    parser.add_argument("--deepsea-batches", type=int, default=8, help="timed training batches of the deepsea workload")
    parser.add_argument("--deepsea-archs", type=int, default=2, help="architectures scored in the deepsea workload")
    args = parser.parse_args()
    try:
        device = resolve_device(args.device)
    except AmberInputError as error:
        parser.error(str(error))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    torch.set_num_threads(args.threads)
    precision, reason = resolve_precision(args.precision, device)
    result: dict[str, object] = {
        "workload": args.workload,
        "precision_requested": args.precision,
        "precision": precision,
        "precision_reason": reason,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": device_name(device),
        "cpu_count": os.cpu_count(),
    }
    if args.workload == "reference":
        modes = ["local", "ray"] if args.mode == "both" else [args.mode]
        result.update(
            steps=args.steps, **run_reference(args.steps, args.threads, args.precision, precision, device, modes, args.profile)
        )
    else:
        result.update(run_deepsea(args.precision, device, args.deepsea_batches, args.deepsea_archs))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
