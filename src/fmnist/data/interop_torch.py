"""torchvision's ``FashionMNIST`` / ``MNIST`` without torchvision, over the project's verified files.

Kept apart from :mod:`fmnist.data.interop` because it imports torch at the top (the classes subclass
``torch.utils.data.Dataset``); ``fmnist.data`` and ``fmnist.data.interop`` import it on first use.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from fmnist.data.interop import load_for_root


class _IdxVisionDataset(torch.utils.data.Dataset):
    """torchvision's MNIST-family interface: ``(PIL image "L", int)`` items, ``.data``, ``.targets``, ...

    Items are read from ``.data`` / ``.targets`` at each access, as torchvision does, so the common
    ``ds.data, ds.targets = ds.data[:n], ds.targets[:n]`` subsetting keeps working.
    """

    dataset_name: ClassVar[str]

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        train: bool = True,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        download: bool = False,
    ) -> None:
        self.root = root
        self.train = train
        self.transform = transform
        self.target_transform = target_transform
        ds = load_for_root(self.dataset_name, root, download=download, quiet=not download)
        split = ds.train if train else ds.test
        # Copies: the cache's memory maps are read-only, and torch warns about (and forbids writing) those.
        self.data: torch.Tensor = torch.from_numpy(np.array(split.images, dtype=np.uint8))
        self.targets: torch.Tensor = torch.from_numpy(np.array(split.labels, dtype=np.int64))
        self.classes: list[str] = list(ds.classes)
        self.class_to_idx: dict[str, int] = {name: i for i, name in enumerate(self.classes)}
        self.source: str = ds.files.describe()  # where the verified files came from
        self.fingerprint: str = ds.fingerprint  # the data fingerprint fmnist prints beside accuracies

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        index = operator.index(index)
        image: Any = Image.fromarray(self.data[index].numpy())  # 2-D uint8 -> mode "L"
        target: Any = int(self.targets[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __repr__(self) -> str:
        lines = [
            f"Dataset {type(self).__name__}",
            f"    Number of datapoints: {len(self)}",
            f"    Root location: {self.root}",
            f"    Split: {'Train' if self.train else 'Test'}",
            f"    Files: {self.source}",
            f"    Fingerprint: {self.fingerprint}",
        ]
        if self.transform is not None:
            lines.append(f"    Transform: {self.transform!r}")
        if self.target_transform is not None:
            lines.append(f"    Target transform: {self.target_transform!r}")
        return "\n".join(lines)


class FashionMNIST(_IdxVisionDataset):
    """``torchvision.datasets.FashionMNIST(root, train, transform, target_transform, download)``.

    ``root`` may hold torchvision's layout (``ROOT/FashionMNIST/raw/``) or the four files themselves;
    otherwise (or when None) the files are found as everywhere in fmnist. ``download=True`` fetches
    into the fmnist cache, never into ``root``.
    """

    dataset_name = "fashion"


class MNIST(_IdxVisionDataset):
    """``torchvision.datasets.MNIST``, likewise (``ROOT/MNIST/raw/``)."""

    dataset_name = "mnist"
