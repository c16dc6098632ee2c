"""Search-step benchmark; prints one JSON object.

``--workload reference`` is the workload of ``shared/bench/REFERENCE_WORKLOAD.md`` (2,000
simulated 200-bp sequences, 6 layers x 6 ops with skips, 32 filters, dense 1000, 1,600 train /
400 validation; per controller step one supernet pass with an architecture per mini-batch of
100, 10 architectures scored, one controller update), run in one process (``--mode local``) or
through the Ray actors (``--mode ray``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import numpy as np
import torch

from amber_ray.config import ControllerConfig
from amber_ray.controller import Controller
from amber_ray.data import SequenceDataset
from amber_ray.data.simulate import reference_workload
from amber_ray.space import ModelSpace
from amber_ray.supernet import SupernetTrainer

REFERENCE_OPS = ("conv8", "conv4", "dconv8", "maxpool", "avgpool", "identity")


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


def run_local(steps: int) -> dict[str, object]:
    space = reference_space()
    train, valid = reference_splits()
    trainer = SupernetTrainer(space, train, valid, learning_rate=1e-3, seed=0)
    controller = Controller(space, ControllerConfig(), seed=0)
    batches = trainer.num_batches(100)
    timings: dict[str, list[float]] = {"step": [], "train": [], "score": [], "controller": []}
    for step in range(steps):
        started = time.perf_counter()
        train_archs, _ = controller.sample(batches)
        trainer.train_pass(train_archs, step, 100)
        trained = time.perf_counter()
        archs, _ = controller.sample(10)
        rewards = trainer.score(archs)
        scored = time.perf_counter()
        controller.update(archs, rewards)
        done = time.perf_counter()
        for key, value in (("step", done - started), ("train", trained - started), ("score", scored - trained), ("controller", done - scored)):
            timings[key].append(value)
    after_warmup = {key: values[1:] for key, values in timings.items()}
    step = statistics.median(after_warmup["step"])
    return {
        "seconds_per_step": step,
        "supernet_pass_seconds": statistics.median(after_warmup["train"]),
        "score_seconds_per_arch": statistics.median(after_warmup["score"]) / 10,
        "controller_update_seconds": statistics.median(after_warmup["controller"]),
        "archs_scored_per_second": 10 / statistics.median(after_warmup["score"]),
        "train_sequences_per_second": 1600 / statistics.median(after_warmup["train"]),
        "supernet_params": trainer.model.num_params(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", choices=["reference"], default="reference")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    np.random.seed(0)
    result = {"workload": args.workload, "steps": args.steps, "torch_threads": torch.get_num_threads(), "mode": "local"}
    result.update(run_local(args.steps))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
