"""Map-equation clustering with Infomap (METHOD.md step 8), through infomap 2.x's ``Network`` / ``Result`` API."""
from __future__ import annotations

import numpy as np

__all__ = ["knn_edges", "undirected_links", "infomap_cluster"]


def knn_edges(nbrs: np.ndarray, weights: np.ndarray, threshold: float = 0.0, *, chunk: int = 65_536,
              first_row: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edge list ``(rows, cols, w)`` from kNN-aligned weights: self loops dropped, only ``w > threshold`` kept.
    ``first_row``: the face of the first row (a distributed rank's rows ``lo:hi``).

    Row chunk by row chunk (``O(chunk K)`` temporaries, no ``(N K,)`` row index); ``rows`` and ``cols`` have the
    dtype of ``nbrs`` (int32 below 2^31 faces), ``w`` float32, in row-major order of the kept entries."""
    n, k = nbrs.shape
    parts = []
    for start in range(0, n, chunk):
        nb = nbrs[start:start + chunk]
        w = np.asarray(weights[start:start + chunk], dtype=np.float32)
        face = first_row + start
        keep = (w > threshold) & (nb != np.arange(face, face + len(nb), dtype=nb.dtype)[:, None])
        r, s = np.nonzero(keep)
        parts.append(((r + face).astype(nbrs.dtype), nb[r, s], w[r, s]))
    if not parts:
        return (np.empty(0, nbrs.dtype), np.empty(0, nbrs.dtype), np.empty(0, np.float32))
    return tuple(np.concatenate(p) for p in zip(*parts))


def undirected_links(n: int, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One ``(E, 3)`` float64 link ``(i, j, w)`` per undirected pair ``i < j`` with positive summed weight:
    duplicate and reciprocal links (``i -> j`` and ``j -> i``) summed (float64), sorted by ``(i, j)``.

    Vectorised on ``(E,)`` arrays (one int64 key per link, one stable sort): memory ``O(E)``, none ``O(N^2)`` or
    of a sparse matrix and its transpose."""
    lo = np.minimum(rows, cols).astype(np.int64)
    key = lo * n + np.maximum(rows, cols)                                   # (E,) int64: i n + j, i < j
    del lo
    order = np.argsort(key, kind="stable")
    key = key[order]
    w = np.asarray(weights, dtype=np.float64)[order]
    del order
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.empty(0, np.int64)
    total = np.add.reduceat(w, first) if len(first) else np.empty(0)
    key = key[first]
    keep = (total > 0) & (key // n != key % n)                              # no self loops
    key, total = key[keep], total[keep]
    return np.stack([(key // n).astype(np.float64), (key % n).astype(np.float64), total], axis=1)


def _top_modules(res) -> tuple[np.ndarray, np.ndarray]:
    """``(node ids, top-level module ids)`` of an ``infomap.Result``, read element by element.

    ``Result.modules()`` converts infomap's C++ vectors with Python iteration, i.e. with the ``SwigPyIterator``
    class, which SWIG registers once per process under one name for every SWIG module: when faiss (SWIG too) is
    imported after infomap, infomap's vectors are iterated by faiss's class and the process dies (a segmentation
    fault, reproduced with ``import infomap, faiss`` before clustering; ``tests/test_infomap.py``). Indexing goes
    through the vector's own ``__getitem__`` instead. (``get_node_data`` is what ``Result.modules()`` reads, in
    the pinned infomap 2.16.0.)"""
    data = res._engine._core.get_node_data(1, False)
    node, module = data.node_id, data.module_id
    n = len(node)
    return (np.fromiter((node[i] for i in range(n)), dtype=np.int64, count=n),
            np.fromiter((module[i] for i in range(n)), dtype=np.int64, count=n))


def infomap_cluster(n: int, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, *, seed: int = 0,
                    num_trials: int = 1, stats: dict | None = None) -> np.ndarray:
    """Two-level Infomap on an undirected weighted graph; returns ``(n,)`` int64 cluster ids ``0..C-1``.

    Duplicate and reciprocal links (``i -> j`` and ``j -> i``) are summed into one undirected link
    (:func:`undirected_links`). Faces without any edge are their own clusters. The result is deterministic for a
    given ``seed`` (infomap seeds start at 1: ``seed + 1`` is passed). The link array is freed once Infomap has
    its network, so the peak is Infomap's own network plus the ``(E,)`` inputs. ``stats``: a dict that receives
    ``links``, the undirected links Infomap got.
    """
    import infomap  # local import: the package prints nothing, but keep import cost off light paths

    labels = np.full(n, -1, dtype=np.int64)
    if len(rows):
        links = undirected_links(n, rows, cols, weights)
        if stats is not None:
            stats["links"] = int(len(links))
        if len(links):
            # Network.add_links on one (E, 3) array is ~20x faster than the scipy adapter at millions of links
            net = infomap.Network()
            net.add_links(links)
            del links
            res = infomap.run(net, two_level=True, seed=int(seed) + 1, num_trials=int(num_trials))
            del net
            ids, mod = _top_modules(res)
            labels[ids] = mod
    lone = labels < 0
    labels[lone] = labels.max(initial=-1) + 1 + np.arange(int(lone.sum()))
    _, labels = np.unique(labels, return_inverse=True)
    return labels.astype(np.int64)
