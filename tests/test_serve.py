"""The HTTP API against the real app: good pictures, each bad request -> its 4xx and message, never a 500."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import encode, free_port, header_png
from fmnist.cli import main

pytest_plugins = ["conftest_model"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")

STATIC = Path(__file__).resolve().parents[1] / "src" / "fmnist" / "serve" / "static"


@pytest.fixture(scope="module")
def client(run_dir, fashion_dir):
    """The app with small limits; /samples reads the test images wherever `fmnist data fetch` put them."""
    from fmnist.serve.app import create_app

    app = create_app(
        run_dir, data_dir=fashion_dir, max_upload_bytes=300_000, max_files=4, max_pixels=2_000_000
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_health_reports_the_model(client, fashion, run_dir, trained_run):
    from fmnist.evaluate.record import read_evaluation

    h = client.get("/health").json()
    assert h["status"] == "ok" and h["backend"] == "torch" and h["arch"] == "fastcnn"
    assert h["dataset"] == "fashion" and h["data_fingerprint"] == fashion.fingerprint
    # the test accuracy is the one `fmnist evaluate` wrote beside the model, under its one name
    assert h["test_accuracy"] == read_evaluation(run_dir).accuracy > 0.7
    assert h["evaluation"] == str(run_dir / "evaluation.json")
    assert h["classes"] == list(fashion.classes) and h["limits"]["max_files"] == 4
    # evaluation only wrote beside the model: model.pt is byte for byte what the trainer left
    trained = trained_run("fastcnn-whiten", evaluated=False) / "model.pt"
    assert (run_dir / "model.pt").read_bytes() == trained.read_bytes()


def test_health_reports_only_an_evaluation_of_this_model(run_dir, tmp_path):
    """No evaluation file: "not evaluated". An evaluation of an earlier model.pt, a TTA one, another
    spelling of the accuracy or a damaged file are never taken for this model's figure."""
    from fmnist.serve.app import create_app

    shutil.copy(run_dir / "model.pt", tmp_path / "model.pt")
    plain = json.loads((run_dir / "evaluation.json").read_text())
    evaluation = tmp_path / "evaluation.json"
    with TestClient(create_app(tmp_path)) as c:

        def health() -> tuple[float | None, str]:
            h = c.get("/health").json()
            return h["test_accuracy"], h["evaluation"]

        assert health() == (None, "not evaluated")
        evaluation.write_text(json.dumps(plain))  # evaluated while the server runs: read on each request
        assert health() == (plain["accuracy"], str(evaluation))
        tta = {**plain, "accuracy": 0.99, "tta": "flip"}
        (tmp_path / "evaluation-flip-tta.json").write_text(json.dumps(tta))
        assert health() == (plain["accuracy"], str(evaluation))  # the TTA score has its own file
        evaluation.write_text(json.dumps({**plain, "model_sha256": "0123456789abcdef"}))
        accuracy, why = health()
        assert accuracy is None and why == f"not evaluated ({evaluation} scored an earlier model.pt)"
        for text in (json.dumps({"test_accuracy": 0.9}), "{", json.dumps({**plain, "accuracy": "0.9"})):
            evaluation.write_text(text)
            accuracy, why = health()
            assert accuracy is None and why.startswith(f"not evaluated ({evaluation}: ") and "\n" not in why


def test_model_files_are_read_as_data(run_dir, tmp_path):
    """fmnist's own save turns numpy values into plain numbers, so the file loads and /health shows
    them; a model.pt pickled with numpy objects by something else is refused in one line, not run."""
    import torch

    from fmnist.errors import FmnistError
    from fmnist.models.checkpoint import save
    from fmnist.serve.app import create_app

    record = torch.load(run_dir / "model.pt", weights_only=True)
    record["metrics"] = {
        "val_acc": np.float32(0.875),
        "confusion": np.eye(2, dtype=np.int64),
        "n": np.int64(3),
    }
    save(record, tmp_path / "saved" / "model.pt")
    with TestClient(create_app(tmp_path / "saved")) as c:
        h = c.get("/health")
        assert h.status_code == 200
        assert h.json()["metrics"] == {"val_acc": 0.875, "confusion": [[1, 0], [0, 1]], "n": 3}
    (tmp_path / "pickled").mkdir()
    torch.save(record, tmp_path / "pickled" / "model.pt")
    with pytest.raises(FmnistError, match=r"refused: it holds a Python object \(numpy") as caught:
        create_app(tmp_path / "pickled")
    assert "\n" not in str(caught.value)


def test_openapi_schema(client):
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/health", "/samples"} <= set(schema["paths"])
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body
    assert {"413", "415", "422"} <= set(schema["paths"]["/predict"]["post"]["responses"])


def test_predict_one_and_several(client, test_images, test_proba, loaded):
    r = client.post("/predict", files={"files": ("a.png", encode(test_images[0]), "image/png")})
    assert r.status_code == 200, r.text
    p = r.json()["predictions"][0]
    assert p["filename"] == "a.png" and p["label"] == loaded.classes[test_proba[0].argmax()]
    assert len(p["top"]) == 3 and set(p["top"][0]) == {"class", "index", "probability"}
    assert abs(p["probability"] - float(test_proba[0].max())) < 1e-5
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(p["processed_png"]))))
    assert np.array_equal(seen, test_images[0])
    files = [("files", (f"{i}.png", encode(test_images[i]), "image/png")) for i in range(4)]
    r = client.post("/predict?top_k=5", files=files)
    assert r.status_code == 200
    preds = r.json()["predictions"]
    assert [q["filename"] for q in preds] == [f"{i}.png" for i in range(4)] and len(preds[0]["top"]) == 5
    assert [q["top"][0]["index"] for q in preds] == list(test_proba[:4].argmax(1))


def test_api_equals_in_memory_predictions(client, test_images, test_proba):
    got = []
    for start in range(0, 200, 4):
        files = [
            ("files", (f"{i}.png", encode(test_images[i]), "image/png")) for i in range(start, start + 4)
        ]
        got += [q["top"][0]["index"] for q in client.post("/predict", files=files).json()["predictions"]]
    assert got == list(test_proba[:200].argmax(1))


def test_a_photo_is_processed_like_the_data_set(client):
    photo = np.full((480, 360), 240, np.uint8)
    photo[100:400, 120:240] = 30  # a dark trouser-like bar on a light backdrop
    jpeg = encode(Image.fromarray(photo).convert("RGB"), "JPEG", quality=90)
    r = client.post("/predict", files={"files": ("p.jpg", jpeg, "image/jpeg")})
    assert r.status_code == 200
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["predictions"][0]["processed_png"]))))
    assert seen.shape == (28, 28) and seen[:, 0].max() == 0 and seen.max() == 255  # inverted, fitted, centred


BAD = {
    "not an image": (b"hello, I am text\n", 415, "not an image"),
    "empty": (b"", 415, "empty file"),
    "truncated": (None, 422, "truncated or corrupt"),
    "blank": (encode(np.full((40, 40), 230, np.uint8)), 422, "no article"),
    "bomb": (header_png(4000, 4000), 413, "megapixels"),  # 16 Mpx from the header, 2 Mpx cap
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_bad_file_gets_its_4xx(client, test_images, case):
    data, status, words = BAD[case]
    if data is None:
        whole = encode(test_images[3])
        data = whole[: len(whole) // 2]
    r = client.post("/predict", files={"files": ("x.png", data, "image/png")})
    assert r.status_code == status, r.text
    assert words in r.json()["detail"] and "x.png" in r.json()["detail"]
    # in a batch, the bad file decides and is named
    files = [
        ("files", ("good.png", encode(test_images[0]), "image/png")),
        ("files", ("bad.png", data, "image/png")),
    ]
    r = client.post("/predict", files=files)
    assert r.status_code == status and "bad.png" in r.json()["detail"]


def test_request_limits(client, test_images):
    noise = np.random.default_rng(0).integers(0, 256, (400, 400), dtype=np.uint8)  # ~160 kB, incompressible
    big = encode(noise) + encode(noise)  # over the 300 kB cap
    r = client.post("/predict", files={"files": ("big.png", big, "image/png")})
    assert r.status_code == 413 and "upload too large" in r.json()["detail"]

    def chunks():  # no Content-Length: a valid multipart upload, counted while it streams
        yield b'--zz\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
        for _ in range(40):
            yield b"x" * 10_000

    r = client.post(
        "/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=zz"}
    )
    assert r.status_code == 413 and "went past the limit" in r.json()["detail"]
    files = [("files", (f"{i}.png", encode(test_images[i]), "image/png")) for i in range(5)]
    r = client.post("/predict", files=files)
    assert r.status_code == 413 and "too many files" in r.json()["detail"]


def test_malformed_requests_are_4xx(client, test_images):
    one = {"files": ("a.png", encode(test_images[0]), "image/png")}
    assert client.post("/predict").status_code == 422  # no files field
    assert client.post("/predict", json={"files": "a.png"}).status_code == 422
    assert client.post("/predict", data={"files": "just text"}).status_code == 422
    assert client.post("/predict?top_k=0", files=one).status_code == 422
    assert client.post("/predict?top_k=11", files=one).status_code == 422
    assert client.post("/predict?top_k=x", files=one).status_code == 422
    assert client.get("/predict").status_code == 405
    broken = client.post(
        "/predict", content=b"--zz\r\nnonsense", headers={"content-type": "multipart/form-data; boundary=zz"}
    )
    assert 400 <= broken.status_code < 500


def test_damaged_pictures_never_give_a_500(client, test_images):
    """Random byte damage to PNG, JPEG, GIF and WebP files: a result or a 4xx, never a server error."""
    rng = np.random.default_rng(0)
    photo = Image.fromarray(np.kron(255 - test_images[5], np.ones((6, 6), np.uint8))).convert("RGB")
    originals = [encode(photo, fmt) for fmt in ("PNG", "JPEG", "GIF", "WEBP")]
    statuses = set()
    for i in range(60):
        data = bytearray(originals[i % len(originals)])
        for pos in rng.integers(0, len(data), size=int(rng.integers(1, 20))):
            data[pos] = int(rng.integers(0, 256))
        if i % 3 == 0:
            data = data[: int(rng.integers(8, len(data)))]
        r = client.post("/predict", files={"files": (f"{i}.bin", bytes(data), "application/octet-stream")})
        statuses.add(r.status_code)
        assert r.status_code in (200, 413, 415, 422), (i, r.status_code, r.text)
        assert r.status_code == 200 or isinstance(r.json()["detail"], str)
    assert len(statuses) > 1


def test_samples(client, test_labels, test_proba, loaded):
    r = client.get("/samples?n=12&seed=3")
    assert r.status_code == 200
    body = r.json()
    assert len(body["samples"]) == 12 and body["dataset"] == "fashion"
    for s in body["samples"]:
        assert s["true"] == loaded.classes[test_labels[s["index"]]]
        assert s["predicted"] == loaded.classes[test_proba[s["index"]].argmax()]
        assert s["correct"] == (s["true"] == s["predicted"])
        assert np.asarray(Image.open(io.BytesIO(base64.b64decode(s["image_png"])))).shape == (28, 28)
    assert client.get("/samples?n=12&seed=3").json() == body  # a seed repeats the choice
    assert client.get("/samples?n=0").status_code == 422
    assert client.get("/samples?n=1000").status_code == 422


def test_samples_without_data_say_why(run_dir, tmp_path):
    from fmnist.serve.app import create_app

    with TestClient(create_app(run_dir, data_dir=tmp_path / "no-data")) as c:
        r = c.get("/samples")
        assert r.status_code == 503 and "fmnist data fetch" in r.json()["detail"]
        assert c.get("/health").status_code == 200  # the rest still works


def test_page_and_its_files_are_served_without_external_urls(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    for f in STATIC.iterdir():
        text = f.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, f.name


ONNX_SERVE = textwrap.dedent(
    """
    import io, sys
    import numpy as np
    from PIL import Image
    from fastapi.testclient import TestClient
    from fmnist.serve.app import create_app
    c = TestClient(create_app(sys.argv[1], backend="onnx", data_dir=sys.argv[3]))
    buffer = io.BytesIO()
    Image.fromarray(np.load(sys.argv[2])).save(buffer, format="PNG")
    r = c.post("/predict", files={"files": ("a.png", buffer.getvalue(), "image/png")})
    assert r.status_code == 200, r.text
    health = c.get("/health").json()
    assert health["backend"] == "onnx"
    assert c.get("/samples?n=4").status_code == 200
    assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
    print(r.json()["predictions"][0]["top"][0]["index"], health["test_accuracy"])
    """
)


def test_onnx_backend_serves_without_torch(
    onnx_path, run_dir, tmp_path, test_images, test_proba, fashion_dir
):
    """Also: the export names its model.pt by digest, so the evaluation beside it is reported."""
    np.save(tmp_path / "x.npy", test_images[7])
    done = subprocess.run(
        [sys.executable, "-c", ONNX_SERVE, str(onnx_path), str(tmp_path / "x.npy"), str(fashion_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    index, accuracy = done.stdout.split()
    assert int(index) == int(test_proba[7].argmax())
    assert float(accuracy) == json.loads((run_dir / "evaluation.json").read_text())["accuracy"]


def test_serve_cli_errors(run_dir, tmp_path, capsys):
    assert main(["serve", str(tmp_path / "no-run")]) == 2
    assert "no-run" in capsys.readouterr().err
    empty = tmp_path / "run"
    empty.mkdir()
    assert main(["serve", str(empty), "--backend", "onnx"]) == 2
    assert "fmnist export" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(run_dir), "--port", str(port)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "already in use" in err[0]


def test_serve_cli_runs_a_real_server(onnx_path, test_images):
    """``fmnist serve --backend onnx`` as a user runs it: a real uvicorn on loopback, then stopped."""
    import httpx

    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable,
        "-m",
        "fmnist",
        "serve",
        str(onnx_path),
        "--backend",
        "onnx",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read().decode()
                assert time.monotonic() < deadline, "server did not start in 60 s"
                time.sleep(0.2)
        assert health.json()["backend"] == "onnx"
        r = httpx.post(
            f"http://127.0.0.1:{port}/predict",
            files={"files": ("a.png", encode(test_images[0]), "image/png")},
        )
        assert r.status_code == 200 and json.loads(r.text)["predictions"][0]["label"]
    finally:
        server.terminate()
        server.wait(timeout=20)
