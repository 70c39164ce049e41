"""Face-clustering metrics (METHOD.md section 2), from one contingency table, O(N log N).

With ``n_gc`` the faces of true identity g in predicted cluster c, ``a_g`` the true sizes and ``b_c`` the
predicted sizes:

* pairwise: ``tp = sum n_gc^2 - N``, ``P = tp / (sum b_c^2 - N)``, ``R = tp / (sum a_g^2 - N)``, ``F = 2PR/(P+R)``
  (a precision or recall with no pairs to count is 1),
* BCubed: ``P = (1/N) sum n_gc^2 / b_c``, ``R = (1/N) sum n_gc^2 / a_g``,
* NMI: ``I(G; C) / mean(H(G), H(C))`` (arithmetic mean, as scikit-learn's default).

**Scored faces** (``mask``): the metrics of a subset of the faces, clustered together with others (distractors,
e.g. the training faces around held-out validation identities, ``export.py --tune``). Only the faces in ``mask``
are scored, but a cluster counts every face it holds: with ``v_c`` the scored faces of cluster c, ``n_gc`` and
``a_g`` over scored faces only and ``b_c`` the whole cluster, pairwise ``P = (sum n_gc^2 - N_s) / (sum v_c b_c -
N_s)`` (the pairs (i, j), i scored, j any other face of its cluster), BCubed ``P = (1/N_s) sum n_gc^2 / b_c``.
A distractor merged into a scored face's cluster costs precision; recall is that of the scored identities (every
identity is assumed to be wholly scored or wholly not, as in an identity split). NMI is that of the scored faces.
"""
from __future__ import annotations

import numpy as np

__all__ = ["evaluate", "pairwise", "bcubed", "nmi", "contingency", "selection_score"]


def contingency(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero cells ``n_gc`` and the sizes ``a_g``, ``b_c`` broadcast to those cells."""
    true = np.asarray(true).reshape(-1)
    pred = np.asarray(pred).reshape(-1)
    if true.shape != pred.shape:
        raise ValueError(f"{true.shape[0]} true labels for {pred.shape[0]} predicted labels")
    _, g = np.unique(true, return_inverse=True)
    _, c = np.unique(pred, return_inverse=True)
    cells, n_gc = np.unique(g.astype(np.int64) * (c.max() + 1) + c, return_counts=True)
    a = np.bincount(g)[cells // (c.max() + 1)]
    b = np.bincount(c)[cells % (c.max() + 1)]
    return n_gc.astype(np.float64), a.astype(np.float64), b.astype(np.float64)


def _f(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else float(2 * p * r / (p + r))


def _scored(true: np.ndarray, pred: np.ndarray, mask: np.ndarray | None):
    """``(true, pred)`` of the scored faces and the whole size of each one's cluster (``None`` without a mask)."""
    if mask is None:
        return true, pred, None
    true, pred = np.asarray(true).reshape(-1), np.asarray(pred).reshape(-1)
    mask = np.asarray(mask, dtype=bool).reshape(-1)
    if mask.shape != pred.shape:
        raise ValueError(f"mask of {mask.shape[0]} faces for {pred.shape[0]} predicted labels")
    if true.shape != pred.shape:
        raise ValueError(f"{true.shape[0]} true labels for {pred.shape[0]} predicted labels")
    _, c = np.unique(pred, return_inverse=True)
    whole = np.bincount(c)[c].astype(np.float64)  # (N,) size of each face's cluster, every face counted
    return true[mask], pred[mask], whole[mask]


def pairwise(true: np.ndarray, pred: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float, float]:
    """Pairwise ``(precision, recall, F)``; ``mask``: score only these faces (module docstring)."""
    true, pred, whole = _scored(true, pred, mask)
    n_gc, _, _ = contingency(true, pred)
    n = n_gc.sum()
    tp = (n_gc ** 2).sum() - n
    pred_sizes = np.bincount(np.unique(pred, return_inverse=True)[1]).astype(np.float64)
    true_sizes = np.bincount(np.unique(true, return_inverse=True)[1]).astype(np.float64)
    pp = ((pred_sizes ** 2).sum() if whole is None else whole.sum()) - n  # sum_c v_c b_c = sum_i b_c(i)
    tt = (true_sizes ** 2).sum() - n
    p = tp / pp if pp > 0 else 1.0
    r = tp / tt if tt > 0 else 1.0
    return float(p), float(r), _f(p, r)


def bcubed(true: np.ndarray, pred: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float, float]:
    """BCubed ``(precision, recall, F)``; ``mask``: score only these faces (module docstring)."""
    true, pred, whole = _scored(true, pred, mask)
    n_gc, a, b = contingency(true, pred)
    if whole is not None:  # b_c: the whole cluster, read off any scored face of it
        _, c = np.unique(pred, return_inverse=True)
        _, g = np.unique(true, return_inverse=True)
        b_of_c = np.zeros(c.max() + 1)
        b_of_c[c] = whole
        cells = np.unique(g.astype(np.int64) * (c.max() + 1) + c)
        b = b_of_c[cells % (c.max() + 1)]
    n = n_gc.sum()
    p = float((n_gc ** 2 / b).sum() / n)
    r = float((n_gc ** 2 / a).sum() / n)
    return p, r, _f(p, r)


def nmi(true: np.ndarray, pred: np.ndarray) -> float:
    """Normalised mutual information, arithmetic-mean normalisation (scikit-learn's default)."""
    n_gc, a, b = contingency(true, pred)
    n = n_gc.sum()
    true_sizes = np.bincount(np.unique(true, return_inverse=True)[1]).astype(np.float64)
    pred_sizes = np.bincount(np.unique(pred, return_inverse=True)[1]).astype(np.float64)
    h_true = -np.sum(true_sizes / n * np.log(true_sizes / n))
    h_pred = -np.sum(pred_sizes / n * np.log(pred_sizes / n))
    if h_true == 0 and h_pred == 0:
        return 1.0
    mi = float(np.sum(n_gc / n * (np.log(n_gc * n) - np.log(a * b))))
    denom = (h_true + h_pred) / 2
    return float(max(mi, 0.0) / denom) if denom > 0 else 1.0


def evaluate(true: np.ndarray, pred: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """All metrics as a flat dict: ``pairwise_{p,r,f}``, ``bcubed_{p,r,f}``, ``nmi``, ``n_clusters``,
    ``n_singletons`` (predicted clusters of one face), ``n_faces``. With ``mask`` only those faces are scored
    (module docstring); the counts are then of the clusters holding a scored face and of the scored faces."""
    pp, pr, pf = pairwise(true, pred, mask)
    bp, br, bf = bcubed(true, pred, mask)
    if mask is not None:
        true, pred = np.asarray(true).reshape(-1)[mask], np.asarray(pred).reshape(-1)[mask]
    sizes = np.bincount(np.unique(pred, return_inverse=True)[1])
    return {"pairwise_p": pp, "pairwise_r": pr, "pairwise_f": pf, "bcubed_p": bp, "bcubed_r": br,
            "bcubed_f": bf, "nmi": nmi(true, pred), "n_clusters": int(len(sizes)),
            "n_singletons": int((sizes == 1).sum()), "n_faces": int(len(pred))}


def selection_score(m: dict) -> float:
    """The criterion every threshold and graph setting is chosen by: the mean of pairwise F and BCubed F of an
    :func:`evaluate` dict (pairwise F alone favours the largest identities, BCubed F the singletons)."""
    return 0.5 * (m["pairwise_f"] + m["bcubed_f"])
