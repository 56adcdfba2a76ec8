"""The IDX data sets this toolkit knows, as data: a new data set is a new table entry, not new code."""

from __future__ import annotations

from dataclasses import dataclass

from fmnist.errors import DataError

SPLITS = ("train", "t10k")  # the README's `kind` names: training and test split


@dataclass(frozen=True)
class Resource:
    """One published file: its name, the MD5 of the published .gz, and the MD5 and SHA-256 of its
    decompressed content (MD5 alone can be forged; SHA-256 cannot, today)."""

    filename: str  # e.g. "train-images-idx3-ubyte.gz"
    gz_md5: str  # MD5 of the .gz as published (the README's table)
    content_md5: str | None  # MD5 of the decompressed IDX bytes; lets re-compressed copies verify
    size: int | None = None  # bytes of the published .gz, for the progress bar
    content_size: int | None = None  # bytes of the decompressed IDX file: bounds any download
    content_sha256: str | None = None  # SHA-256 of the decompressed IDX bytes; checked on every path

    @property
    def max_download_bytes(self) -> int:
        """The most bytes a download of this file may take before the mirror is abandoned.

        A re-compressed copy (Debian's rewrites the gzip headers) differs from ``size`` by a few
        bytes, and gzip never grows data by more than its stored-block overhead (5 bytes per
        64 KiB), so the decompressed size plus a small margin is a hard cap any honest mirror
        stays under. Without a known content size: twice the .gz size; without either: 1 GiB.
        """
        if self.content_size is not None:
            return max(self.size or 0, self.content_size + self.content_size // 100 + 4096)
        if self.size is not None:
            return 2 * self.size + 65536
        return 1 << 30

    @property
    def stem(self) -> str:
        """The file name without .gz: the raw IDX name."""
        return self.filename[:-3] if self.filename.endswith(".gz") else self.filename


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    classes: tuple[str, ...]
    resources: dict[str, Resource]  # keys: "train-images", "train-labels", "t10k-images", "t10k-labels"
    mirrors: tuple[str, ...]  # base URLs, tried in order
    system_dirs: tuple[str, ...] = ()  # where an operating system package puts the files
    counts: dict[str, int] | None = None  # expected images per split
    # Where Keras' `load_data()` caches this data set as the four published .gz files, relative to
    # Keras' home (``$KERAS_HOME``, else ``~/.keras``); None where Keras keeps it in another format.
    keras_dir: str | None = None

    def resource(self, kind: str, part: str) -> Resource:
        return self.resources[f"{kind}-{part}"]


FASHION = DatasetSpec(
    name="fashion",
    title="Fashion-MNIST",
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    # Content SHA-256s computed from Debian's dataset-fashion-mnist, whose decompressed bytes equal the
    # official files (the content MD5s match). The SHA-256 of the official .gz files is not recorded:
    # the official host was unreachable where these were computed, and Debian's .gz are re-compressed.
    resources={
        "train-images": Resource(
            "train-images-idx3-ubyte.gz",
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            26_421_880,
            47_040_016,
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        "train-labels": Resource(
            "train-labels-idx1-ubyte.gz",
            "25c81989df183df01b3e8a0aad5dffbe",
            "9018921c3c673c538a1fc5bad174d6f9",
            29_515,
            60_008,
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        "t10k-images": Resource(
            "t10k-images-idx3-ubyte.gz",
            "bef4ecab320f06d8554ea6380940ec79",
            "8181f5470baa50b63fa0f6fddb340f0a",
            4_422_102,
            7_840_016,
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        "t10k-labels": Resource(
            "t10k-labels-idx1-ubyte.gz",
            "bb300cfdad3c16e7a12a480ee83cd310",
            "15d484375f8d13e6eb1aabb0c3f46965",
            5_148,
            10_008,
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    },
    mirrors=(
        # The README's bucket over https: S3 website endpoints (s3-website.REGION) serve plain http
        # only, so https goes to the same bucket's REST endpoint. Not reachable from where this was
        # written: untested here, and the http website endpoint stays as the last fallback.
        "https://fashion-mnist.s3.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    keras_dir="datasets/fashion-mnist",  # keras.datasets.fashion_mnist: the four .gz files
    counts={"train": 60_000, "t10k": 10_000},
)

MNIST = DatasetSpec(
    name="mnist",
    title="MNIST",
    classes=tuple(str(d) for d in range(10)),
    resources={
        # Decompressed-content MD5s and SHA-256s are not recorded for MNIST (no copy of it was at
        # hand to compute them from): only the official .gz MD5 verifies.
        "train-images": Resource(
            "train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", None, 9_912_422, 47_040_016
        ),
        "train-labels": Resource(
            "train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", None, 28_881, 60_008
        ),
        "t10k-images": Resource(
            "t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", None, 1_648_877, 7_840_016
        ),
        "t10k-labels": Resource(
            "t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", None, 4_542, 10_008
        ),
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    system_dirs=("/usr/share/datasets/mnist",),
    # No keras_dir: Keras keeps MNIST as one `datasets/mnist.npz`, not the four IDX .gz files.
    counts={"train": 60_000, "t10k": 10_000},
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (FASHION, MNIST)}


def get_spec(name: str) -> DatasetSpec:
    """Look a data set up by name; an unknown name is a one-line error listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}") from None
