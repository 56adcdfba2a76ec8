"""The data layer: registry of IDX data sets, verified sources, IDX reader/writer, loaders."""

from fmnist.data.idx import encode_idx, parse_idx, read_idx, write_idx
from fmnist.data.loader import Dataset, Split, load_dataset, load_mnist, stratified_split
from fmnist.data.registry import DATASETS, SPLITS, DatasetSpec, Resource, get_spec
from fmnist.data.sources import DataFiles, cache_root, locate

__all__ = [
    "DATASETS",
    "SPLITS",
    "DataFiles",
    "Dataset",
    "DatasetSpec",
    "Resource",
    "Split",
    "cache_root",
    "encode_idx",
    "get_spec",
    "load_dataset",
    "load_mnist",
    "locate",
    "parse_idx",
    "read_idx",
    "stratified_split",
    "write_idx",
]
