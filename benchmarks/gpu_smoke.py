"""GPU smoke test and timing, in a few minutes on one CUDA device; prints one JSON object.

Runs the three GPU paths of the package on random data in the DeepSEA-sized space (1,000 bp,
919 labels, 12 layers): one search step (a supernet pass with an architecture per mini-batch,
then scoring), one retraining epoch of a child model (``training.fit``, the code of ``amber-ray
train`` and of every retraining trial) and variant scoring (``variants.score_windows``), each in
float32 and bfloat16 autocast. It checks that parameters and outputs stay on the GPU and are
finite, and reports seconds, sequences per second and peak GPU memory. Without CUDA it exits with
status 1 and a message saying so.

``python benchmarks/gpu_smoke.py [--sequences 2000] [--archs 8] [--variants 2000]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from measure import random_dataset

from amber_ray.config import SpaceConfig, TrainConfig
from amber_ray.data import SequenceDataset
from amber_ray.space import ModelSpace
from amber_ray.supernet import SupernetTrainer
from amber_ray.training import fit, initial_model
from amber_ray.variants import score_windows
from amber_ray.variants.windows import Windows

LENGTH, LABELS, BATCH = 1000, 919, 64


def deepsea_space() -> ModelSpace:
    return ModelSpace.from_config(SpaceConfig(profile="deepsea"), LENGTH, LABELS)


def timed(step: Callable[[], object]) -> tuple[object, float]:
    """``step()`` and its wall time, with the GPU's queued work included."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - started


def search_step(
    space: ModelSpace, train: SequenceDataset, valid: SequenceDataset, archs: int, precision: str, device: torch.device
) -> dict[str, float]:
    trainer = SupernetTrainer(space, train, valid, learning_rate=1e-3, seed=0, device=str(device), precision=precision)
    rng = np.random.default_rng(0)
    batches = trainer.num_batches(BATCH)
    sampled = [space.sample(rng, 0.4) for _ in range(batches)]
    trainer.train_pass(sampled[:2], 0, BATCH)  # warm-up: cuDNN picks its kernels
    loss, train_s = timed(lambda: trainer.train_pass(sampled, 1, BATCH))
    scores, score_s = timed(lambda: trainer.score(sampled[:archs]))
    assert np.isfinite(loss) and all(np.isfinite(score[0]) for score in scores), (loss, scores)
    assert next(trainer.model.parameters()).device.type == device.type
    return {
        "train_s": train_s,
        "train_sequences_per_s": train.num_sequences / train_s,
        "score_s_per_arch": score_s / archs,
        "score_sequences_per_s": archs * valid.num_sequences / score_s,
    }


def retrain_epoch(
    space: ModelSpace, train: SequenceDataset, valid: SequenceDataset, precision: str, device: torch.device
) -> dict[str, float]:
    model = initial_model(space, space.sample(np.random.default_rng(1), 0.4), 1.0, 0)
    config = TrainConfig(batch_size=BATCH, max_epochs=1, patience=1, precision=precision)
    result, seconds = timed(lambda: fit(model, train, valid, config, 0, device=device))
    assert next(model.parameters()).device.type == device.type and np.isfinite(result.best_valid_auroc)
    return {"epoch_s": seconds, "sequences_per_s": train.num_sequences / seconds, "valid_auroc": result.best_valid_auroc}


def variant_scoring(space: ModelSpace, variants: int, device: torch.device) -> dict[str, float]:
    model = initial_model(space, space.sample(np.random.default_rng(2), 0.4), 1.0, 0).to(device)
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 4, (variants, LENGTH), dtype=np.uint8)
    alt = ref.copy()
    alt[:, LENGTH // 2] = (alt[:, LENGTH // 2] + 1) % 4
    ids = [f"v{i}" for i in range(variants)]
    windows = Windows(ids, [None] * variants, [None] * variants, ["A"] * variants, ["C"] * variants, ref, alt)
    effects, seconds = timed(lambda: score_windows(model, windows, [f"label{j}" for j in range(LABELS)], batch_size=BATCH))
    assert np.isfinite(effects.ref_probs).all() and np.isfinite(effects.alt_probs).all()
    return {"seconds": seconds, "variants_per_s": variants / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=2000, help="training sequences (validation: a quarter)")
    parser.add_argument("--archs", type=int, default=8, help="architectures scored in the search step")
    parser.add_argument("--variants", type=int, default=2000)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_smoke: no CUDA device here (torch.cuda.is_available() is False); run it on a machine with a GPU")
    device = torch.device("cuda")
    space, train, valid = (
        deepsea_space(),
        random_dataset(args.sequences, LENGTH, LABELS, 0),
        random_dataset(args.sequences // 4, LENGTH, LABELS, 1),
    )
    report: dict[str, object] = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "workload": {"length": LENGTH, "labels": LABELS, "layers": space.num_layers, "batch": BATCH, **vars(args)},
    }
    started = time.perf_counter()
    for precision in ("float32", "bfloat16"):
        torch.cuda.reset_peak_memory_stats()
        report[precision] = {
            "search_step": search_step(space, train, valid, args.archs, precision, device),
            "retrain_epoch": retrain_epoch(space, train, valid, precision, device),
            "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20,
        }
    report["variant_scoring_float32"] = variant_scoring(space, args.variants, device)
    report["total_s"] = time.perf_counter() - started
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
