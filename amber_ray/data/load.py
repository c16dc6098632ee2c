"""From a :class:`~amber_ray.config.DataConfig` to train/validation/test splits."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from amber_ray.config import DataConfig
from amber_ray.data.dataset import Splits
from amber_ray.data.fasta import read_binary_fasta, read_fasta_with_labels
from amber_ray.data.simulate import simulate_dataset
from amber_ray.data.split import stratified_split
from amber_ray.errors import AmberInputError


def load_splits(data: DataConfig, seed: int) -> Splits:
    if data.kind == "simulate":
        dataset, _ = simulate_dataset(data.simulate, seed)
    elif data.kind == "fasta_binary":
        dataset = read_binary_fasta(data.positive_fasta, data.negative_fasta)
    elif data.kind == "fasta_labels":
        dataset = read_fasta_with_labels(data.fasta, data.labels_tsv)
    elif data.kind == "deepsea":
        from amber_ray.data.deepsea import read_deepsea_dir

        return read_deepsea_dir(data.deepsea_dir)
    else:
        from amber_ray.data.hdf5 import read_hdf5_dir

        return read_hdf5_dir(data.hdf5_dir)
    return stratified_split(dataset, data.split.valid, data.split.test, seed)


def read_label_annotation(path: str | Path) -> pd.DataFrame:
    """TSV with columns ``label`` and ``category`` (DeepSEA: TF, Pol, DNase, Histone)."""
    path = Path(path)
    if not path.is_file():
        raise AmberInputError("file not found", path)
    table = pd.read_csv(path, sep="\t", dtype=str)
    missing = {"label", "category"} - set(table.columns)
    if missing:
        raise AmberInputError(f"missing column(s) {sorted(missing)}", path)
    return table
