"""Your own peaks, end to end, on a simulated genome in the real formats (README "Your own peaks").

    python examples/own_peaks.py [OUT]      # default OUT: own-peaks (what jobs/configs/own_peaks.yaml reads)

1. A simulated genome (bgzipped FASTA + .fai/.gzi), one narrowPeak per label with three copies of a
   JASPAR motif planted around every summit, and a blacklist BED (``amber_ray.data.simulate_genome``).
2. ``amber-ray dataset``: DeepSEA's rule (200 bp bins, half in a peak), here 400 bp windows to stay
   quick on a laptop CPU; chr7 validates, chr8 and chr9 test.
3. ``amber-ray pipeline jobs/configs/own_peaks.yaml``: search, retrain (reverse complement on,
   positives weighted by pos_weight auto), compare, report; the final model is registered in OUT/holdout/mlflow.db.
4. The same windows split at random by sequence (``data.kind: fasta_labels``), beside it: neighbouring,
   overlapping windows then land in train and test.
5. ``amber-ray predict --genome --tile``: one bigWig track per label over the test chromosome chr8.

Prints one JSON object: the final model's test AUROC and AUPR under each split.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from amber_ray.data import open_hdf5_dir
from amber_ray.data.simulate_genome import simulate_genome

CONFIG = Path(__file__).resolve().parent.parent / "jobs" / "configs" / "own_peaks.yaml"
CHROMOSOMES = {
    f"chr{i}": length
    for i, length in enumerate([1_500_000, 1_200_000, 800_000, 700_000, 600_000, 500_000, 600_000, 500_000, 400_000], 1)
}
MOTIFS = ["MA0139.1", "MA0079.5", "MA0114.4"]  # CTCF, SP1, HNF4A

log = logging.getLogger(__name__)


def amber_ray(*args: object) -> None:
    """One ``amber-ray`` command, as a user types it."""
    command = [sys.executable, "-m", "amber_ray.cli", *map(str, args)]
    log.info("$ amber-ray %s", " ".join(map(str, args)))
    subprocess.run(command, check=True)


def export_fasta_labels(data_dir: Path, fasta: Path, tsv: Path) -> None:
    """All windows of the built directory as FASTA + labels TSV (for the random split beside the hold-out)."""
    with fasta.open("w") as seqs, tsv.open("w") as labels:
        for split, file in open_hdf5_dir(data_dir).items():
            data = file.load_codes()
            if split == "train":
                labels.write("name\t" + "\t".join(data.label_names) + "\n")
            for name, codes, row in zip(data.names, data.codes, data.y):
                seqs.write(f">{name}\n{''.join('ACGTN'[c] for c in codes)}\n")
                labels.write(name + "\t" + "\t".join(map(str, row)) + "\n")


def final_test_metrics(run: Path) -> dict[str, float]:
    """The final model's test metrics, from its card (``retrain/final/model.json``)."""
    test = json.loads((run / "retrain" / "final" / "model.json").read_text())["test"]
    return {"test_auroc": round(float(test["auroc"]), 4), "test_aupr": round(float(test["aupr"]), 4)}


def main(out: Path) -> dict[str, object]:
    inputs = simulate_genome(out / "inputs", CHROMOSOMES, MOTIFS, seed=0, peaks_per_mb=150)
    data = out / "data"
    peaks = [arg for path in inputs.peaks.values() for arg in ("--peaks", path)]
    amber_ray("dataset", data, "--genome", inputs.genome, *peaks, "--blacklist", inputs.blacklist, "--window", 400)
    amber_ray("pipeline", CONFIG, "--out", out / "holdout", "--set", f"data.hdf5_dir={data.resolve()}")
    fasta, tsv = out / "windows.fa", out / "windows.tsv"
    export_fasta_labels(data, fasta, tsv)
    random_split = [
        "data.kind=fasta_labels",
        f"data.fasta={fasta.resolve()}",
        f"data.labels_tsv={tsv.resolve()}",
        "data.split={valid: 0.1, test: 0.15, valid_chromosomes: null, test_chromosomes: null}",
        "name=own-peaks-random",
    ]
    amber_ray("pipeline", CONFIG, "--out", out / "random", *[arg for item in random_split for arg in ("--set", item)])
    regions = out / "chr8.bed"
    regions.write_text(f"chr8\t0\t{CHROMOSOMES['chr8']}\n")
    amber_ray(
        "predict",
        out / "holdout" / "retrain" / "final",
        "--genome",
        inputs.genome,
        "--tile",
        200,
        "--regions",
        regions,
        "--out",
        out / "tracks",
    )
    sidecar = json.loads((data / "dataset.json").read_text())
    return {
        "windows": sidecar["counts"]["windows"],
        "dropped_positive": sidecar["counts"]["dropped_positive"],
        "holdout_chromosomes": final_test_metrics(out / "holdout"),
        "random_split": final_test_metrics(out / "random"),
        "tracks": sorted(path.name for path in (out / "tracks").glob("*.bw")),
    }


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(json.dumps(main(Path(sys.argv[1] if len(sys.argv) > 1 else "own-peaks")), indent=2))
