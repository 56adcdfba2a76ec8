"""Exact and near-duplicate images, within and between splits.

Exact duplicates: equal bytes (a BLAKE2 hash of each 784-byte image, grouped).

Near duplicates: the root-mean-square pixel difference, in grey levels (0-255),

    rms(a, b) = sqrt(mean((a - b) ** 2)) = ||a - b||_2 / 28,

at or below :data:`NEAR_RMS`. The search is exact, not approximate: every image is projected on the
leading principal axes of the pooled images; an orthogonal projection never lengthens a vector, so
a pair within the threshold in pixel space is also within it in the projection. All pairs within
the threshold in the projection (a blocked matrix product) are candidates, and each candidate's
distance is then computed exactly on the raw uint8 pixels. A pair is listed once, lower index first
in the pooled order (train before test).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# Near-duplicate threshold: RMS difference in grey levels. Chosen by looking at Fashion-MNIST's closest
# pairs: at or below 6 every pair is visibly the same photograph (re-encoded or re-cropped by a pixel);
# from about 7 the same garment in another print appears, and above about 12 distinct articles of a
# similar cut (plain trousers) dominate. Counts at 2..12 grey levels: benchmarks/RESULTS.md, "Data audit".
NEAR_RMS = 6.0
PROJECTION_DIMS = 64  # principal axes used to find candidates (exactness does not depend on it)
BLOCK = 4096  # rows and columns per block of the pairwise product: 4096^2 float32 = 64 MiB


@dataclass(frozen=True)
class Pairs:
    """Pairs of pooled indices with their RMS distance (grey levels), sorted by distance."""

    i: np.ndarray  # (m,) int64, the lower pooled index
    j: np.ndarray  # (m,) int64, the higher pooled index
    distance: np.ndarray  # (m,) float64

    def __len__(self) -> int:
        return len(self.i)


def _sorted(i: np.ndarray, j: np.ndarray, d: np.ndarray) -> Pairs:
    order = np.lexsort((j, i, d))
    return Pairs(i[order].astype(np.int64), j[order].astype(np.int64), d[order].astype(np.float64))


def image_hashes(images: np.ndarray) -> list[bytes]:
    """One 16-byte BLAKE2b digest per image: equal digests mean equal bytes (for all practical purposes)."""
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]


def exact_pairs(images: np.ndarray) -> Pairs:
    """Every pair (i < j) of byte-identical images; a group of k copies gives k(k-1)/2 pairs."""
    groups: dict[bytes, list[int]] = {}
    for idx, digest in enumerate(image_hashes(images)):
        groups.setdefault(digest, []).append(idx)
    i, j = [], []
    for members in groups.values():
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                i.append(members[a])
                j.append(members[b])
    zeros = np.zeros(len(i))
    return _sorted(np.array(i, dtype=np.int64), np.array(j, dtype=np.int64), zeros)


def rms_distance(images: np.ndarray, i: np.ndarray, j: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Exact RMS difference (grey levels) between images[i] and images[j], from the raw uint8 pixels."""
    flat = np.asarray(images).reshape(len(images), -1)
    out = np.empty(len(i), dtype=np.float64)
    for s in range(0, len(i), chunk):
        diff = flat[i[s : s + chunk]].astype(np.int32) - flat[j[s : s + chunk]].astype(np.int32)
        out[s : s + chunk] = np.sqrt((diff * diff).mean(axis=1))
    return out


def project(images: np.ndarray, dims: int = PROJECTION_DIMS) -> np.ndarray:
    """(n, dims) float32 coordinates on the leading principal axes (orthonormal, so distances only shrink)."""
    flat = np.asarray(images).reshape(len(images), -1)
    dims = min(dims, flat.shape[1])
    mean = flat.mean(axis=0, dtype=np.float64)
    cov = np.zeros((flat.shape[1], flat.shape[1]))
    for s in range(0, len(flat), 8192):
        x = flat[s : s + 8192].astype(np.float64) - mean
        cov += x.T @ x
    _, vecs = np.linalg.eigh(cov)  # ascending eigenvalues
    basis = vecs[:, ::-1][:, :dims].astype(np.float32)  # (784, dims), orthonormal columns
    out = np.empty((len(flat), dims), dtype=np.float32)
    for s in range(0, len(flat), 8192):
        out[s : s + 8192] = (flat[s : s + 8192].astype(np.float32) - mean.astype(np.float32)) @ basis
    return out


def _blocks(n: int, block: int) -> Iterator[tuple[int, int]]:
    for s in range(0, n, block):
        yield s, min(n, s + block)


def candidate_pairs(z: np.ndarray, radius: float, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """All (i < j) with ||z_i - z_j|| <= radius, plus a float32 rounding margin (so none is missed)."""
    sq = np.einsum("ij,ij->i", z, z, dtype=np.float64).astype(np.float32)
    r2 = np.float32(radius * radius)
    out_i, out_j = [], []
    for a0, a1 in _blocks(len(z), block):
        for b0, b1 in _blocks(len(z), block):
            if b1 <= a0:
                continue  # lower triangle: each pair once
            d2 = sq[a0:a1, None] + sq[None, b0:b1] - 2.0 * (z[a0:a1] @ z[b0:b1].T)  # (block, block)
            # float32 cancellation error is about 1e-6 of the norms; 1e-4 of them is a safe margin.
            slack = 1e-4 * (sq[a0:a1, None] + sq[None, b0:b1])
            ii, jj = np.nonzero(d2 <= r2 + slack)
            ii, jj = ii + a0, jj + b0
            keep = ii < jj
            out_i.append(ii[keep])
            out_j.append(jj[keep])
    if not out_i:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(out_i).astype(np.int64), np.concatenate(out_j).astype(np.int64)


def near_pairs(images: np.ndarray, threshold: float = NEAR_RMS, dims: int = PROJECTION_DIMS) -> Pairs:
    """Every pair (i < j) with 0 <= rms <= ``threshold`` grey levels, found exactly (see the module doc)."""
    images = np.asarray(images)
    if len(images) < 2:
        return _sorted(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0))
    z = project(images, dims)
    radius = threshold * np.sqrt(images[0].size)  # rms <= t  <=>  ||a - b|| <= t * sqrt(784)
    i, j = candidate_pairs(z, radius)
    d = rms_distance(images, i, j)
    keep = d <= threshold
    return _sorted(i[keep], j[keep], d[keep])
