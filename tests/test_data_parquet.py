"""``fmnist data export --format parquet`` writes the Hugging Face Hub's layout, which ``datasets`` reads.

Read back OFFLINE with ``datasets.load_dataset("parquet", ...)`` (its cache in ``tmp_path``) and with
``pandas.read_parquet``, every pixel and label is compared with ``load_mnist`` on the published ``.gz``.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import assert_one_line_error
from fmnist.cli import main
from fmnist.data import load_dataset, load_mnist
from fmnist.data.export import export, read_parquet, write_parquet
from fmnist.data.registry import get_spec
from fmnist.errors import FmnistError

LIMIT = 200
FASHION_CLASSES = list(get_spec("fashion").classes)


@pytest.fixture
def hf_offline(tmp_path, monkeypatch) -> Path:
    """``datasets`` offline, every cache it keeps under ``tmp_path``: returns the ``cache_dir``."""
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "datasets"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home / "datasets"


def hf_load(cache_dir: Path, **kwargs):
    import datasets

    datasets.disable_progress_bars()
    return datasets.load_dataset("parquet", cache_dir=str(cache_dir), **kwargs)


def decode(cells) -> np.ndarray:
    """PNG bytes (pandas' ``{"bytes", "path"}`` cells) to (n, 28, 28) uint8."""
    images = []
    for cell in cells:
        assert cell["path"] is None
        with Image.open(io.BytesIO(cell["bytes"])) as im:
            assert im.format == "PNG" and im.mode == "L"
            images.append(np.asarray(im))
    return np.stack(images)


def test_parquet_whole_test_split_reads_back_with_datasets_and_pandas(
    tmp_path, real_data, fashion_gz_dir, hf_offline, capsys
):
    import datasets

    out = tmp_path / "hub"
    assert main(["data", "export", "--format", "parquet", "--split", "t10k", "--out", str(out)]) == 0
    path = out / "fashion-test.parquet"
    assert capsys.readouterr().out.split() == [str(path)]
    assert sorted(p.name for p in out.iterdir()) == [".fmnist-export.json", "fashion-test.parquet"]
    ref_images, ref_labels = load_mnist(fashion_gz_dir, "t10k")
    ref_images = ref_images.reshape(-1, 28, 28)
    assert len(ref_labels) == 10_000

    schema = pq.read_schema(path)
    assert schema.field("image").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    assert schema.field("label").type == pa.int64()
    features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert features == {
        "image": {"_type": "Image"},
        "label": {"names": FASHION_CLASSES, "_type": "ClassLabel"},
    }
    assert pq.ParquetFile(path).metadata.num_row_groups == 1  # 10,000 images: one row group

    hf = hf_load(hf_offline, data_files={"test": str(path)}, split="test")
    assert isinstance(hf.features["image"], datasets.Image)
    assert isinstance(hf.features["label"], datasets.ClassLabel)
    assert hf.features["label"].names == FASHION_CLASSES
    assert hf.num_rows == 10_000
    np.testing.assert_array_equal(np.asarray(hf["label"]), ref_labels)
    images = np.stack([np.asarray(im) for im in hf["image"]])
    assert images.dtype == np.uint8
    np.testing.assert_array_equal(images, ref_images)
    assert list(hf_offline.parent.iterdir()), "datasets kept its cache elsewhere"

    frame = pd.read_parquet(path)
    assert list(frame.columns) == ["image", "label"] and frame["label"].dtype == np.int64
    np.testing.assert_array_equal(frame["label"].to_numpy(), ref_labels)
    np.testing.assert_array_equal(decode(frame["image"]), ref_images)


def test_parquet_limit_both_splits_named_for_the_hub(tmp_path, real_data, fashion_gz_dir, hf_offline, capsys):
    out = tmp_path / "hub"
    args = ["data", "export", "--format", "parquet", "--limit", str(LIMIT), "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / "fashion-train.parquet"), str(out / "fashion-test.parquet")]
    # the file names alone tell `datasets` the splits (its *-train.* / *-test.* patterns)
    hf = hf_load(hf_offline, data_dir=str(out))
    assert sorted(hf) == ["test", "train"]
    for kind, split in (("train", "train"), ("t10k", "test")):
        ref_images, ref_labels = load_mnist(fashion_gz_dir, kind)
        ref_images, ref_labels = ref_images[:LIMIT].reshape(-1, 28, 28), ref_labels[:LIMIT]
        assert hf[split].features["label"].names == FASHION_CLASSES
        np.testing.assert_array_equal(np.asarray(hf[split]["label"]), ref_labels)
        np.testing.assert_array_equal(np.stack([np.asarray(im) for im in hf[split]["image"]]), ref_images)
        images, labels = read_parquet(out / f"fashion-{split}.parquet")
        np.testing.assert_array_equal(images, ref_images)
        np.testing.assert_array_equal(labels, ref_labels)
    # a rerun replaces its own files (the manifest knows them)
    assert main([*args[:-2], "--split", "train", "--limit", "5", "--out", str(out)]) == 0
    assert len(read_parquet(out / "fashion-train.parquet")[1]) == 5


def test_parquet_row_groups_bound_memory(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(25, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=25).astype(np.uint8)
    path = tmp_path / "x.parquet"
    write_parquet(path, images, labels, [f"c{i}" for i in range(10)], rows=10)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 3 and meta.num_rows == 25
    back_images, back_labels = read_parquet(path)
    np.testing.assert_array_equal(back_images, images)
    np.testing.assert_array_equal(back_labels, labels)
    assert [p.name for p in tmp_path.iterdir()] == ["x.parquet"]  # no temporary left


def test_parquet_refuses_a_file_it_did_not_write(tmp_path, real_data, capsys):
    out = tmp_path / "hub"
    out.mkdir()
    (out / "fashion-test.parquet").write_bytes(b"the user's own file")
    args = ["data", "export", "--format", "parquet", "--split", "t10k", "--limit", "3", "--out", str(out)]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, 2, "fashion-test.parquet", "not written by an earlier", "--force")
    assert (out / "fashion-test.parquet").read_bytes() == b"the user's own file"
    assert sorted(p.name for p in out.iterdir()) == ["fashion-test.parquet"]


def test_parquet_without_pyarrow_is_one_line(tiny_spec, tiny_idx_dir, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError
    out = tmp_path / "out"
    with pytest.raises(FmnistError, match=r'^the parquet export needs pyarrow: pip install "fmnist\[hf\]"$'):
        export(load_dataset("tiny", tiny_idx_dir), out, "parquet")
    assert not out.exists()


def test_parquet_tiny_set_round_trip(tiny_spec, tiny_idx_dir, tmp_path):
    ds = load_dataset("tiny", tiny_idx_dir)
    written = export(ds, tmp_path, "parquet")
    assert [p.name for p in written] == ["tiny-train.parquet", "tiny-test.parquet"]
    for path, split in zip(written, (ds.train, ds.test), strict=True):
        images, labels = read_parquet(path)
        np.testing.assert_array_equal(images, split.images)
        np.testing.assert_array_equal(labels, split.labels)
        meta = json.loads(pq.read_schema(path).metadata[b"huggingface"])
        assert meta["info"]["features"]["label"]["names"] == list(ds.classes)
