"""``fmnist bench cnn``: time to accuracy, summaries over seeds, ratios against the references.

- ``time_to`` finds the first epoch end at or above each threshold, None when never reached;
- ``summarise`` gives mean ± std over seeds and the median time to each threshold (None unless
  every seed got there); ``ratios`` compares at the highest threshold both sides reached and, given
  the curves, at the reference's final accuracy;
- a tiny real run through the CLI (recipe + both plain-PyTorch references + flip TTA and the
  seed ensemble) writes cnn.json / cnn.md that hold every promised figure; the parameter counts are
  checked against sums written out by hand, and each seed's accuracy, its flip-TTA accuracy and the
  ensemble's are recomputed here with plain torch from the seeds' models;
- bad arguments are one-line errors with exit status 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fmnist.bench.cnn import floors, floors_markdown, markdown, ratios, summarise, time_to
from fmnist.cli import main


def row(recipe: str, seed: int, acc: float, curve: list[tuple[float, float]], **extra) -> dict:
    return {
        "recipe": recipe,
        "seed": seed,
        "model": "fastcnn",
        "params": 1000,
        "final_test_acc": acc,
        "train_time_s": curve[-1][0],
        "time_to": time_to(curve),
        "curve": curve,
        "train_images_per_s": 100.0,
        "peak_memory_mb": 10.0,
        **extra,
    }


def test_time_to_is_the_first_epoch_at_or_above_each_threshold():
    curve = [(10.0, 0.89), (20.0, 0.912), (30.0, 0.905), (40.0, 0.931)]
    got = time_to(curve)
    assert got["0.91"] == 20.0  # first reached at 20 s, not the later dip
    assert got["0.93"] == 40.0
    assert got["0.94"] is None and got["0.96"] is None


def test_summarise_and_ratios():
    rows = [
        row("ours", 0, 0.92, [(5.0, 0.90), (10.0, 0.92)], infer_images_per_s_b256=1e4),
        row("ours", 1, 0.94, [(6.0, 0.915), (12.0, 0.94)], infer_images_per_s_b256=1e4),
        row("reference-tutorial", 0, 0.915, [(50.0, 0.90), (100.0, 0.915)]),
    ]
    table = summarise(rows)
    ours, ref = table
    assert ours["acc_mean"] == pytest.approx(0.93) and ours["acc_std"] == pytest.approx(0.01414, abs=1e-4)
    assert ours["t0.91"] == pytest.approx(8.0)  # median of 10 and 6
    assert ours["t0.93"] is None  # one seed never got there
    (speedup,) = ratios(table)
    assert speedup["accuracy"] == "0.91" and speedup["speedup"] == pytest.approx(100.0 / 8.0)
    at_threshold, at_final = ratios(table, rows)
    assert at_threshold == speedup
    # The reference ended at 0.915 (at 100 s); our seeds first reached it at 10 s and 6 s: median 8 s.
    assert at_final["accuracy"].startswith("0.9150") and at_final["speedup"] == pytest.approx(100.0 / 8.0)
    rows[2]["curve"], rows[2]["final_test_acc"] = [(50.0, 0.90), (100.0, 0.935)], 0.935
    assert ratios(table, rows) == [speedup]  # seed 0 never reached 0.935: no same-accuracy row
    text = markdown(table, [speedup], [], {"cpu": "test cpu", "cores": 2, "torch": "x", "python": "y"})
    assert "| ours |" in text and "12.5x" in text and "test cpu" in text


def test_floors_need_every_seed_in_time_and_at_the_floor():
    """A floor holds only when every seed trained within the budget and every seed (so also the mean) reached
    the accuracy; single-view and flip TTA are judged apart; recipes without a floor are left out."""
    budgets = {"fast": (20.0, 0.92)}

    def seed(acc: float, tta: float, secs: float) -> dict:
        return row("fast", 0, acc, [(secs, acc)], final_test_acc_flip_tta=tta)

    rows = [seed(0.925, 0.93, 18.0), seed(0.921, 0.926, 19.5), row("other", 0, 0.99, [(1.0, 0.99)])]
    (line,) = floors(rows, budgets)
    assert line["in_time"] and line["single_met"] and line["flip_tta_met"]
    assert line["single_mean"] == pytest.approx(0.923) and line["flip_tta"] == [0.93, 0.926]
    rows[1] = seed(0.919, 0.926, 19.5)  # the mean (0.922) is above the floor, one seed is not
    (line,) = floors(rows, budgets)
    assert not line["single_met"] and line["flip_tta_met"]
    rows[1] = seed(0.93, 0.935, 20.5)  # accurate, but over the 20 s budget: nothing is met
    (line,) = floors(rows, budgets)
    assert not line["in_time"] and not line["single_met"] and not line["flip_tta_met"]
    text = "\n".join(floors_markdown([line]))
    assert "| fast | 92.00% | 20 | 18.0, 20.5 |" in text and "**no**" in text
    assert floors([row("other", 0, 0.9, [(1.0, 0.9)])], budgets) == []


def test_flip_tta_and_ensemble_figures_by_hand():
    """``ensemble_scores`` on two linear models, against numpy: the mirror is the left-right one, each model
    uses its own normalisation, logits of an image and its mirror are averaged, the ensemble averages the
    models' softmax outputs (not their logits)."""
    from fmnist.bench.cnn import ensemble_scores

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(500, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=500)
    rows, weights = [], []
    for scale, norm in ((1.0, (0.3, 0.4)), (4.0, (0.5, 0.2))):
        w, b = rng.normal(0, 0.05 * scale, size=(10, 784)), rng.normal(0, scale, size=10)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
        with torch.no_grad():
            model[1].weight.copy_(torch.from_numpy(w)), model[1].bias.copy_(torch.from_numpy(b))
        rows.append({"recipe": "lin", "_model": model, "_norm": norm})
        weights.append((w, b, norm))

    def logits(w, b, norm, imgs):
        x = (imgs.astype(np.float64) / 255 - norm[0]) / norm[1]
        return x.reshape(len(x), -1) @ w.T + b

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    plain = [logits(w, b, norm, images) for w, b, norm in weights]
    tta = [
        (p + logits(w, b, norm, images[:, :, ::-1])) / 2
        for p, (w, b, norm) in zip(plain, weights, strict=True)
    ]
    acc = lambda z: float((z.argmax(1) == labels).mean())  # noqa: E731
    ensemble = acc(np.mean([softmax(z) for z in tta], axis=0))
    # the figures tell the alternatives apart: no mirror, or logits averaged instead of probabilities
    assert [acc(z) for z in tta] != [acc(z) for z in plain]
    assert ensemble not in (acc(np.mean(tta, axis=0)), acc(np.mean([softmax(z) for z in plain], axis=0)))

    x = torch.from_numpy(images).unsqueeze(1)
    tta_row, ens_row = ensemble_scores(rows, x, torch.from_numpy(labels))
    assert tta_row["name"] == "lin + flip TTA (mean over 2 seeds)"
    assert tta_row["acc"] == pytest.approx(np.mean([acc(z) for z in tta]), abs=1e-9)
    assert tta_row["detail"] == ", ".join(f"{acc(z):.4f}" for z in tta)
    assert ens_row["name"] == "lin ensemble of 2 seeds + flip TTA"
    assert ens_row["acc"] == pytest.approx(ensemble, abs=1e-9)


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # run_bench uses every core


def own_logits(model: torch.nn.Module, images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """fp32 logits of ``model`` (eval mode) for uint8 images (n, 28, 28), normalised here."""
    model.eval()
    x = (torch.from_numpy(images.copy()).float().unsqueeze(1) / 255 - mean) / std
    with torch.no_grad():
        return model(x).float()


def test_tiny_real_run_writes_every_figure(tmp_path, monkeypatch, restore_threads, capsys):
    """A tiny real run through the CLI (in this process, so the seeds' models can be read back)."""
    from fmnist.bench import cnn
    from fmnist.data.loader import load_dataset

    seen: list[dict] = []
    real_scores = cnn.ensemble_scores

    def keep_rows(rows, test_x, test_y):
        seen.extend(rows)  # each holds its trained model (_model) and normalisation (_norm)
        return real_scores(rows, test_x, test_y)

    monkeypatch.setattr(cnn, "ensemble_scores", keep_rows)
    # One torch thread: on two shared cores two spinning OpenMP threads run up to 10x slower (conftest_model)
    import fmnist.train.device
    import fmnist.train.trainer

    for module in (fmnist.train.device, fmnist.train.trainer, cnn):
        monkeypatch.setattr(module, "set_threads", lambda _threads: torch.set_num_threads(1) or 1)
    out = tmp_path / "bench"
    args = ["bench", "cnn", "--recipes", "cpu-60s", "--seeds", "0,1", "--references", "tutorial,resnet"]
    args += ["--reference-epochs", "1", "--reference-resnet", "4x1", "--epochs", "2", "--train-limit", "2000"]
    args += ["--test-limit", "300", "--ensemble", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err[-2000:]
    text = (out / "cnn.json").read_text()
    result = json.loads(text, parse_constant=lambda c: pytest.fail(f"cnn.json holds {c}, which is not JSON"))
    recipes = [r["recipe"] for r in result["runs"]]
    assert recipes == ["cpu-60s", "cpu-60s", "reference-tutorial", "reference-resnet"]
    ours = result["runs"][0]
    assert ours["best_val_acc"] is None  # cpu-60s trains on every image: no split, so no val accuracy
    assert len(ours["curve"]) == 2 and ours["data_load_s"] > 0 and ours["eval_s"] > 0
    assert set(ours["time_to"]) == {"0.91", "0.92", "0.93", "0.94", "0.95", "0.96"}
    assert ours["train_images_per_s"] > 0 and ours["infer_images_per_s_b256"] > 0
    # fastcnn width 16, depth 2 (cpu-60s), by hand: convs 1*16*9 + 16*32*9 + 32*32*9 + 32*64*9 + 64*64*9 =
    # 69,264 (no biases), BatchNorm 2*(16 + 32 + 32 + 64 + 64) = 416, classifier (2*64)*10 + 10 = 1,290
    assert ours["params"] == 69_264 + 416 + 1_290 == 70_970
    # resnet 4x1 (not the 64x2 default), by hand: stem 1*4*9 = 36; block 4->4: BN 8 + conv 144 + BN 8 +
    # conv 144 = 304; block 4->8 (stride 2): BN 8 + conv 288 + BN 16 + conv 576 + 1x1 shortcut 32 = 920;
    # block 8->16: BN 16 + conv 1,152 + BN 32 + conv 2,304 + shortcut 128 = 3,632; final BN 32; linear 170
    assert result["runs"][3]["params"] == 36 + 304 + 920 + 3_632 + 32 + 170 == 5_094
    assert result["machine"]["torch"] and result["config"]["reference_resnet"] == [4, 1]
    assert "reference-resnet" in (out / "cnn.md").read_text()

    # The flip-TTA and ensemble figures, recomputed here from the two seeds' models on the same 300 images.
    test = load_dataset("fashion", download=False).test
    images, labels = (
        np.asarray(test.images[:300]),
        torch.from_numpy(np.asarray(test.labels[:300]).astype(np.int64)),
    )
    assert [r["seed"] for r in seen] == [0, 1]
    plain_accs, tta_accs, probs = [], [], []
    for row, saved in zip(seen, result["runs"][:2], strict=True):
        mean, std = row["_norm"]
        plain = own_logits(row["_model"], images, mean, std)
        mirrored = own_logits(row["_model"], images[:, :, ::-1], mean, std)  # left-right mirror
        both = (plain + mirrored) / 2
        plain_accs.append((plain.argmax(1) == labels).double().mean().item())
        tta_accs.append((both.argmax(1) == labels).double().mean().item())
        probs.append(torch.softmax(both, 1))
        assert saved["final_test_acc"] == pytest.approx(plain_accs[-1], abs=1e-6)
        assert saved["final_test_acc_flip_tta"] == pytest.approx(tta_accs[-1], abs=1e-6)
    ensemble = (torch.stack(probs).mean(0).argmax(1) == labels).double().mean().item()
    tta, ens = result["extra"]
    assert tta["name"] == "cpu-60s + flip TTA (mean over 2 seeds)"
    assert tta["acc"] == pytest.approx(sum(tta_accs) / 2, abs=1e-6)
    assert tta["detail"] == ", ".join(f"{a:.4f}" for a in tta_accs)
    assert ens["name"] == "cpu-60s ensemble of 2 seeds + flip TTA"
    assert ens["acc"] == pytest.approx(ensemble, abs=1e-6)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--recipes", "nope"], "unknown recipe(s) nope"),
        (["--references", "vgg"], "unknown reference(s) vgg"),
        (["--reference-resnet", "16"], "--reference-resnet must be WIDTHxDEPTH"),
        (["--reference-resnet", "0x1"], "--reference-resnet sizes must be positive"),
    ],
)
def test_bad_arguments_are_one_line_errors(args, fragment, capsys, tmp_path: Path):
    assert main(["bench", "cnn", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
