"""The web service: a FastAPI app around one model loaded once, plus the page that uses it.

Routes: ``POST /predict`` (one or several pictures, multipart field ``files``) -> top-k classes,
probabilities and the processed 28x28 input as a base64 PNG; ``GET /health`` -> the model, its
data set, data fingerprint and test accuracy (from the ``evaluation.json`` that ``fmnist evaluate``
wrote beside the model; null when it was not evaluated); ``GET /samples?n=12`` -> random test images with
true and predicted labels; ``GET /`` -> the page (``static/``, no CDN); ``/openapi.json``.

Every bad request gets a 4xx with ``{"detail": "<one clear sentence>"}``, never a 500:

* body over ``max_upload_bytes`` -> 413, decided from Content-Length before reading, or while
  streaming when there is none;
* more than ``max_files`` files -> 413; a picture over ``max_pixels`` or that would take more
  than ``max_decoded_bytes`` to decode, or pictures that together would take more than
  ``max_request_decoded_bytes`` -> 413, all read from the headers before anything is decoded
  (decompression bombs: a 190 kB PNG can decode to 196 MB);
* not a picture -> 415; truncated or damaged, or blank (nothing to classify) -> 422;
* a missing ``files`` field or a bad ``top_k`` -> 422 (FastAPI's validation format);
* the server busy (no room within ``QUEUE_WAIT_S``) or out of memory -> 503 (never 415).

In a request with several files, the first bad file decides the answer for the whole request
(the message names it): a client gets all its results or a reason, never half a batch. Header
problems (not a picture, too large) are found in every file before any file is decoded.

Memory is bounded whatever the clients do: at most ``max_active`` POST requests are let in at
once (each holding at most its upload), the others wait before their body is read; and at most
``decode_workers`` pictures are decoded at once, each under ``max_decoded_bytes``. So the peak
is about the idle process + ``decode_workers`` x ``max_decoded_bytes`` + ``max_active`` x
``max_upload_bytes`` (benchmarks/bench_serve_memory.py measures it).

HEAD is answered wherever GET is.

With ``backend="onnx"`` nothing here imports torch.
"""

import base64
import ctypes
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from fmnist.data.loader import load_dataset
from fmnist.errors import FmnistError
from fmnist.evaluate.record import recorded_accuracy
from fmnist.models.record import model_digest
from fmnist.predict.image_decode import (
    DEFAULT_MAX_DECODED_BYTES,
    DEFAULT_MAX_PIXELS,
    MIB,
    BlankImage,
    CorruptImage,
    DecodeLimits,
    ImageError,
    ImageTooLarge,
    NotAnImage,
    OutOfMemory,
    decode_cost,
    decode_image,
    probe_image,
)
from fmnist.predict.predict import Model, load, rank
from fmnist.predict.preprocess_photo import encode_png, image_to_input
from fmnist.serve.limits import Admission, BodyLimit, HeadAsGet

STATIC_DIR = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # whole request body; a phone photo is 2-8 MB
MAX_FILES = 16  # pictures per request
MAX_SAMPLES = 64  # test images per /samples request
MAX_DECODED_BYTES = DEFAULT_MAX_DECODED_BYTES  # one picture, decoded (128 MiB: a 33 Mpx RGBA PNG)
MAX_REQUEST_DECODED_BYTES = 256 * MIB  # all the pictures of one request, decoded
DECODE_WORKERS = 2  # pictures decoded at once, whatever the number of requests
MAX_ACTIVE = 8  # POST requests let in at once; the others wait, their body unread
QUEUE_WAIT_S = 60.0  # the longest a request waits to be let in, or for a decode slot; then 503
STATUS = {ImageTooLarge: 413, NotAnImage: 415, CorruptImage: 422, BlankImage: 422, OutOfMemory: 503}
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
    probability: float = Field(description="its calibrated probability (see the model's calibration.json)")
    abstain: bool = Field(
        default=False,
        description="the model is not sure enough: not one of the ten classes? (top still given)",
    )
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
    test_accuracy: float | None = Field(
        description="plain test accuracy from the evaluation.json beside the model; null: not evaluated"
    )
    evaluation: str = Field(description="the file test_accuracy comes from, or why there is none")
    metrics: dict[str, Any] = Field(
        description="the training metrics of the saved epoch, from the model file"
    )
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
        (413, "too large: body, file count, pixels or decoded size"),
        (415, "not a picture"),
        (422, "damaged or blank picture"),
        (503, "server busy or out of memory: try again"),
    )
}


TRIM_AFTER_BYTES = 32 * MIB  # after decoding a picture this big, hand the freed memory back to the OS


def give_memory_back() -> None:
    """glibc keeps freed memory in the decoding thread's arena; malloc_trim returns it (a few ms).

    Without it the server's resident size stays at its peak after a burst of big pictures
    (bounded by the decode workers, but held). Elsewhere than glibc this does nothing.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


def check_limits(limits: dict[str, Any]) -> None:
    """Each limit a positive int (``max_pixels`` at most Pillow's own cap), or one line naming it."""
    for key, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise FmnistError(f"{key} must be a positive integer, got {value!r}")
    if limits["max_pixels"] > Image.MAX_IMAGE_PIXELS:
        raise FmnistError(
            f"max_pixels must be at most {Image.MAX_IMAGE_PIXELS} (Pillow's own cap), got {limits['max_pixels']}"
        )


def source_digest(model: Model, backend: str) -> str | None:
    """Which model.pt this model is, so an evaluation of another one is not reported as its own:
    an ONNX export names its source by digest; a torch model file is hashed (once, at start)."""
    return model.record.get("source_sha256") if backend == "onnx" else model_digest(model.path)


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


class Classifier:
    """The model and the decode pool behind /predict and /samples.

    One forward pass at a time (threads would only fight for the cores). Only the pool's
    ``decode_workers`` threads decode: memory freed by a decode stays with the thread's malloc arena,
    so a semaphore over the 40 threads of the request pool would still let 40 arenas each keep one.
    """

    def __init__(self, model: Model, limits: dict[str, int]) -> None:
        self.model, self.limits = model, limits
        self.classes = list(model.classes)
        self._infer_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(limits["decode_workers"], thread_name_prefix="fmnist-decode")

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return self.model.calibration.probabilities(self.logits(images))

    def logits(self, images: np.ndarray) -> np.ndarray:
        with self._infer_lock:
            return self.model.predict_logits(images)

    @staticmethod
    def _decode_one(img: Image.Image, name: str) -> np.ndarray:
        big = decode_cost(img) >= TRIM_AFTER_BYTES
        try:
            return image_to_input(decode_image(img, name=name), name=name)
        finally:
            img.close()
            if big:
                give_memory_back()

    def to_inputs(self, payloads: list[tuple[str, bytes]]) -> list[np.ndarray]:
        """Every header checked first (per picture and for the request), then decoded in the pool."""
        cap, request_cap = self.limits["max_decoded_bytes"], self.limits["max_request_decoded_bytes"]
        probed = []
        for name, data in payloads:
            try:
                probed.append(
                    probe_image(data, name=name, limits=DecodeLimits(self.limits["max_pixels"], cap))
                )
            except ImageError as exc:
                raise HTTPException(STATUS.get(type(exc), 422), str(exc)) from None
        total = sum(decode_cost(img) for img in probed)
        if total > request_cap:
            raise HTTPException(
                413,
                f"these {len(probed)} pictures would take {total / MIB:.0f} MiB to decode together, over the "
                f"cap of {request_cap / MIB:g} MiB per request; send fewer or smaller pictures",
            )
        futures = [
            self._pool.submit(self._decode_one, img, name)
            for (name, _), img in zip(payloads, probed, strict=True)
        ]
        deadline = time.monotonic() + QUEUE_WAIT_S
        try:
            return [f.result(timeout=max(0.0, deadline - time.monotonic())) for f in futures]
        except ImageError as exc:
            raise HTTPException(STATUS.get(type(exc), 422), str(exc)) from None
        except FutureTimeout:
            raise HTTPException(
                503,
                f"server busy: these pictures were not decoded within {QUEUE_WAIT_S:g} s; try again shortly",
            ) from None
        finally:
            for f in futures:
                f.cancel()  # the first bad picture decides: the rest need not be decoded

    def classify(self, payloads: list[tuple[str, bytes]], k: int) -> PredictResponse:
        try:
            images = self.to_inputs(payloads)
            logits = self.logits(np.stack(images))
            probs = self.model.calibration.probabilities(logits)
        except MemoryError:
            raise HTTPException(
                503, "the server ran out of memory on this request; try again later, or smaller pictures"
            ) from None
        out = []
        abstains = self.model.calibration.abstains(logits)
        for (name, _), image, p, abstain in zip(payloads, images, probs, abstains, strict=True):
            top = rank(p, self.classes, k)
            out.append(
                Prediction(
                    filename=name,
                    label=top[0]["class"],
                    probability=top[0]["probability"],
                    abstain=bool(abstain),
                    top=[TopClass.model_validate(t) for t in top],
                    processed_png=b64png(image),
                )
            )
        return PredictResponse(predictions=out)

    def samples(self, test_images: SampleImages, n: int, seed: int | None) -> SamplesResponse:
        images, labels, fingerprint = test_images.get()
        idx = np.sort(
            np.random.default_rng(seed).choice(len(labels), size=min(n, len(labels)), replace=False)
        )
        rows = []
        for i, p in zip(idx, self.probabilities(images[idx]), strict=True):
            pred = int(p.argmax())
            rows.append(
                Sample(
                    index=int(i),
                    true=self.classes[int(labels[i])],
                    predicted=self.classes[pred],
                    probability=float(p[pred]),
                    correct=pred == int(labels[i]),
                    image_png=b64png(images[i]),
                )
            )
        return SamplesResponse(dataset=test_images.dataset, data_fingerprint=fingerprint, samples=rows)


def health_of(model: Model, backend: str, digest: str | None, limits: dict[str, int]) -> Health:
    """The model in use and its test accuracy, read from its evaluation file on each call (an
    ``fmnist evaluate`` run after the server started shows up)."""
    record = model.record
    epoch = record.get("epoch")
    accuracy, evaluation = recorded_accuracy(model.path, digest)
    return Health(
        status="ok",
        backend=backend,
        arch=str(record.get("arch", "")),
        arch_kwargs=dict(record.get("arch_kwargs") or {}),
        classes=list(model.classes),
        dataset=str(record.get("dataset", "")),
        data_fingerprint=str(record.get("data_fingerprint", "")),
        epoch=epoch if isinstance(epoch, int) else None,
        test_accuracy=accuracy,
        evaluation=evaluation,
        metrics=plain(record.get("metrics") or {}),
        limits=limits,
    )


def create_app(
    model_path: str | os.PathLike,
    *,
    backend: str = "torch",
    device: str = "cpu",
    data_dir: str | os.PathLike | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_files: int = MAX_FILES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_bytes: int = MAX_DECODED_BYTES,
    max_request_decoded_bytes: int = MAX_REQUEST_DECODED_BYTES,
    decode_workers: int = DECODE_WORKERS,
    max_active: int = MAX_ACTIVE,
) -> FastAPI:
    """Load the model once and build the app. ``backend``: torch (run folder / model.pt) or onnx.

    The limits are checked here (positive integers; ``max_pixels`` at most Pillow's own cap),
    so the app never starts with a limit that means nothing.
    """
    if backend not in ("torch", "onnx"):
        raise FmnistError(f"unknown backend {backend!r}; choose torch or onnx")
    limits = {
        "max_upload_bytes": max_upload_bytes,
        "max_files": max_files,
        "max_pixels": max_pixels,
        "max_decoded_bytes": max_decoded_bytes,
        "max_request_decoded_bytes": max_request_decoded_bytes,
        "decode_workers": decode_workers,
        "max_active": max_active,
    }
    check_limits(limits)
    model = load(model_path, backend=backend, device=device)
    record = model.record
    classifier = Classifier(model, limits)
    digest = source_digest(model, backend)
    test_images = SampleImages(record.get("dataset") or "fashion", data_dir)

    app = FastAPI(
        title="fmnist",
        version="1",
        summary="Classify pictures of clothes with a Fashion-MNIST model",
        description=f"Model: {record.get('arch')} on {record.get('dataset')} (data {record.get('data_fingerprint')}).",
    )
    # Outermost last: HEAD becomes GET, oversized bodies are refused, then the admission queue.
    app.add_middleware(Admission, active=max_active, wait_s=QUEUE_WAIT_S)
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    app.add_middleware(HeadAsGet)
    app.state.model = model

    @app.post("/predict", response_model=PredictResponse, response_model_by_alias=True, responses=ERRORS)
    async def predict(
        files: Annotated[
            list[UploadFile], File(description="one or several pictures: PNG, JPEG, WebP, GIF, ...")
        ],
        top_k: Annotated[
            int, Query(ge=1, le=len(classifier.classes), description="classes to return per picture")
        ] = 3,
    ) -> PredictResponse:
        """Classify pictures; each is first made Fashion-MNIST-like (see the processed PNG)."""
        if len(files) > max_files:
            raise HTTPException(413, f"too many files: {len(files)}; at most {max_files} per request")
        payloads = []
        for i, f in enumerate(files):
            payloads.append((f.filename or f"file {i + 1}", await f.read()))
            await f.close()
        return await run_in_threadpool(classifier.classify, payloads, top_k)

    @app.get("/health", response_model=Health)
    def health() -> Health:
        """The model in use and how good it is (test accuracy as written by `fmnist evaluate`)."""
        return health_of(model, backend, digest, limits)

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
        return classifier.samples(test_images, n, seed)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html", headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
