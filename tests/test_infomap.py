"""Tests of ``clustering.mapequation``: kNN edge lists and two-level Infomap clustering."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from facecluster.clustering.mapequation import infomap_cluster, knn_edges, undirected_links
from facecluster.clustering.metrics import pairwise


def _clique_edges(groups: list[list[int]], w: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pairs = [(i, j) for g in groups for i, j in itertools.combinations(g, 2)]
    rows = np.array([p[0] for p in pairs], dtype=np.int64)
    cols = np.array([p[1] for p in pairs], dtype=np.int64)
    return rows, cols, np.full(len(pairs), w, dtype=np.float32)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return pairwise(a, b)[2] == pytest.approx(1.0) and len(np.unique(a)) == len(np.unique(b))


def _planted(seed: int, n_groups: int = 4, size: int = 10):
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(n_groups), size)
    n = len(truth)
    rows, cols, w = [], [], []
    for i, j in itertools.combinations(range(n), 2):
        if truth[i] == truth[j] and rng.random() < 0.7:
            rows.append(i), cols.append(j), w.append(rng.uniform(0.5, 1.0))
        elif truth[i] != truth[j] and rng.random() < 0.02:
            rows.append(i), cols.append(j), w.append(rng.uniform(0.01, 0.1))
    return truth, np.array(rows), np.array(cols), np.array(w, dtype=np.float32)


# ---------------------------------------------------------------- knn_edges


def test_knn_edges_drops_self_and_weak() -> None:
    nbrs = np.array([[0, 1, 2], [1, 0, 1], [2, 0, 1]])
    w = np.array([[1.0, 0.5, 0.2], [0.9, 0.5, 0.7], [1.0, 0.2, 0.21]], np.float32)
    rows, cols, ww = knn_edges(nbrs, w, threshold=0.2)
    got = sorted(zip(rows.tolist(), cols.tolist(), ww.tolist()))
    # self loops (0,0), (1,1) x2, (2,2) dropped; weights <= 0.2 dropped (0.2 itself too); 0.21 kept
    assert [g[:2] for g in got] == [(0, 1), (1, 0), (2, 1)]
    assert [g[2] for g in got] == pytest.approx([0.5, 0.5, 0.21])
    assert rows.dtype == np.int64 and ww.dtype == np.float32  # the ids' dtype (int32 ids: int32 edges)
    assert knn_edges(nbrs.astype(np.int32), w, threshold=0.2)[0].dtype == np.int32


def test_knn_edges_in_chunks_equal_one_pass() -> None:
    rng = np.random.default_rng(1)
    nbrs = np.concatenate([np.arange(50)[:, None], rng.integers(0, 50, (50, 7))], axis=1)
    w = rng.uniform(-0.2, 1.0, (50, 8)).astype(np.float32)
    whole, chunked = knn_edges(nbrs, w, 0.3), knn_edges(nbrs, w, 0.3, chunk=7)
    for a, b in zip(whole, chunked):
        np.testing.assert_array_equal(a, b)


def test_knn_edges_default_threshold_drops_zero_and_negative() -> None:
    nbrs = np.array([[0, 1, 2], [1, 2, 0], [2, 0, 1]])
    w = np.array([[1.0, 0.0, -0.3], [1.0, 1e-6, 0.4], [1.0, 0.3, 0.0]], np.float32)
    rows, cols, ww = knn_edges(nbrs, w)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(1, 0), (1, 2), (2, 0)]
    assert (ww > 0).all()


# ---------------------------------------------------------------- infomap_cluster


def _no_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    assert not rec, "warnings emitted: " + "; ".join(f"{r.category.__name__}: {r.message}" for r in rec)
    return out


def test_two_disjoint_cliques() -> None:
    groups = [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9, 10, 11]]
    rows, cols, w = _clique_edges(groups)
    labels = _no_warnings(infomap_cluster, 12, rows, cols, w)
    assert labels.dtype == np.int64 and labels.shape == (12,)
    assert len(np.unique(labels)) == 2
    assert len(set(labels[groups[0]])) == 1 and len(set(labels[groups[1]])) == 1
    assert labels[0] != labels[1]


def test_cliques_with_weak_bridge_stay_apart() -> None:
    rows, cols, w = _clique_edges([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    rows, cols, w = np.append(rows, 4), np.append(cols, 5), np.append(w, 0.05).astype(np.float32)
    labels = infomap_cluster(10, rows, cols, w)
    assert _same_partition(labels, np.array([0] * 5 + [1] * 5))


def test_faces_without_edges_are_singletons() -> None:
    rows, cols, w = _clique_edges([[0, 1, 2, 3], [5, 6, 7]])
    labels = _no_warnings(infomap_cluster, 10, rows, cols, w)
    assert _same_partition(labels, np.array([0, 0, 0, 0, 1, 2, 2, 2, 3, 4]))
    np.testing.assert_array_equal(np.unique(labels), np.arange(5))  # ids 0..C-1


def test_no_edges_at_all() -> None:
    e = np.array([], dtype=np.int64)
    labels = _no_warnings(infomap_cluster, 6, e, e, np.array([], dtype=np.float32))
    np.testing.assert_array_equal(np.sort(labels), np.arange(6))


def test_zero_weight_edges_do_not_link() -> None:
    rows, cols, w = _clique_edges([[0, 1, 2]])
    rows, cols = np.append(rows, 3), np.append(cols, 4)
    w = np.append(w, 0.0).astype(np.float32)  # (3, 4) has weight 0: no link
    labels = infomap_cluster(5, rows, cols, w)
    assert _same_partition(labels, np.array([0, 0, 0, 1, 2]))


def test_planted_partition_recovered() -> None:
    truth, rows, cols, w = _planted(seed=0)
    labels = _no_warnings(infomap_cluster, len(truth), rows, cols, w)
    assert _same_partition(labels, truth)


def test_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(3)
    n = 60
    rows, cols = rng.integers(0, n, 300), rng.integers(0, n, 300)
    w = rng.uniform(0.01, 1.0, 300).astype(np.float32)
    keep = rows != cols
    rows, cols, w = rows[keep], cols[keep], w[keep]
    for seed in (0, 7):
        a = infomap_cluster(n, rows, cols, w, seed=seed)
        b = infomap_cluster(n, rows, cols, w, seed=seed)
        np.testing.assert_array_equal(a, b)
    c = infomap_cluster(n, rows, cols, w, seed=0, num_trials=3)
    np.testing.assert_array_equal(c, infomap_cluster(n, rows, cols, w, seed=0, num_trials=3))


def test_reciprocal_links_sum_like_one_undirected_link() -> None:
    truth, rows, cols, w = _planted(seed=1)
    one_way = infomap_cluster(len(truth), rows, cols, 2 * w)
    both_ways = infomap_cluster(len(truth), np.concatenate([rows, cols]), np.concatenate([cols, rows]),
                                np.concatenate([w, w]))
    np.testing.assert_array_equal(one_way, both_ways)
    duplicated = infomap_cluster(len(truth), np.concatenate([rows, rows]), np.concatenate([cols, cols]),
                                 np.concatenate([w, w]))
    np.testing.assert_array_equal(one_way, duplicated)


def test_links_in_either_direction_count() -> None:
    rows, cols, w = _clique_edges([[0, 1, 2, 3], [4, 5, 6]])
    # every link given as j -> i with j > i (the lower triangle only), or with random orientation
    lower = infomap_cluster(8, cols, rows, w)
    assert _same_partition(lower, np.array([0, 0, 0, 0, 1, 1, 1, 2]))
    flip = np.random.default_rng(0).random(len(rows)) < 0.5
    mixed = infomap_cluster(8, np.where(flip, cols, rows), np.where(flip, rows, cols), w)
    assert _same_partition(mixed, np.array([0, 0, 0, 0, 1, 1, 1, 2]))


def test_undirected_links_equal_the_sparse_matrix_construction() -> None:
    """The link list handed to Infomap, built with one sort of (E,) keys, is the one scipy's ``triu(A + A.T)`` of
    the COO matrix gives (the previous implementation): the same links, order and float64 sums, bit for bit."""
    import scipy.sparse as sp

    rng = np.random.default_rng(2)
    n, K = 300, 12
    nbrs = np.concatenate([np.arange(n)[:, None], np.argsort(rng.random((n, n)), axis=1)[:, : K - 1]], axis=1)
    w = rng.uniform(-0.1, 1.0, (n, K)).astype(np.float32)
    rows, cols, ww = knn_edges(nbrs, w, 0.05)
    adj = sp.coo_matrix((ww.astype(np.float64), (rows, cols)), shape=(n, n)).tocsr()
    adj = sp.triu(adj + adj.T, k=1).tocoo()
    keep = adj.data > 0
    ref = np.stack([adj.row[keep], adj.col[keep], adj.data[keep]], axis=1)
    np.testing.assert_array_equal(undirected_links(n, rows, cols, ww), ref)


def test_knn_graph_round_trip() -> None:
    # two groups as a kNN graph (self first), weights 1 inside, 0 across: knn_edges + infomap split them
    nbrs = np.array([[0, 1, 2, 3], [1, 0, 2, 4], [2, 1, 0, 5], [3, 4, 5, 0], [4, 5, 3, 1], [5, 3, 4, 2]])
    w = np.array([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0]], np.float32)
    labels = _no_warnings(infomap_cluster, 6, *knn_edges(nbrs, w))
    assert _same_partition(labels, np.array([0, 0, 0, 1, 1, 1]))


def test_infomap_imported_before_faiss_does_not_crash_the_clustering() -> None:
    """SWIG registers one iterator class per process for every SWIG module: with infomap imported before faiss,
    infomap's ``Result.modules()`` iterated its vectors with faiss's class and the process died (SIGSEGV). The
    module ids are read by index instead; a user who imports infomap first gets the same labels."""
    import subprocess
    import sys

    code = ("import infomap, faiss, numpy as np\n"
            "from facecluster.clustering.mapequation import infomap_cluster\n"
            "rows, cols = np.array([0, 1, 2, 3, 4]), np.array([1, 2, 0, 4, 3])\n"
            "print(infomap_cluster(6, rows, cols, np.ones(5, np.float32)).tolist())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=__import__("pathlib").Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == "[0, 0, 0, 1, 1, 2]"
