"""Tests of ``clustering.metrics`` against hand-computed cases, plain O(N^2) definitions and scikit-learn."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from facecluster.clustering.metrics import bcubed, contingency, evaluate, nmi, pairwise


def _f(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _ref_pairwise(true, pred):
    """Unordered pairs i < j, counted one by one."""
    tp = same_pred = same_true = 0
    for i, j in itertools.combinations(range(len(true)), 2):
        st, sp = true[i] == true[j], pred[i] == pred[j]
        tp += st and sp
        same_true += st
        same_pred += sp
    p = tp / same_pred if same_pred else 1.0
    r = tp / same_true if same_true else 1.0
    return p, r, _f(p, r)


def _ref_bcubed(true, pred):
    """Per item: precision = share of its predicted cluster with its label, recall = share of its identity in its
    predicted cluster (the item itself included)."""
    n = len(true)
    ps, rs = [], []
    for i in range(n):
        cluster = [j for j in range(n) if pred[j] == pred[i]]
        ident = [j for j in range(n) if true[j] == true[i]]
        both = [j for j in cluster if true[j] == true[i]]
        ps.append(len(both) / len(cluster))
        rs.append(len(both) / len(ident))
    p, r = float(np.mean(ps)), float(np.mean(rs))
    return p, r, _f(p, r)


# ---------------------------------------------------------------- hand cases


def test_worked_six_element_example() -> None:
    # true = [0 0 0 1 1 2], pred = [0 0 1 1 1 1]
    # contingency: (g0,c0)=2, (g0,c1)=1, (g1,c1)=2, (g2,c1)=1; a = (3, 2, 1), b = (2, 4)
    # pairwise (unordered pairs): same-true 3 + 1 = 4; same-pred 1 + 6 = 7; both: (0,1) and (3,4) = 2
    #   P = 2/7, R = 2/4 = 1/2, F = 2 (2/7)(1/2) / (2/7 + 1/2) = (2/7) / (11/14) = 4/11
    # BCubed: P = (1/6)(4/2 + 1/4 + 4/4 + 1/4) = 3.5/6 = 7/12
    #         R = (1/6)(4/3 + 1/3 + 4/2 + 1/1) = (14/3)/6 = 7/9
    #         F = 2 (7/12)(7/9) / (7/12 + 7/9) = (49/54) / (49/36) = 2/3
    true = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 1, 1])
    assert pairwise(true, pred) == pytest.approx((2 / 7, 1 / 2, 4 / 11))
    assert bcubed(true, pred) == pytest.approx((7 / 12, 7 / 9, 2 / 3))
    # NMI: H(G) = -(1/2 ln 1/2 + 1/3 ln 1/3 + 1/6 ln 1/6), H(C) = -(1/3 ln 1/3 + 2/3 ln 2/3),
    # I = sum n_gc/N ln(N n_gc / (a_g b_c))
    hg = -(0.5 * np.log(0.5) + np.log(1 / 3) / 3 + np.log(1 / 6) / 6)
    hc = -(np.log(1 / 3) / 3 + 2 / 3 * np.log(2 / 3))
    mi = (2 / 6 * np.log(6 * 2 / (3 * 2)) + 1 / 6 * np.log(6 * 1 / (3 * 4)) + 2 / 6 * np.log(6 * 2 / (2 * 4))
          + 1 / 6 * np.log(6 * 1 / (1 * 4)))
    assert nmi(true, pred) == pytest.approx(mi / ((hg + hc) / 2))


def test_perfect_clustering_with_permuted_ids() -> None:
    true = np.array([5, 5, 9, 9, 9, 1, 7])
    pred = np.array([0, 0, 3, 3, 3, 2, 1])  # same partition, other ids
    m = evaluate(true, pred)
    for key in ("pairwise_p", "pairwise_r", "pairwise_f", "bcubed_p", "bcubed_r", "bcubed_f", "nmi"):
        assert m[key] == pytest.approx(1.0), key
    assert m["n_clusters"] == 4 and m["n_singletons"] == 2 and m["n_faces"] == 7


def test_all_in_one_cluster() -> None:
    true = np.array([0, 0, 0, 1, 1, 2, 3, 3])  # a = 3, 2, 1, 2; N = 8
    pred = np.zeros(8, dtype=int)
    # pairwise: same-true pairs 3 + 1 + 0 + 1 = 5 of 28 -> P = 5/28, R = 1
    p, r, f = pairwise(true, pred)
    assert (p, r) == pytest.approx((5 / 28, 1.0))
    assert f == pytest.approx(2 * (5 / 28) / (5 / 28 + 1))
    # BCubed: P = sum a_g^2 / N^2 = (9 + 4 + 1 + 4) / 64, R = 1
    assert bcubed(true, pred)[:2] == pytest.approx((18 / 64, 1.0))
    assert nmi(true, pred) == pytest.approx(0.0)
    m = evaluate(true, pred)
    assert m["n_clusters"] == 1 and m["n_singletons"] == 0


def test_all_singletons() -> None:
    true = np.array([0, 0, 0, 1, 1, 2, 3, 3])
    pred = np.arange(8)
    # pairwise: no predicted pairs -> P = 1 by convention, R = 0, F = 0
    assert pairwise(true, pred) == pytest.approx((1.0, 0.0, 0.0))
    # BCubed: P = 1, R = (1/N) sum_g a_g * (1 / a_g) = 4 / 8
    assert bcubed(true, pred) == pytest.approx((1.0, 0.5, _f(1.0, 0.5)))
    m = evaluate(true, pred)
    assert m["n_clusters"] == 8 and m["n_singletons"] == 8


def test_degenerate_both_constant_and_single_face() -> None:
    assert nmi([1, 1, 1], [4, 4, 4]) == pytest.approx(1.0)
    assert pairwise([1, 1, 1], [4, 4, 4]) == pytest.approx((1.0, 1.0, 1.0))
    m = evaluate(np.array([3]), np.array([0]))
    assert m["pairwise_f"] == pytest.approx(1.0) and m["bcubed_f"] == pytest.approx(1.0)
    assert m["n_singletons"] == 1


def test_negative_and_large_label_ids() -> None:
    true = np.array([-1, -1, 10**12, 10**12, 3])
    pred = np.array([7, 7, -5, 2, 2])
    assert pairwise(true, pred) == pytest.approx(_ref_pairwise(true, pred))
    assert bcubed(true, pred) == pytest.approx(_ref_bcubed(true, pred))


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        pairwise(np.zeros(4), np.zeros(5))
    with pytest.raises(ValueError):
        evaluate(np.zeros(4), np.zeros(3))


def test_contingency_cells() -> None:
    n_gc, a, b = contingency(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 1, 1]))
    cells = sorted(zip(n_gc.tolist(), a.tolist(), b.tolist()))
    assert cells == sorted([(2.0, 3.0, 2.0), (1.0, 3.0, 4.0), (2.0, 2.0, 4.0), (1.0, 1.0, 4.0)])


def test_metrics_are_symmetric_where_expected() -> None:
    rng = np.random.default_rng(11)
    t, p = rng.integers(0, 5, 50), rng.integers(0, 7, 50)
    pp, pr, _ = pairwise(t, p)
    assert pairwise(p, t)[:2] == pytest.approx((pr, pp))  # swapping roles swaps P and R
    bp, br, _ = bcubed(t, p)
    assert bcubed(p, t)[:2] == pytest.approx((br, bp))
    assert nmi(t, p) == pytest.approx(nmi(p, t))


# ---------------------------------------------------------------- random labelings vs references


@pytest.mark.parametrize("seed", range(6))
def test_random_labelings_match_references(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 70))
    true = rng.integers(0, int(rng.integers(1, 12)), n)
    pred = rng.integers(0, int(rng.integers(1, 15)), n) * 3 - 4  # arbitrary ids, negatives too
    if seed % 3 == 0:  # a near-correct prediction: relabel and move a few faces
        pred = true.copy() + 100
        moved = rng.random(n) < 0.2
        pred[moved] = rng.integers(0, 4, moved.sum())
    assert pairwise(true, pred) == pytest.approx(_ref_pairwise(true, pred))
    assert bcubed(true, pred) == pytest.approx(_ref_bcubed(true, pred))
    assert nmi(true, pred) == pytest.approx(normalized_mutual_info_score(true, pred), abs=1e-9)
    m = evaluate(true, pred)
    sizes = np.unique(pred, return_counts=True)[1]
    assert m["n_clusters"] == len(sizes) and m["n_singletons"] == int((sizes == 1).sum()) and m["n_faces"] == n


@pytest.mark.parametrize("true,pred", [
    ([0, 0, 0], [0, 1, 2]),
    ([0, 1, 2], [0, 0, 0]),
    ([0, 1, 2], [5, 6, 7]),
    ([0, 0, 1, 1], [0, 1, 0, 1]),  # independent: NMI 0
    ([0, 0, 1, 1, 2], [1, 1, 0, 0, 0]),
])
def test_nmi_edge_cases_vs_sklearn(true, pred) -> None:
    assert nmi(np.array(true), np.array(pred)) == pytest.approx(normalized_mutual_info_score(true, pred), abs=1e-9)


def test_nmi_larger_random_vs_sklearn() -> None:
    rng = np.random.default_rng(99)
    true = rng.integers(0, 300, 5000)
    pred = np.where(rng.random(5000) < 0.7, true, rng.integers(0, 400, 5000))
    assert nmi(true, pred) == pytest.approx(normalized_mutual_info_score(true, pred), abs=1e-9)


# ---------------------------------------------------------------- scored faces among distractors (mask)


def _ref_masked(true, pred, mask):
    """Per scored item i: its whole predicted cluster (distractors included) against its identity; pairs (i, j)
    with i scored and j any other face."""
    n = len(true)
    ps, rs = [], []
    tp = same_pred = same_true = 0
    for i in np.flatnonzero(mask):
        cluster = [j for j in range(n) if pred[j] == pred[i]]
        ident = [j for j in range(n) if true[j] == true[i]]
        both = [j for j in cluster if true[j] == true[i]]
        ps.append(len(both) / len(cluster))
        rs.append(len(both) / len(ident))
        tp += len(both) - 1
        same_pred += len(cluster) - 1
        same_true += len(ident) - 1
    bp, br = float(np.mean(ps)), float(np.mean(rs))
    pp = tp / same_pred if same_pred else 1.0
    pr = tp / same_true if same_true else 1.0
    return (pp, pr, _f(pp, pr)), (bp, br, _f(bp, br))


@pytest.mark.parametrize("seed", range(6))
def test_masked_metrics_score_only_the_masked_faces_with_whole_clusters(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 70))
    true = rng.integers(0, int(rng.integers(2, 12)), n)
    pred = rng.integers(0, int(rng.integers(1, 15)), n) * 7 - 3
    if seed % 2:
        pred = np.where(rng.random(n) < 0.7, true, pred)
    mask = np.isin(true, rng.permutation(np.unique(true))[: max(1, len(np.unique(true)) // 2)])  # by identity
    ref_p, ref_b = _ref_masked(true, pred, mask)
    assert pairwise(true, pred, mask) == pytest.approx(ref_p)
    assert bcubed(true, pred, mask) == pytest.approx(ref_b)
    m = evaluate(true, pred, mask)
    assert m["n_faces"] == int(mask.sum()) and m["nmi"] == pytest.approx(nmi(true[mask], pred[mask]))


def test_masked_metrics_charge_a_distractor_merged_in_and_nothing_else() -> None:
    true = np.array([0, 0, 1, 1, 9, 9])      # identities 0 and 1 scored, 9 the distractors
    mask = true != 9
    apart = np.array([0, 0, 1, 1, 2, 2])
    assert evaluate(true, apart, mask)["pairwise_f"] == 1.0 and evaluate(true, apart, mask)["bcubed_f"] == 1.0
    distractors_merged = np.array([0, 0, 1, 1, 2, 3])  # how the distractors are clustered does not count
    assert evaluate(true, distractors_merged, mask)["bcubed_f"] == 1.0
    one_in = np.array([0, 0, 1, 1, 0, 2])   # a distractor joins identity 0's cluster
    m = evaluate(true, one_in, mask)
    assert m["bcubed_p"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 1) / 4) and m["bcubed_r"] == 1.0
    assert m["pairwise_p"] == pytest.approx(4 / 6)  # pairs from scored faces: 2 + 2 true of 2*2 + 2 found
    with pytest.raises(ValueError, match="mask of 5 faces"):
        evaluate(true, one_in, mask[:5])
