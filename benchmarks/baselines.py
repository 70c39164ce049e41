"""Non-learned baselines a user would pick instead of this method, on the project's kNN graph.

* :func:`hdbscan_cluster`: scikit-learn's HDBSCAN on the kNN graph as a sparse precomputed distance matrix
  (Euclidean distance between unit vectors, ``sqrt(2 - 2 a_ij)``, symmetrised). With ``min_samples`` <= K the core
  distances are read from the K nearest neighbours, so this is HDBSCAN on the kNN graph (identical to the dense
  run on the points where we compared them: 8K synthetic faces, min_cluster_size 2..5) at a cost linear in N.
  Noise points become singletons.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["hdbscan_cluster", "HDBSCAN_GRID"]

HDBSCAN_GRID = (2, 3, 4, 5, 8)  # min_cluster_size values tuned on the train split


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
