"""From a :class:`~amber_ray.config.DataConfig` to train/validation/test splits."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from amber_ray.config import DataConfig
from amber_ray.data.dataset import SequenceDataset, Splits
from amber_ray.data.deepsea import read_deepsea_dir
from amber_ray.data.fasta import read_binary_fasta, read_fasta_with_labels
from amber_ray.data.hdf5 import HDF5SequenceFile, open_hdf5_dir, read_hdf5_dir
from amber_ray.data.nb360 import read_nb360_deepsea
from amber_ray.data.peaks import read_sidecar
from amber_ray.data.remote import staged
from amber_ray.data.simulate import simulate_dataset
from amber_ray.data.split import chromosome_split, stratified_split
from amber_ray.data.tsv import read_tsv
from amber_ray.errors import AmberInputError

log = logging.getLogger(__name__)


def _path(data: DataConfig, key: str) -> Path | str:
    """A path the config validator already requires for this kind (checked again for the type checker)."""
    value = getattr(data, key)
    if value is None:
        raise AmberInputError(f"kind {data.kind!r} needs data.{key}", "config")
    return value


def _single_dataset(data: DataConfig, seed: int) -> SequenceDataset:
    if data.kind == "simulate":
        return simulate_dataset(data.simulate, seed)[0]
    if data.kind == "fasta_binary":
        with staged(_path(data, "positive_fasta")) as positive, staged(_path(data, "negative_fasta")) as negative:
            return read_binary_fasta(positive, negative)
    with staged(_path(data, "fasta")) as fasta, staged(_path(data, "labels_tsv")) as labels:
        return read_fasta_with_labels(fasta, labels)


def data_source(data: DataConfig) -> str:
    """The file(s) an error about the data as a whole names."""
    if data.kind == "fasta_binary":
        return f"{data.positive_fasta} and {data.negative_fasta}"
    if data.kind == "fasta_labels":
        return str(data.labels_tsv)
    return f"data.{data.kind}"


def check_chromosome_split(data: DataConfig) -> None:
    """A split by chromosome is made when the data are read (FASTA records named ``chrom:start-end``) or was made by
    ``amber-ray dataset`` (HDF5: the config must name the chromosomes the directory was built with)."""
    if not data.split.by_chromosome:
        return
    if data.kind in ("simulate", "deepsea", "nb360_deepsea"):
        raise AmberInputError(f"data.split.valid_chromosomes does not apply to data.kind {data.kind!r}", "config")
    if data.kind != "hdf5":
        return
    sidecar = read_sidecar(_path(data, "hdf5_dir"))
    if sidecar is None:
        problem = "data.split.valid_chromosomes needs a directory built by 'amber-ray dataset' (no dataset.json)"
        raise AmberInputError(problem, data.hdf5_dir)
    built = sidecar.get("split", {})
    asked = {"valid_chromosomes": data.split.valid_chromosomes, "test_chromosomes": data.split.test_chromosomes}
    for key, chromosomes in asked.items():
        if sorted(chromosomes or ()) != sorted(built.get(key, ())):
            problem = (
                f"data.split.{key} {chromosomes} differs from the {built.get(key)} the directory was built with; "
                "rebuild it with amber-ray dataset --valid-chromosome/--test-chromosome"
            )
            raise AmberInputError(problem, data.hdf5_dir)


def genomic_windows(data: DataConfig) -> bool:
    """Whether the sequences are windows of a genome (both strands equally meaningful): DeepSEA's files, a
    directory built from peaks, or records split by chromosome. Reverse-complement augmentation defaults to on for them."""
    if data.kind in ("deepsea", "nb360_deepsea") or data.split.by_chromosome:
        return True
    return data.kind == "hdf5" and data.hdf5_dir is not None and read_sidecar(data.hdf5_dir) is not None


def load_splits(data: DataConfig, seed: int, stream_train: bool = False) -> Splits:
    """DeepSEA and HDF5 data come split; the others are split here (``data.split``, stratified, seeded).

    With ``stream_train`` an HDF5 training set stays on disk: ``train`` is the opened file, which
    training reads batch by batch; validation and test are loaded as base codes (1 byte per base,
    not one-hot's 16), which evaluation expands a batch at a time.
    """
    check_chromosome_split(data)
    if data.kind == "deepsea":
        splits = read_deepsea_dir(_path(data, "deepsea_dir"))
    elif data.kind == "nb360_deepsea":
        with staged(_path(data, "nb360_npz")) as npz:
            splits = read_nb360_deepsea(npz)
    elif data.kind == "hdf5" and stream_train:
        files = open_hdf5_dir(_path(data, "hdf5_dir"))
        splits = Splits(files["train"], files["valid"].load_codes(), files["test"].load_codes())
    elif data.kind == "hdf5":
        splits = read_hdf5_dir(_path(data, "hdf5_dir"))
    elif data.split.by_chromosome:
        assert data.split.valid_chromosomes is not None and data.split.test_chromosomes is not None
        dataset = _single_dataset(data, seed)
        splits = chromosome_split(dataset, data.split.valid_chromosomes, data.split.test_chromosomes, data_source(data))
    else:
        splits = stratified_split(_single_dataset(data, seed), data.split.valid, data.split.test, seed, data_source(data))
    log.info(
        "%s data: %d train, %d valid, %d test sequences of %d bp, %d labels",
        data.kind,
        splits.train.num_sequences,
        splits.valid.num_sequences,
        splits.test.num_sequences,
        splits.train.length,
        splits.train.num_labels,
    )
    return splits


@dataclass
class SearchData:
    """What the search's supernet workers train and score on: in memory, or files they stream themselves."""

    train: SequenceDataset | HDF5SequenceFile
    valid: SequenceDataset | HDF5SequenceFile


def load_search_data(data: DataConfig, seed: int) -> SearchData:
    """HDF5 data stays on disk (opened and checked, not loaded: each worker streams it); the rest is loaded."""
    if data.kind != "hdf5":
        splits = load_splits(data, seed)
        return SearchData(splits.train, splits.valid)
    check_chromosome_split(data)
    files = open_hdf5_dir(_path(data, "hdf5_dir"))
    train = files["train"]
    log.info(
        "hdf5 data, streamed: %d train, %d valid sequences of %d bp, %d labels",
        len(train),
        len(files["valid"]),
        train.length,
        train.num_labels,
    )
    return SearchData(train, files["valid"])


def read_label_annotation(path: str | Path) -> pd.DataFrame:
    """TSV with columns ``label`` and ``category`` (DeepSEA: TF, Pol, DNase, Histone), one row per label.

    Other columns are kept.
    """
    table = read_tsv(path, required=("label", "category"))
    duplicated = table["label"][table["label"].duplicated()]
    if len(duplicated):
        raise AmberInputError("label listed more than once", path, duplicated.iloc[0])
    empty = table.index[table["category"].str.strip() == ""]
    if len(empty):
        raise AmberInputError("empty category", path, table.at[empty[0], "label"])
    return table
