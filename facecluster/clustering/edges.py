"""Edge probabilities and Jaccard refinements on the kNN graph (METHOD.md steps 3-5), vectorised.

All functions work on the kNN lists: ``nbrs (N, K)`` (self first) and ``sims (N, K)``, and return arrays aligned
with them: entry ``[i, s]`` is about the pair ``(i, nbrs[i, s])``.

Notation: ``d_ij = 2 - 2 a_ij`` with ``a_ij`` the cosine similarity.

* :func:`sigmoid_prob`: ``P_ij = 1 / (1 + exp(a d_ij - b))`` (this method; a = 7.5, b = 5),
* :func:`exp_prob`: ``p_ij = exp(-d_ij / tau)`` with the cosine clipped to [0, 1] first (FC-ESER; tau = 0.5),
* :func:`row_normalise`: ``p^_ij = P_ij / s_i``, ``s_i = sum_{h in N_i} P_ih`` over all K neighbours,
* :func:`topk_jaccard`: with ``N_i^k`` the first ``k_i`` neighbours and ``M_ij = N_i^k ∩ N_j^k``,
  ``p~_ij = sum_{h in M_ij} (p^_ih + p^_jh) / (sum_{h in N_i^k} p^_ih + sum_{h in N_j^k} p^_jh)``;
  FC-ESER's weighted Jaccard is the same with ``k_i = K`` for all i (:func:`weighted_jaccard`),
* :func:`plain_jaccard`: Ada-NETS' ``|N_i^k ∩ N_j^k| / |N_i^k ∪ N_j^k|``,
* :func:`oracle_k`: the Ada-NETS training target ``k*_i = argmax_k F_beta(k)``.

The intersections are computed for all N x K pairs at once, chunk by chunk: a chunk of C centres scatters its
Top-K rows into a dense ``(C, N)`` buffer of (weight, membership) pairs, every neighbour j's Top-K list is gathered against it
(``(C, K, K)`` lookups), and the touched entries are reset afterwards. Work is ``O(N K^2)`` gathers; memory is
the ``(N, K)`` inputs, ``p^`` and the output (the ids used as they come, int32 or int64), one ``(N, K)`` bool mask
and ``O(C N)`` for the buffer, C chosen from ``mem_mb``: each chunk's sums are reduced to the Jaccard as they come,
so no ``(N, K)`` intermediate is held. No Python loop runs over nodes or edges.
"""
from __future__ import annotations

import numpy as np
import torch

from .threads import torch_threads

__all__ = ["sigmoid_prob", "exp_prob", "cosine_weight", "edge_prob", "early_stop_mask", "row_normalise", "intersections", "topk_jaccard",
           "weighted_jaccard", "plain_jaccard", "oracle_k", "same_identity", "TRANSFORMS"]


def sigmoid_prob(sims: np.ndarray, a: float = 7.5, b: float = 5.0) -> np.ndarray:
    """``P = 1 / (1 + exp(a (2 - 2 sims) - b))``: sigmoid of the distance, steep near the identity boundary."""
    d = 2.0 - 2.0 * np.asarray(sims, dtype=np.float32)
    return (1.0 / (1.0 + np.exp(np.clip(a * d - b, -60, 60)))).astype(np.float32)


def exp_prob(sims: np.ndarray, tau: float = 0.5) -> np.ndarray:
    """FC-ESER: ``p = exp(-(2 - 2 clip(sims, 0, 1)) / tau)``."""
    d = 2.0 - 2.0 * np.clip(np.asarray(sims, dtype=np.float32), 0.0, 1.0)
    return np.exp(-d / tau).astype(np.float32)


def cosine_weight(sims: np.ndarray) -> np.ndarray:
    """The cosine similarity itself as edge weight (plain kNN + Infomap baseline)."""
    return np.asarray(sims, dtype=np.float32)


TRANSFORMS = {"sigmoid": sigmoid_prob, "exp": exp_prob, "cosine": cosine_weight}


def edge_prob(sims: np.ndarray, transform: str = "sigmoid") -> np.ndarray:
    """Edge weight from similarity by name: ``"sigmoid"`` (this method), ``"exp"`` (FC-ESER) or ``"cosine"``."""
    try:
        return TRANSFORMS[transform](sims)
    except KeyError:
        raise ValueError(f"unknown edge transform {transform!r}; choose from {sorted(TRANSFORMS)}") from None


def row_normalise(p: np.ndarray) -> np.ndarray:
    """``p^_ij = p_ij / sum_h p_ih`` (rows summing to 0 stay 0)."""
    s = p.sum(axis=1, keepdims=True, dtype=np.float64)
    return (p / np.where(s > 0, s, 1.0)).astype(np.float32)


def _chunk_rows(n: int, k: int, mem_mb: float) -> int:
    per_row = 2 * 4 * n + 3 * 8 * k * k  # two dense float32 rows + the gathered (K, K) blocks
    return int(max(1, min(n, mem_mb * 2**20 // per_row)))


def _top_mask(nbrs: np.ndarray, k_vec: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """``(N, K)`` bool: rank ``t < k_i`` and the first occurrence of its id in row i (``N_i^k``), row chunk by row
    chunk (the sort that finds repeated ids is ``O(chunk K)`` memory, not ``O(N K)``)."""
    n, K = nbrs.shape
    out = np.empty((n, K), dtype=bool)
    rank = torch.arange(K)[None, :]
    for start in range(0, n, chunk):
        nb = torch.from_numpy(np.ascontiguousarray(nbrs[start:start + chunk]))
        kt = torch.from_numpy(k_vec[start:start + chunk])
        out[start:start + chunk] = ((rank < kt[:, None]) & _first_occurrence(nb)).numpy()
    return out


def _intersection_chunks(nbrs: np.ndarray, p_hat: np.ndarray, k_vec: np.ndarray, in_top: np.ndarray, *,
                         mem_mb: float = 256, ragged: bool | None = None, span: tuple[int, int] | None = None):
    """The sums of :func:`intersections`, one chunk of centres at a time: yields ``(start, stop, a, b, c)`` with
    ``a, b, c`` the ``(stop - start, K)`` float32 tensors of rows ``start:stop``, over the rows of ``span``
    (``(lo, hi)``; default all). A row's sums do not depend on the chunk it is computed in (tested). Memory beyond the inputs (ids of
    any integer dtype, used as they are: no int64 copy) is the dense chunk buffer (``mem_mb``) and one chunk's
    gathers; a caller that reduces each chunk as it comes never holds an ``(N, K)`` intermediate."""
    n, K = nbrs.shape
    nb = torch.from_numpy(np.ascontiguousarray(nbrs))
    ph = torch.from_numpy(np.ascontiguousarray(p_hat, dtype=np.float32))
    kt = torch.from_numpy(k_vec)
    top = torch.from_numpy(in_top)
    ragged = float(k_vec.mean()) < 0.4 * K if ragged is None else ragged
    rows = _chunk_rows(n, K, mem_mb)
    lo, hi = span or (0, n)
    # dense[r, h] = (p^_ih, 1) for h in N_i^k, else (0, 0): both values sit in one 8-byte word, so one random
    # gather (of the float64 view) fetches both
    dense = torch.zeros((min(rows, max(hi - lo, 1)), n, 2), dtype=torch.float32)
    dense_flat = dense.view(-1)
    dense_words = dense.view(torch.float64).view(-1)
    with torch.inference_mode():
        for start in range(lo, hi, rows):
            stop = min(hi, start + rows)
            cr = stop - start
            local = torch.arange(cr)[:, None].expand(cr, K)
            own = nb[start:stop]                                    # (C, K) ids h of N_i = the partners j
            top_c = top[start:stop]
            # accumulate: a repeated id (an empty faiss slot) adds 0, so no write race can drop the real entry
            slot = (local * n + own).reshape(-1) * 2
            dense_flat.index_put_((slot,), (ph[start:stop] * top_c).reshape(-1), accumulate=True)  # p^_ih on N_i^k
            dense_flat.index_put_((slot + 1,), top_c.reshape(-1).float(), accumulate=True)
            if ragged:
                sa, sb, sc = _ragged_sums(nb, ph, kt, own, cr, n, dense_words)
            else:
                hj = nb[own]                                        # (C, K, K) N_j ids
                mj = torch.arange(K) < kt[own][..., None]          # (C, K, K) t < k_j
                flat = (torch.arange(cr)[:, None, None] * n + hj).reshape(-1)
                g = dense_words[flat].view(torch.float32).view(cr, K, K, 2)
                gp, gm = g[..., 0], g[..., 1]                       # p^_ih and 1 if h in N_i^k (else 0, 0)
                sa = (gp * mj).sum(-1)
                sb = (ph[own] * top[own] * gm).sum(-1)             # p^_jh on N_j^k, h in N_i^k
                sc = (gm * mj).sum(-1)
            yield start, stop, sa, sb, sc
            dense_words[(local * n + own).reshape(-1)] = 0.0


def intersections(nbrs: np.ndarray, p_hat: np.ndarray, k: np.ndarray | int | None = None, *,
                  mem_mb: float = 256, threads: int | None = None,
                  ragged: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every kNN pair ``(i, j = nbrs[i, s])`` sums over ``M_ij = N_i^k ∩ N_j^k``.

    Args:
        nbrs: ``(N, K)`` integer neighbour ids (int32 or int64), self first.
        p_hat: ``(N, K)`` float32 weights aligned with ``nbrs`` (``p^_ih`` for ``h = nbrs[i, t]``).
        k: per-node Top-K sizes ``(N,)`` in 1..K, a single int, or ``None`` for all K.
        mem_mb: memory budget of the dense chunk buffers.
        threads: torch intra-op threads for this call (default: torch's own; restored after it).
        ragged: force the ragged (``True``) or the block (``False``) gather; default: by mean k (below).

    Returns:
        ``(a, b, c)``, each ``(N, K)`` float32: ``a = sum_{h in M_ij} p^_ih``, ``b = sum_{h in M_ij} p^_jh``,
        ``c = |M_ij|``.

    When the mean k is well below K only the ``k_j`` leading entries of each partner's list are visited (a ragged
    gather, ``O(N K mean(k))`` work); otherwise the full ``(C, K, K)`` block is gathered. The Jaccard functions
    below reduce the chunks as they come (:func:`_intersection_chunks`) instead of holding these three arrays.
    """
    n, K = nbrs.shape
    k_vec = _k_vector(k, n, K)
    out = [np.empty((n, K), dtype=np.float32) for _ in range(3)]
    with torch_threads(threads):  # for this call only: the caller's count is restored after it
        for start, stop, *sums in _intersection_chunks(nbrs, p_hat, k_vec, _top_mask(nbrs, k_vec), mem_mb=mem_mb,
                                                       ragged=ragged):
            for o, v in zip(out, sums):
                o[start:stop] = v.numpy()
    return out[0], out[1], out[2]


def _first_occurrence(nb: torch.Tensor) -> torch.Tensor:
    """``(N, K)`` bool: the entry is the first occurrence of its id in its row (ids repeat only where faiss left
    empty slots, filled with the query itself by :func:`clustering.knn.put_self_first`)."""
    srt, order = torch.sort(nb, dim=1, stable=True)
    first_sorted = torch.ones_like(srt, dtype=torch.bool)
    first_sorted[:, 1:] = srt[:, 1:] != srt[:, :-1]
    return torch.empty_like(first_sorted).scatter_(1, order, first_sorted)


def topk_sizes(nbrs: np.ndarray, k: np.ndarray | int | None = None) -> np.ndarray:
    """``|N_i^k|``: distinct ids among the first ``k_i`` neighbours, ``(N,)`` int64."""
    n, K = nbrs.shape
    return _top_mask(nbrs, _k_vector(k, n, K)).sum(axis=1, dtype=np.int64)


def _ragged_sums(nb: torch.Tensor, ph: torch.Tensor, kt: torch.Tensor, own: torch.Tensor, cr: int, n: int,
                 dense_words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three sums for the ``C x K`` pairs of one chunk, visiting only ``t < k_j`` of each partner j.

    One ``torch_geometric.utils.scatter`` of the ``(T, 3)`` summands over their pair (torch-scatter when installed):
    at 100K faces within 10% of the three ``index_add_`` it replaced (+2% / +8% CPU time in two runs,
    ``benchmarks/scatter_sums.py``)."""
    from torch_geometric.utils import scatter  # torch-scatter when installed

    K = nb.shape[1]
    j = own.reshape(-1).long()                                      # (P,) partners, P = C K (int64: j K + t)
    lens = kt[j]                                                    # (P,) k_j
    pair = torch.repeat_interleave(torch.arange(j.numel()), lens)   # (T,) pair of each visited entry
    first = torch.cumsum(lens, 0) - lens
    t = torch.arange(pair.numel()) - first[pair]                    # (T,) rank t < k_j
    jt = j[pair] * K + t                                            # flat index into (N, K)
    h = nb.view(-1)[jt]                                             # (T,) h = nbrs[j, t]
    flat = (pair // K) * n + h                                      # row of the centre, column h
    g = dense_words[flat].view(torch.float32).view(-1, 2)
    gp, gm = g[:, 0], g[:, 1]                                       # p^_ih and 1 if h in N_i^k (else 0, 0)
    terms = torch.stack([gp, ph.view(-1)[jt] * gm, gm], dim=1)      # (T, 3): the three summands
    sums = scatter(terms, pair, dim=0, dim_size=j.numel(), reduce="sum")  # (P, 3) per pair
    return sums[:, 0].view(cr, K), sums[:, 1].view(cr, K), sums[:, 2].view(cr, K)


def _k_vector(k: np.ndarray | int | None, n: int, K: int) -> np.ndarray:
    if k is None:
        return np.full(n, K, dtype=np.int64)
    if np.isscalar(k):
        return np.full(n, int(k), dtype=np.int64).clip(1, K)
    k = np.asarray(k, dtype=np.int64).reshape(-1)
    if k.shape[0] != n:
        raise ValueError(f"k has {k.shape[0]} entries for {n} nodes")
    return k.clip(1, K)


def topk_jaccard(nbrs: np.ndarray, sims: np.ndarray, k: np.ndarray | int | None, *, transform: str = "sigmoid",
                 mem_mb: float = 256, span: tuple[int, int] | None = None) -> np.ndarray:
    """Top-K weighted Jaccard edge probability ``p~_ij`` (METHOD.md step 5) for every kNN pair, ``(N, K)``.

    Args:
        nbrs, sims: the kNN graph (self first).
        k: per-node Top-K sizes (predicted or oracle), an int, or ``None`` for all K (FC-ESER's version).
        transform: ``"sigmoid"`` (this method) or ``"exp"`` (FC-ESER) for ``P_ij``.
        span: ``(lo, hi)``: the rows ``lo:hi`` only, ``(hi - lo, K)`` (the neighbours' lists are read in full).
    """
    n, K = nbrs.shape
    lo, hi = span or (0, n)
    k_vec = _k_vector(k, n, K)
    p_hat = np.empty((n, K), dtype=np.float32)
    for start in range(0, n, 65_536):  # row by row: no (N, K) temporaries of the transform
        p_hat[start:start + 65_536] = row_normalise(edge_prob(sims[start:start + 65_536], transform))
    top = _top_mask(nbrs, k_vec)
    s = np.empty(n, dtype=np.float32)  # sum_{h in N_i^k} p^_ih
    for start in range(0, n, 65_536):
        s[start:start + 65_536] = (p_hat[start:start + 65_536] * top[start:start + 65_536]).sum(axis=1)
    out = np.empty((hi - lo, K), dtype=np.float32)
    for start, stop, a, b, _ in _intersection_chunks(nbrs, p_hat, k_vec, top, mem_mb=mem_mb, span=(lo, hi)):
        denom = s[start:stop, None] + s[nbrs[start:stop]]
        out[start - lo:stop - lo] = (a.numpy() + b.numpy()) / np.maximum(denom, 1e-12)
    return out


def weighted_jaccard(nbrs: np.ndarray, sims: np.ndarray, *, transform: str = "exp", mem_mb: float = 256) -> np.ndarray:
    """FC-ESER's weighted Jaccard: :func:`topk_jaccard` over all K neighbours with the exp transform."""
    return topk_jaccard(nbrs, sims, None, transform=transform, mem_mb=mem_mb)


def plain_jaccard(nbrs: np.ndarray, k: np.ndarray | int | None = None, *, mem_mb: float = 256,
                  span: tuple[int, int] | None = None) -> np.ndarray:
    """Ada-NETS' ``|N_i^k ∩ N_j^k| / |N_i^k ∪ N_j^k|`` for every kNN pair, ``(N, K)`` (``span``: rows ``lo:hi``)."""
    n, K = nbrs.shape
    lo, hi = span or (0, n)
    k_vec = _k_vector(k, n, K)
    top = _top_mask(nbrs, k_vec)
    size = top.sum(axis=1, dtype=np.int64)
    out = np.empty((hi - lo, K), dtype=np.float32)
    for start, stop, _, _, c in _intersection_chunks(nbrs, np.ones(nbrs.shape, np.float32), k_vec, top,
                                                     mem_mb=mem_mb, span=(lo, hi)):
        c = c.numpy()
        union = size[start:stop, None] + size[nbrs[start:stop]] - c
        out[start - lo:stop - lo] = c / np.maximum(union, 1)
    return out


def same_identity(nbrs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(N, K)`` bool: neighbour ``nbrs[i, s]`` has the label of ``i``."""
    return labels[nbrs] == labels[:, None]


def oracle_k(nbrs: np.ndarray, labels: np.ndarray, beta: float = 0.5) -> np.ndarray:
    """Ada-NETS target ``k*_i = argmax_k F_beta(k)`` in 1..K (first maximum), ``(N,)`` int64.

    ``precision(k)`` is the share of the first k neighbours (self included) with i's label, ``recall(k)`` the
    number of same-label neighbours among the first k over that number among all K.
    """
    n, K = nbrs.shape
    out = np.empty(n, dtype=np.int64)
    ks = np.arange(1, K + 1, dtype=np.float64)
    b2 = beta * beta
    for start in range(0, n, 65_536):  # row chunks: (chunk, K) float64 temporaries
        rows = slice(start, start + 65_536)
        cum = np.cumsum(labels[nbrs[rows]] == labels[rows, None], axis=1, dtype=np.float64)
        precision = cum / ks
        recall = cum / np.maximum(cum[:, -1:], 1.0)
        f = (1 + b2) * precision * recall / np.maximum(b2 * precision + recall, 1e-12)
        out[rows] = np.argmax(f, axis=1) + 1
    return out


def early_stop_mask(weights: np.ndarray, threshold: float) -> np.ndarray:
    """FC-ESER's early stopping: walking each row in cosine order (column order; self at column 0 is skipped),
    keep neighbours until the first whose weight is <= ``threshold``; drop it and every later one. ``(N, K)`` bool.
    """
    ok = weights > threshold
    ok[:, 0] = True
    return np.logical_and.accumulate(ok, axis=1)
