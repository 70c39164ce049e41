"""Tests of the graph half before clustering: ``clustering.preprocess``, ``clustering.knn`` and ``clustering.edges``.

The Jaccard functions are checked against a naive pure-Python reference written from METHOD.md step 5 (sets and
dicts, one pair at a time), on random kNN graphs with random per-node k.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from facecluster.clustering.edges import (
    early_stop_mask,
    edge_prob,
    exp_prob,
    intersections,
    oracle_k,
    plain_jaccard,
    row_normalise,
    sigmoid_prob,
    topk_jaccard,
    weighted_jaccard,
)
from facecluster.clustering.knn import expand_neighbours, knn_search, put_self_first, research_weakest
from facecluster.clustering.preprocess import fit_mean, preprocess


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n: int, d: int, n_clusters: int, spread: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((n_clusters, d)))
    lab = rng.integers(0, n_clusters, n)
    return _unit(centres[lab] + spread * rng.standard_normal((n, d)) / math.sqrt(d)), lab


def _random_knn(n: int, K: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random kNN graph: row i is i followed by K-1 distinct other ids; sims 1 then decreasing in (-1, 1)."""
    rng = np.random.default_rng(seed)
    nbrs = np.empty((n, K), dtype=np.int64)
    for i in range(n):
        others = np.delete(np.arange(n), i)
        nbrs[i, 0] = i
        nbrs[i, 1:] = rng.choice(others, size=K - 1, replace=False)
    sims = np.sort(rng.uniform(-0.3, 1.0, size=(n, K)), axis=1)[:, ::-1].astype(np.float32)
    sims[:, 0] = 1.0
    return nbrs, np.ascontiguousarray(sims)


# ================================================================ preprocess


def test_preprocess_unit_rows_and_mean() -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((50, 16)) * rng.uniform(0.1, 10, (50, 1))).astype(np.float32)
    mean = fit_mean(x)
    assert mean.shape == (16,) and mean.dtype == np.float32
    np.testing.assert_allclose(mean, _unit(x).mean(0), atol=1e-6)
    for m in (None, mean):
        y = preprocess(x, m)
        assert y.dtype == np.float32 and y.flags.c_contiguous and y.shape == x.shape
        np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(preprocess(x, None), _unit(x), atol=1e-6)
    np.testing.assert_allclose(preprocess(x, mean), _unit(_unit(x) - mean), atol=1e-5)


def test_centring_removes_common_offset() -> None:
    rng = np.random.default_rng(1)
    n, d = 400, 32
    offset = 3.0 * _unit(rng.standard_normal((1, d)))
    x = (rng.standard_normal((n, d)) / math.sqrt(d) + offset).astype(np.float32)
    i, j = rng.integers(0, n, 2000), rng.integers(0, n, 2000)
    keep = i != j
    raw = preprocess(x)
    raw_cos = (raw[i[keep]] * raw[j[keep]]).sum(1).mean()
    assert raw_cos > 0.8  # the offset makes everyone look alike
    y = preprocess(x, fit_mean(x))
    cos = (y[i[keep]] * y[j[keep]]).sum(1).mean()
    assert abs(cos) < 0.05


def test_fit_mean_and_preprocess_chunk_invariant() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((37, 8)).astype(np.float32) + 1.0
    m_full = fit_mean(x)
    m_chunk = fit_mean(x, chunk_rows=5)
    np.testing.assert_allclose(m_full, m_chunk, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(preprocess(x, m_full), preprocess(x, m_full, chunk_rows=4))
    np.testing.assert_array_equal(preprocess(x), preprocess(x, chunk_rows=1))


def test_preprocess_reads_memmap(tmp_path) -> None:
    x = np.random.default_rng(3).standard_normal((20, 4)).astype(np.float32)
    p = tmp_path / "f.bin"
    x.tofile(p)
    mm = np.memmap(p, dtype="<f4", mode="r", shape=(20, 4))
    np.testing.assert_array_equal(preprocess(mm, fit_mean(mm), chunk_rows=3), preprocess(x, fit_mean(x)))


def test_zero_after_centring_keeps_direction_no_nan() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    mean = _unit(x[2:3])[0]  # row 2 normalised equals the mean exactly: centring zeroes it
    y = preprocess(x, mean)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(y[2], mean, atol=1e-6)  # keeps its un-centred direction
    # all rows identical: the fitted mean is that row, every row centres to zero
    same = np.tile(x[:1] * 3.0, (4, 1))
    z = preprocess(same, fit_mean(same))
    assert np.isfinite(z).all()
    np.testing.assert_allclose(z, _unit(same), atol=1e-5)


# ================================================================ knn


def _brute_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = x @ x.T
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(s, order, axis=1)


def test_flat_knn_equals_bruteforce() -> None:
    rng = np.random.default_rng(5)
    x = _unit(rng.standard_normal((120, 16)))
    k = 10
    nbrs, sims = knn_search(x, k, method="flat", device="cpu")
    assert nbrs.shape == (120, k) and nbrs.dtype == np.int32  # ids as int32 below 2^31 faces
    assert sims.shape == (120, k) and sims.dtype == np.float32
    ref_n, ref_s = _brute_knn(x, k)
    np.testing.assert_array_equal(nbrs[:, 0], np.arange(120))  # self first
    np.testing.assert_allclose(sims[:, 0], 1.0)
    for i in range(120):
        assert set(nbrs[i]) == set(ref_n[i])
    np.testing.assert_allclose(sims, ref_s, atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # sorted descending
    # sims are the cosine to the listed neighbour
    np.testing.assert_allclose(sims[:, 1:], (x[:, None, :] * x[nbrs[:, 1:]]).sum(-1), atol=1e-5)


def test_knn_auto_is_flat_for_small_n() -> None:
    x = _unit(np.random.default_rng(6).standard_normal((60, 8)))
    a = knn_search(x, 5, device="cpu")
    b = knn_search(x, 5, method="flat", device="cpu")
    np.testing.assert_array_equal(a[0], b[0])


def test_knn_k_bounds() -> None:
    x = _unit(np.random.default_rng(7).standard_normal((10, 4)))
    with pytest.raises(ValueError):
        knn_search(x, 11, method="flat", device="cpu")
    with pytest.raises(ValueError):
        knn_search(x, 0, method="flat", device="cpu")
    nbrs, _ = knn_search(x, 10, method="flat", device="cpu")  # k == N is allowed
    assert all(set(r) == set(range(10)) for r in nbrs)
    with pytest.raises(ValueError, match="unknown kNN method"):
        knn_search(x, 3, method="lsh", device="cpu")


def test_knn_exact_duplicate_rows_self_first() -> None:
    rng = np.random.default_rng(8)
    x = _unit(rng.standard_normal((30, 8)))
    x[10] = x[3]
    x[20] = x[3]  # three identical rows: ties the index may return in any order
    nbrs, sims = knn_search(x, 5, method="flat", device="cpu")
    np.testing.assert_array_equal(nbrs[:, 0], np.arange(30))
    for i in (3, 10, 20):
        assert set(nbrs[i, :3]) == {3, 10, 20}
        np.testing.assert_allclose(sims[i, :3], 1.0, atol=1e-5)
        assert len(set(nbrs[i])) == 5  # no id listed twice


def test_knn_more_duplicates_than_k() -> None:
    rng = np.random.default_rng(12)
    x = _unit(rng.standard_normal((20, 8)))
    x[:7] = x[0]  # seven identical faces, K = 3: the index may leave a face out of its own list
    nbrs, sims = knn_search(x, 3, method="flat", device="cpu")
    np.testing.assert_array_equal(nbrs[:, 0], np.arange(20))
    for i in range(7):
        assert set(nbrs[i]) <= set(range(7)) and len(set(nbrs[i])) == 3
        np.testing.assert_allclose(sims[i], 1.0, atol=1e-5)


@pytest.mark.parametrize("method", ["ivf", "ivfsq", "ivfpq", "hnsw"])
def test_approximate_knn_recall(method: str) -> None:
    x, _ = _clustered(3000, 32, 60, 1.0, seed=9)
    k = 10
    ref, _ = knn_search(x, k, method="flat", device="cpu")
    nbrs, sims = knn_search(x, k, method=method, device="cpu", nprobe=16)
    np.testing.assert_array_equal(nbrs[:, 0], np.arange(3000))
    assert (np.diff(sims, axis=1) <= 1e-5).all()
    hits = sum(len(set(a) & set(b)) for a, b in zip(nbrs[:, 1:].tolist(), ref[:, 1:].tolist()))
    recall = hits / (3000 * (k - 1))
    assert recall > 0.9, f"{method} recall {recall:.3f}"
    if method in ("ivfsq", "ivfpq"):  # quantised codes: the similarities returned are the exact cosines
        np.testing.assert_allclose(sims[:, 1:], np.einsum("nkd,nd->nk", x[nbrs[:, 1:]], x), atol=1e-5)


def test_put_self_first_identity_when_already_first() -> None:
    nbrs = np.array([[0, 2, 1], [1, 0, 2], [2, 1, 0]])
    sims = np.array([[0.999, 0.5, 0.1], [0.998, 0.7, 0.2], [1.0, 0.6, 0.3]], np.float32)
    n2, s2 = put_self_first(nbrs, sims)
    np.testing.assert_array_equal(n2, nbrs)
    np.testing.assert_allclose(s2[:, 0], 1.0)
    np.testing.assert_allclose(s2[:, 1:], sims[:, 1:])
    assert sims[0, 0] == np.float32(0.999)  # input not modified


def test_put_self_first_repairs_rows() -> None:
    nbrs = np.array([
        [0, 4, 2, 3],    # fine
        [4, 1, 2, 3],    # self second (a duplicate row tied with it came first)
        [4, 3, 1, 0],    # self missing: inserted first, last neighbour dropped
        [3, -1, -1, -1], # self present, empty slots
        [0, 1, -1, -1],  # self missing and empty slots
    ])
    sims = np.array([
        [1.0, 0.9, 0.8, 0.7],
        [1.0, 1.0, 0.5, 0.4],
        [0.9, 0.8, 0.7, 0.6],
        [1.0, -3.4e38, -3.4e38, -3.4e38],
        [0.9, 0.8, -3.4e38, -3.4e38],
    ], np.float32)
    n2, s2 = put_self_first(nbrs, sims)
    np.testing.assert_array_equal(n2[:, 0], np.arange(5))
    np.testing.assert_allclose(s2[:, 0], 1.0)
    np.testing.assert_array_equal(n2[0], [0, 4, 2, 3])
    np.testing.assert_array_equal(n2[1], [1, 4, 2, 3])
    np.testing.assert_allclose(s2[1], [1.0, 1.0, 0.5, 0.4])
    np.testing.assert_array_equal(n2[2], [2, 4, 3, 1])
    np.testing.assert_allclose(s2[2], [1.0, 0.9, 0.8, 0.7])
    np.testing.assert_array_equal(n2[3], [3, 3, 3, 3])   # empty slots point to the query ...
    np.testing.assert_allclose(s2[3], [1.0, -1, -1, -1])  # ... with similarity -1
    assert n2[4, 0] == 4 and n2[4, 1:3].tolist() == [0, 1]
    np.testing.assert_allclose(s2[4, :3], [1.0, 0.9, 0.8])
    assert (n2 >= 0).all()
    assert (np.diff(s2, axis=1) <= 0).all()  # still sorted descending


def test_put_self_first_duplicate_self_id() -> None:
    nbrs = np.array([[1, 0, 0, 1], [1, 0, 2, 2], [2, 0, 1, 2]])
    sims = np.array([[0.9, 0.8, 0.8, 0.7], [1.0, 0.5, 0.4, 0.4], [1.0, 0.5, 0.4, 0.3]], np.float32)
    n2, s2 = put_self_first(nbrs, sims)
    np.testing.assert_array_equal(n2[:, 0], [0, 1, 2])
    # row 0: the second copy of self goes to the end with sim -1, the others keep their order
    np.testing.assert_array_equal(n2[0], [0, 1, 1, 0])
    np.testing.assert_allclose(s2[0], [1.0, 0.9, 0.7, -1.0])
    np.testing.assert_array_equal(n2[2], [2, 0, 1, 2])
    np.testing.assert_allclose(s2[2], [1.0, 0.5, 0.4, -1.0])


def test_put_self_first_row_ids() -> None:
    nbrs = np.array([[7, 5], [6, 8]])
    sims = np.array([[0.9, 0.8], [1.0, 0.9]], np.float32)
    n2, s2 = put_self_first(nbrs, sims, row_ids=np.array([5, 8]))
    np.testing.assert_array_equal(n2, [[5, 7], [8, 6]])


# ================================================================ edges: transforms


def test_sigmoid_prob_hand_values() -> None:
    # d = 2 - 2a; P = 1 / (1 + exp(7.5 d - 5))
    sims = np.array([1.0, 2.0 / 3.0, 0.5, 0.0, -1.0], np.float32)
    expect = [1 / (1 + math.exp(-5)), 0.5, 1 / (1 + math.exp(2.5)), 1 / (1 + math.exp(10)), 1 / (1 + math.exp(25))]
    got = sigmoid_prob(sims)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expect, rtol=1e-5)
    assert np.isfinite(sigmoid_prob(np.array([-1e6, 1e6], np.float32))).all()


def test_sigmoid_prob_custom_params() -> None:
    # a = 2, b = 2: P(a_ij = 0.5) = 1 / (1 + exp(2 * 1 - 2)) = 0.5
    np.testing.assert_allclose(sigmoid_prob(np.array([0.5], np.float32), a=2.0, b=2.0), [0.5], rtol=1e-6)


def test_exp_prob_hand_values() -> None:
    # p = exp(-(2 - 2 clip(a, 0, 1)) / 0.5)
    sims = np.array([1.0, 0.75, 0.5, 0.0, -0.7, 1.3], np.float32)
    expect = [1.0, math.exp(-1), math.exp(-2), math.exp(-4), math.exp(-4), 1.0]
    np.testing.assert_allclose(exp_prob(sims), expect, rtol=1e-5)
    np.testing.assert_allclose(exp_prob(np.array([0.5], np.float32), tau=1.0), [math.exp(-1)], rtol=1e-6)


def test_edge_prob_dispatch() -> None:
    s = np.array([[1.0, 0.3]], np.float32)
    np.testing.assert_array_equal(edge_prob(s, "sigmoid"), sigmoid_prob(s))
    np.testing.assert_array_equal(edge_prob(s, "exp"), exp_prob(s))
    np.testing.assert_array_equal(edge_prob(s, "cosine"), s)
    with pytest.raises(ValueError, match="unknown edge transform"):
        edge_prob(s, "tanh")


def test_row_normalise() -> None:
    p = np.array([[1.0, 1.0, 2.0], [0.0, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(row_normalise(p), [[0.25, 0.25, 0.5], [0, 0, 0]])


# ================================================================ edges: Jaccard vs a naive reference


def _ref_topk_jaccard(nbrs, sims, k_vec, transform):
    """METHOD.md step 5, pair by pair: p~_ij = sum_{h in M}(p^_ih + p^_jh) / (sum_{N_i^k} p^_ih + sum_{N_j^k} p^_jh).

    p^ is row-normalised over all K neighbours (step 3). A neighbour id repeated in a row counts once (first)."""
    n, K = nbrs.shape
    P = edge_prob(sims, transform).astype(np.float64)
    p_hat = []
    tops = []
    for i in range(n):
        s_i = float(P[i].sum())
        d: dict[int, float] = {}
        for t in range(K):
            d.setdefault(int(nbrs[i, t]), P[i, t] / s_i)
        p_hat.append(d)
        tops.append(list(dict.fromkeys(int(h) for h in nbrs[i, : k_vec[i]])))
    out = np.zeros((n, K))
    for i in range(n):
        for s in range(K):
            j = int(nbrs[i, s])
            ni, nj = set(tops[i]), set(tops[j])
            num = sum(p_hat[i][h] + p_hat[j][h] for h in ni & nj)
            den = sum(p_hat[i][h] for h in ni) + sum(p_hat[j][h] for h in nj)
            out[i, s] = num / den
    return out


def _ref_plain_jaccard(nbrs, k_vec):
    n, K = nbrs.shape
    out = np.zeros((n, K))
    for i in range(n):
        for s in range(K):
            j = int(nbrs[i, s])
            a, b = set(nbrs[i, : k_vec[i]].tolist()), set(nbrs[j, : k_vec[j]].tolist())
            out[i, s] = len(a & b) / len(a | b)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("transform", ["sigmoid", "exp"])
def test_topk_jaccard_random_k_matches_reference(seed: int, transform: str) -> None:
    n, K = 30, 8
    nbrs, sims = _random_knn(n, K, seed)
    k_vec = np.random.default_rng(100 + seed).integers(1, K + 1, n)
    got = topk_jaccard(nbrs, sims, k_vec, transform=transform)
    assert got.shape == (n, K) and got.dtype == np.float32
    np.testing.assert_allclose(got, _ref_topk_jaccard(nbrs, sims, k_vec, transform), rtol=1e-5, atol=1e-6)
    assert ((got >= 0) & (got <= 1 + 1e-6)).all()


@pytest.mark.parametrize("k", [None, 1, 3, 8, 20])
def test_topk_jaccard_scalar_or_all_k(k) -> None:
    n, K = 25, 8
    nbrs, sims = _random_knn(n, K, seed=3)
    k_vec = np.full(n, K if k is None else min(k, K))
    got = topk_jaccard(nbrs, sims, k)
    np.testing.assert_allclose(got, _ref_topk_jaccard(nbrs, sims, k_vec, "sigmoid"), rtol=1e-5, atol=1e-6)


def test_topk_jaccard_self_pair_is_one() -> None:
    nbrs, sims = _random_knn(20, 6, seed=4)
    k_vec = np.random.default_rng(4).integers(1, 7, 20)
    got = topk_jaccard(nbrs, sims, k_vec)
    np.testing.assert_allclose(got[:, 0], 1.0, rtol=1e-6)  # i with itself: M = N_i^k


def test_topk_jaccard_k_length_mismatch() -> None:
    nbrs, sims = _random_knn(10, 4, seed=5)
    with pytest.raises(ValueError):
        topk_jaccard(nbrs, sims, np.ones(9, dtype=np.int64))


def test_weighted_jaccard_is_exp_over_all_k() -> None:
    nbrs, sims = _random_knn(25, 7, seed=6)
    got = weighted_jaccard(nbrs, sims)
    np.testing.assert_allclose(got, _ref_topk_jaccard(nbrs, sims, np.full(25, 7), "exp"), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got, topk_jaccard(nbrs, sims, None, transform="exp"))
    # the sigmoid transform gives different numbers on the same graph
    assert not np.allclose(got, topk_jaccard(nbrs, sims, None, transform="sigmoid"))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", ["random", None, 4])
def test_plain_jaccard_matches_reference(seed: int, k) -> None:
    n, K = 30, 8
    nbrs, _ = _random_knn(n, K, seed)
    if k == "random":
        k_arg = np.random.default_rng(seed + 50).integers(1, K + 1, n)
        k_vec = k_arg
    else:
        k_arg = k
        k_vec = np.full(n, K if k is None else k)
    got = plain_jaccard(nbrs, k_arg)
    np.testing.assert_allclose(got, _ref_plain_jaccard(nbrs, k_vec), rtol=1e-6)


@pytest.mark.parametrize("ragged", [False, True], ids=["block", "ragged"])
def test_intersections_counts_and_sums(ragged: bool) -> None:
    n, K = 20, 6
    nbrs, sims = _random_knn(n, K, seed=7)
    k_vec = np.random.default_rng(7).integers(1, K + 1, n)
    p_hat = row_normalise(sigmoid_prob(sims))
    a, b, c = intersections(nbrs, p_hat, k_vec, ragged=ragged)
    pos = [{int(h): t for t, h in enumerate(nbrs[i])} for i in range(n)]
    for i in range(n):
        for s in range(K):
            j = int(nbrs[i, s])
            m = set(nbrs[i, : k_vec[i]].tolist()) & set(nbrs[j, : k_vec[j]].tolist())
            assert c[i, s] == len(m)
            assert a[i, s] == pytest.approx(sum(p_hat[i, pos[i][h]] for h in m), rel=1e-5, abs=1e-7)
            assert b[i, s] == pytest.approx(sum(p_hat[j, pos[j][h]] for h in m), rel=1e-5, abs=1e-7)


def test_jaccard_invariant_to_chunk_size() -> None:
    n, K = 40, 8
    nbrs, sims = _random_knn(n, K, seed=8)
    k_vec = np.random.default_rng(8).integers(1, K + 1, n)
    for tiny in (1e-9, 0.002):  # 1 row per chunk; a few rows per chunk (not dividing N)
        np.testing.assert_array_equal(topk_jaccard(nbrs, sims, k_vec, mem_mb=tiny), topk_jaccard(nbrs, sims, k_vec))
        np.testing.assert_array_equal(plain_jaccard(nbrs, k_vec, mem_mb=tiny), plain_jaccard(nbrs, k_vec))
        np.testing.assert_array_equal(weighted_jaccard(nbrs, sims, mem_mb=tiny), weighted_jaccard(nbrs, sims))


def test_jaccard_on_real_knn_graph_matches_reference() -> None:
    x, _ = _clustered(60, 16, 6, 0.8, seed=10)
    nbrs, sims = knn_search(x, 10, method="flat", device="cpu")
    k_vec = np.random.default_rng(10).integers(1, 11, 60)
    np.testing.assert_allclose(topk_jaccard(nbrs, sims, k_vec), _ref_topk_jaccard(nbrs, sims, k_vec, "sigmoid"),
                               rtol=1e-5, atol=1e-6)


def test_jaccard_with_empty_knn_slots() -> None:
    # faiss-style output: row 0 got only 3 of its K = 5 neighbours (IVF with few probes does this)
    raw_n = np.array([[0, 1, 2, -1, -1], [1, 0, 2, 3, 4], [2, 1, 0, 3, 4], [3, 4, 2, 1, 0], [4, 3, 2, 1, 0]])
    raw_s = np.array([[1.0, 0.9, 0.8, -3e38, -3e38], [1.0, 0.9, 0.8, 0.2, 0.1], [1.0, 0.8, 0.8, 0.3, 0.2],
                      [1.0, 0.9, 0.3, 0.2, 0.1], [1.0, 0.9, 0.2, 0.1, 0.0]], np.float32)
    nbrs, sims = put_self_first(raw_n, raw_s)
    assert nbrs[0].tolist() == [0, 1, 2, 0, 0] and sims[0, 3] == -1.0
    k_vec = np.array([3, 3, 3, 2, 2])
    # plain count Jaccard of the pair (0, 1): N_0^3 = {0, 1, 2} = N_1^3 -> 1
    assert plain_jaccard(nbrs, k_vec)[0, 1] == pytest.approx(1.0)
    np.testing.assert_allclose(topk_jaccard(nbrs, sims, k_vec), _ref_topk_jaccard(nbrs, sims, k_vec, "sigmoid"),
                               rtol=1e-5, atol=1e-6)


# ================================================================ oracle k* and early stopping


def _ref_oracle_k(nbrs, labels, beta=0.5):
    out = []
    for i in range(nbrs.shape[0]):
        same = [labels[j] == labels[i] for j in nbrs[i]]
        total = sum(same)
        best, best_k = -1.0, None
        for k in range(1, len(same) + 1):
            tp = sum(same[:k])
            prec, rec = tp / k, tp / total
            f = (1 + beta**2) * prec * rec / (beta**2 * prec + rec) if tp else 0.0
            if f > best + 1e-12:  # first maximum
                best, best_k = f, k
        out.append(best_k)
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oracle_k_matches_bruteforce(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, K = 40, 10
    nbrs, _ = _random_knn(n, K, seed)
    labels = rng.integers(0, 4, n)
    got = oracle_k(nbrs, labels)
    assert got.dtype == np.int64 and ((got >= 1) & (got <= K)).all()
    np.testing.assert_array_equal(got, _ref_oracle_k(nbrs, labels))


def test_oracle_k_hand_cases() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    nbrs = np.array([
        [0, 1, 2, 3, 4],  # same = 1,1,1,0,0: P = R = 1 at k = 3 -> 3
        [1, 3, 0, 4, 2],  # same = 1,0,1,0,1 (total 3): F(1) = 1.25*(1/3)/(0.25+1/3) = 0.714,
                          #   F(3) = 2/3, F(5) = 1.25*0.6/(0.15+1) = 0.652 -> 1
        [2, 0, 1, 3, 4],  # same = 1,1,1,0,0 -> 3
        [3, 5, 0, 1, 4],  # same = 1,0,0,0,1: F(1) = 1.25*0.5/(0.25+0.5) = 0.833, F(5) = 0.5/1.1 -> 1
        [4, 3, 0, 1, 2],  # same = 1,1,0,0,0 -> 2
        [5, 3, 4, 0, 1],  # only itself -> 1
    ])
    assert oracle_k(nbrs, labels).tolist() == [3, 1, 3, 1, 2, 1]
    # beta = 1 weighs recall more: row 1 F1(5) = 0.75 > F1(1) = 0.5 -> 5
    assert oracle_k(nbrs, labels, beta=1.0)[1] == 5


def test_early_stop_mask() -> None:
    w = np.array([
        [0.0, 0.9, 0.8, 0.1, 0.9],   # self column ignored; stops at 0.1, later 0.9 dropped
        [0.5, 0.2, 0.9, 0.9, 0.9],   # first neighbour at the threshold (<=) -> only self kept
        [1.0, 0.6, 0.7, 0.8, 0.31],  # nothing pruned
    ], np.float32)
    m = early_stop_mask(w, 0.2)
    assert m.dtype == bool
    np.testing.assert_array_equal(m, [
        [True, True, True, False, False],
        [True, False, False, False, False],
        [True, True, True, True, True],
    ])
    assert w[0, 0] == 0.0  # input untouched


def _recall(nbrs: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) for a, b in zip(nbrs[:, 1:].tolist(), ref[:, 1:].tolist())])
                 / (ref.shape[1] - 1))


def test_neighbour_expansion_improves_an_approximate_graph() -> None:
    """The expansion after an approximate search: recall against exact search rises round after round, each list
    stays self first, sorted, without repeats, with exact cosines, and no rank of any list gets worse."""
    x, _ = _clustered(4000, 32, 80, 1.0, seed=3)
    k = 20
    ref, _ = knn_search(x, k, method="flat", device="cpu")
    ivf, ivf_s = knn_search(x, k, method="ivf", device="cpu", nprobe=2, expand=0)
    one, one_s = expand_neighbours(x, ivf.copy(), ivf_s.copy(), rounds=1, block=500)
    two, two_s = knn_search(x, k, method="ivf", device="cpu", nprobe=2)            # the default: 2 rounds
    recalls = [_recall(g, ref) for g in (ivf, one, two)]
    assert recalls[0] + 0.005 < recalls[1] <= recalls[2], recalls                # 0.914, 0.921, 0.922
    for nbrs, sims in ((one, one_s), (two, two_s)):
        np.testing.assert_array_equal(nbrs[:, 0], np.arange(len(x)))
        assert (np.diff(sims, axis=1) <= 1e-6).all() and (sims[:, 0] == 1).all()
        assert all(len(set(row)) == k for row in nbrs.tolist())
        np.testing.assert_allclose(sims[:, 1:], np.einsum("nkd,nd->nk", x[nbrs[:, 1:]], x), atol=1e-5)
        assert (sims >= ivf_s - 1e-6).all()
        assert nbrs.dtype == ivf.dtype
    again, _ = knn_search(x, k, method="ivf", device="cpu", nprobe=2)
    np.testing.assert_array_equal(again, two)                                        # the same run after run
    flat, _ = knn_search(x, k, method="flat", device="cpu", expand=3)                 # exact lists: not touched
    np.testing.assert_array_equal(flat, ref)


def test_research_replaces_the_weakest_lists_by_exact_ones() -> None:
    """research_weakest: the share of faces with the least similar nearest neighbour get their exact lists (the
    others untouched); inside the expansion it runs after the first round, and the graph ends nearer the exact one
    than without it."""
    x, _ = _clustered(4000, 32, 80, 1.0, seed=3)
    k = 20
    ref, ref_s = knn_search(x, k, method="flat", device="cpu")
    ivf, ivf_s = knn_search(x, k, method="ivf", device="cpu", nprobe=2, expand=0)
    nbrs, sims = ivf.copy(), ivf_s.copy()
    rows = research_weakest(x, nbrs, sims, 0.1)
    assert len(rows) == 400 and ivf_s[rows, 1].max() <= np.delete(ivf_s[:, 1], rows).min()
    np.testing.assert_array_equal(nbrs[rows], ref[rows])
    np.testing.assert_allclose(sims[rows], ref_s[rows], atol=1e-6)
    rest = np.setdiff1d(np.arange(4000), rows)
    np.testing.assert_array_equal(nbrs[rest], ivf[rest])
    plain = expand_neighbours(x, ivf.copy(), ivf_s.copy(), rounds=2)[0]
    more = expand_neighbours(x, ivf.copy(), ivf_s.copy(), rounds=2, research=0.2)[0]
    assert _recall(more, ref) > _recall(plain, ref) + 0.005
    stepped, stepped_s = ivf.copy(), ivf_s.copy()  # one round at a time (as benchmarks/knn_recall.py measures)
    for r in range(2):
        expand_neighbours(x, stepped, stepped_s, rounds=1, first_round=r, research=0.2)
    np.testing.assert_array_equal(stepped, more)
    assert len(research_weakest(x, ivf.copy(), ivf_s.copy(), 0.0)) == 0


def test_neighbour_expansion_fills_empty_slots_and_keeps_small_inputs() -> None:
    """An empty slot (self, similarity -1, as put_self_first writes it) is dropped as a repeat and filled when a
    neighbour's list offers a face; rounds=0 and N <= K leave the graph as it is."""
    x, _ = _clustered(300, 16, 10, 1.0, seed=1)
    nbrs, sims = knn_search(x, 8, method="flat", device="cpu")
    holed, holed_s = nbrs.copy(), sims.copy()
    holed[:, 5:], holed_s[:, 5:] = np.arange(300)[:, None], -1.0
    out, out_s = expand_neighbours(x, holed.copy(), holed_s.copy(), rounds=1, width=4)
    assert (out_s[:, 5:] > -1).mean() > 0.9 and (out_s >= holed_s - 1e-6).all()
    for rounds, xs, g in ((0, x, (holed, holed_s)), (2, x[:8], knn_search(x[:8], 8, method="flat", device="cpu"))):
        a, b = g[0].copy(), g[1].copy()
        expand_neighbours(xs, a, b, rounds=rounds)
        np.testing.assert_array_equal(a, g[0])
        np.testing.assert_array_equal(b, g[1])


def test_jaccard_on_ivf_graph_with_empty_slots_matches_reference() -> None:
    x, _ = _clustered(3000, 32, 60, 1.0, seed=9)
    nbrs, sims = knn_search(x, 10, method="ivf", device="cpu", nprobe=1, expand=0)
    assert (sims == -1).any()  # the index left some slots empty
    k_vec = np.full(3000, 5)
    np.testing.assert_allclose(topk_jaccard(nbrs, sims, k_vec), _ref_topk_jaccard(nbrs, sims, k_vec, "sigmoid"),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("transform", ["sigmoid", "exp", "cosine"])
def test_edge_probabilities_are_float32_whatever_the_input(transform: str) -> None:
    """Edge probabilities and their row normalisation come back float32 (half the memory of float64 at N x K) from
    float64 similarities too (a mutation run found the casts unpinned)."""
    sims = np.array([[1.0, 0.9, 0.2], [1.0, 0.5, -0.3]], dtype=np.float64)
    p = edge_prob(sims, transform)
    assert p.dtype == np.float32
    assert row_normalise(p.astype(np.float64)).dtype == np.float32
