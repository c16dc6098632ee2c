"""NAS-Bench-360's DeepSEA task: search and retrain on ``deepsea_filtered.npz``; prints one JSON object.

For users with the file (NAS-Bench-360's DeepSEA download) and a GPU: the paper's space (profile
``deepsea``, 1,000 bp, here 36 labels), ``data.kind: nb360_deepsea``, reverse-complement
augmentation, search then retraining of the searched architecture beside sampled ones. The final
model's 1 - test AUROC (the benchmark's score, lower is better) is printed beside the published
table, with the wall-clock hours and GPU hours (hours x GPUs visible) of the run.

    python benchmarks/nb360_deepsea.py --npz deepsea_filtered.npz --out nb360-run [--set search.iterations=50 ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

from amber_ray.config import override_config, parse_config, parse_overrides
from amber_ray.errors import AmberInputError
from amber_ray.pipeline import run_pipeline

# 1 - test AUROC on NAS-Bench-360's DeepSEA task, as published (NAS-Bench-360, Tu et al. 2022; DASH, Shen et al. 2022).
PUBLISHED = {"AMBER (paper's NAS)": 0.32, "DeepSEA (expert architecture)": 0.30, "DASH": 0.28}

CONFIG = {
    "name": "nb360-deepsea",
    "seed": 0,
    "data": {"kind": "nb360_deepsea"},
    "space": {"profile": "deepsea"},
    "train": {"batch_size": 256, "max_epochs": 20, "patience": 4, "device": "auto", "reverse_complement": True},
    "search": {
        "iterations": 100,
        "archs_per_iteration": 20,
        "warmup_batch_size": 1000,
        "batch_size": 256,
        "train_batches_per_iteration": 200,
        "valid_max_sequences": 2490,
        "gpus_per_worker": 1,
    },
    "retrain": {"replicates": 2, "sampled": 2, "gpus_per_trial": 1},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", type=Path, required=True, help="NAS-Bench-360's deepsea_filtered.npz")
    parser.add_argument("--out", type=Path, default=Path("nb360-deepsea"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE config override")
    args = parser.parse_args()
    try:
        config = parse_config({**CONFIG, "data": {**CONFIG["data"], "nb360_npz": str(args.npz.resolve())}})
        config = override_config(config, parse_overrides(args.overrides))
        if not args.npz.is_file():
            raise AmberInputError("file not found (this benchmark needs NAS-Bench-360's DeepSEA file)", args.npz)
    except AmberInputError as error:
        sys.exit(f"error: {error}")
    gpus = torch.cuda.device_count()
    started = time.perf_counter()
    result = run_pipeline(config, args.out)
    hours = (time.perf_counter() - started) / 3600
    test = _final_test(args.out)
    print(
        json.dumps(
            {
                "one_minus_test_auroc": round(1 - float(test["auroc"]), 4),
                "test_aupr": round(float(test["aupr"]), 4),
                "published_one_minus_auroc": PUBLISHED,
                "wall_hours": round(hours, 3),
                "gpus": gpus,
                "gpu_hours": round(hours * gpus, 3),
                "architecture": result.final["best"]["arch"],
            }
        )
    )


def _final_test(out: Path) -> dict[str, float]:
    """The final model's test metrics, from its card (``retrain/final/model.json``)."""
    return json.loads((out / "retrain" / "final" / "model.json").read_text())["test"]


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
