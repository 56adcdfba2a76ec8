"""Shared fixtures for the predict / export / serve / page tests: a small real model, saved as a run.

They do not use the trainer (``fmnist train``): a width-8 FastCNN is trained here for
``STEPS`` plain Adam steps on the first ``TRAIN_IMAGES`` training images (about 3 s on two
cores, about 80% test accuracy), enough for predictions that vary and mean something. Test
modules load this file with ``pytest_plugins = ["conftest_model"]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

STEPS = 300  # Adam steps, batch 64
TRAIN_IMAGES = 6000
WIDTH = 8  # FastCNN width: ~8k parameters


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run torch on ``n`` threads: on two shared cores, two spinning OpenMP threads per process
    are up to 10x slower than one (measured: 50 training steps 10.5 s vs 1.1 s at load 10)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Opt-in per module: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def fashion():
    """The real Fashion-MNIST (never downloaded here); `make test` installs it, so its absence fails."""
    from fmnist.data.loader import load_dataset
    from fmnist.errors import DataError

    try:
        return load_dataset("fashion", download=False)
    except DataError as exc:
        pytest.fail(f"Fashion-MNIST files not available (run `make test`, which installs them): {exc}")


@pytest.fixture(scope="session")
def test_images(fashion) -> np.ndarray:
    return np.array(fashion.test.images)  # (10000, 28, 28) uint8, writable copy


@pytest.fixture(scope="session")
def test_labels(fashion) -> np.ndarray:
    return np.array(fashion.test.labels)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, fashion, test_images, test_labels) -> Path:
    """A run folder holding ``model.pt`` of a briefly trained FastCNN, test accuracy in its metrics."""
    mean, std = 0.2860405969887955, 0.35302424451492237
    with torch_threads(1):
        return _train_and_save(tmp_path_factory.mktemp("run"), fashion, test_images, test_labels, mean, std)


def _train_and_save(run: Path, fashion, test_images, test_labels, mean: float, std: float) -> Path:
    import torch
    import torch.nn.functional as F

    from fmnist.models import build_model, preprocess
    from fmnist.models.checkpoint import model_record, save

    torch.manual_seed(0)
    model = build_model("fastcnn", width=WIDTH).to(memory_format=torch.channels_last)
    x = preprocess(np.array(fashion.train.images[:TRAIN_IMAGES]), mean, std).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.as_tensor(np.array(fashion.train.labels[:TRAIN_IMAGES]), dtype=torch.long)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(STEPS):
        idx = torch.randint(0, len(y), (64,), generator=generator)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        xt = preprocess(test_images, mean, std).contiguous(memory_format=torch.channels_last)
        predicted = torch.cat([model(xt[i : i + 2000]).argmax(1) for i in range(0, len(xt), 2000)]).numpy()
    accuracy = float((predicted == test_labels).mean())
    record = model_record(
        model,
        arch="fastcnn",
        arch_kwargs={"width": WIDTH},
        classes=fashion.classes,
        mean=mean,
        std=std,
        dataset="fashion",
        fingerprint=fashion.fingerprint,
        epoch=1,
        metrics={"test_accuracy": accuracy},
        config={"steps": STEPS, "train_images": TRAIN_IMAGES, "note": "test fixture"},
    )
    save(record, run / "model.pt")
    return run


@pytest.fixture(scope="session")
def loaded(run_dir):
    from fmnist.models import load_model

    return load_model(run_dir)


@pytest.fixture(scope="session")
def test_proba(loaded, test_images) -> np.ndarray:
    """In-memory probabilities (10000, 10) of the torch model on the whole test split."""
    with torch_threads(1):
        return loaded.predict_proba(test_images)


@pytest.fixture(scope="session")
def onnx_path(run_dir) -> Path:
    from fmnist.export.exporters import export

    with torch_threads(1):
        return export(run_dir, "onnx")
