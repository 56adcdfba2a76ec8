"""``fmnist train --tensorboard``: event files in RUN_DIR/tensorboard, read back with TensorBoard's own reader.

Per epoch (step = epoch) the scalars of metrics.jsonl; at the end the best model's validation confusion
matrix as an image and a table. A resumed run shows each epoch once; without the flag there is no folder;
without the package, one line and nothing trained.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fmnist.errors import ConfigError
from fmnist.fsio import read_jsonl
from fmnist.train import make_config, train
from fmnist.train.tensorboard import BOARD_DIR, CONFUSION_TAG, INSTALL, SCALARS

pytestmark = pytest.mark.usefixtures("real_data", "one_torch_thread")

TINY = {
    "model": "fastcnn",
    "width": 4,
    "train_limit": 600,
    "val_size": 100,
    "epochs": 2,
    "threads": 1,
    "device": "cpu",
    "bf16": False,
}


def events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / BOARD_DIR), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    return acc.Reload()


def check_scalars(acc, run_dir: Path, epochs: int) -> None:
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    assert set(SCALARS.values()) <= set(acc.Tags()["scalars"])
    for key, tag in SCALARS.items():
        logged = acc.Scalars(tag)
        assert [e.step for e in logged] == list(range(1, epochs + 1)), tag  # once per epoch
        assert [e.value for e in logged] == pytest.approx([r[key] for r in rows], rel=1e-5), tag


def test_tensorboard_scalars_and_confusion_matrix(tmp_path):
    run_dir = tmp_path / "run"
    result = train(make_config(**TINY, tensorboard=True), run_dir, log=None)
    acc = events(run_dir)
    check_scalars(acc, run_dir, 2)
    images = acc.Images(CONFUSION_TAG)
    assert [i.step for i in images] == [result.best_epoch]
    assert images[0].encoded_image_string.startswith(b"\x89PNG") and images[0].width > 100
    texts = acc.Tensors(f"{CONFUSION_TAG}/text_summary")
    assert [t.step for t in texts] == [result.best_epoch]
    table = texts[0].tensor_proto.string_val[0].decode()
    assert "| true \\ predicted |" in table and "Ankle boot" in table
    counts = [[int(v) for v in line.strip("| ").split(" | ")[1:]] for line in table.splitlines()[2:]]
    assert sum(map(sum, counts)) == 100  # every validation image counted once
    assert sum(counts[i][i] for i in range(10)) / 100 == pytest.approx(result.best_val_acc)


def test_resumed_run_logs_each_epoch_once(tmp_path):
    run_dir = tmp_path / "run"
    cfg = make_config(**TINY, tensorboard=True)
    train(cfg, run_dir, log=None, stop_after=1)
    assert [e.step for e in events(run_dir).Scalars("train/loss")] == [1]
    train(cfg, run_dir, resume=True, log=None)
    check_scalars(events(run_dir), run_dir, 2)
    train(cfg, run_dir, resume=True, log=None)  # finished already: nothing to train, events rewritten once
    acc = events(run_dir)
    check_scalars(acc, run_dir, 2)
    assert len(acc.Images(CONFUSION_TAG)) == 1


def test_no_flag_no_folder(tmp_path):
    run_dir = tmp_path / "run"
    train(make_config(**{**TINY, "epochs": 1}), run_dir, log=None)
    assert (run_dir / "model.pt").exists() and not (run_dir / BOARD_DIR).exists()


def test_missing_package_is_one_line_before_training(tmp_path, monkeypatch):
    for name in ("tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, name, None)  # `import` of it now raises ImportError
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        train(make_config(**TINY, tensorboard=True), run_dir, log=None)
    message = str(err.value)
    assert "\n" not in message and INSTALL in message
    assert not run_dir.exists()  # nothing trained, nothing written
