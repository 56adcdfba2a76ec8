"""Download a data file from a list of mirrors: retries, resume, progress bar, verify, then rename.

The bytes go to ``NAME.part``; only a verified file is renamed to ``NAME``, so an interrupted or
failed download never leaves a file that looks complete. A ``.part`` left by a kill is resumed
with an HTTP Range request when the server supports it.
"""

from __future__ import annotations

import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from fmnist.data.checksums import verify_file
from fmnist.data.registry import Resource
from fmnist.errors import DataError, DownloadError

USER_AGENT = "fmnist-downloader/0.1 (+https://github.com/zalandoresearch/fashion-mnist)"
CHUNK = 1 << 16


def _fetch_once(url: str, part: Path, expected_size: int | None, timeout: float, progress: bool) -> None:
    """Stream ``url`` into ``part``, resuming from its current length when the server allows."""
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if start:
        request.add_header("Range", f"bytes={start}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        status = getattr(response, "status", 200)
        if start and status != 206:
            start = 0  # the server ignored the Range header: start over
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else expected_size
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                desc=part.name[: -len(".part")],
                file=sys.stderr,
                leave=False,
            )
        received = start
        try:
            with open(part, "ab" if start else "wb") as fh:
                while block := response.read(CHUNK):
                    fh.write(block)
                    received += len(block)
                    if bar is not None:
                        bar.update(len(block))
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            if bar is not None:
                bar.close()
        if length is not None and received != total:
            raise OSError(f"connection closed after {received} of {total} bytes")


def download(
    resource: Resource,
    dest_dir: Path,
    mirrors: Sequence[str],
    *,
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 1.0,
    progress: bool = True,
) -> Path:
    """Fetch ``resource`` into ``dest_dir`` from the first mirror that serves verified bytes."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / resource.filename
    part = dest_dir / (resource.filename + ".part")
    failures: dict[str, str] = {}  # url -> its last failure, in the order tried
    tries = 0
    for base in mirrors:
        url = base.rstrip("/") + "/" + resource.filename
        for attempt in range(1, retries + 1):
            tries += 1
            try:
                _fetch_once(url, part, resource.size, timeout, progress)
                verify_file(part, resource)
            except DataError as exc:  # complete but wrong bytes: discard and try again from zero
                failures[url] = str(exc).split(": ", 1)[-1]
                _move_aside(part)
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
                if isinstance(exc, urllib.error.HTTPError):
                    failures[url] = f"HTTP {exc.code} {exc.reason}"
                    if exc.code == 416:  # the .part is already as long as the file, or longer
                        part.unlink(missing_ok=True)
                    elif exc.code in (403, 404, 410):
                        break  # no use retrying a missing file on this mirror
                else:
                    failures[url] = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
            else:
                os.replace(part, dest)
                return dest
            if attempt < retries:
                time.sleep(backoff * 2 ** (attempt - 1))
    tried = "; ".join(f"{url}: {why}" for url, why in failures.items()) or "no mirrors configured"
    raise DownloadError(f"could not download {resource.filename} after {tries} tries: {tried}")


def _move_aside(path: Path) -> None:
    if path.exists():
        os.replace(path, path.with_name(path.name.replace(".part", "") + f".bad-{int(time.time())}"))
