"""Find verified data files, in a fixed order, and say where they came from.

Order: ``--data-dir`` (or ``$FMNIST_DATA_DIR``) -> the project's cache -> the operating system's
copy (Debian/Ubuntu ``dataset-fashion-mnist``) -> Keras' cache (``$KERAS_HOME``, else ``~/.keras``,
``datasets/fashion-mnist/``, where ``keras.datasets.fashion_mnist.load_data()`` left the four .gz
files) -> download from the mirrors into the cache.
A file that fails verification is never used: in the cache it is moved aside (``NAME.bad-TIME``)
and fetched again; in a folder the user named, it is an error; in the system copy or Keras' cache
(other tools' folders) it is skipped with a warning and left exactly as it is.
``$FMNIST_NO_SYSTEM_DATA=1`` skips the system copy (to test or force the download path on a machine
that has one); Keras' cache is read whenever it holds all four files.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fmnist.data.checksums import ChecksumMismatch, VerifyMemo, verify_file
from fmnist.data.download import check_mirrors, check_settings, download, quarantine
from fmnist.data.registry import DatasetSpec, get_spec
from fmnist.errors import ConfigError, DataError, IdxError

ENV_DATA_DIR = "FMNIST_DATA_DIR"
ENV_CACHE = "FMNIST_CACHE"
ENV_MIRROR = "FMNIST_MIRROR"  # comma-separated base URLs that replace the registry's mirrors
ENV_NO_SYSTEM = "FMNIST_NO_SYSTEM_DATA"  # "1": ignore the operating system's copy
ENV_KERAS_HOME = "KERAS_HOME"  # Keras' own variable for the folder it caches downloads in
KERAS_CACHE = "Keras cache"  # the origin named to the user


def cache_root() -> Path:
    """``$FMNIST_CACHE``, else ``$XDG_CACHE_HOME/fmnist``, else ``~/.cache/fmnist``."""
    if env := os.environ.get(ENV_CACHE):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fmnist"


def keras_home() -> Path | None:
    """Keras' folder as Keras finds it: ``$KERAS_HOME``, else ``~/.keras``; None without a home folder.

    (Keras falls back to ``/tmp/.keras`` when the home folder is read-only; that shared folder is
    not searched here.)
    """
    if env := os.environ.get(ENV_KERAS_HOME):
        return Path(env).expanduser()
    try:
        return Path.home() / ".keras"
    except RuntimeError:  # no $HOME and no passwd entry
        return None


def dataset_cache(spec: DatasetSpec) -> Path:
    """Per-data-set cache folder: Fashion-MNIST and MNIST never share files of the same name."""
    return cache_root() / spec.name


@dataclass(frozen=True)
class DataFiles:
    """The four verified files of one data set and where they came from."""

    spec: DatasetSpec
    origin: str  # "--data-dir", "$FMNIST_DATA_DIR", "cache", "system copy", "Keras cache", "download"
    directory: Path
    paths: dict[str, Path]  # "train-images" -> path
    verified: dict[str, str] = field(default_factory=dict)  # "train-images" -> how it verified

    def describe(self) -> str:
        return f"{self.origin} ({self.directory})"


def _candidates(directory: Path, filename: str) -> list[Path]:
    """A file may sit gzip'd (as published) or already decompressed."""
    return [directory / filename, directory / filename[:-3]]


def _find(directory: Path, filename: str) -> Path | None:
    return next((p for p in _candidates(directory, filename) if p.is_file()), None)


def log(message: str) -> None:
    print(message, file=sys.stderr)


def _check_user_dir(spec: DatasetSpec, directory: Path, origin: str, memo: VerifyMemo) -> DataFiles:
    if not directory.exists():
        raise DataError(f"{directory}: data folder does not exist ({origin})")
    if not directory.is_dir():
        raise DataError(f"{directory}: not a folder ({origin})")
    paths, verified = {}, {}
    for key, res in spec.resources.items():
        path = _find(directory, res.filename)
        if path is None:
            raise DataError(f"{directory / res.filename}: missing ({origin} must hold all four files)")
        verified[key] = _verify_raw_or_gz(path, res, memo)
        paths[key] = path
    return DataFiles(spec, origin, directory, paths, verified)


def _verify_raw_or_gz(path: Path, res, memo: VerifyMemo) -> str:
    try:
        return verify_file(path, res, memo)
    except ChecksumMismatch as exc:
        raise ChecksumMismatch(f"{exc}; the file was not used") from None


def _scan(spec: DatasetSpec, directory: Path, memo: VerifyMemo, move_bad: bool) -> tuple[dict, dict]:
    """Verified files present in ``directory``; bad ones are moved aside when ``move_bad``."""
    paths, verified = {}, {}
    for key, res in spec.resources.items():
        path = _find(directory, res.filename)
        if path is None:
            continue
        try:
            verified[key] = verify_file(path, res, memo)
            paths[key] = path
        except (ChecksumMismatch, IdxError) as exc:
            if move_bad:
                aside = quarantine(path)  # keeps only the newest few NAME.bad-* copies
                log(f"warning: {exc}; " + (f"moved aside to {aside.name} and " if aside else "") + "not used")
            else:
                log(f"warning: {exc}; not used")
    return paths, verified


def locate(
    name: str = "fashion",
    data_dir: str | os.PathLike | None = None,
    *,
    download_missing: bool = True,
    mirrors: Sequence[str] | None = None,
    quiet: bool = False,
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 1.0,
) -> DataFiles:
    """Return the four verified files of data set ``name``, downloading only when nothing local verifies."""
    spec = get_spec(name)
    memo = VerifyMemo(dataset_cache(spec) / "verified.json")
    if data_dir is not None:
        return _check_user_dir(spec, Path(data_dir).expanduser(), "--data-dir", memo)
    if env := os.environ.get(ENV_DATA_DIR):
        return _check_user_dir(spec, Path(env).expanduser(), f"${ENV_DATA_DIR}", memo)

    cache = dataset_cache(spec) / "raw"
    paths, verified = _scan(spec, cache, memo, move_bad=True)
    if len(paths) == len(spec.resources):
        return DataFiles(spec, "cache", cache, paths, verified)

    system_dirs = () if os.environ.get(ENV_NO_SYSTEM, "") not in ("", "0") else spec.system_dirs
    for system_dir in system_dirs:
        sdir = Path(system_dir)
        if not sdir.is_dir():
            continue
        spaths, sverified = _scan(spec, sdir, memo, move_bad=False)
        if len(spaths) == len(spec.resources):
            return DataFiles(spec, "system copy", sdir, spaths, sverified)

    # Another tool's cache: read-only like the system copy (a bad file there is skipped, never moved).
    if spec.keras_dir is not None and (home := keras_home()) is not None:
        kdir = home / spec.keras_dir
        try:
            kpaths, kverified = _scan(spec, kdir, memo, move_bad=False) if kdir.is_dir() else ({}, {})
        except OSError as exc:  # an unreadable folder or file of another user's tool: skip, say why
            log(f"warning: {KERAS_CACHE} {kdir}: cannot read ({exc.strerror or exc}); not used")
            kpaths, kverified = {}, {}
        if len(kpaths) == len(spec.resources):
            return DataFiles(spec, KERAS_CACHE, kdir, kpaths, kverified)

    if not download_missing:
        missing = [r.filename for k, r in spec.resources.items() if k not in paths]
        raise DataError(
            f"{spec.title} not found (missing {', '.join(missing)}): run `fmnist data fetch`, "
            f"or pass --data-dir / set ${ENV_DATA_DIR}"
        )
    if mirrors is None:
        env_mirrors = os.environ.get(ENV_MIRROR)
        mirrors = [m for m in env_mirrors.split(",") if m] if env_mirrors else spec.mirrors
        try:
            mirrors = check_mirrors(mirrors)
        except ConfigError as exc:
            raise ConfigError(f"${ENV_MIRROR}: {exc}" if env_mirrors else str(exc)) from None
    check_settings(retries, timeout, backoff)
    for key, res in spec.resources.items():
        if key in paths:
            continue
        if not quiet:
            log(f"downloading {res.filename} ({spec.title}) from {len(mirrors)} mirror(s)")
        path = download(
            res, cache, mirrors, retries=retries, timeout=timeout, backoff=backoff, progress=not quiet
        )
        verified[key] = verify_file(path, res, memo)
        paths[key] = path
    return DataFiles(spec, "download", cache, paths, verified)
