"""Readers (FASTA, labelled FASTA, DeepSEA .mat, chunked HDF5), simulator and splits."""

from amber_ray.data.dataset import CodedDataset, SequenceDataset, Splits, one_hot_encode
from amber_ray.data.deepsea import read_deepsea_dir, read_deepsea_mat
from amber_ray.data.fasta import read_binary_fasta, read_fasta, read_fasta_with_labels
from amber_ray.data.hdf5 import HDF5SequenceFile, open_hdf5_dir, read_hdf5_dir, write_hdf5
from amber_ray.data.load import SearchData, load_search_data, load_splits, read_label_annotation
from amber_ray.data.simulate import reference_workload, simulate_dataset
from amber_ray.data.split import stratified_split

__all__ = [
    "CodedDataset",
    "HDF5SequenceFile",
    "SearchData",
    "SequenceDataset",
    "Splits",
    "load_search_data",
    "load_splits",
    "one_hot_encode",
    "open_hdf5_dir",
    "read_binary_fasta",
    "read_deepsea_dir",
    "read_deepsea_mat",
    "read_fasta",
    "read_fasta_with_labels",
    "read_hdf5_dir",
    "read_label_annotation",
    "reference_workload",
    "simulate_dataset",
    "stratified_split",
    "write_hdf5",
]
