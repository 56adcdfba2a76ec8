"""The web service: a FastAPI app around one model loaded once, plus the page that uses it.

Routes: ``POST /predict`` (one or several pictures, multipart field ``files``) -> top-k classes,
probabilities and the processed 28x28 input as a base64 PNG; ``GET /health`` -> the model, its
data set, data fingerprint and test accuracy; ``GET /samples?n=12`` -> random test images with
true and predicted labels; ``GET /`` -> the page (``static/``, no CDN); ``/openapi.json``.

Every bad request gets a 4xx with ``{"detail": "<one clear sentence>"}``, never a 500:

* body over ``max_upload_bytes`` -> 413, decided from Content-Length before reading, or while
  streaming when there is none;
* more than ``max_files`` files -> 413; a picture over ``max_pixels`` (read from its header
  before decoding: decompression bombs) -> 413;
* not a picture -> 415; truncated or damaged, or blank (nothing to classify) -> 422;
* a missing ``files`` field or a bad ``top_k`` -> 422 (FastAPI's validation format).

In a request with several files, the first bad file decides the answer for the whole request
(the message names it): a client gets all its results or a reason, never half a batch.

With ``backend="onnx"`` nothing here imports torch.
"""

import base64
import json
import os
import threading
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from fmnist.errors import FmnistError
from fmnist.predict.predict import load, rank
from fmnist.predict.preprocess_photo import (
    DEFAULT_MAX_PIXELS,
    BlankImage,
    CorruptImage,
    ImageError,
    ImageTooLarge,
    NotAnImage,
    encode_png,
    prepare_image,
)
from fmnist.serve.limits import BodyLimit

STATIC_DIR = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # whole request body; a phone photo is 2-8 MB
MAX_FILES = 16  # pictures per request
MAX_SAMPLES = 64  # test images per /samples request
STATUS = {ImageTooLarge: 413, NotAnImage: 415, CorruptImage: 422, BlankImage: 422}
# The page loads only its own files; data: and blob: for the processed images and the canvas.
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'"
)


class TopClass(BaseModel):
    class_: str = Field(alias="class", description="class name")
    index: int = Field(description="class index in the model's output")
    probability: float


class Prediction(BaseModel):
    filename: str
    label: str = Field(description="the most probable class")
    probability: float
    top: list[TopClass]
    processed_png: str = Field(description="the 28x28 input the model saw, base64 PNG")


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class Health(BaseModel):
    status: str
    backend: str
    arch: str
    arch_kwargs: dict[str, Any]
    classes: list[str]
    dataset: str
    data_fingerprint: str
    epoch: int | None
    test_accuracy: float | None = Field(description="from the model record's metrics, if evaluated")
    metrics: dict[str, Any]
    limits: dict[str, int]


class Sample(BaseModel):
    index: int = Field(description="position in the test split")
    true: str
    predicted: str
    probability: float
    correct: bool
    image_png: str = Field(description="the test image, base64 PNG")


class SamplesResponse(BaseModel):
    dataset: str
    data_fingerprint: str
    samples: list[Sample]


class ErrorBody(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (413, "too large: body, file count or pixels"),
        (415, "not a picture"),
        (422, "damaged or blank picture"),
    )
}


def recorded_test_accuracy(metrics: dict) -> float | None:
    """The test accuracy in a record's metrics, under the names an evaluation may use."""
    for key in ("test_accuracy", "test_acc", "accuracy_test", "test/accuracy"):
        if isinstance(metrics.get(key), int | float):
            return float(metrics[key])
    test = metrics.get("test")
    if isinstance(test, dict):
        for key in ("accuracy", "acc", "top1"):
            if isinstance(test.get(key), int | float):
                return float(test[key])
    return None


def plain(obj: Any) -> Any:
    """JSON-safe copy: numpy and torch values become numbers or lists, anything else unknown a string."""
    return json.loads(json.dumps(obj, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def b64png(image: np.ndarray) -> str:
    return base64.b64encode(encode_png(image)).decode("ascii")


class SampleImages:
    """The test split, loaded on first use (never downloaded by the server) and kept."""

    def __init__(self, dataset: str, data_dir: str | os.PathLike | None) -> None:
        self.dataset, self.data_dir = dataset, data_dir
        self._lock = threading.Lock()
        self._loaded: tuple[np.ndarray, np.ndarray, str] | None = None

    def get(self) -> tuple[np.ndarray, np.ndarray, str]:
        with self._lock:
            if self._loaded is None:
                from fmnist.data.loader import load_dataset

                try:
                    ds = load_dataset(self.dataset, self.data_dir, download=False)
                except FmnistError as exc:
                    raise HTTPException(
                        503,
                        f"the {self.dataset} test images are not available on this server ({exc}); "
                        "run `fmnist data fetch` there, or start it with --data-dir",
                    ) from None
                self._loaded = (np.asarray(ds.test.images), np.asarray(ds.test.labels), ds.fingerprint)
            return self._loaded


def create_app(
    model_path: str | os.PathLike,
    *,
    backend: str = "torch",
    device: str = "cpu",
    data_dir: str | os.PathLike | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_files: int = MAX_FILES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> FastAPI:
    """Load the model once and build the app. ``backend``: torch (run folder / model.pt) or onnx."""
    if backend not in ("torch", "onnx"):
        raise FmnistError(f"unknown backend {backend!r}; choose torch or onnx")
    model = load(model_path, backend=backend, device=device)
    record = model.record
    classes = list(model.classes)
    metrics = plain(record.get("metrics") or {})
    infer_lock = threading.Lock()  # one forward pass at a time: threads would only fight for the cores
    test_images = SampleImages(record.get("dataset") or "fashion", data_dir)

    def probabilities(images: np.ndarray) -> np.ndarray:
        with infer_lock:
            return model.predict_proba(images)

    app = FastAPI(
        title="fmnist",
        version="1",
        summary="Classify pictures of clothes with a Fashion-MNIST model",
        description=f"Model: {record.get('arch')} on {record.get('dataset')} (data {record.get('data_fingerprint')}).",
    )
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    app.state.model = model

    def classify(payloads: list[tuple[str, bytes]], k: int) -> PredictResponse:
        images = []
        for name, data in payloads:
            try:
                images.append(prepare_image(data, name=name, max_pixels=max_pixels))
            except ImageError as exc:
                raise HTTPException(STATUS.get(type(exc), 422), str(exc)) from None
        probs = probabilities(np.stack(images))
        out = []
        for (name, _), image, p in zip(payloads, images, probs, strict=True):
            top = rank(p, classes, k)
            out.append(
                Prediction(
                    filename=name,
                    label=top[0]["class"],
                    probability=top[0]["probability"],
                    top=[TopClass.model_validate(t) for t in top],
                    processed_png=b64png(image),
                )
            )
        return PredictResponse(predictions=out)

    @app.post("/predict", response_model=PredictResponse, response_model_by_alias=True, responses=ERRORS)
    async def predict(
        files: Annotated[
            list[UploadFile], File(description="one or several pictures: PNG, JPEG, WebP, GIF, ...")
        ],
        top_k: Annotated[int, Query(ge=1, le=len(classes), description="classes to return per picture")] = 3,
    ) -> PredictResponse:
        """Classify pictures; each is first made Fashion-MNIST-like (see the processed PNG)."""
        if len(files) > max_files:
            raise HTTPException(413, f"too many files: {len(files)}; at most {max_files} per request")
        payloads = []
        for i, f in enumerate(files):
            payloads.append((f.filename or f"file {i + 1}", await f.read()))
            await f.close()
        return await run_in_threadpool(classify, payloads, top_k)

    @app.get("/health", response_model=Health)
    def health() -> Health:
        """The model in use and how good it is (test accuracy as recorded by `fmnist evaluate`)."""
        epoch = record.get("epoch")
        return Health(
            status="ok",
            backend=backend,
            arch=str(record.get("arch", "")),
            arch_kwargs=dict(record.get("arch_kwargs") or {}),
            classes=classes,
            dataset=str(record.get("dataset", "")),
            data_fingerprint=str(record.get("data_fingerprint", "")),
            epoch=epoch if isinstance(epoch, int) else None,
            test_accuracy=recorded_test_accuracy(metrics),
            metrics=metrics,
            limits={"max_upload_bytes": max_upload_bytes, "max_files": max_files, "max_pixels": max_pixels},
        )

    @app.get(
        "/samples",
        response_model=SamplesResponse,
        responses={503: {"model": ErrorBody, "description": "no test data here"}},
    )
    def samples(
        n: Annotated[int, Query(ge=1, le=MAX_SAMPLES, description="how many test images")] = 12,
        seed: Annotated[int | None, Query(ge=0, description="repeatable choice")] = None,
    ) -> SamplesResponse:
        """Random test images with their true and predicted labels, for the page's gallery."""
        images, labels, fingerprint = test_images.get()
        idx = np.sort(
            np.random.default_rng(seed).choice(len(labels), size=min(n, len(labels)), replace=False)
        )
        probs = probabilities(images[idx])
        rows = []
        for i, p in zip(idx, probs, strict=True):
            pred = int(p.argmax())
            rows.append(
                Sample(
                    index=int(i),
                    true=classes[int(labels[i])],
                    predicted=classes[pred],
                    probability=float(p[pred]),
                    correct=pred == int(labels[i]),
                    image_png=b64png(images[i]),
                )
            )
        return SamplesResponse(dataset=test_images.dataset, data_fingerprint=fingerprint, samples=rows)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html", headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
