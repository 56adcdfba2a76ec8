"""The data layer: registry of IDX data sets, verified sources, IDX reader/writer, loaders."""

from typing import TYPE_CHECKING

from fmnist._lazy import lazy_getattr
from fmnist.data.idx import encode_idx, parse_idx, read_idx, write_idx
from fmnist.data.interop import load_data, to_dataframe
from fmnist.data.loader import Dataset, Split, load_dataset, load_mnist, stratified_split
from fmnist.data.registry import DATASETS, SPLITS, DatasetSpec, Resource, get_spec
from fmnist.data.sources import DataFiles, cache_root, locate

if TYPE_CHECKING:
    from fmnist.data.interop_torch import MNIST, FashionMNIST

# torchvision-style dataset classes import torch: only on first use, so `import fmnist.data` stays light.
__getattr__ = lazy_getattr(
    __name__, {"FashionMNIST": "fmnist.data.interop_torch", "MNIST": "fmnist.data.interop_torch"}
)

__all__ = [
    "DATASETS",
    "SPLITS",
    "DataFiles",
    "Dataset",
    "DatasetSpec",
    "FashionMNIST",
    "MNIST",
    "Resource",
    "Split",
    "cache_root",
    "encode_idx",
    "get_spec",
    "load_data",
    "load_dataset",
    "load_mnist",
    "locate",
    "parse_idx",
    "read_idx",
    "stratified_split",
    "to_dataframe",
    "write_idx",
]
