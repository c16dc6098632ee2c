"""Memory and speed of ``amber-ray dataset``; prints one JSON object.

A simulated genome (default 100 Mb in ten chromosomes chr1..chr10, bgzipped and indexed) with one
narrowPeak file per label (default 20 labels, JASPAR vertebrate motifs planted at the summits) and
a blacklist is written first, in this process. ``amber-ray dataset`` then runs in a child process
with DeepSEA's rule (200 bp bins, 1,000 bp windows, one background window per positive one,
chr7 validation, chr8 + chr9 test); its wall time and peak RSS (``ru_maxrss`` of the children) are
reported, with windows written per second. Memory should follow the largest chromosome, not the genome.

    python benchmarks/dataset_build.py [--megabases 100] [--labels 20] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amber_ray.data.simulate_genome import simulate_genome
from amber_ray.jaspar import jaspar_collection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabases", type=float, default=100.0)
    parser.add_argument("--labels", type=int, default=20)
    parser.add_argument("--chromosomes", type=int, default=10)
    parser.add_argument("--peaks-per-mb", type=float, default=20.0, help="Peaks per megabase, per label.")
    parser.add_argument("--workdir", type=Path, default=None, help="Where to write (default: a temporary directory).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.workdir or Path(scratch)
        length = int(args.megabases * 1e6 / args.chromosomes)
        chromosomes = {f"chr{i}": length for i in range(1, args.chromosomes + 1)}
        ids = jaspar_collection("vertebrates")[0][: args.labels]
        started = time.perf_counter()
        inputs = simulate_genome(work / "inputs", chromosomes, ids, seed=0, peaks_per_mb=args.peaks_per_mb)
        simulate_seconds = time.perf_counter() - started
        peaks = [arg for path in inputs.peaks.values() for arg in ("--peaks", str(path))]
        command = [sys.executable, "-m", "amber_ray.cli", "dataset", str(work / "data"), "--genome", str(inputs.genome)]
        started = time.perf_counter()
        subprocess.run([*command, *peaks, "--blacklist", str(inputs.blacklist)], check=True, capture_output=True)
        seconds = time.perf_counter() - started
        peak_rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        sidecar = json.loads((work / "data" / "dataset.json").read_text())
        windows = sum(sidecar["counts"]["windows"].values())
        result = {
            "genome_mb": args.megabases,
            "chromosomes": args.chromosomes,
            "largest_chromosome_mb": length / 1e6,
            "labels": len(ids),
            "peaks": sum(label["peaks"] for label in sidecar["labels"]),
            "windows": windows,
            "windows_by_split": sidecar["counts"]["windows"],
            "dropped_positive": sidecar["counts"]["dropped_positive"],
            "build_seconds": round(seconds, 2),
            "windows_per_second": round(windows / seconds, 1),
            "peak_rss_mb": round(peak_rss_kb / 1024, 1),
            "output_mb": round(sum(path.stat().st_size for path in (work / "data").iterdir()) / 2**20, 1),
            "simulate_seconds": round(simulate_seconds, 2),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
