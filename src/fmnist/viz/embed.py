"""2-D maps of the images (PCA, t-SNE, UMAP) from raw pixels or a trained CNN's penultimate features.

t-SNE and UMAP first reduce to :data:`PCA_FIRST` dimensions with PCA (the usual recipe: it removes
pixel noise and makes the neighbour search cheap). Defaults keep each map within a few minutes on
two CPU cores by drawing a random subsample of :data:`DEFAULT_N` images; the title, the printed
line and the ``.json`` beside the CSV say how many of how many were drawn.
"""

from __future__ import annotations

import csv
import io
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib
import numpy as np
import sklearn  # noqa: F401  (before threadpoolctl, so a missing install names scikit-learn)
import torch
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from fmnist.errors import ConfigError
from fmnist.evaluate.pictures import save_figure
from fmnist.fsio import write_json, write_text
from fmnist.models.inference import load_model

METHODS = ("pca", "tsne", "umap")
FEATURES = ("pixels", "cnn")
METHOD_TITLES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
DEFAULT_N = {"pca": 10_000, "tsne": 5_000, "umap": 5_000}  # images per map when --n is not given
PCA_FIRST = 50  # dimensions kept by PCA before t-SNE / UMAP
MIN_N = 10  # fewer points than this make no map (t-SNE perplexity and UMAP neighbours need some)
THUMBNAILS = 30  # images drawn on the map with --thumbnails
SINGLE_THREAD_BELOW = 2_000  # smaller maps run on one thread (see embed_2d)


@dataclass(frozen=True)
class MapRequest:
    """What one ``fmnist viz embed`` draws, the same for each data set on the map; checked when built."""

    split: str  # train or t10k
    method: str  # one of METHODS
    features: str  # one of FEATURES
    n: int | None  # points per map (None: DEFAULT_N[method])
    seed: int  # seeds the subsample and the embedding
    run: str | Path | None  # the model of --features cnn
    threads: int = 0  # CPU threads (0: all cores)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown --method {self.method!r}; known: {', '.join(METHODS)}")
        if self.features not in FEATURES:
            raise ConfigError(f"unknown --features {self.features!r}; known: {', '.join(FEATURES)}")
        if self.threads < 0:
            raise ConfigError(f"--threads must be >= 0, got {self.threads}")
        if self.n is not None and self.n < MIN_N:
            raise ConfigError(f"--n must be at least {MIN_N}, got {self.n}")


@dataclass(frozen=True)
class MapInfo:
    """What a map shows: written as JSON beside its CSV and summarised in its title."""

    dataset: str
    split: str
    features: str
    method: str
    n: int  # points on the map
    total: int  # images in the split
    seed: int
    run: str | None
    pca_first: int | None  # dimensions PCA kept before t-SNE / UMAP (None: none)
    seconds: float  # features + embedding, wall clock

    @property
    def sample_note(self) -> str:
        if self.n == self.total:
            return f"all {self.total:,} {self.split} images"
        return f"{self.n:,} of {self.total:,} {self.split} images (random subsample, seed {self.seed})"

    def title(self, dataset_title: str) -> str:
        reduction = f" after PCA-{self.pca_first}" if self.pca_first else ""
        source = "raw pixels" if self.features == "pixels" else "CNN penultimate features"
        return f"{dataset_title}: {METHOD_TITLES[self.method]} of {source}{reduction}\n{self.sample_note}"


def subsample(total: int, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` images drawn without replacement (all of them when n >= total)."""
    if n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))


def features_of(images: np.ndarray, kind: str, run: str | Path | None = None, threads: int = 0) -> np.ndarray:
    """(n, d) float32: raw pixels scaled to [0, 1], or the run's penultimate-layer features."""
    if kind == "pixels":
        return np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255.0
    if kind == "cnn":
        if run is None:
            raise ConfigError("--features cnn needs --run RUN_DIR (a folder written by `fmnist train`)")
        if threads:
            torch.set_num_threads(threads)
        return load_model(run).features(np.asarray(images)).astype(np.float32)
    raise ConfigError(f"unknown features {kind!r}; known: {', '.join(FEATURES)}")


def pca_dims(method: str, n: int, dims: int) -> int | None:
    """Dimensions a PCA keeps before t-SNE / UMAP, or None when the features are already that small."""
    return min(PCA_FIRST, n) if method != "pca" and dims > PCA_FIRST else None


def embed_2d(x: np.ndarray, method: str, seed: int = 0, threads: int = 0) -> np.ndarray:
    """(n, 2) coordinates of the rows of ``x`` by ``method`` (pca, tsne or umap).

    ``threads`` caps the BLAS / OpenMP threads (0: all cores). Maps of fewer than
    :data:`SINGLE_THREAD_BELOW` points always use one: there the threads only wait on each other, and
    on a busy machine a 60-point t-SNE took 86 s with two threads against 0.2 s with one.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    n = len(x)
    if n < MIN_N:
        raise ConfigError(f"a map needs at least {MIN_N} images, got {n}")
    limit = 1 if n < SINGLE_THREAD_BELOW else (threads or None)
    with threadpool_limits(limits=limit):
        return _embed(x, method, seed)


def _embed(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    n = len(x)
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if keep := pca_dims(method, n, x.shape[1]):
        x = PCA(n_components=keep, random_state=seed).fit_transform(x)
    if method == "tsne":
        perplexity = min(30.0, (n - 1) / 3)  # t-SNE needs perplexity < n
        return TSNE(
            n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed
        ).fit_transform(x)
    import umap  # here: umap-learn (the viz extra) is needed only for --method umap

    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # "n_jobs overridden by random_state": seeded maps are single-threaded
        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), min_dist=0.1, random_state=seed)
        return reducer.fit_transform(x)


def coordinates_csv(index: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], xy: np.ndarray) -> str:
    """CSV text: index (within the split), label, class, x, y."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["index", "label", "class", "x", "y"])
    for i, label, (x, y) in zip(index, labels, xy, strict=True):
        writer.writerow([int(i), int(label), classes[int(label)], f"{x:.5g}", f"{y:.5g}"])
    return buf.getvalue()


def spread_points(xy: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """``k`` indices far apart on the map (farthest-point sampling), for the thumbnails."""
    k = min(k, len(xy))
    if k <= 0:
        return np.empty(0, dtype=int)
    chosen = [int(np.random.default_rng(seed).integers(len(xy)))]
    dist = np.linalg.norm(xy - xy[chosen[0]], axis=1)
    for _ in range(k - 1):
        chosen.append(int(dist.argmax()))
        dist = np.minimum(dist, np.linalg.norm(xy - xy[chosen[-1]], axis=1))
    return np.array(chosen)


def draw_map(
    ax,
    xy: np.ndarray,
    labels: np.ndarray,
    classes: tuple[str, ...],
    title: str,
    thumbnails: np.ndarray | None = None,
    seed: int = 0,
) -> None:
    """Scatter coloured by class with a legend; optional image thumbnails at points far apart."""
    cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    size = float(np.clip(25_000 / max(len(xy), 1), 2.0, 16.0))  # points^2: 5 at 5,000 images, 2.5 at 10,000
    for c, name in enumerate(classes):
        m = labels == c
        if m.any():
            ax.scatter(
                xy[m, 0], xy[m, 1], s=size, color=cmap(c % cmap.N), label=name, alpha=0.7, linewidths=0
            )
    if thumbnails is not None:
        for i in spread_points(xy, THUMBNAILS, seed):
            box = OffsetImage(thumbnails[i], cmap="gray_r", zoom=0.8)
            ax.add_artist(
                AnnotationBbox(
                    box,
                    tuple(xy[i]),
                    frameon=True,
                    pad=0.1,
                    bboxprops={"edgecolor": cmap(int(labels[i]) % cmap.N), "linewidth": 1.5},
                )
            )
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        fontsize=8,
        markerscale=max(1.0, 6 / size),
        frameon=False,
    )


def make_map(ds, req: MapRequest) -> tuple[np.ndarray, np.ndarray, np.ndarray, MapInfo]:
    """(index, labels, xy, info) for one data set."""
    part = ds.split(req.split)
    t0 = time.perf_counter()
    index = subsample(len(part), DEFAULT_N[req.method] if req.n is None else req.n, req.seed)
    images, labels = np.asarray(part.images[index]), np.asarray(part.labels[index])
    x = features_of(images, req.features, req.run, req.threads)
    xy = embed_2d(x, req.method, req.seed, req.threads)
    info = MapInfo(
        ds.name,
        req.split,
        req.features,
        req.method,
        len(index),
        len(part),
        req.seed,
        None if req.run is None else str(req.run),
        pca_dims(req.method, len(x), x.shape[1]),
        round(time.perf_counter() - t0, 1),
    )
    return index, labels, xy, info


def write_maps(datasets: list, req: MapRequest, out: Path, thumbnails: bool = False) -> list[Path]:
    """Compute one map per data set, write each CSV and JSON, and one PNG (side by side when several)."""
    out = Path(out)
    what = f"{req.split}-{req.features}-{req.method}"
    fig = Figure(figsize=(9.5 * len(datasets), 7.5))
    axes = fig.subplots(1, len(datasets), squeeze=False)
    written = []
    for ax, ds in zip(axes[0], datasets, strict=True):
        index, labels, xy, info = make_map(ds, req)
        base = out / f"{ds.name}-{what}"
        write_text(base.with_suffix(".csv"), coordinates_csv(index, labels, ds.classes, xy))
        write_json(
            base.with_suffix(".json"), {**asdict(info), "classes": list(ds.classes), "note": info.sample_note}
        )
        written += [base.with_suffix(".csv"), base.with_suffix(".json")]
        thumbs = np.asarray(ds.split(req.split).images[index]) if thumbnails else None
        draw_map(ax, xy, labels, ds.classes, info.title(ds.spec.title), thumbs, req.seed)
        print(
            f"{ds.spec.title} {METHOD_TITLES[req.method]} of {req.features}: {info.sample_note}, "
            f"{info.seconds:.1f} s",
            flush=True,
        )
    fig.tight_layout()
    png = save_figure(fig, out / f"{'-'.join(ds.name for ds in datasets)}-{what}.png")
    return [png, *written]
