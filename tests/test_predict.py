"""Photo preprocessing, ``predict()`` and ``fmnist predict`` on synthetic photos and the real test set."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from conftest import encode, header_png
from fmnist.cli import main
from fmnist.predict.image_decode import (
    BlankImage,
    CorruptImage,
    DecodeLimits,
    ImageError,
    ImageTooLarge,
    NotAnImage,
)
from fmnist.predict.predict import predict
from fmnist.predict.preprocess_photo import background_level, prepare_image

pytest_plugins = ["conftest_model"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def photo(
    x: np.ndarray, scale: int = 10, bg: float = 245.0, noise: float = 3.0, seed: int = 0, pad=(60, 100)
) -> Image.Image:
    """A Fashion-MNIST image as a shop photo: dark article on a light, noisy, off-centre backdrop."""
    rng = np.random.default_rng(seed)
    article = Image.fromarray(255 - x).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    a = np.asarray(article, dtype=np.float32) * (bg / 255)
    canvas = np.full((28 * scale + 2 * pad[0], 28 * scale + 2 * pad[1]), bg, np.float32)
    oy, ox = rng.integers(0, 2 * pad[0]), rng.integers(0, 2 * pad[1])
    canvas[oy : oy + 28 * scale, ox : ox + 28 * scale] = a
    canvas += rng.normal(0, noise, canvas.shape)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).convert("RGB")


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


def garment(h: int = 600, w: int = 400, dark: int = 40, bg: int = 235) -> np.ndarray:
    """A T-shirt-like silhouette (body + sleeves), dark on a light backdrop, off-centre."""
    a = np.full((h, w), bg, np.uint8)
    a[150:500, 150:300] = dark  # body
    a[150:230, 90:360] = dark  # sleeves
    return a


# ---- preprocessing ---------------------------------------------------------------------------


def test_dark_garment_on_light_background_becomes_light_on_black_filling_28():
    out = prepare_image(Image.fromarray(garment()).convert("RGB"))
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out.max() == 255 and background_level(out.astype(np.float32)) == 0  # inverted, stretched
    rows, cols = np.flatnonzero(out.max(1) > 0), np.flatnonzero(out.max(0) > 0)
    assert rows[0] == 0 and rows[-1] == 27  # longest edge (height 350 px) fills 28: margin 0
    # width 270 of 350 -> 21.6 -> 22 px, centred with the odd pixel (if any) on the left
    assert cols[-1] - cols[0] + 1 == 22 and cols[0] == 3


def test_white_rgba_cutout_equals_the_same_photo_on_white():
    g = garment(bg=255)
    rgba = np.zeros((*g.shape, 4), np.uint8)
    rgba[..., :3] = g[..., None]
    rgba[..., 3] = np.where(g < 255, 255, 0)  # transparent backdrop
    on_white = prepare_image(Image.fromarray(g))
    assert np.array_equal(prepare_image(Image.fromarray(rgba, "RGBA")), on_white)
    # A light drawing on a transparent canvas goes onto black instead of vanishing on white.
    chalk = rgba.copy()
    chalk[..., :3] = 255 - g[..., None]
    assert mae(prepare_image(Image.fromarray(chalk, "RGBA")), on_white) < 1


def test_fashion_mnist_style_input_passes_through_unchanged(test_images):
    for x in test_images[:200]:
        assert np.array_equal(prepare_image(encode(Image.fromarray(x))), x)
    assert np.array_equal(prepare_image(test_images[0]), test_images[0])  # arrays too
    assert np.array_equal(prepare_image(test_images[0].astype(np.float32) / 255), test_images[0])


def test_inverted_fashion_mnist_image_comes_back(test_images):
    """A light-background 28x28 goes through the full pipeline and nearly reproduces the original:
    the trim, fit and centring (odd pixel above/left) match how the data set was made. (A few
    articles cover most of the border, so their background is misjudged: hence the percentile.)"""
    errors = [mae(prepare_image(Image.fromarray(255 - x), sharpen=0), x) for x in test_images[:300]]
    assert np.mean(errors) < 3 and np.percentile(errors, 90) < 5  # measured: mean 1.7


def test_synthetic_photos_keep_the_models_predictions(loaded, test_images, test_labels, test_proba):
    """150 test images rendered as noisy JPEG shop photos (5-12x larger, dark on light, off-centre):
    predictions agree with the in-memory ones and accuracy holds."""
    n = 150
    rng = np.random.default_rng(1)
    files = [
        encode(
            photo(x, scale=int(rng.integers(5, 13)), bg=float(rng.uniform(225, 252)), seed=i),
            "JPEG",
            quality=88,
        )
        for i, x in enumerate(test_images[:n])
    ]
    results = predict(loaded, files, top_k=1)
    got = np.array([r["top"][0]["index"] for r in results])
    want = test_proba[:n].argmax(1)
    # Measured with this fixture model (small, brittle): agreement 0.87, accuracy 0.79 vs 0.85 in
    # memory; with a 90%-accurate FastCNN: 0.97, 0.91 vs 0.92. A broken pipeline (no inversion, no
    # trim) agrees on well under half.
    assert np.mean(got == want) >= 0.8
    assert np.mean(got == test_labels[:n]) >= np.mean(want == test_labels[:n]) - 0.1


def test_large_photo_is_fast_and_same_as_small(tmp_path, test_images):
    x = test_images[1]
    small = photo(x, scale=10, noise=0)
    big = small.resize((small.width * 12, small.height * 12), Image.Resampling.BICUBIC)  # 5280 x 4800: 25 Mpx
    (tmp_path / "big.jpg").write_bytes(encode(big, "JPEG", quality=90))
    (tmp_path / "big.png").write_bytes(encode(big, "PNG", compress_level=1))
    reference = prepare_image(small)
    for name in ("big.jpg", "big.png"):
        start = time.perf_counter()
        out = prepare_image(tmp_path / name)
        assert time.perf_counter() - start < 5, name
        assert mae(out, reference) < 6, name


def test_colour_modes_and_formats_agree(tmp_path):
    rgb = Image.fromarray(garment()).convert("RGB")
    reference = prepare_image(rgb)
    g16 = Image.fromarray(garment().astype(np.uint16) * 257)
    assert g16.mode.startswith("I;16")
    variants = {
        "palette": rgb.convert("P", palette=Image.Palette.ADAPTIVE),
        "16-bit": g16,
        "16-bit png": Image.open(io.BytesIO(encode(g16))),
        "cmyk jpeg": Image.open(io.BytesIO(encode(rgb.convert("CMYK"), "JPEG", quality=95))),
        "LA": rgb.convert("LA"),
        "1-bit": rgb.convert("L").point(lambda v: 255 if v > 128 else 0).convert("1"),
        "gif": Image.open(io.BytesIO(encode(rgb, "GIF"))),
        "float array": np.asarray(rgb.convert("L"), dtype=np.float32) / 255,
        "rgb array": np.asarray(rgb),
    }
    if features.check("webp"):
        variants["webp"] = Image.open(io.BytesIO(encode(rgb, "WEBP", quality=95)))
    for name, image in variants.items():
        assert mae(prepare_image(image, name=name), reference) < 4, name


def test_gif_uses_its_first_frame():
    first = Image.fromarray(garment()).convert("RGB")
    second = Image.fromarray(np.full((600, 400), 235, np.uint8)).convert("RGB")
    second.paste(0, (10, 10, 100, 100))
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert np.array_equal(prepare_image(data), prepare_image(encode(first, "GIF")))


def test_exif_orientation_is_applied():
    upright = Image.fromarray(garment()).convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a sideways camera would store it
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    assert mae(prepare_image(data), prepare_image(upright)) < 3
    assert mae(prepare_image(encode(stored, "JPEG", quality=95)), prepare_image(upright)) > 20  # it matters


def test_bad_inputs_raise_clear_errors(tmp_path):
    good = encode(Image.fromarray(garment()))
    (tmp_path / "notes.txt").write_text("not a picture\n")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "cut.jpg").write_bytes(encode(Image.fromarray(garment()), "JPEG")[:3000])
    cases = {
        tmp_path / "missing.png": (ImageError, "no such file"),
        tmp_path / "notes.txt": (NotAnImage, "not an image"),
        tmp_path / "empty.png": (NotAnImage, "empty file"),
        tmp_path / "cut.png": (CorruptImage, "truncated or corrupt"),
        tmp_path / "cut.jpg": (CorruptImage, "truncated or corrupt"),
        tmp_path: (ImageError, "folder"),
    }
    for source, (kind, words) in cases.items():
        with pytest.raises(kind, match=words) as info:
            prepare_image(source)
        assert str(source) in str(info.value)
    with pytest.raises(BlankImage, match="no article"):
        prepare_image(np.full((100, 80), 200, np.uint8))
    with pytest.raises(ImageTooLarge, match="pixels"):
        prepare_image(header_png(100_000, 100_000))  # refused from the header: nothing decoded
    with pytest.raises(ImageTooLarge, match="megapixels"):
        prepare_image(header_png(8000, 8000))  # 64 Mpx: under Pillow's cap, over ours
    with pytest.raises(ImageTooLarge):
        prepare_image(good, limits=DecodeLimits(max_pixels=1000))
    with pytest.raises(NotAnImage):
        prepare_image(np.zeros((4, 4, 7), np.uint8))


# ---- predict() -------------------------------------------------------------------------------


def test_predict_accepts_paths_images_arrays_and_batches(loaded, run_dir, tmp_path, test_images, test_proba):
    want = test_proba[:4].argmax(1)
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(encode(Image.fromarray(test_images[i])))
    for inputs in (
        paths,
        [Image.fromarray(x) for x in test_images[:4]],
        list(test_images[:4]),
        test_images[:4],
    ):
        results = predict(loaded, inputs, top_k=3)
        assert [r["top"][0]["index"] for r in results] == list(want)
    one = predict(run_dir, paths[0], top_k=10)  # a path to the model, one input
    assert len(one) == 1 and len(one[0]["top"]) == 10
    probs = [t["probability"] for t in one[0]["top"]]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-5
    assert one[0]["label"] == loaded.classes[want[0]]
    np.testing.assert_allclose(probs[0], test_proba[0].max(), atol=1e-6)
    assert np.array_equal(one[0]["processed"], test_images[0])


def test_predict_errors(loaded, tmp_path, test_images):
    with pytest.raises(ImageError):
        predict(loaded, [test_images[0], tmp_path / "nope.png"])
    report = predict(loaded, [test_images[0], tmp_path / "nope.png", test_images[1]], on_error="report")
    assert "top" in report[0] and "top" in report[2] and "no such file" in report[1]["error"]
    for k in (0, 11):
        with pytest.raises(Exception, match="top-k"):
            predict(loaded, test_images[:1], top_k=k)


# ---- fmnist predict --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def png_tree(tmp_path_factory, fashion, test_images, test_labels) -> Path:
    """The whole test split as PNG files, ``<root>/<class dir>/<index>.png`` (about 10 s to write)."""
    from fmnist.data.export_png import write_png_tree

    root = tmp_path_factory.mktemp("pngs") / "t10k"
    write_png_tree(root, test_images, test_labels, fashion.classes)
    return root


def test_cli_on_the_exported_test_set_equals_in_memory_predictions(run_dir, png_tree, test_proba, capsys):
    """All 10,000 test PNGs through ``fmnist predict --json``: same class, same probabilities."""
    assert main(["predict", str(run_dir), str(png_tree), "--json", "--top-k", "3"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(test_proba) == 10_000
    index = np.array([int(Path(r["input"]).stem) for r in rows])
    got = np.array([r["top"][0]["index"] for r in rows])
    assert np.array_equal(got, test_proba[index].argmax(1))
    np.testing.assert_allclose(
        [r["top"][0]["probability"] for r in rows], test_proba[index].max(1), atol=1e-5
    )


def test_cli_text_output_and_saved_inputs(run_dir, png_tree, tmp_path, test_images, capsys):
    files = (
        sorted((png_tree / "7-sneaker").glob("*.png"))[:3]
        + sorted((png_tree / "1-trouser").glob("*.png"))[:2]
    )
    out_dir = tmp_path / "seen"
    assert main(["predict", str(run_dir), *map(str, files), "--save-processed", str(out_dir)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5
    for line, f in zip(lines, files, strict=True):
        assert line.startswith(f"{f}: ") and line.count("%") == 3
    saved = sorted(out_dir.glob("*.png"))
    assert [p.name.split("-", 1)[1] for p in saved] == [f.name for f in files]
    for p, f in zip(saved, files, strict=True):
        assert np.array_equal(np.asarray(Image.open(p)), test_images[int(f.stem)])


def bad_inputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "notes.txt").write_text("hello\n")
    good = encode(Image.fromarray(garment()))
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 3])
    (tmp_path / "no-pictures").mkdir()
    (tmp_path / "no-pictures" / "readme.md").write_text("x")
    return {
        "missing": tmp_path / "missing.png",
        "not an image": tmp_path / "notes.txt",
        "truncated": tmp_path / "cut.png",
        "empty folder": tmp_path / "no-pictures",
    }


def test_cli_each_bad_input_is_one_error_line(run_dir, tmp_path, capsys):
    for what, path in bad_inputs(tmp_path).items():
        assert main(["predict", str(run_dir), str(path)]) == 2, what
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("fmnist: error: ") and str(path) in err[0], (what, err)
        assert captured.out == ""
    for model in (tmp_path / "no-run", tmp_path / "notes.txt"):
        assert main(["predict", str(model), str(tmp_path / "cut.png")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("fmnist: error: ") and str(model) in err[0]
    assert main(["predict", str(run_dir), str(tmp_path / "cut.png"), "--top-k", "0"]) == 2
    assert "--top-k" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        assert main(["predict", str(run_dir), str(tmp_path / "cut.png"), "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_cli_bad_files_do_not_stop_the_good_ones(run_dir, tmp_path, test_images, capsys):
    bad = bad_inputs(tmp_path)
    good = tmp_path / "good.png"
    good.write_bytes(encode(Image.fromarray(test_images[0])))
    args = [str(bad["missing"]), str(good), str(bad["not an image"]), str(bad["truncated"])]
    assert main(["predict", str(run_dir), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{good}: ") and len(captured.out.strip().splitlines()) == 1
    assert len(captured.err.strip().splitlines()) == 3
    assert main(["predict", str(run_dir), *args, "--json"]) == 2
    rows = json.loads(capsys.readouterr().out)
    assert sorted("error" in r for r in rows) == [False, True, True, True]
