"""Parity with the Fashion-MNIST README reader on the real files.

These tests read the real data wherever ``fmnist data fetch`` put it (conftest's ``fashion_dir``:
``$FMNIST_DATA_DIR``, the cache, or the operating system's copy; ``make test`` fetches it first), the
README reader through ``fashion_gz_dir`` (the published ``.gz``). Without the data they fail: they
never skip.
"""

from __future__ import annotations

import dataclasses
import gzip
import os

import numpy as np
import pytest

from conftest import fmnist_cmd
from fmnist.data import load_dataset, load_mnist
from fmnist.data.checksums import CONTENT, OFFICIAL
from fmnist.data.registry import DATASETS, FASHION

COUNTS = {"train": 60_000, "t10k": 10_000}


def readme_load_mnist(path, kind="train"):
    """The README's utils/mnist_reader.load_mnist, as published."""
    labels_path = os.path.join(path, "%s-labels-idx1-ubyte.gz" % kind)  # noqa: UP031 (verbatim)
    images_path = os.path.join(path, "%s-images-idx3-ubyte.gz" % kind)  # noqa: UP031
    with gzip.open(labels_path, "rb") as lbpath:
        labels = np.frombuffer(lbpath.read(), dtype=np.uint8, offset=8)
    with gzip.open(images_path, "rb") as imgpath:
        images = np.frombuffer(imgpath.read(), dtype=np.uint8, offset=16).reshape(len(labels), 784)
    return images, labels


@pytest.fixture(scope="module")
def readme(fashion_gz_dir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {kind: readme_load_mnist(fashion_gz_dir, kind) for kind in COUNTS}


@pytest.mark.parametrize("kind", list(COUNTS))
def test_load_mnist_equals_readme_reader(readme, fashion_gz_dir, kind):
    images, labels = load_mnist(fashion_gz_dir, kind)
    ref_images, ref_labels = readme[kind]
    assert (images.dtype, labels.dtype) == (ref_images.dtype, ref_labels.dtype) == (np.uint8, np.uint8)
    assert images.shape == ref_images.shape == (COUNTS[kind], 784)
    assert labels.shape == ref_labels.shape == (COUNTS[kind],)
    np.testing.assert_array_equal(images, ref_images)
    np.testing.assert_array_equal(labels, ref_labels)
    assert np.bincount(labels).tolist() == [COUNTS[kind] // 10] * 10


def test_load_dataset_equals_readme_and_second_load_is_a_memory_map(readme, fashion_dir, monkeypatch):
    """The default source order with an empty cache (conftest) finds the system copy; the real files,
    wherever they are, stand in for it (a machine where make downloaded has no Debian copy)."""
    monkeypatch.setitem(DATASETS, "fashion", dataclasses.replace(FASHION, system_dirs=(str(fashion_dir),)))
    first = load_dataset("fashion")  # found as the system copy, gunzipped, cached
    assert (first.files.origin, first.files.directory) == ("system copy", fashion_dir)
    assert set(first.files.verified.values()) <= {OFFICIAL, CONTENT}
    second = load_dataset("fashion")
    for ds in (first, second):
        for kind, split in (("train", ds.train), ("t10k", ds.test)):
            ref_images, ref_labels = readme[kind]
            assert split.images.dtype == np.uint8 and split.labels.dtype == np.uint8
            assert split.images.shape == (COUNTS[kind], 28, 28)
            np.testing.assert_array_equal(split.images.reshape(-1, 784), ref_images)
            np.testing.assert_array_equal(split.labels, ref_labels)
    for array in (second.train.images, second.train.labels, second.test.images, second.test.labels):
        assert isinstance(array, np.memmap)
    assert first.fingerprint == second.fingerprint
    classes = "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"
    assert first.classes == tuple(classes.split(","))
    x = second.train.images.astype(np.float64) / 255
    assert abs(x.mean() - 0.2860405969887955) < 1e-9 and abs(x.std() - 0.35302424451492237) < 1e-9


def test_load_dataset_from_data_dir_is_reported(readme, fashion_dir):
    ds = load_dataset("fashion", fashion_dir)
    assert ds.files.origin == "--data-dir"
    np.testing.assert_array_equal(ds.test.labels, readme["t10k"][1])


def test_real_copy_verifies_through_the_cli(fashion_dir):
    proc = fmnist_cmd("data", "verify", "--data-dir", str(fashion_dir), timeout=120)
    assert proc.returncode == 0, proc.stderr
    ok = [line for line in proc.stdout.splitlines() if line.startswith("ok  ")]
    assert len(ok) == 4 and all(f"({OFFICIAL})" in line or f"({CONTENT})" in line for line in ok)
    assert "Fashion-MNIST: all 4 files verified, from --data-dir" in proc.stdout
