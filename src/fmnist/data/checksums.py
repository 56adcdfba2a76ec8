"""Verify a data file against its published .gz MD5 or, failing that, its decompressed-content MD5;
and, where the registry records one, always against its decompressed-content SHA-256 as well.

Debian's copy holds the same deflate streams with rewritten gzip headers, so its .gz MD5s differ
from the README's while the decompressed bytes are identical: accept either, say which matched.
MD5 collisions can be made on purpose, so a file that passes an MD5 must also pass the SHA-256.
Results are remembered per (path, size, mtime) so a second run does not re-hash 26 MB.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from fmnist.data.idx import read_bytes
from fmnist.data.registry import Resource
from fmnist.errors import DataError
from fmnist.fsio import write_json

OFFICIAL = "official .gz MD5"
CONTENT = "decompressed-content MD5"


def md5_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ChecksumMismatch(DataError):
    """The file is readable but is not the published content."""


def verify_file(path: Path, resource: Resource, memo: VerifyMemo | None = None) -> str:
    """Return how ``path`` verified (OFFICIAL or CONTENT; either way the content SHA-256 too, where
    recorded); raise ChecksumMismatch or IdxError otherwise."""
    if memo is not None and (how := memo.get(path, resource)):
        return how
    size, cap = path.stat().st_size, resource.max_download_bytes
    if size > cap:  # hashing (or gunzipping) a huge file would take long and prove nothing
        raise ChecksumMismatch(f"{path}: {size} bytes, more than any copy of {resource.filename} ({cap})")
    content = None
    if md5_file(path) == resource.gz_md5:
        how = OFFICIAL
    else:
        # raises IdxError for a truncated or non-gzip file, or one that decompresses past the known size
        content = read_bytes(path, resource.content_size)
        got = md5_bytes(content)
        if resource.content_md5 is None or got != resource.content_md5:
            expected = resource.content_md5 or f"(.gz) {resource.gz_md5}"
            raise ChecksumMismatch(f"{path}: checksum mismatch: content MD5 {got}, expected {expected}")
        how = CONTENT
    if resource.content_sha256 is not None:
        if content is None:
            content = read_bytes(path, resource.content_size)
        got = sha256_bytes(content)
        if got != resource.content_sha256:
            raise ChecksumMismatch(
                f"{path}: checksum mismatch: content SHA-256 {got}, expected {resource.content_sha256}"
            )
    if memo is not None:
        memo.put(path, resource, how)
    return how


class VerifyMemo:
    """Which files already verified (a JSON file in the cache).

    Keyed by absolute path; an entry holds only while the file's size, mtime and inode and the
    expected checksum are unchanged, so a replaced file or a different registry entry is re-hashed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError):
            entries = {}
        self.entries: dict = entries if isinstance(entries, dict) else {}

    @staticmethod
    def _key(path: Path, resource: Resource) -> tuple[str, list]:
        st = path.stat()
        stamp = [
            st.st_size,
            st.st_mtime_ns,
            st.st_ino,
            resource.gz_md5,
            resource.content_md5,
            resource.content_sha256,
        ]
        return str(path.resolve()), stamp

    def get(self, path: Path, resource: Resource) -> str | None:
        key, stamp = self._key(path, resource)
        entry = self.entries.get(key)
        return entry.get("how") if isinstance(entry, dict) and entry.get("stamp") == stamp else None

    def put(self, path: Path, resource: Resource, how: str) -> None:
        key, stamp = self._key(path, resource)
        self.entries[key] = {"stamp": stamp, "how": how}
        try:
            write_json(self.path, self.entries)
        except OSError:
            pass  # a read-only cache only costs a re-hash next time
