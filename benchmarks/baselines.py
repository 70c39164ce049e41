"""Non-learned baselines a user would pick instead of this method, on the project's kNN graph.

* :func:`hdbscan_cluster`: scikit-learn's HDBSCAN on the kNN graph as a sparse precomputed distance matrix
  (Euclidean distance between unit vectors, ``sqrt(2 - 2 a_ij)``, symmetrised). With ``min_samples`` <= K the core
  distances are read from the K nearest neighbours, so this is HDBSCAN on the kNN graph (identical to the dense
  run on the points where we compared them: 8K synthetic faces, min_cluster_size 2..5) at a cost linear in N.
  Noise points become singletons.
* :func:`chinese_whispers_cluster`: dlib's ``chinese_whispers_clustering`` on the raw descriptors, as
  ``face_recognition`` users cluster dlib's 128-d encodings (its README and dlib's ``face_clustering.py``: an
  edge between two faces whose Euclidean distance is under a threshold, usually 0.5, then chinese whispers).
  :func:`tune_chinese_whispers` chooses the threshold on a labelled split with ``dlib.chinese_whispers`` on the
  same edges, found once for the whole grid (the same labels as ``chinese_whispers_clustering``; tested).

:func:`best_on` is the one rule every baseline's parameter is chosen by (on the train split, never on test).
"""
from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import numpy as np
import scipy.sparse as sp

from facecluster.clustering.metrics import evaluate, selection_score

__all__ = ["best_on", "hdbscan_cluster", "HDBSCAN_GRID", "chinese_whispers_cluster", "close_pairs",
           "chinese_whispers_pairs", "tune_chinese_whispers", "CW_THRESHOLD", "CW_GRID"]

HDBSCAN_GRID = (2, 3, 4, 5, 8)  # min_cluster_size values tuned on the train split
CW_THRESHOLD = 0.5  # face_recognition's and dlib's examples: "faces closer than 0.5 are the same person"
CW_GRID = tuple(round(t, 3) for t in np.arange(0.30, 0.601, 0.025))  # thresholds tuned on the train split

P = TypeVar("P")


def best_on(labels: np.ndarray, values: Sequence[P], cluster: Callable[[P], np.ndarray]) -> tuple[P, dict]:
    """The value of ``values`` whose clustering ``cluster(value)`` (``(N,)`` ids) has the best
    :func:`~clustering.metrics.selection_score` (mean of pairwise and BCubed F) against ``labels``; ties go to the
    first. Returns ``(value, its metrics)``."""
    best = None
    for value in values:
        m = evaluate(labels, cluster(value))
        if best is None or selection_score(m) > selection_score(best[1]):
            best = (value, m)
    return best


def hdbscan_cluster(nbrs: np.ndarray, sims: np.ndarray, min_cluster_size: int) -> np.ndarray:
    """HDBSCAN (``min_samples`` = ``min_cluster_size``, scikit-learn's default) on the kNN graph; ``(N,)`` ids."""
    from sklearn.cluster import HDBSCAN

    n, k = nbrs.shape
    dist = np.sqrt(np.clip(2.0 - 2.0 * sims.astype(np.float64), 0.0, None))
    dist = np.maximum(dist, 1e-9)  # a stored 0 would be read as "no edge" by the sparse matrix
    rows = np.repeat(np.arange(n), k)
    graph = sp.csr_matrix((dist.ravel(), (rows, nbrs.ravel())), shape=(n, n))
    graph = graph.maximum(graph.T).tocsr()
    labels = HDBSCAN(min_cluster_size=min_cluster_size, metric="precomputed", copy=True).fit_predict(graph)
    noise = labels < 0
    labels = labels.astype(np.int64)
    labels[noise] = labels.max(initial=-1) + 1 + np.arange(int(noise.sum()))
    return labels


def chinese_whispers_cluster(feats: np.ndarray, threshold: float = CW_THRESHOLD) -> np.ndarray:
    """``dlib.chinese_whispers_clustering`` on the raw descriptors ``feats`` (``(N, d)``), exactly as
    ``face_recognition`` users call it: ``(N,)`` int64 ids. Its pair search is O(N^2) in dlib's C++ (one thread)."""
    import dlib

    vectors = [dlib.vector(row) for row in np.asarray(feats, dtype=np.float64).tolist()]
    return np.asarray(dlib.chinese_whispers_clustering(vectors, float(threshold)), dtype=np.int64)


def close_pairs(feats: np.ndarray, threshold: float, block: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``(i, j)``, ``j >= i`` (the face itself included), whose Euclidean distance is under
    ``threshold``, in ``chinese_whispers_clustering``'s order (``i``, then ``j``, ascending): ``(i, j, distance)``.
    Distances come from ``|a|^2 + |b|^2 - 2 a.b`` in float64, blocks of ``block`` rows; the pairs within 1e-9 of
    the threshold are measured again as ``|a - b|``, as dlib does."""
    x = np.asarray(feats, dtype=np.float64)
    sq = (x * x).sum(1)
    out_i, out_j, out_d = [], [], []
    limit = threshold * threshold
    for start in range(0, len(x), block):
        d2 = sq[start:start + block, None] + sq[None, :] - 2.0 * (x[start:start + block] @ x.T)  # (b, N)
        i, j = np.nonzero(d2 < limit + 1e-9)
        keep = j >= i + start
        i, j = i[keep] + start, j[keep]
        d = np.sqrt(np.clip(d2[i - start, j], 0.0, None))
        near = np.abs(d2[i - start, j] - limit) <= 1e-9
        d[near] = np.linalg.norm(x[i[near]] - x[j[near]], axis=1)
        d[i == j] = 0.0
        out_i.append(i)
        out_j.append(j)
        out_d.append(d)
    i, j, d = (np.concatenate(a) for a in (out_i, out_j, out_d))
    keep = d < threshold
    return i[keep], j[keep], d[keep]


def chinese_whispers_pairs(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``dlib.chinese_whispers`` on the unweighted edges ``(i[e], j[e])``: ``(N,)`` int64 ids, N = the faces that
    appear (every face, when the self pairs of :func:`close_pairs` are included)."""
    import dlib

    return np.asarray(dlib.chinese_whispers(list(zip(i.tolist(), j.tolist()))), dtype=np.int64)


def tune_chinese_whispers(feats: np.ndarray, labels: np.ndarray,
                          grid: Sequence[float] = CW_GRID) -> tuple[float, dict]:
    """The ``grid`` threshold whose chinese whispers clustering of ``feats`` (raw descriptors) has the best
    selection score against ``labels`` (the train split): ``(threshold, its metrics there)``. The pairs are found
    once, under the largest threshold, and filtered for each."""
    i, j, d = close_pairs(feats, max(grid))
    return best_on(labels, list(grid), lambda t: chinese_whispers_pairs(i[d < t], j[d < t]))
