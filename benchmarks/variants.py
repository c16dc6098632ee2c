"""Variant scoring benchmark; prints one JSON object.

A random genome (one chromosome) and a VCF of random SNVs whose REF matches it are written to a
temporary folder; a model scores them: ``--model`` (a ``model.pt``), or by default an untrained
model of the ``small`` space profile (architecture below, ``--length`` bp, ``--labels`` outputs). Three rates are measured on CPU:
window building (VCF + indexed FASTA -> ref/alt windows), batched scoring (``--batch-size``
variants per forward pass, ref and alt) and one-variant-at-a-time scoring of the first
``--single`` variants, each as variants per second of wall time and of CPU time. Acceptance:
batched is at least 5x faster than one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from amber_ray.child import ChildNet
from amber_ray.config import SpaceConfig
from amber_ray.predict import load_model
from amber_ray.space import Architecture, ModelSpace
from amber_ray.variants import Windows, score_windows, vcf_windows

ARCH = "conv8,skip:;conv4,skip:0;maxpool,skip:;conv8,skip:1"
VCF_HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


def write_inputs(folder: Path, variants: int, length: int, seed: int) -> tuple[Path, Path]:
    """A random chromosome and ``variants`` SNVs at random positions at least one window from its ends."""
    rng = np.random.default_rng(seed)
    size = max(10 * variants, 100_000) + 2 * length
    genome = "".join(np.array(list("ACGT"))[rng.integers(0, 4, size)])
    fasta = folder / "genome.fa"
    fasta.write_text(">chr1\n" + "\n".join(genome[i : i + 80] for i in range(0, size, 80)) + "\n")
    positions = np.sort(rng.choice(np.arange(length + 1, size - length), variants, replace=False))
    rows = []
    for i, pos in enumerate(positions):
        ref = genome[pos - 1]
        alt = "ACGT"["ACGT".index(ref) - rng.integers(1, 4)]
        rows.append(f"chr1\t{pos}\tv{i}\t{ref}\t{alt}\t.\tPASS\t.\n")
    vcf = folder / "variants.vcf"
    vcf.write_text(VCF_HEADER + "".join(rows))
    return vcf, fasta


def first(windows: Windows, n: int) -> Windows:
    return Windows(
        windows.variant_id[:n],
        windows.chrom[:n],
        windows.pos[:n],
        windows.ref[:n],
        windows.alt[:n],
        windows.ref_codes[:n],
        windows.alt_codes[:n],
    )


def timed_rates(count: int, run: Callable[[], object]) -> dict[str, float]:
    """Items per second of wall time, and per second of this process's CPU time (robust to a busy machine
    when ``--threads 1``)."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return {"wall": round(count / (time.perf_counter() - wall), 1), "cpu": round(count / (time.process_time() - cpu), 1)}


def build_model(args: argparse.Namespace) -> tuple[ChildNet, int, list[str]]:
    """The model in ``--model``, or an untrained one of the ``small`` profile with :data:`ARCH`."""
    if args.model:
        model, labels = load_model(args.model)
        return model, model.space.input_length, labels
    space = ModelSpace.from_config(SpaceConfig(profile="small"), args.length, args.labels)
    return ChildNet(space, Architecture.from_text(ARCH)).eval(), args.length, [f"label{j}" for j in range(args.labels)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=int, default=5000, help="variants scored in batches")
    parser.add_argument("--single", type=int, default=300, help="variants scored one at a time")
    parser.add_argument("--model", type=Path, help="a model.pt from `amber-ray train` instead of the untrained default")
    parser.add_argument("--length", type=int, default=200, help="input length (bp) of the default model")
    parser.add_argument("--labels", type=int, default=3, help="outputs of the default model")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, length, labels = build_model(args)
    with tempfile.TemporaryDirectory() as folder:
        vcf, fasta = write_inputs(Path(folder), args.variants, length, args.seed)
        vcf_windows(vcf, fasta, length)  # builds the .fai once, outside the timing
        windows: list[Windows] = []
        windows_rate = timed_rates(args.variants, lambda: windows.append(vcf_windows(vcf, fasta, length)[0]))
    score_windows(model, first(windows[0], args.batch_size), labels, args.batch_size)  # warm-up
    batched = timed_rates(args.variants, lambda: score_windows(model, windows[0], labels, args.batch_size))
    single = timed_rates(args.single, lambda: score_windows(model, first(windows[0], args.single), labels, 1))
    result = {
        "benchmark": "variants",
        "device": "cpu",
        "threads": args.threads,
        "model": {
            "file": str(args.model) if args.model else None,
            "arch": model.arch.to_text(),
            "input_length": length,
            "labels": len(labels),
            "params": model.num_params(),
        },
        "variants": args.variants,
        "batch_size": args.batch_size,
        "windows_per_s": windows_rate,
        "batched_variants_per_s": batched,
        "single_variants_per_s": single,
        "speedup": {key: round(batched[key] / single[key], 2) for key in batched},
        "load_average_1min": os.getloadavg()[0],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
