"""Readers (FASTA, labelled FASTA, DeepSEA .mat, chunked HDF5), simulator and splits."""

from amber_ray.data.dataset import SequenceDataset, Splits, one_hot_encode
from amber_ray.data.fasta import read_binary_fasta, read_fasta, read_fasta_with_labels
from amber_ray.data.load import load_splits, read_label_annotation
from amber_ray.data.simulate import reference_workload, simulate_dataset
from amber_ray.data.split import stratified_split

__all__ = [
    "SequenceDataset",
    "Splits",
    "load_splits",
    "one_hot_encode",
    "read_binary_fasta",
    "read_fasta",
    "read_fasta_with_labels",
    "read_label_annotation",
    "reference_workload",
    "simulate_dataset",
    "stratified_split",
]
