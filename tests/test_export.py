"""``fmnist export``: ONNX and TorchScript give torch's logits for every architecture, whitened or not, as
``fmnist train`` wrote them (top-1 on all 10,000 test images for the served model); ONNX runs without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest_model import RUNS, SERVED
from fmnist.cli import main
from fmnist.errors import FmnistError

pytest_plugins = ["conftest_model"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")

PARITY_IMAGES = 2000  # per architecture; the served model is also checked on all 10,000 below
# Both exports compute in fp32 as torch does; only the order of the sums differs (fused kernels in
# onnxruntime, another conv algorithm). Measured: at most 5e-6 (ONNX) and 2.4e-6 (TorchScript) on
# logits up to 8 in size; 1e-4 leaves a 20x margin and still catches any real change of the graph.
LOGIT_TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_every_architecture_exports_with_torchs_logits(name, trained_run, test_images, test_labels, tmp_path):
    """ONNX and TorchScript exports of each trained run give the logits of the torch model it was made from."""
    import torch

    from fmnist.export.exporters import export, load_torchscript
    from fmnist.export.onnx_runtime import OnnxModel
    from fmnist.models import load_model, preprocess

    run = trained_run(name, evaluated=False)  # exported as `fmnist train` left it
    loaded = load_model(run)
    assert loaded.record["arch"] == RUNS[name].get("model", RUNS[name].get("preset"))
    assert loaded.record["config"]["whiten"] is bool(RUNS[name].get("whiten"))  # the case it stands for
    images = test_images[:PARITY_IMAGES]
    want = loaded.logits(images).numpy()
    assert (want.argmax(1) == test_labels[:PARITY_IMAGES]).mean() > 0.3  # trained weights (chance: 0.1)
    # An export carries the model's calibration: the graph divides by the temperature (TorchScript below),
    # and OnnxModel.logits multiplies it back out from the metadata.
    temperature = loaded.calibration.temperature
    assert temperature != 1.0

    onnx = OnnxModel(export(run, "onnx", tmp_path / "model.onnx")).logits(images)
    np.testing.assert_allclose(onnx, want, **LOGIT_TOLERANCE)
    assert np.array_equal(onnx.argmax(1), want.argmax(1))

    module, meta = load_torchscript(export(run, "torchscript", tmp_path / "model.ts"))
    with torch.no_grad():
        scripted = module(preprocess(images, meta["mean"], meta["std"])).numpy()
    np.testing.assert_allclose(scripted * temperature, want, **LOGIT_TOLERANCE)
    assert meta["arch"] == loaded.record["arch"] and meta["metrics"] == loaded.record["metrics"]


def test_the_served_model_is_the_whitened_trained_one(loaded, run_dir, test_proba, test_labels):
    """The model predict / serve / page use is a run folder ``fmnist train`` + ``fmnist evaluate`` wrote."""
    assert RUNS[SERVED]["whiten"] and loaded.record["config"]["whiten"] is True
    assert {"config.json", "metrics.jsonl", "checkpoint.pt", "model.pt", "evaluation.json"} <= {
        p.name for p in run_dir.iterdir()
    }
    assert "val_acc" in loaded.record["metrics"]  # the trainer's record
    recorded = json.loads((run_dir / "evaluation.json").read_text())["accuracy"]
    assert recorded == pytest.approx((test_proba.argmax(1) == test_labels).mean(), abs=1e-12)


def test_onnx_matches_torch_on_the_whole_test_set(onnx_path, test_images, test_proba):
    from fmnist.export.onnx_runtime import OnnxModel

    model = OnnxModel(onnx_path)
    proba = model.predict_proba(test_images, batch_size=2048)
    assert proba.shape == (10_000, 10)
    assert np.array_equal(proba.argmax(1), test_proba.argmax(1))
    np.testing.assert_allclose(proba, test_proba, atol=1e-5)
    for n in (1, 7, 300):  # the batch axis is dynamic
        assert np.array_equal(model.predict_proba(test_images[:n]).argmax(1), test_proba[:n].argmax(1))


def test_onnx_carries_the_models_description(onnx_path, loaded):
    from fmnist.export.onnx_runtime import OnnxModel

    record = OnnxModel(onnx_path).record
    for key in ("classes", "mean", "std", "arch", "arch_kwargs", "dataset", "data_fingerprint", "metrics"):
        assert record[key] == loaded.record[key], key
    assert record["exporter"] == "dynamo"  # torch >= 2.5; the classic exporter is only a fallback
    assert not [p for p in onnx_path.parent.iterdir() if p.name.endswith(".tmp")]  # atomic write


def test_torchscript_matches_torch_on_the_whole_test_set(run_dir, loaded, tmp_path, test_images, test_proba):
    import torch

    from fmnist.export.exporters import export, load_torchscript
    from fmnist.models import preprocess

    path = export(run_dir, "torchscript", tmp_path / "model.ts")
    module, meta = load_torchscript(path)
    assert meta["classes"] == loaded.classes and meta["fmnist_format"] == "fmnist-torchscript/1"
    with torch.no_grad():
        logits = torch.cat(
            [
                module(preprocess(test_images[i : i + 2500], loaded.mean, loaded.std))
                for i in range(0, 10_000, 2500)
            ]
        )
    assert np.array_equal(logits.argmax(1).numpy(), test_proba.argmax(1))


def test_export_cli(run_dir, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert out.exists() and line.startswith(f"wrote {out} (onnx") and "logit difference" in line
    assert main(["export", str(tmp_path / "nothing-here")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fmnist: error: ") and "nothing-here" in err[0]
    assert main(["export", str(run_dir), "--out", str(tmp_path)]) == 2  # a folder is not a file name
    assert "is a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(run_dir), "--format", "tflite"])


def test_onnx_model_rejects_bad_files(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from fmnist.export.onnx_runtime import OnnxModel

    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(FmnistError, match="not a readable ONNX model"):
        OnnxModel(tmp_path / "junk.onnx")
    with pytest.raises(FmnistError, match="no such ONNX file"):
        OnnxModel(tmp_path / "missing.onnx")
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "other.onnx")
    with pytest.raises(FmnistError, match="without fmnist metadata"):
        OnnxModel(tmp_path / "other.onnx")


NO_TORCH = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from PIL import Image
    from fmnist.predict.predict import predict
    images = np.load(sys.argv[2])
    files = []
    for i, x in enumerate(images):
        files.append(f"{sys.argv[3]}/{i}.png")
        Image.fromarray(x).save(files[-1])
    results = predict(sys.argv[1], files + [Image.fromarray(255 - images[0]).resize((280, 280))], top_k=3)
    assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
    print(json.dumps([r["top"][0]["index"] for r in results]))
    """
)


def test_onnx_prediction_never_imports_torch(onnx_path, tmp_path, test_images, test_proba):
    """The ONNX path (photo preprocessing + onnxruntime) in a fresh interpreter: no torch module loaded."""
    np.save(tmp_path / "images.npy", test_images[:50])
    (tmp_path / "pngs").mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_TORCH,
            str(onnx_path),
            str(tmp_path / "images.npy"),
            str(tmp_path / "pngs"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    top1 = json.loads(done.stdout)
    assert top1[:50] == list(test_proba[:50].argmax(1))


def test_predict_cli_runs_onnx_models(onnx_path, tmp_path, test_images, test_proba, capsys):
    from PIL import Image

    paths = []
    for i in range(20):
        paths.append(tmp_path / f"{i:02d}.png")
        Image.fromarray(test_images[i]).save(paths[-1])
    assert main(["predict", str(onnx_path), str(tmp_path), "--json", "--top-k", "1"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["top"][0]["index"] for r in rows] == list(test_proba[:20].argmax(1))
