"""Exports (NPZ, CSV, PNG folders) read back to the same arrays; the sprite has the README's layout.

The commands on the real data read it wherever ``fmnist data fetch`` put it (conftest's ``real_data``:
``$FMNIST_DATA_DIR`` and the session's array cache, so only the first command gunzips); the reference
arrays come from ``load_mnist`` on the published ``.gz`` (``fashion_gz_dir``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import fmnist_cmd
from fmnist.cli import main
from fmnist.data import load_dataset, load_mnist
from fmnist.data.export import export, read_csv, write_csv
from fmnist.data.export_png import class_dirname, read_png_tree
from fmnist.errors import DataError
from fmnist.viz.sprite import make_sprite, save_sprite

LIMIT = 200
NPZ_KEY = {"train": "train", "t10k": "test"}  # our split -> the Keras key suffix in the NPZ


@pytest.fixture(scope="module")
def real_head(fashion_gz_dir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The first LIMIT images and labels of each real split, (n, 28, 28) and (n,)."""
    out = {}
    for kind in ("train", "t10k"):
        images, labels = load_mnist(fashion_gz_dir, kind)
        out[kind] = (images[:LIMIT].reshape(-1, 28, 28), labels[:LIMIT])
    return out


def fmnist_data(cwd: Path, *args: str) -> str:
    """``fmnist data ARGS`` in a child (the test's environment: ``real_data`` points it at the data)."""
    proc = fmnist_cmd("data", *args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


@pytest.mark.parametrize("fmt, via", [("csv", "subprocess"), ("png", "subprocess"), ("npz", "in-process")])
def test_cli_export_round_trip_on_real_data(tmp_path, real_data, real_head, capsys, fmt, via):
    out = tmp_path / "exported"
    args = ["export", "--format", fmt, "--limit", str(LIMIT), "--out", str(out)]
    if via == "subprocess":
        printed = fmnist_data(tmp_path, *args)
    else:  # the same command without paying for another interpreter start
        assert main(["data", *args]) == 0
        printed = capsys.readouterr().out
    if fmt == "npz":
        assert printed.split() == [str(out / "fashion.npz")]
        with np.load(out / "fashion.npz") as npz:
            # Keras' names: what keras.datasets.fashion_mnist.load_data() returns
            assert sorted(npz.files) == ["classes", "x_test", "x_train", "y_test", "y_train"]
            back = {kind: (npz[f"x_{key}"], npz[f"y_{key}"]) for kind, key in NPZ_KEY.items()}
            assert npz["classes"][0] == "T-shirt/top" and len(npz["classes"]) == 10
    elif fmt == "csv":
        assert printed.split() == [str(out / "fashion-train.csv"), str(out / "fashion-t10k.csv")]
        back = {kind: read_csv(out / f"fashion-{kind}.csv") for kind in ("train", "t10k")}
        header = (out / "fashion-train.csv").read_text().split("\n", 1)[0].split(",")
        assert header[:3] == ["label", "pixel1", "pixel2"] and header[-1] == "pixel784" and len(header) == 785
    else:
        assert printed.split() == [str(out / "fashion-train"), str(out / "fashion-t10k")]
        back = {kind: read_png_tree(out / f"fashion-{kind}") for kind in ("train", "t10k")}
        assert (out / "fashion-train" / "0-t-shirt-top").is_dir()
        assert (out / "fashion-train" / "9-ankle-boot").is_dir()
    for kind in ("train", "t10k"):
        images, labels = back[kind]
        ref_images, ref_labels = real_head[kind]
        assert images.dtype == np.uint8 and labels.dtype == np.uint8
        assert images.shape == (LIMIT, 28, 28) and labels.shape == (LIMIT,)
        np.testing.assert_array_equal(images, ref_images)
        np.testing.assert_array_equal(labels, ref_labels)


@pytest.mark.parametrize("columns, via", [(12, "subprocess"), (30, "in-process")])
def test_cli_sprite_size(tmp_path, real_data, capsys, columns, via):
    out = tmp_path / "sprite.png"
    args = ["sprite", "--out", str(out), "--columns", str(columns)]
    if via == "subprocess":
        printed = fmnist_data(tmp_path, *args)
    else:
        assert main(["data", *args]) == 0
        printed = capsys.readouterr().out
    assert printed.strip() == str(out)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "L"
        assert im.size == (columns * 28, 30 * 28)  # (width, height): three rows per class
        assert np.asarray(im).max() > 0


# --- in-process, on the tiny fake data set -------------------------------------------------------------


def test_sprite_puts_each_class_in_its_three_rows(tiny_spec, tiny_idx_dir, tmp_path):
    ds = load_dataset("tiny", tiny_idx_dir)
    columns = 7
    canvas = make_sprite(np.asarray(ds.train.images), np.asarray(ds.train.labels), 10, 3, columns, seed=1)
    assert canvas.shape == (30 * 28, columns * 28) and canvas.dtype == np.uint8
    for r in range(30):
        cls = r // 3
        for c in range(columns):
            tile = canvas[r * 28 : (r + 1) * 28, c * 28 : (c + 1) * 28]
            assert (tile[4 + 2 * cls, 4:24] == 255).all()  # the tiny set marks class c by a band at row 4+2c
    again = make_sprite(np.asarray(ds.train.images), np.asarray(ds.train.labels), 10, 3, columns, seed=1)
    np.testing.assert_array_equal(canvas, again)
    path = save_sprite(tmp_path / "s.png", canvas, invert=True)
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im), 255 - canvas)


def test_export_all_formats_full_round_trip(tiny_spec, tiny_idx_dir, tmp_path):
    ds = load_dataset("tiny", tiny_idx_dir)
    out = tmp_path / "out"
    written = export(ds, out, "csv") + export(ds, out, "png") + export(ds, out, "npz")
    assert [p.name for p in written] == [
        "tiny-train.csv",
        "tiny-t10k.csv",
        "tiny-train",
        "tiny-t10k",
        "tiny.npz",
    ]
    npz = np.load(out / "tiny.npz")
    for kind, split in (("train", ds.train), ("t10k", ds.test)):
        for images, labels in (
            read_csv(out / f"tiny-{kind}.csv"),
            read_png_tree(out / f"tiny-{kind}"),
            (npz[f"x_{NPZ_KEY[kind]}"], npz[f"y_{NPZ_KEY[kind]}"]),
        ):
            np.testing.assert_array_equal(images, split.images)
            np.testing.assert_array_equal(labels, split.labels)
    assert sorted(p.name for p in (out / "tiny-train").iterdir() if p.name != ".fmnist-export.json") == [
        class_dirname(i, f"class{i}") for i in range(10)
    ]


def test_npz_has_keras_keys_and_shapes(tiny_spec, tiny_idx_dir, tmp_path):
    ds = load_dataset("tiny", tiny_idx_dir)
    export(ds, tmp_path / "both", "npz")
    with np.load(tmp_path / "both" / "tiny.npz") as npz:
        assert sorted(npz.files) == ["classes", "x_test", "x_train", "y_test", "y_train"]
        assert npz["x_train"].shape == (len(ds.train), 28, 28) and npz["x_train"].dtype == np.uint8
        assert npz["y_train"].shape == (len(ds.train),) and npz["y_train"].dtype == np.uint8
        assert npz["x_test"].shape == (len(ds.test), 28, 28) and npz["y_test"].shape == (len(ds.test),)
    export(ds, tmp_path / "test", "npz", ("t10k",), limit=3)
    with np.load(tmp_path / "test" / "tiny.npz") as npz:
        assert sorted(npz.files) == ["classes", "x_test", "y_test"]
        assert npz["x_test"].shape == (3, 28, 28)


def test_png_export_replaces_the_old_tree_and_leaves_no_temporaries(tiny_spec, tiny_idx_dir, tmp_path):
    ds = load_dataset("tiny", tiny_idx_dir)
    out = tmp_path / "out"
    export(ds, out, "png", ("t10k",))
    export(ds, out, "png", ("t10k",), limit=7)
    images, labels = read_png_tree(out / "tiny-t10k")
    assert len(images) == 7
    np.testing.assert_array_equal(images, ds.test.images[:7])
    assert [p.name for p in out.iterdir()] == ["tiny-t10k"]


def test_class_dirname_is_safe_and_sorted():
    assert class_dirname(0, "T-shirt/top") == "0-t-shirt-top"
    assert class_dirname(9, "Ankle boot") == "9-ankle-boot"


def test_unknown_export_format(tiny_spec, tiny_idx_dir, tmp_path):
    with pytest.raises(DataError, match="unknown export format 'xls'"):
        export(load_dataset("tiny", tiny_idx_dir), tmp_path, "xls")


@pytest.mark.parametrize(
    "text, message",
    [
        ("pixel1,label\n1,2\n", "first column must be 'label'"),
        ("", "cannot read CSV"),
        ("label,pixel1\n1,2\n", "expected 1 \\+ 784 columns"),
        (
            "label,"
            + ",".join(f"pixel{i}" for i in range(1, 785))
            + "\n"
            + "1,"
            + ",".join(["300"] * 784)
            + "\n",
            "0..255",
        ),
        ("label,pixel1\n1,x\n", "cannot read CSV"),
    ],
    ids=["header", "empty", "columns", "range", "not-a-number"],
)
def test_read_csv_rejects_bad_files(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_csv(path)


def test_write_csv_layout(tmp_path):
    images = np.arange(2 * 784, dtype=np.int64).reshape(2, 28, 28) % 256
    path = tmp_path / "x.csv"
    write_csv(path, images.astype(np.uint8), np.array([3, 9], dtype=np.uint8))
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert lines[1].startswith("3,0,1,2,") and lines[2].startswith("9,16,17,")
