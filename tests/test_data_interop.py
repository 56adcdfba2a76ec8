"""The torchvision / Keras / pandas entry points (fmnist.data.interop): same items as the verified files."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import corrupted, snapshot
from fmnist.data import MNIST, FashionMNIST, load_data, load_mnist, to_dataframe
from fmnist.data.registry import FASHION
from fmnist.errors import DataError, FmnistError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FILES = {key: res.filename for key, res in FASHION.resources.items()}


def to_tensor(image: Image.Image) -> torch.Tensor:
    """The smallest ToTensor stand-in: a PIL "L" image as a (28, 28) uint8 tensor."""
    return torch.from_numpy(np.array(image))


@pytest.fixture
def t10k(fashion_gz_dir) -> tuple[np.ndarray, np.ndarray]:
    """The README reader's view of the test split: the reference every entry point must match."""
    images, labels = load_mnist(fashion_gz_dir, kind="t10k")
    return images.reshape(-1, 28, 28), labels


@pytest.fixture
def torchvision_root(tmp_path, fashion_gz_dir) -> Path:
    """``ROOT/FashionMNIST/raw/`` as torchvision leaves it: the test split and the labels decompressed,
    the training images still the published .gz (a link)."""
    raw = tmp_path / "tv" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for key, name in FILES.items():
        if key == "train-images":
            (raw / name).symlink_to(fashion_gz_dir / name)
        else:
            (raw / name[:-3]).write_bytes(gzip.decompress((fashion_gz_dir / name).read_bytes()))
    return tmp_path / "tv"


def test_a_dataloader_over_the_test_split_yields_every_image_and_label(real_data, fashion_gz_dir, t10k):
    ds = FashionMNIST(fashion_gz_dir, train=False, transform=to_tensor)
    loader = torch.utils.data.DataLoader(ds, batch_size=1000, num_workers=0)
    batches = list(loader)
    assert len(batches) == 10
    images = torch.cat([x for x, _ in batches]).numpy()
    labels = torch.cat([y for _, y in batches]).numpy()
    assert images.dtype == np.uint8 and images.shape == (10000, 28, 28)
    np.testing.assert_array_equal(images, t10k[0])
    np.testing.assert_array_equal(labels, t10k[1])


def test_a_torchvision_layout_is_read(real_data, torchvision_root, t10k):
    test = FashionMNIST(torchvision_root, train=False)
    np.testing.assert_array_equal(test.data.numpy(), t10k[0])
    np.testing.assert_array_equal(test.targets.numpy(), t10k[1])
    assert test.source == f"root ({torchvision_root / 'FashionMNIST' / 'raw'})"
    train = FashionMNIST(str(torchvision_root), train=True)
    assert len(train) == 60000 and train.data.shape == (60000, 28, 28)


def test_default_items_and_attributes_are_torchvisions(real_data, fashion_gz_dir, t10k):
    ds = FashionMNIST(fashion_gz_dir, train=False)
    image, label = ds[0]
    assert isinstance(image, Image.Image) and image.mode == "L" and image.size == (28, 28)
    assert type(label) is int and label == t10k[1][0]
    np.testing.assert_array_equal(np.array(image), t10k[0][0])
    assert isinstance(ds, torch.utils.data.Dataset) and len(ds) == 10000
    assert ds.data.dtype == torch.uint8 and ds.data.shape == (10000, 28, 28)
    assert ds.targets.dtype == torch.int64 and ds.targets.shape == (10000,)
    assert ds.classes == list(FASHION.classes) and isinstance(ds.classes, list)
    assert ds.class_to_idx == {name: i for i, name in enumerate(FASHION.classes)}
    assert "Number of datapoints: 10000" in repr(ds) and "Split: Test" in repr(ds)
    # transforms apply, and torchvision's subsetting idiom (replace .data / .targets) keeps working
    ds = FashionMNIST(fashion_gz_dir, train=False, transform=to_tensor, target_transform=lambda y: -y)
    image, label = ds[-1]
    assert torch.equal(image, torch.tensor(t10k[0][-1])) and label == -int(t10k[1][-1])
    ds.data, ds.targets = ds.data[:5], ds.targets[:5]
    assert len(ds) == 5 and len(list(torch.utils.data.DataLoader(ds, batch_size=2))) == 3


def test_a_damaged_file_in_a_torchvision_layout_is_a_one_line_error_and_the_folder_is_untouched(
    real_data, tmp_path, fashion_gz_dir
):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for key, name in FILES.items():
        if key == "t10k-labels":
            (raw / name).write_bytes(corrupted((fashion_gz_dir / name).read_bytes()))
        else:
            (raw / name).symlink_to(fashion_gz_dir / name)
    before = snapshot(tmp_path)
    # $FMNIST_DATA_DIR holds good files (real_data): the user's folder must not be silently swapped for them
    with pytest.raises(DataError) as info:
        FashionMNIST(tmp_path, train=False)
    message = str(info.value)
    assert "\n" not in message and str(raw / FILES["t10k-labels"]) in message, message
    assert snapshot(tmp_path) == before


def test_a_folder_holding_only_some_files_is_an_error(real_data, tmp_path, fashion_gz_dir):
    (tmp_path / FILES["t10k-labels"]).symlink_to(fashion_gz_dir / FILES["t10k-labels"])
    with pytest.raises(DataError, match="holds only 1 of the 4"):
        FashionMNIST(tmp_path, train=False)


def test_an_empty_root_falls_back_to_the_usual_search(real_data, tmp_path, t10k):
    ds = FashionMNIST(tmp_path, train=False)  # nothing there: $FMNIST_DATA_DIR (the real data)
    np.testing.assert_array_equal(ds.targets.numpy(), t10k[1])
    assert list(tmp_path.iterdir()) == []


def test_nothing_anywhere_without_download_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FMNIST_NO_SYSTEM_DATA", "1")
    for cls, folder in ((FashionMNIST, "FashionMNIST"), (MNIST, "MNIST")):
        with pytest.raises(DataError) as info:
            cls(tmp_path, train=False, download=False)
        message = str(info.value)
        assert "\n" not in message and f"{folder}/raw" in message and "download=True" in message, message
    assert list(tmp_path.iterdir()) == []


def test_load_data_has_keras_shapes_and_the_verified_content(real_data, fashion_gz_dir, t10k):
    (x_train, y_train), (x_test, y_test) = load_data()
    assert [a.shape for a in (x_train, y_train, x_test, y_test)] == [
        (60000, 28, 28),
        (60000,),
        (10000, 28, 28),
        (10000,),
    ]
    assert all(a.dtype == np.uint8 and a.flags.writeable for a in (x_train, y_train, x_test, y_test))
    np.testing.assert_array_equal(x_test, t10k[0])
    np.testing.assert_array_equal(y_test, t10k[1])
    images, labels = load_mnist(fashion_gz_dir, kind="train")
    np.testing.assert_array_equal(x_train.reshape(60000, -1), images)
    np.testing.assert_array_equal(y_train, labels)


def test_to_dataframe_has_kaggles_layout(real_data, t10k):
    df = to_dataframe("t10k")
    assert len(df) == 10000
    assert list(df.columns) == ["label", *(f"pixel{i}" for i in range(1, 785))]
    assert all(dtype == np.uint8 for dtype in df.dtypes)
    for row in range(3):
        assert df["label"].iloc[row] == t10k[1][row]
        np.testing.assert_array_equal(df.iloc[row, 1:].to_numpy(), t10k[0][row].reshape(-1))
    assert to_dataframe("test")["label"].equals(df["label"])  # Kaggle's name for the split
    with pytest.raises(DataError, match="unknown split"):
        to_dataframe("valid")


def test_to_dataframe_without_pandas_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now raises ImportError
    with pytest.raises(FmnistError, match="pip install pandas"):
        to_dataframe("t10k")


def test_importing_fmnist_data_imports_neither_torch_nor_pandas():
    script = (
        "import sys, fmnist.data\n"
        "from fmnist.data import load_data, to_dataframe\n"
        "print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))\n"
        "import torch.utils.data\n"
        "print(issubclass(fmnist.data.FashionMNIST, torch.utils.data.Dataset))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "True"], done.stdout
