"""The graph half of the method (METHOD.md section 1, steps 3-7) from a kNN graph, the predicted ``k`` and the
pair probabilities: edge probability or Jaccard (:func:`jaccard_weights`), combined with the pair classifier
(:func:`combine_edges`), FC-ESER's early stopping and edge recall (:func:`edge_weights`), pruning and Infomap
(:func:`refine_and_cluster`); and which pairs a rule needs the pair classifier for at all (:func:`pairs_to_score`).
"""
from __future__ import annotations

import numpy as np

from .edges import early_stop_mask, edge_prob, plain_jaccard, topk_jaccard
from .graph_config import COMBINES, JACCARDS, TRANSFORM_NAMES, Combine, GraphConfig
from .mapequation import infomap_cluster, knn_edges
from .timer import Timer

__all__ = ["jaccard_weights", "combine_edges", "edge_weights", "refine_and_cluster", "cluster_edges",
           "pairs_to_score", "READS_K"]


def jaccard_weights(nbrs: np.ndarray, sims: np.ndarray, k: np.ndarray | None, cfg: GraphConfig, *,
                    span: tuple[int, int] | None = None) -> np.ndarray:
    """Edge probability ``(N, K)`` aligned with ``nbrs`` by ``cfg.jaccard`` / ``cfg.transform`` (both checked, also
    where the variant does not use the transform); with ``span = (lo, hi)``, of rows ``lo:hi`` only."""
    if cfg.transform not in TRANSFORM_NAMES:
        raise ValueError(f"unknown transform {cfg.transform!r} ({', '.join(TRANSFORM_NAMES)})")
    if cfg.jaccard == "topk":
        return topk_jaccard(nbrs, sims, k, transform=cfg.transform, span=span)
    if cfg.jaccard == "all":
        return topk_jaccard(nbrs, sims, None, transform=cfg.transform, span=span)
    if cfg.jaccard == "plain":
        return plain_jaccard(nbrs, k, span=span)
    if cfg.jaccard == "none":
        return edge_prob(sims if span is None else sims[span[0]:span[1]], cfg.transform)
    raise ValueError(f"unknown jaccard {cfg.jaccard!r} ({', '.join(JACCARDS)})")


def combine_edges(jaccard_prob: np.ndarray, pair_prob: np.ndarray | None, how: Combine) -> np.ndarray:
    """Edge weight from the Jaccard probability and the SDT pair probability (``None``: the Jaccard probability
    alone, whatever ``how``). An unknown ``how`` raises ``ValueError``, with or without a pair probability."""
    if how not in COMBINES:
        raise ValueError(f"unknown combine {how!r} ({', '.join(COMBINES)})")
    if pair_prob is None or how == "jaccard":
        return jaccard_prob
    if how == "product":
        return jaccard_prob * pair_prob
    if how == "mean":
        return 0.5 * (jaccard_prob + pair_prob)
    return pair_prob  # "sdt"


def edge_weights(nbrs: np.ndarray, sims: np.ndarray, cfg: GraphConfig, *, k: np.ndarray | None = None,
                 pair_prob: np.ndarray | None = None, jaccard_prob: np.ndarray | None = None) -> np.ndarray:
    """Refined edge weights ``(N, K)`` aligned with ``nbrs``: Jaccard -> combine with SDT -> early stopping
    (pruned entries set to 0). Edges with weight <= ``cfg.threshold`` are dropped later, by :func:`knn_edges`.
    ``jaccard_prob``: :func:`jaccard_weights` of these arguments when already computed."""
    p = jaccard_weights(nbrs, sims, k, cfg) if jaccard_prob is None else jaccard_prob
    w = combine_edges(p, pair_prob, cfg.combine)
    if cfg.early_stop:
        w = np.where(early_stop_mask(w, cfg.threshold), w, 0.0)
        if cfg.edge_recall is not None and pair_prob is not None:
            back = (w <= cfg.threshold) & (pair_prob > cfg.edge_recall)
            w = np.where(back, pair_prob, w)
    return w


def refine_and_cluster(nbrs: np.ndarray, sims: np.ndarray, cfg: GraphConfig, *, k: np.ndarray | None = None,
                       pair_prob: np.ndarray | None = None, jaccard_prob: np.ndarray | None = None,
                       timer: Timer | None = None) -> np.ndarray:
    """Graph half of the pipeline: Jaccard -> combine with SDT -> prune -> Infomap. Returns ``(N,)`` labels.
    ``jaccard_prob``: :func:`jaccard_weights` of these arguments when already computed."""
    timer = timer or Timer()
    with timer("jaccard"):
        w = edge_weights(nbrs, sims, cfg, k=k, pair_prob=pair_prob, jaccard_prob=jaccard_prob)
    return cluster_edges(nbrs, w, cfg, timer)


def cluster_edges(nbrs: np.ndarray, weights: np.ndarray, cfg: GraphConfig, timer: Timer | None = None, *,
                  stats: dict | None = None) -> np.ndarray:
    """Prune the kNN-aligned edge ``weights`` at ``cfg.threshold`` and cluster what is left with Infomap (stage
    ``"infomap"``): ``(N,)`` labels. Infomap gets the kept edges only (``O(E)``; :func:`knn_edges`). ``stats``: a
    dict that receives ``edges`` (directed kNN edges kept) and ``links`` (undirected links given to Infomap)."""
    timer = timer or Timer()
    with timer("infomap"):
        rows, cols, ww = knn_edges(nbrs, weights, cfg.threshold)
        if stats is not None:
            stats["edges"] = int(len(rows))
        return infomap_cluster(nbrs.shape[0], rows, cols, ww, seed=cfg.seed, num_trials=cfg.num_trials,
                               stats=stats)


READS_K: tuple[str, ...] = ("topk", "plain")  # the Jaccard variants that read every face's k


def pairs_to_score(jaccard_prob: np.ndarray, nbrs: np.ndarray, cfg: GraphConfig, first_row: int = 0
                   ) -> np.ndarray | None:
    """The pairs whose pair-classifier probability can change what ``cfg`` gives Infomap: ``(N, K)`` bool aligned
    with ``nbrs``, or ``None`` for every pair.

    A pair's weight combines the Jaccard probability ``p`` with a pair probability ``q`` in [0, 1]; a pair counts
    only if that weight can exceed ``cfg.threshold`` for some ``q``: ``p > threshold`` for ``"product"`` (``p q``
    lies between 0 and ``p``; any pair when the threshold is negative), ``(p + 1) / 2 > threshold`` for ``"mean"``,
    no pair for ``"jaccard"`` (``q`` unused) and every pair for ``"sdt"`` and with FC-ESER's edge recall (which reads
    ``q`` of pruned pairs). Self pairs never count (Infomap gets no self loops). Early stopping changes nothing: a
    pair that cannot exceed the threshold stops the walk whatever its ``q``. Every other pair is pruned whatever its
    ``q`` in [0, 1], so any value there (the pipeline gives 0) leaves the clustering exactly as with every pair
    scored. ``first_row``: the face of ``nbrs``'s first row (the rows ``lo:hi`` of a distributed rank)."""
    if cfg.combine == "sdt" or (cfg.early_stop and cfg.edge_recall is not None):
        return None
    if cfg.combine == "jaccard":
        return np.zeros(nbrs.shape, dtype=bool)
    if cfg.combine == "product":
        if cfg.threshold < 0:
            return None
        need = jaccard_prob > cfg.threshold
    else:  # "mean"
        need = jaccard_prob > 2.0 * cfg.threshold - 1.0
    need &= nbrs != np.arange(first_row, first_row + nbrs.shape[0], dtype=nbrs.dtype)[:, None]
    return need
