"""Download a data file from a list of mirrors: retries, resume, progress bar, verify, then rename.

The bytes go to ``NAME.part``; only a verified file is renamed to ``NAME``, so an interrupted or
failed download never leaves a file that looks complete. A ``.part`` left by a kill (or by a
connection that dropped or stalled) is resumed with an HTTP Range request when the server
supports it.

Every transfer is bounded: a file may not grow past its resource's ``max_download_bytes`` (a
mirror that streams forever cannot fill the disk), a transfer slower than ``STALL_BYTES`` per
``timeout`` seconds is abandoned (a mirror that sends a byte a second cannot hang the command),
and at most ``KEEP_BAD`` quarantined ``NAME.bad-TIME`` files are kept per name. A ``.part`` is
removed when a mirror is abandoned for a reason a resume cannot fix (wrong bytes, over the cap,
a full disk).
"""

from __future__ import annotations

import errno
import glob
import http.client
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from fmnist.data.checksums import verify_file
from fmnist.data.registry import Resource
from fmnist.errors import ConfigError, DataError, DownloadError

USER_AGENT = "fmnist-downloader/0.1 (+https://github.com/zalandoresearch/fashion-mnist)"
CHUNK = 1 << 16
STALL_BYTES = 16 << 10  # fewer than this many bytes in `timeout` seconds: the mirror has stalled
KEEP_BAD = 3  # quarantined NAME.bad-TIME files kept per name; older ones are deleted
MAX_RETRIES = 20
MAX_TIMEOUT = 3600.0
MAX_BACKOFF = 30.0  # seconds: the longest pause between two attempts
SCHEMES = ("http", "https")


class TooLarge(OSError):
    """The mirror sends (or announces) more bytes than the file can hold: not resumable."""


class Stalled(OSError):
    """The transfer rate fell below the floor: resumable from another attempt or mirror."""


class LocalWriteError(Exception):
    """Writing the ``.part`` failed on this machine (full disk, ...): no mirror can fix that."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(exc.strerror or str(exc))
        self.exc = exc


def check_mirrors(mirrors: Sequence[str]) -> list[str]:
    """The mirrors as given, or a one-line ConfigError for one that is not an http(s) URL with a host.

    urllib would otherwise follow ``file://`` (reading local files) or ``ftp://``.
    """
    out = []
    for mirror in mirrors:
        if not isinstance(mirror, str):
            raise ConfigError(f"mirror {mirror!r} is not a URL")
        try:
            parsed = urllib.parse.urlsplit(mirror.strip())
            host, _port = parsed.hostname, parsed.port  # both raise ValueError on a malformed netloc
        except ValueError as exc:
            raise ConfigError(f"mirror {mirror!r} is not a valid URL ({exc})") from None
        if parsed.scheme.lower() not in SCHEMES or not host:
            raise ConfigError(f"mirror {mirror!r} is not an http:// or https:// URL with a host name")
        if parsed.query or parsed.fragment:
            raise ConfigError(f"mirror {mirror!r}: a base URL has no ?query or #fragment")
        out.append(mirror.strip())
    return out


def check_settings(retries: int, timeout: float, backoff: float = 0.0) -> None:
    """One-line errors for retry/timeout settings that would never end, or never start."""
    if isinstance(retries, bool) or not isinstance(retries, int) or not 1 <= retries <= MAX_RETRIES:
        raise ConfigError(f"retries must be at least 1 and at most {MAX_RETRIES}, got {retries!r}")
    if not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or not 0 < timeout <= MAX_TIMEOUT:
        raise ConfigError(f"timeout must be a number of seconds in (0, {MAX_TIMEOUT:g}], got {timeout!r}")
    if not isinstance(backoff, (int, float)) or not math.isfinite(backoff) or backoff < 0:
        raise ConfigError(f"backoff must be a finite number of seconds >= 0, got {backoff!r}")


def _content_total(response, start: int) -> int | None:
    """The full file size the server announces (Content-Range total, else start + Content-Length)."""
    crange = response.headers.get("Content-Range") or ""
    if "/" in crange:
        total = crange.rsplit("/", 1)[1].strip()
        if total.isdigit():
            return int(total)
    length = response.headers.get("Content-Length")
    if length is not None:
        try:
            value = int(length)
        except ValueError:
            raise OSError(f"bad Content-Length {length!r}") from None
        if value < 0:
            raise OSError(f"bad Content-Length {length!r}")
        return start + value
    return None


def _fetch_once(
    url: str,
    part: Path,
    expected_size: int | None,
    timeout: float,
    progress: bool,
    max_bytes: int | None = None,
    stall_bytes: int = STALL_BYTES,
) -> None:
    """Stream ``url`` into ``part``, resuming from its current length when the server allows.

    Raises TooLarge past ``max_bytes``, Stalled when fewer than ``stall_bytes`` arrive in any
    ``timeout`` seconds, LocalWriteError when the ``.part`` cannot be written.
    """
    start = part.stat().st_size if part.exists() else 0
    if max_bytes is not None and start > max_bytes:
        raise TooLarge(f"a leftover {part.name} of {start} bytes is over the {max_bytes}-byte cap")
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if start:
        request.add_header("Range", f"bytes={start}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        status = getattr(response, "status", 200)
        if start and status != 206:
            start = 0  # the server ignored the Range header: start over
        announced = _content_total(response, start)
        if max_bytes is not None and announced is not None and announced > max_bytes:
            raise TooLarge(f"the server announces {announced} bytes, over the {max_bytes}-byte cap")
        total = announced if announced is not None else expected_size
        bar = None
        if progress:
            from tqdm import tqdm  # here: this module is imported by `fmnist --help`, which needs no bar

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
        window_start, window_bytes = time.monotonic(), received
        try:
            try:
                fh = open(part, "ab" if start else "wb")
            except OSError as exc:
                raise LocalWriteError(exc) from exc
            with fh:
                # read1: return what has arrived instead of waiting for a whole CHUNK, so a trickle
                # is seen (and timed) block by block
                while block := response.read1(CHUNK):
                    received += len(block)
                    if max_bytes is not None and received > max_bytes:
                        raise TooLarge(f"the server sent more than the {max_bytes}-byte cap")
                    try:
                        fh.write(block)
                    except OSError as exc:
                        raise LocalWriteError(exc) from exc
                    if bar is not None:
                        bar.update(len(block))
                    now = time.monotonic()
                    if now - window_start >= timeout:
                        if received - window_bytes < stall_bytes:
                            raise Stalled(
                                f"stalled: {received - window_bytes} bytes in {now - window_start:.0f} s "
                                f"(fewer than {stall_bytes} per {timeout:g} s)"
                            )
                        window_start, window_bytes = now, received
                try:
                    fh.flush()
                    os.fsync(fh.fileno())
                except OSError as exc:
                    raise LocalWriteError(exc) from exc
        finally:
            if bar is not None:
                bar.close()
        if announced is not None and received != announced:
            raise OSError(f"connection closed after {received} of {announced} bytes")


def download(
    resource: Resource,
    dest_dir: Path,
    mirrors: Sequence[str],
    *,
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 1.0,
    progress: bool = True,
    stall_bytes: int = STALL_BYTES,
) -> Path:
    """Fetch ``resource`` into ``dest_dir`` from the first mirror that serves verified bytes."""
    check_settings(retries, timeout, backoff)
    mirrors = check_mirrors(mirrors)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / resource.filename
    part = dest_dir / (resource.filename + ".part")
    cap = resource.max_download_bytes
    failures: dict[str, str] = {}  # url -> its last failure, in the order tried
    tries = 0
    for base in mirrors:
        url = base.rstrip("/") + "/" + resource.filename
        for attempt in range(1, retries + 1):
            tries += 1
            try:
                _fetch_once(url, part, resource.size, timeout, progress, cap, stall_bytes)
                verify_file(part, resource)
            except DataError as exc:  # complete but wrong bytes: discard and try again from zero
                failures[url] = str(exc).split(": ", 1)[-1]
                if quarantine(part) is None:
                    _remove(part)  # never resume from wrong bytes
            except LocalWriteError as err:
                _remove(part)
                if err.exc.errno == errno.ENOSPC:
                    raise DownloadError(
                        f"cannot write {part}: no space left on the device; the partial file was removed"
                    ) from None
                raise DownloadError(f"cannot write {part}: {err}") from None
            except TooLarge as exc:
                failures[url] = str(exc)
                _remove(part)  # over the cap: nothing worth resuming
                break  # the same mirror would send the same oversized answer
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
                if isinstance(exc, urllib.error.HTTPError):
                    failures[url] = f"HTTP {exc.code} {exc.reason}"
                    if exc.code == 416:  # the .part is already as long as the file, or longer
                        _remove(part)
                    elif exc.code in (403, 404, 410):
                        break  # no use retrying a missing file on this mirror
                else:
                    failures[url] = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
            else:
                os.replace(part, dest)
                return dest
            if attempt < retries:
                time.sleep(min(MAX_BACKOFF, backoff * 2 ** (attempt - 1)))
    tried = "; ".join(f"{url}: {why}" for url, why in failures.items()) or "no mirrors configured"
    raise DownloadError(f"could not download {resource.filename} after {tries} tries: {tried}")


def quarantine(path: Path, keep: int = KEEP_BAD) -> Path | None:
    """Move a bad file aside as ``NAME.bad-TIME`` (``.part`` dropped), keeping only the ``keep`` newest.

    The newest copies stay for a look at what the mirror sent; older ones are deleted so a mirror
    that keeps serving wrong bytes cannot fill the disk. Returns where the file went (None when
    there was no file or it could not be moved).
    """
    if not path.exists():
        return None
    name = path.name[: -len(".part")] if path.name.endswith(".part") else path.name
    stamp = time.time_ns() // 1000  # microseconds: two failures in one second keep two names
    aside = path.with_name(f"{name}.bad-{stamp}")
    try:
        os.replace(path, aside)
    except OSError:
        return None
    prune_quarantine(path.parent, name, keep)
    return aside


def prune_quarantine(directory: Path, name: str, keep: int = KEEP_BAD) -> None:
    """Delete all but the ``keep`` newest ``NAME.bad-*`` files in ``directory``."""
    try:
        bad = [p for p in directory.glob(f"{glob.escape(name)}.bad-*") if p.is_file()]
    except OSError:
        return

    def age(p: Path) -> tuple[int, str]:
        suffix = p.name.rsplit(".bad-", 1)[-1]
        stamp = int(suffix) if suffix.isdigit() else 0
        if stamp < 10**12:  # older names held seconds, not microseconds
            stamp *= 10**6
        return stamp, p.name

    for old in sorted(bad, key=age)[: max(0, len(bad) - keep)]:
        try:
            old.unlink()
        except OSError:
            pass


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
