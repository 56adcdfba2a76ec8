"""Where the files come from: --data-dir > $FMNIST_DATA_DIR > cache > system copy > download, each reported."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import snapshot
from fmnist.data import load_dataset, locate
from fmnist.data.checksums import CONTENT, OFFICIAL, ChecksumMismatch, verify_file
from fmnist.data.registry import FASHION
from fmnist.data.sources import dataset_cache
from fmnist.errors import DataError, IdxError

FILES = {key: res.filename for key, res in FASHION.resources.items()}  # the tiny set uses them too


def copy_set(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in FILES.values():
        shutil.copy(src / name, dst / name)
    return dst


@pytest.fixture
def five_sources(tmp_path, tiny_idx_dir, register_dataset, loopback, monkeypatch):
    """The tiny set present in every place at once: a --data-dir, $FMNIST_DATA_DIR, cache, system copy, a mirror."""
    for name in FILES.values():
        loopback.serve(name, loopback.Reply((tiny_idx_dir / name).read_bytes()))
    system = copy_set(tiny_idx_dir, tmp_path / "system")
    spec = register_dataset(
        tiny_idx_dir, system_dirs=(str(tmp_path / "absent"), str(system)), mirrors=(loopback.url,)
    )
    dirs = {
        "--data-dir": copy_set(tiny_idx_dir, tmp_path / "user"),
        "$FMNIST_DATA_DIR": copy_set(tiny_idx_dir, tmp_path / "env"),
        "cache": copy_set(tiny_idx_dir, dataset_cache(spec) / "raw"),
        "system copy": system,
        "download": dataset_cache(spec) / "raw",
    }
    monkeypatch.setenv("FMNIST_DATA_DIR", str(dirs["$FMNIST_DATA_DIR"]))
    return dirs


def test_source_order(five_sources, loopback, monkeypatch):
    dirs = five_sources
    steps = [
        ("--data-dir", lambda: None),
        ("$FMNIST_DATA_DIR", lambda: None),
        ("cache", lambda: monkeypatch.delenv("FMNIST_DATA_DIR")),
        ("system copy", lambda: shutil.rmtree(dirs["cache"])),
        ("download", lambda: shutil.rmtree(dirs["system copy"])),
    ]
    for origin, remove_previous in steps:
        remove_previous()
        data_dir = dirs["--data-dir"] if origin == "--data-dir" else None
        files = locate("tiny", data_dir, quiet=True, retries=1, timeout=2, backoff=0)
        assert (files.origin, files.directory) == (origin, dirs[origin])
        assert files.describe() == f"{origin} ({dirs[origin]})"
        assert set(files.paths) == set(FILES)
        assert all(p.parent == dirs[origin] for p in files.paths.values())
        # nothing is downloaded while a local source holds all four files
        assert bool(loopback.requests) == (origin == "download")
    assert sorted(path for path, _ in loopback.requests) == sorted(FILES.values())
    # the download went into the cache, which is now the first source again
    assert locate("tiny", quiet=True).origin == "cache"


def test_load_dataset_reports_origin_and_arrays(five_sources, tiny_idx_dir):
    ds = load_dataset("tiny", five_sources["--data-dir"])
    assert ds.files.origin == "--data-dir"
    assert ds.train.images.shape == (100, 28, 28) and ds.test.images.shape == (50, 28, 28)
    assert ds.classes[0] == "class0" and len(ds.fingerprint) == 12
    assert np.bincount(ds.train.labels).tolist() == [10] * 10


def test_partial_cache_falls_through_to_system_copy(five_sources, monkeypatch):
    monkeypatch.delenv("FMNIST_DATA_DIR")
    (five_sources["cache"] / FILES["t10k-labels"]).unlink()
    assert locate("tiny", quiet=True).origin == "system copy"


def test_partial_cache_downloads_only_the_missing_file(five_sources, loopback, monkeypatch):
    monkeypatch.delenv("FMNIST_DATA_DIR")
    shutil.rmtree(five_sources["system copy"])
    (five_sources["cache"] / FILES["t10k-labels"]).unlink()
    files = locate("tiny", quiet=True, retries=1, timeout=2, backoff=0)
    assert files.origin == "download"
    assert [path for path, _ in loopback.requests] == [FILES["t10k-labels"]]


def test_bad_cache_file_is_moved_aside_and_not_used(five_sources, monkeypatch, capsys):
    monkeypatch.delenv("FMNIST_DATA_DIR")
    cache = five_sources["cache"]
    bad = cache / FILES["train-labels"]
    bad_bytes = gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x02\x07\x07")
    bad.write_bytes(bad_bytes)
    files = locate("tiny", quiet=True)
    assert files.origin == "system copy"  # the cache is incomplete without it
    aside = list(cache.glob(FILES["train-labels"] + ".bad-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == bad_bytes
    assert not bad.exists()
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "moved aside" in err and str(bad) in err


def test_bad_cache_file_is_replaced_by_download(five_sources, loopback, monkeypatch):
    monkeypatch.delenv("FMNIST_DATA_DIR")
    shutil.rmtree(five_sources["system copy"])
    cache = five_sources["cache"]
    (cache / FILES["train-images"]).write_bytes(b"not gzip at all")
    files = locate("tiny", quiet=True, retries=1, timeout=2, backoff=0)
    assert files.origin == "download"
    assert [path for path, _ in loopback.requests] == [FILES["train-images"]]
    assert verify_file(files.paths["train-images"], files.spec.resources["train-images"]) == OFFICIAL
    assert len(list(cache.glob("*.bad-*"))) == 1


def test_bad_system_copy_is_skipped_and_left_alone(five_sources, monkeypatch):
    monkeypatch.delenv("FMNIST_DATA_DIR")
    shutil.rmtree(five_sources["cache"])
    system = five_sources["system copy"]
    (system / FILES["t10k-images"]).write_bytes(gzip.compress(b"tampered"))
    before = snapshot(system)
    assert locate("tiny", quiet=True, retries=1, timeout=2, backoff=0).origin == "download"
    assert snapshot(system) == before


@pytest.mark.parametrize(
    "content, error, message",
    [
        (gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x05"), ChecksumMismatch, "checksum mismatch"),
        (b"plain text", IdxError, "not a gzip file"),
        (b"\x1f\x8b\x08\x00\x00", IdxError, "truncated or corrupt gzip"),
    ],
    ids=["checksum", "non-gzip", "truncated-gz"],
)
@pytest.mark.parametrize("via", ["--data-dir", "$FMNIST_DATA_DIR"])
def test_bad_file_in_user_folder_is_an_error_and_untouched(
    five_sources, monkeypatch, content, error, message, via
):
    user = five_sources[via]
    bad = user / FILES["t10k-labels"]
    bad.write_bytes(content)
    before = snapshot(user)
    if via == "--data-dir":
        monkeypatch.delenv("FMNIST_DATA_DIR")
    with pytest.raises(error, match=message) as info:
        locate("tiny", user if via == "--data-dir" else None, quiet=True)
    assert str(bad) in str(info.value)
    assert snapshot(user) == before  # not moved aside, not rewritten, nothing added


def test_missing_user_folder_and_missing_file(tmp_path, tiny_spec, tiny_idx_dir):
    with pytest.raises(DataError, match="data folder does not exist"):
        locate("tiny", tmp_path / "nope")
    with pytest.raises(DataError, match="not a folder"):
        locate("tiny", tiny_idx_dir / FILES["train-labels"])
    (tiny_idx_dir / FILES["train-labels"]).unlink()
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: missing"):
        locate("tiny", tiny_idx_dir)


def test_nothing_found_without_download(tiny_spec):
    with pytest.raises(DataError, match="not found.*fmnist data fetch"):
        locate("tiny", download_missing=False)


def test_unknown_dataset_name():
    with pytest.raises(DataError, match="unknown data set 'nope'; known: fashion, mnist"):
        locate("nope")


def test_recompressed_copy_verifies_by_content(tmp_path, tiny_spec, tiny_idx_dir):
    """Debian's case: the same content in a gzip with another header verifies by decompressed-content MD5."""
    user = copy_set(tiny_idx_dir, tmp_path / "recompressed")
    for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        content = gzip.decompress((user / name).read_bytes())
        (user / name).write_bytes(gzip.compress(content, compresslevel=1, mtime=1_234_567))
    files = locate("tiny", user)
    assert files.verified == {
        "train-images": CONTENT,
        "train-labels": OFFICIAL,
        "t10k-images": OFFICIAL,
        "t10k-labels": CONTENT,
    }


def test_decompressed_files_are_accepted(tmp_path, tiny_spec, tiny_idx_dir):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in FILES.values():
        (raw / name[:-3]).write_bytes(gzip.decompress((tiny_idx_dir / name).read_bytes()))
    files = locate("tiny", raw)
    assert set(files.verified.values()) == {CONTENT}
    assert files.paths["train-images"].name == "train-images-idx3-ubyte"
    ds = load_dataset("tiny", raw)
    assert ds.train.images.shape == (100, 28, 28)


def test_verify_memo_does_not_trust_a_replaced_file(tmp_path, tiny_spec, tiny_idx_dir):
    user = copy_set(tiny_idx_dir, tmp_path / "user")
    assert locate("tiny", user).origin == "--data-dir"  # remembered as verified
    path = user / FILES["train-labels"]
    st = path.stat()
    tampered = bytearray(path.read_bytes())
    tampered[-12] ^= 0xFF
    (user / "tmp").write_bytes(bytes(tampered))
    (user / "tmp").replace(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: only the inode differs
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz"):
        locate("tiny", user)


def test_verify_memo_is_per_expected_checksum(tmp_path, tiny_idx_dir, register_dataset):
    """A file remembered as verified for one registry entry is hashed again for another."""
    user = copy_set(tiny_idx_dir, tmp_path / "user")
    register_dataset(user)
    assert locate("tiny", user).origin == "--data-dir"
    other = tmp_path / "other"
    other.mkdir()
    for key, name in FILES.items():
        (other / name).write_bytes(gzip.compress(f"other {key}".encode()))
    register_dataset(other)  # same name, other checksums
    with pytest.raises(ChecksumMismatch):
        locate("tiny", user)


def test_mnist_and_fashion_caches_are_separate():
    from fmnist.data.registry import get_spec

    assert dataset_cache(get_spec("fashion")) != dataset_cache(get_spec("mnist"))
    assert dataset_cache(get_spec("fashion")).parent == dataset_cache(get_spec("mnist")).parent


def test_no_system_data_env_skips_the_system_copy(five_sources, monkeypatch, loopback):
    monkeypatch.delenv("FMNIST_DATA_DIR")
    shutil.rmtree(five_sources["cache"])
    monkeypatch.setenv("FMNIST_NO_SYSTEM_DATA", "1")
    assert locate("tiny", quiet=True, retries=1, timeout=2, backoff=0).origin == "download"
    monkeypatch.setenv("FMNIST_NO_SYSTEM_DATA", "0")
    shutil.rmtree(five_sources["download"])
    assert locate("tiny", quiet=True).origin == "system copy"


def test_mirror_env_replaces_registry_mirrors(five_sources, loopback, monkeypatch, tmp_path):
    monkeypatch.delenv("FMNIST_DATA_DIR")
    shutil.rmtree(five_sources["cache"])
    shutil.rmtree(five_sources["system copy"])
    monkeypatch.setenv("FMNIST_MIRROR", "http://127.0.0.1:9/nothing/," + loopback.url)
    files = locate("tiny", quiet=True, retries=1, timeout=2, backoff=0)
    assert files.origin == "download"


# ---------------------------------------------------------------- Keras' cache, SHA-256, https mirror (issue #16)

KERAS_SUBDIR = "datasets/fashion-mnist"  # as in the registry's Fashion-MNIST entry


@pytest.fixture
def keras_home(tmp_path, tiny_idx_dir, register_dataset, loopback, monkeypatch):
    """A home folder whose ``~/.keras/datasets/fashion-mnist`` holds the tiny set (as Keras leaves it:
    the four .gz files); the tiny set registered with that Keras folder, no system copy, and a
    loopback mirror that serves the files (so a fall-through to download is seen, not an error)."""
    for name in FILES.values():
        loopback.serve(name, loopback.Reply((tiny_idx_dir / name).read_bytes()))
    home = tmp_path / "home"
    copy_set(tiny_idx_dir, home / ".keras" / KERAS_SUBDIR)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("FMNIST_NO_SYSTEM_DATA", "1")
    register_dataset(tiny_idx_dir, mirrors=(loopback.url,), keras_dir=KERAS_SUBDIR)
    return home / ".keras"


def test_registry_names_keras_folder_only_for_fashion():
    from fmnist.data.registry import MNIST

    assert FASHION.keras_dir == KERAS_SUBDIR
    assert MNIST.keras_dir is None  # Keras keeps MNIST as one mnist.npz, not IDX files


def test_keras_cache_is_used_when_nothing_else_is(keras_home, loopback, capsys):
    kdir = keras_home / KERAS_SUBDIR
    files = locate("tiny", quiet=True, retries=1, timeout=2, backoff=0)
    assert (files.origin, files.directory) == ("Keras cache", kdir)
    assert files.describe() == f"Keras cache ({kdir})"
    assert all(p.parent == kdir for p in files.paths.values())
    assert loopback.requests == []  # nothing downloaded
    ds = load_dataset("tiny")
    assert ds.files.origin == "Keras cache" and ds.train.images.shape == (100, 28, 28)
    assert capsys.readouterr().err == ""


def test_fetch_command_names_the_keras_cache(keras_home, capsys):
    from fmnist.cli import main

    assert main(["data", "fetch", "--dataset", "tiny"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"Tiny (tiny): 4 files verified, from Keras cache ({keras_home / KERAS_SUBDIR})"
    )


def test_keras_home_env_overrides_the_home_folder(keras_home, tmp_path, tiny_idx_dir, monkeypatch):
    other = copy_set(tiny_idx_dir, tmp_path / "elsewhere" / KERAS_SUBDIR)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "elsewhere"))
    assert locate("tiny", quiet=True).directory == other


def test_absent_keras_cache_is_skipped_quietly(keras_home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "no-such-home"))
    with pytest.raises(DataError, match="not found.*fmnist data fetch"):
        locate("tiny", download_missing=False)
    assert capsys.readouterr().err == ""


def test_damaged_keras_file_is_skipped_and_left_alone(keras_home, loopback, capsys):
    kdir = keras_home / KERAS_SUBDIR
    bad = kdir / FILES["train-labels"]
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x02\x07\x07"))
    before = snapshot(keras_home)
    files = locate("tiny", quiet=True, retries=1, timeout=2, backoff=0)
    assert files.origin == "download"  # Keras' copy is incomplete without it: nothing of it is used
    assert all(p.parent != kdir for p in files.paths.values())
    assert snapshot(keras_home) == before  # not moved aside, not rewritten, nothing added
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "checksum mismatch" in err[0] and "not used" in err[0]


def test_unreadable_keras_folder_is_one_warning(keras_home, loopback, monkeypatch, capsys):
    import fmnist.data.sources as sources

    def unreadable(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(sources, "verify_file", unreadable)  # the Keras folder is the first scanned
    monkeypatch.setattr(sources, "download", unreadable)
    with pytest.raises(PermissionError):  # the download stand-in: only the warning matters here
        locate("tiny", quiet=True)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"warning: Keras cache {keras_home / KERAS_SUBDIR}: cannot read (Permission denied); not used"
    ]


def test_source_order_with_keras_cache(five_sources, tmp_path, tiny_idx_dir, monkeypatch, loopback):
    """cache > system copy > Keras cache > download, each named."""
    import dataclasses

    from fmnist.data.registry import DATASETS

    monkeypatch.delenv("FMNIST_DATA_DIR")
    kdir = copy_set(tiny_idx_dir, tmp_path / "keras" / KERAS_SUBDIR)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setitem(DATASETS, "tiny", dataclasses.replace(DATASETS["tiny"], keras_dir=KERAS_SUBDIR))
    dirs = {**five_sources, "Keras cache": kdir}
    steps = [
        ("cache", lambda: None),
        ("system copy", lambda: shutil.rmtree(dirs["cache"])),
        ("Keras cache", lambda: shutil.rmtree(dirs["system copy"])),
        ("download", lambda: shutil.rmtree(kdir)),
    ]
    for origin, remove_previous in steps:
        remove_previous()
        files = locate("tiny", quiet=True, retries=1, timeout=2, backoff=0)
        assert files.describe() == f"{origin} ({dirs[origin]})"
        assert bool(loopback.requests) == (origin == "download")


def with_sha256(spec, directory: Path, wrong: str | None = None):
    """``spec`` with the content SHA-256 of the files in ``directory`` recorded; ``wrong``'s forged."""
    import dataclasses
    import hashlib

    resources = {}
    for key, res in spec.resources.items():
        sha = hashlib.sha256(gzip.decompress((directory / res.filename).read_bytes())).hexdigest()
        resources[key] = dataclasses.replace(res, content_sha256="0" * 64 if key == wrong else sha)
    return dataclasses.replace(spec, resources=resources)


@pytest.mark.parametrize("recompressed", [False, True], ids=["official-gz", "recompressed"])
def test_content_sha256_is_checked_beside_md5(tmp_path, tiny_spec, tiny_idx_dir, monkeypatch, recompressed):
    """A file whose MD5s match is still refused when its content SHA-256 does not: one line."""
    from fmnist.data.registry import DATASETS

    user = copy_set(tiny_idx_dir, tmp_path / "user")
    if recompressed:  # verifies by content MD5, then by SHA-256
        path = user / FILES["t10k-labels"]
        path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()), mtime=7))
    monkeypatch.setitem(DATASETS, "tiny", with_sha256(tiny_spec, tiny_idx_dir))
    assert set(locate("tiny", user).verified) == set(FILES)  # right SHA-256s: accepted (and remembered)
    monkeypatch.setitem(DATASETS, "tiny", with_sha256(tiny_spec, tiny_idx_dir, wrong="t10k-labels"))
    with pytest.raises(ChecksumMismatch) as info:  # the memo does not vouch for another expected SHA-256
        locate("tiny", user)
    message = str(info.value)
    assert "\n" not in message and str(user / FILES["t10k-labels"]) in message
    assert "content SHA-256" in message and "expected " + "0" * 64 in message


def test_cache_file_with_wrong_sha256_is_moved_aside(tmp_path, tiny_spec, tiny_idx_dir, monkeypatch, capsys):
    from fmnist.data.registry import DATASETS

    cache = copy_set(tiny_idx_dir, dataset_cache(tiny_spec) / "raw")
    monkeypatch.setitem(DATASETS, "tiny", with_sha256(tiny_spec, tiny_idx_dir, wrong="train-images"))
    with pytest.raises(DataError, match="not found"):
        locate("tiny", download_missing=False)
    assert len(list(cache.glob(FILES["train-images"] + ".bad-*"))) == 1
    assert "content SHA-256" in capsys.readouterr().err


def test_fashion_sha256_recorded_and_right(fashion_dir):
    """Every Fashion-MNIST file has a content SHA-256, and the real files pass it."""
    for res in FASHION.resources.values():
        assert len(res.content_sha256 or "") == 64
        path = fashion_dir / res.filename
        if not path.is_file():
            path = fashion_dir / res.stem
        assert verify_file(path, res) in (OFFICIAL, CONTENT)


def test_first_mirror_is_https():
    from fmnist.data.download import check_mirrors
    from fmnist.data.registry import DATASETS

    for spec in DATASETS.values():
        assert spec.mirrors[0].startswith("https://"), spec.name
        assert check_mirrors(spec.mirrors) == list(spec.mirrors)
