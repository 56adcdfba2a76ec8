"""Real photos (#15): the garment cut from a busy backdrop, calibrated probabilities, "none of these",
photo-style augmentation, and ``fmnist bench photos`` on a small folder of labelled photos."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_one_line_error, snapshot
from fmnist.cli import main
from fmnist.data.photo_labels import parse_answer, read_photo_labels
from fmnist.data.registry import FASHION
from fmnist.errors import FmnistError
from fmnist.evaluate.metrics import expected_calibration_error
from fmnist.models.calibration import (
    Calibration,
    calibration_from,
    class_medians,
    energy,
    fit_temperature,
    read_calibration,
    softmax,
    threshold_separating,
    write_calibration,
)
from fmnist.predict.preprocess_photo import busy_photo_rgb, prepare_image
from fmnist.predict.segment import garment_mask
from fmnist.train.augment import footwear_pairs, none_of_the_ten, photo_style

pytest_plugins = ["conftest_model"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLASSES = FASHION.classes


def busy_backdrop(h: int, w: int, seed: int) -> np.ndarray:
    """A bed-like RGB backdrop: a colour gradient with a random check pattern and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.uniform(90, 200, 3)[None, None, :] + 40 * (yy / h)[:, :, None]
    checks = (((yy // 23) + (xx // 31)) % 2)[:, :, None] * rng.uniform(-45, 45, 3)[None, None, :]
    return np.clip(base + checks + rng.normal(0, 8, (h, w, 3)), 0, 255)


def on_busy_backdrop(x: np.ndarray, seed: int = 0, scale: int = 9) -> tuple[Image.Image, np.ndarray]:
    """A Fashion-MNIST image as a photo: the garment (its negative, in a colour) on a busy backdrop.

    Returns the photo and the garment's true mask at photo size."""
    rng = np.random.default_rng(seed)
    big = np.asarray(
        Image.fromarray(x).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC), np.float32
    )
    mask = big > 20
    h, w = 28 * scale + 120, 28 * scale + 160
    photo = busy_backdrop(h, w, seed)
    oy, ox = 60 + rng.integers(-20, 20), 80 + rng.integers(-30, 30)
    tint = rng.uniform(0.6, 1.0, 3)
    garment = (255 - big)[:, :, None] * tint[None, None, :]  # the packshot's garment: dark where x is bright
    region = photo[oy : oy + big.shape[0], ox : ox + big.shape[1]]
    region[mask] = garment[mask]
    truth = np.zeros((h, w), bool)
    truth[oy : oy + big.shape[0], ox : ox + big.shape[1]] = mask
    return Image.fromarray(photo.astype(np.uint8)), truth


# ---- segmentation ---------------------------------------------------------------------------------


def test_garment_is_cut_from_a_busy_backdrop(test_images):
    ious = []
    for i in range(8):
        photo, truth = on_busy_backdrop(test_images[i], seed=i)
        rgb = busy_photo_rgb(photo)
        assert rgb is not None  # a checked, graded backdrop is busy
        found = garment_mask(rgb)
        assert found is not None
        small_truth = np.asarray(Image.fromarray(truth).resize(found.shape[::-1], Image.Resampling.NEAREST))
        ious.append((found & small_truth).sum() / (found | small_truth).sum())
    assert np.median(ious) > 0.85, ious


def test_a_photo_on_a_busy_backdrop_keeps_the_models_answers(loaded, test_images, test_proba):
    """Cut out and negated, the photo of a test image is classified as the test image itself mostly is."""
    n = 40
    inputs = np.stack([prepare_image(on_busy_backdrop(test_images[i], seed=i)[0]) for i in range(n)])
    agree = (loaded.predict_proba(inputs).argmax(1) == test_proba[:n].argmax(1)).mean()
    # Without the cut the backdrop's checks and gradient fill the trim box: far fewer answers survive.
    assert agree >= 0.7, agree


def test_plain_backdrops_and_dataset_images_skip_the_cut(test_images):
    white = Image.fromarray(np.full((300, 200), 240, np.uint8)).convert("RGB")
    assert busy_photo_rgb(white) is None
    assert busy_photo_rgb(Image.fromarray(test_images[0])) is None  # 28x28: the data set's own format
    assert np.array_equal(prepare_image(test_images[0]), test_images[0])


def test_segmentation_is_deterministic(test_images):
    photo, _ = on_busy_backdrop(test_images[3], seed=3)
    assert np.array_equal(prepare_image(photo), prepare_image(photo))


# ---- calibration ------------------------------------------------------------------------------------


def test_temperature_lowers_ece_on_held_out_images(loaded, fashion):
    """Fitted on one part of the training images the model never saw, it lowers ECE on another."""
    images, labels = np.array(fashion.train.images[20000:26000]), np.array(fashion.train.labels[20000:26000])
    logits = loaded.logits(images).numpy().astype(np.float64)
    t = fit_temperature(logits[:3000], labels[:3000])
    before = expected_calibration_error(softmax(logits[3000:]), labels[3000:])[0]
    after = expected_calibration_error(softmax(logits[3000:] / t), labels[3000:])[0]
    assert after < before * 0.7, (t, before, after)


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (20000, 10))
    labels = np.array([rng.choice(10, p=p) for p in softmax(logits / 2.5)])
    assert abs(fit_temperature(logits, labels) - 2.5) < 0.15


def test_training_writes_a_calibration_for_its_model(run_dir):
    from fmnist.models.record import model_digest

    calibration, note = read_calibration(run_dir, model_digest(run_dir / "model.pt"))
    assert note == "" and calibration.model_sha256 == model_digest(run_dir / "model.pt")
    assert calibration.temperature != 1.0 and calibration.abstain_score == "class_energy"
    assert calibration.abstain_threshold < 1e6
    assert len(calibration.class_offsets) == 10 and len(set(calibration.class_offsets)) > 1


def test_class_energy_compares_each_picture_with_its_own_top_class():
    """The same logits score differently under different top classes: each class's offset is taken off."""
    logits = np.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 3.0]])
    offsets = class_medians(energy(logits), logits.argmax(axis=1), 3)
    assert np.allclose(offsets, energy(logits))  # one image per class: each is its class's median
    cal = Calibration(abstain_score="class_energy", class_offsets=(5.0, 1.0, 3.0), abstain_threshold=0.5)
    scores = cal.scores(logits)
    assert np.allclose(scores, energy(logits) - np.array([5.0, 1.0, 3.0]))
    assert cal.abstains(logits).tolist() == [True, False, True]
    with pytest.raises(FmnistError, match="3 class offsets for a model of 4 classes"):
        cal.scores(np.zeros((2, 4)))


@pytest.mark.parametrize(
    "offsets, why",
    [
        (None, "needs class_offsets"),
        ("1,2", "must be a list"),
        ([1, True], "must be a list"),
        ([1e9], "must be a list"),
    ],
)
def test_a_calibration_with_bad_class_offsets_is_one_line(offsets, why):
    data = {
        "temperature": 1.5,
        "abstain_threshold": 0.0,
        "abstain_score": "class_energy",
        "class_offsets": offsets,
    }
    with pytest.raises(FmnistError, match=why):
        calibration_from(data, "calibration.json")


def test_threshold_separating_picks_the_best_cut():
    t, balanced = threshold_separating(np.array([0.6, 0.7, 0.9, 0.95]), np.array([0.2, 0.3, 0.65]))
    assert 0.65 < t <= 0.7 and balanced == pytest.approx((0.75 + 1.0) / 2)
    never, _ = threshold_separating(np.array([0.1, 0.2]), np.array([0.8, 0.9]))  # no cut helps: keep all
    assert never == -np.inf


def test_a_calibration_for_another_model_is_not_applied(tmp_path):
    write_calibration(tmp_path, Calibration(temperature=0.5, abstain_threshold=0.4, model_sha256="aaaa"))
    calibration, note = read_calibration(tmp_path, "bbbb")
    assert calibration.temperature == 1.0 and "another model" in note


@pytest.mark.parametrize(
    "content",
    [
        "{",
        '{"format": "other"}',
        '{"format": "fmnist-calibration/1", "temperature": -1, "abstain_threshold": 0}',
    ],
)
def test_a_damaged_calibration_is_one_line(tmp_path, content):
    (tmp_path / "calibration.json").write_text(content)
    with pytest.raises(FmnistError, match="calibration"):
        read_calibration(tmp_path, "")


# ---- the abstain threshold, saved and used -------------------------------------------------------------


@pytest.fixture
def calibrated_copy(run_dir, tmp_path):
    """A copy of the served run whose calibration abstains below 0.99 (nearly always)."""
    import shutil

    from fmnist.models.record import model_digest

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    calibration, _ = read_calibration(run, model_digest(run / "model.pt"))
    write_calibration(
        run,
        Calibration(
            temperature=calibration.temperature,
            abstain_threshold=0.99,
            abstain_score="max_probability",
            model_sha256=calibration.model_sha256,
        ),
    )
    return run


def test_predict_says_none_of_these_and_still_guesses(calibrated_copy, test_images, tmp_path, capsys):
    from fmnist.predict.predict import predict

    [result] = predict(calibrated_copy, test_images[1])
    assert result["abstain"] is True and len(result["top"]) == 3
    Image.fromarray(test_images[1]).save(tmp_path / "x.png")
    assert main(["predict", str(calibrated_copy), str(tmp_path / "x.png")]) == 0
    line = capsys.readouterr().out
    assert "not one of the ten classes?" in line and "best guesses" in line


def test_the_onnx_export_carries_the_calibration(calibrated_copy, test_images):
    from fmnist.export.exporters import export
    from fmnist.models.inference import load_model
    from fmnist.predict.predict import load

    onnx = load(export(calibrated_copy, "onnx"))
    torch_model = load_model(calibrated_copy)
    assert torch_model.calibration.temperature != 1.0
    np.testing.assert_allclose(
        onnx.predict_proba(test_images[:64]), torch_model.predict_proba(test_images[:64]), atol=2e-5
    )
    assert onnx.calibration.abstain_threshold == pytest.approx(0.99)


def test_serve_answers_abstain(calibrated_copy, fashion_dir, test_images):
    from fastapi.testclient import TestClient

    from conftest import encode
    from fmnist.serve.app import create_app

    with TestClient(create_app(calibrated_copy, data_dir=fashion_dir)) as client:
        r = client.post(
            "/predict", files={"files": ("x.png", encode(Image.fromarray(test_images[0])), "image/png")}
        )
    assert r.status_code == 200, r.text
    [answer] = r.json()["predictions"]
    assert answer["abstain"] is True and len(answer["top"]) >= 1


# ---- augmentation -------------------------------------------------------------------------------------


def test_photo_style_is_seeded_bounded_and_keeps_the_brightest_at_one(test_images):
    x = torch.from_numpy(test_images[:64]).float().div(255)[:, None]
    a = photo_style(x, 1.0, torch.Generator().manual_seed(1))
    b = photo_style(x, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape
    assert a.min() >= 0 and torch.allclose(a.amax(dim=(1, 2, 3)), torch.ones(64))
    assert (a - x).abs().mean() > 0.05  # it does change them
    assert torch.equal(photo_style(x, 0.0, torch.Generator().manual_seed(1)), x)


def test_none_of_the_ten_makes_shorts_from_trousers(test_images, test_labels):
    trousers = test_images[test_labels == 1][:16]
    x = torch.from_numpy(trousers).float().div(255)[:, None]
    shorts = none_of_the_ten(
        x, torch.ones(16, dtype=torch.long), torch.Generator().manual_seed(0), hat_share=0
    )
    rows = (shorts[:, 0] > 0.1).any(dim=2).sum(dim=1).float()
    cols = (shorts[:, 0] > 0.1).any(dim=1).sum(dim=1).float()
    assert (cols >= rows).float().mean() >= 0.6  # mostly as wide as tall or wider, as shorts are
    whole = (x[:, 0] > 0.1).any(dim=1).sum(dim=1) >= (x[:, 0] > 0.1).any(dim=2).sum(dim=1)
    assert not whole.any()  # while every trouser is taller than wide
    shoes = torch.from_numpy(test_images[test_labels == 7][:4]).float().div(255)[:, None]
    assert (
        len(none_of_the_ten(shoes, torch.full((4,), 7), torch.Generator())) == 0
    )  # a band of a shoe is a shoe


def test_none_of_the_ten_makes_hats_domes_that_widen_towards_their_base(test_images, test_labels):
    pullovers = torch.from_numpy(test_images[test_labels == 2][:32]).float().div(255)[:, None]
    hats = none_of_the_ten(pullovers, torch.full((32,), 2), torch.Generator().manual_seed(0), hat_share=1)
    assert (
        hats.shape == pullovers.shape
        and hats.min() >= 0
        and torch.allclose(hats.amax(dim=(1, 2, 3)), torch.ones(32))
    )

    def crown(images):  # mean width a fifth of the way down the outline, over the widest row's width
        on = images[:, 0] > 0.05
        width, rows, any_row = on.sum(dim=2).float(), torch.arange(28).float(), on.any(dim=2)
        top, bottom = torch.where(any_row, rows, 99.0).amin(1), torch.where(any_row, rows, -1.0).amax(1)
        row = (top + 0.2 * (bottom - top)).round().long()
        return (width[torch.arange(len(images)), row] / width.amax(1)).mean().item()

    assert crown(hats) < 0.75 < 0.8 < crown(pullovers)  # a dome narrows to its crown; a pullover does not
    parts = none_of_the_ten(pullovers, torch.full((32,), 2), torch.Generator().manual_seed(0), hat_share=0)
    assert not torch.equal(parts, hats)


def test_footwear_pairs_show_two_shoes_and_leave_other_classes_alone(test_images, test_labels):
    shoes = test_images[test_labels == 7][:24]
    others = test_images[test_labels == 0][:8]
    x = torch.from_numpy(np.concatenate([shoes, others])).float().div(255)[:, None]
    labels = torch.tensor([7] * 24 + [0] * 8)
    a = footwear_pairs(x, labels, 1.0, torch.Generator().manual_seed(2))
    assert torch.equal(a, footwear_pairs(x, labels, 1.0, torch.Generator().manual_seed(2)))  # seeded
    assert torch.equal(a[24:], x[24:])  # T-shirts untouched
    assert torch.equal(footwear_pairs(x, labels, 0.0, torch.Generator()), x)

    def fill(img):  # short side over long side of the bounding box
        on = img[0] > 0.1
        h, w = on.any(dim=1).sum().item(), on.any(dim=0).sum().item()
        return min(h, w) / max(h, w)

    single = np.mean([fill(img) for img in x[:24]])
    paired = np.mean([fill(img) for img in a[:24]])
    assert paired > single + 0.15, (single, paired)  # a sneaker is long and low; a pair of them is not


def test_the_photo_recipe_shows_shoes_as_pairs_in_its_batches_and_writes_a_class_energy_calibration(
    tmp_path, test_images, test_labels, capsys
):
    from fmnist.train.config import make_config
    from fmnist.train.loop import augment

    cfg = make_config("photo")
    assert cfg.pair_aug > 0 and cfg.photo_aug > 0 and cfg.outlier_exposure > 0
    shoes = torch.from_numpy(test_images[test_labels == 7][:16])[:, None]
    plain = dataclasses.replace(cfg, pair_aug=0.0, photo_aug=0.0, crop_pad=0, flip=False, erase_p=0.0)
    paired = dataclasses.replace(plain, pair_aug=1.0)
    labels = torch.full((16,), 7)
    a = augment(shoes, plain, 0.3, 0.35, torch.Generator().manual_seed(0), labels)
    b = augment(shoes, paired, 0.3, 0.35, torch.Generator().manual_seed(0), labels)
    assert not torch.equal(a, b)  # the labels reach the pairs
    assert torch.equal(
        augment(shoes, paired, 0.3, 0.35, torch.Generator().manual_seed(0)), a
    )  # no labels, no pairs
    run = tmp_path / "run"
    flags = ["--train-limit", "600", "--epochs", "1", "--width", "8", "--threads", "1", "--val-size", "200"]
    assert main(["train", "--preset", "photo", *flags, "--out", str(run)]) == 0
    assert "calibration: temperature" in capsys.readouterr().out
    saved = json.loads((run / "calibration.json").read_text())
    assert saved["abstain_score"] == "class_energy" and len(saved["class_offsets"]) == 10


# ---- labelled photos and the benchmark ---------------------------------------------------------------


def test_label_texts():
    assert parse_answer("Coat", CLASSES, "x") == {4}
    assert parse_answer("footwear (Sandal, Sneaker or Ankle boot)", CLASSES, "x") == {5, 7, 9}
    assert parse_answer("long-sleeve top (Pullover, Shirt or T-shirt/top)", CLASSES, "x") == {0, 2, 6}
    assert parse_answer("none of the ten", CLASSES, "x") == set()
    with pytest.raises(FmnistError, match="names none of the classes"):
        parse_answer("Hat", CLASSES, "labels.csv:3")


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, test_images, test_labels) -> Path:
    """Twelve photos on busy backdrops (two per class for six classes), two "hats", a labels.csv."""
    root = tmp_path_factory.mktemp("photos")
    rows = []
    for k, cls in enumerate((0, 1, 3, 4, 7, 9)):
        for j in range(2):
            i = int(np.flatnonzero(test_labels == cls)[j])
            name = f"{CLASSES[cls][:5].replace('/', '')}/{j}.jpg"
            (root / name).parent.mkdir(exist_ok=True)
            on_busy_backdrop(test_images[i], seed=10 * k + j)[0].save(root / name, quality=90)
            label = "footwear (Sandal, Sneaker or Ankle boot)" if cls in (7, 9) else CLASSES[cls]
            rows.append(
                {
                    "file": name,
                    "source_label": "shoes" if cls in (7, 9) else CLASSES[cls],
                    "fashion_mnist_class": label,
                }
            )
    hat = np.zeros((28, 28), np.uint8)
    hat[8:20, 6:22] = 200  # a blob: no class of the ten
    for j in range(2):
        on_busy_backdrop(hat, seed=90 + j)[0].save(root / f"hat{j}.jpg")
        rows.append({"file": f"hat{j}.jpg", "source_label": "hat", "fashion_mnist_class": "none of the ten"})
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["file", "source_label", "fashion_mnist_class"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_bench_photos_scores_what_predict_says(run_dir, photo_folder, tmp_path, capsys):
    from fmnist.predict.predict import predict

    out = tmp_path / "bench"
    assert main(["bench", "photos", str(run_dir), str(photo_folder), "--out", str(out)]) == 0
    summary = json.loads((out / "photos.json").read_text())
    photos = read_photo_labels(photo_folder, CLASSES)
    results = predict(run_dir, [p.path for p in photos])
    right = [r["top"][0]["index"] in p.answers for p, r in zip(photos, results, strict=True) if p.in_class]
    assert summary["n_in_class"] == 12 and summary["n_none"] == 2
    assert summary["top1"] == pytest.approx(np.mean(right))
    assert summary["per_group"]["shoes"]["n"] == 4 and 0 <= summary["auroc_top_probability"] <= 1
    sheet = Image.open(out / "contact-sheet.png")
    assert sheet.width > 28 * 3 * 10 and sheet.height >= 28 * 3
    assert "| shoes | 4 |" in (out / "photos.md").read_text()
    assert "top-1" in capsys.readouterr().out


def test_bench_photos_runs_on_the_onnx_export(onnx_path, run_dir, photo_folder, tmp_path):
    out_torch, out_onnx = tmp_path / "t", tmp_path / "o"
    assert main(["bench", "photos", str(run_dir), str(photo_folder), "--out", str(out_torch)]) == 0
    assert main(["bench", "photos", str(onnx_path), str(photo_folder), "--out", str(out_onnx)]) == 0
    t, o = (json.loads((d / "photos.json").read_text()) for d in (out_torch, out_onnx))
    assert o["backend"] == "onnx" and o["top1"] == t["top1"] and o["per_group"] == t["per_group"]


def test_bench_photos_bad_inputs_are_one_line_and_write_nothing(run_dir, photo_folder, tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("file,fashion_mnist_class\n../../etc/passwd,Coat\n")
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("file,fashion_mnist_class\nhat0.jpg,Hat\n")
    before = snapshot(tmp_path)
    cases = [
        (["--out", str(foreign)], "other files"),
        (["--labels", str(bad_csv), "--out", str(tmp_path / "o1")], "not a path inside"),
        (["--labels", str(unknown), "--out", str(tmp_path / "o2")], "names none of the classes"),
        (["--labels", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o3")], "no labels file"),
    ]
    for extra, message in cases:
        assert main(["bench", "photos", str(run_dir), str(photo_folder), *extra]) == 2
        assert_one_line_error(capsys.readouterr().err, message)
    assert snapshot(tmp_path) == before


def test_calibrate_with_photos_writes_a_threshold_between_the_groups(
    run_dir, photo_folder, tmp_path, fashion_dir, capsys
):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    assert main(["calibrate", str(run), "--photos", str(photo_folder), "--data-dir", str(fashion_dir)]) == 0
    saved = json.loads((run / "calibration.json").read_text())
    assert "photos in" in saved["chosen_on"]["abstain_threshold"] and saved["abstain_score"] == "class_energy"
    assert "wrote" in capsys.readouterr().out
