"""Feature preprocessing: mean-centring (fitted on training features) then L2 normalisation.

Real embeddings are rarely centred: on lfw-dlib the raw cosine between different people averages 0.84, which
squeezes every similarity-based threshold into a narrow band. Subtracting the training mean first brings strangers
to about 0 and the same person to about 0.64 (METHOD.md, data README). The mean is fitted once on training
features and stored with the model, so that inference on new photos uses the same transform.
"""
from __future__ import annotations

import numpy as np

__all__ = ["fit_mean", "preprocess", "release_pages", "unique_rows"]


def fit_mean(feats: np.ndarray, *, chunk_rows: int = 262_144) -> np.ndarray:
    """Mean of the L2-normalised rows of ``feats`` (float64 accumulation, chunked). Returns ``(d,)`` float32.

    The mean is taken after a first normalisation so that faces with large raw norms do not dominate it.
    """
    total = np.zeros(feats.shape[1], dtype=np.float64)
    for start in range(0, feats.shape[0], chunk_rows):
        block = np.asarray(feats[start:start + chunk_rows], dtype=np.float32)
        block = block / np.linalg.norm(block, axis=1, keepdims=True)
        total += block.sum(axis=0, dtype=np.float64)
    return (total / max(feats.shape[0], 1)).astype(np.float32)


def release_pages(feats: np.ndarray) -> None:
    """Drop the resident pages of a read-only memory-mapped ``feats`` (``np.memmap`` / ``np.load(mmap_mode="r")``)
    from this process: they stay in the page cache and are read again if touched, but no longer count in its
    resident memory (1 GB for 1M faces of 256 floats). Anything else is left alone."""
    import mmap

    mm = getattr(feats, "_mmap", None)
    if isinstance(feats, np.memmap) and getattr(feats, "mode", None) == "r" and mm is not None \
            and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)


def preprocess(feats: np.ndarray, mean: np.ndarray | None = None, *, chunk_rows: int = 32_768,
               release: bool = False) -> np.ndarray:
    """Return ``normalise(normalise(feats) - mean)`` as a new C-contiguous float32 array.

    Args:
        feats: ``(N, d)`` features (a memory map is read chunk by chunk).
        mean: ``(d,)`` mean from :func:`fit_mean`, or ``None`` for plain L2 normalisation.
        chunk_rows: rows per chunk (the temporaries are a few chunks: 32 MB each for 256-d faces).
        release: for a read-only memory map, release its pages once read (:func:`release_pages`).

    Rows that become (numerically) zero after centring keep their un-centred direction, so no row is NaN.
    """
    n, d = feats.shape
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk_rows):
        block = np.asarray(feats[start:start + chunk_rows], dtype=np.float32)
        block = block / np.linalg.norm(block, axis=1, keepdims=True)
        if mean is not None:
            centred = block - mean.astype(np.float32)
            norms = np.linalg.norm(centred, axis=1, keepdims=True)
            ok = norms[:, 0] > 1e-6
            block = np.where(ok[:, None], centred / np.maximum(norms, 1e-12), block)
        out[start:start + len(block)] = block
    if release:
        release_pages(feats)
    return out


def unique_rows(x: np.ndarray, *, chunk_rows: int = 16_384) -> tuple[np.ndarray, np.ndarray]:
    """Exact duplicate rows: ``(first (U,), inverse (N,))`` with ``x[first]`` the distinct rows in order of first
    occurrence and ``x[first][inverse]`` equal to ``x`` (bit for bit).

    A random linear hash of 32 words of each row's bits (uint64 arithmetic, chunked, no copy of ``x``) finds the
    rows whose hash repeats; only those are compared exactly (``np.unique`` on their bytes), so a hash collision
    never merges different rows. Without duplicates ``first`` is ``0..N-1``.
    """
    x = np.ascontiguousarray(x)
    n, d = x.shape
    words = x.view(np.uint8).reshape(n, -1)
    words = words.view(np.uint32) if words.shape[1] % 4 == 0 else words
    words = words[:, :: max(1, words.shape[1] // 32)]  # 32 words spread over the row: a filter, checked exactly
    coef = np.random.default_rng(0).integers(1, 2**63, size=words.shape[1], dtype=np.uint64) | np.uint64(1)
    h = np.empty(n, dtype=np.uint64)
    for start in range(0, n, chunk_rows):
        h[start:start + chunk_rows] = (words[start:start + chunk_rows].astype(np.uint64) * coef).sum(axis=1)
    _, h_inv, h_count = np.unique(h, return_inverse=True, return_counts=True)
    first = np.arange(n, dtype=np.int64)
    cand = np.flatnonzero(h_count[h_inv] > 1)
    if cand.size:
        rows = np.ascontiguousarray(x[cand]).view(np.dtype((np.void, x.dtype.itemsize * d))).reshape(-1)
        _, at, inv = np.unique(rows, return_index=True, return_inverse=True)
        first[cand] = cand[at[inv]]          # the earliest candidate with the same bytes
    reps = np.flatnonzero(first == np.arange(n))
    return reps, np.searchsorted(reps, first)
