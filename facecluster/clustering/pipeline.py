"""The inference pipeline, one implementation for the evaluation callback, ``cluster.py``, the benchmarks and
library users (METHOD.md section 1):

    preprocess -> kNN -> Top-K prediction -> Top-K Jaccard -> SDT refinement -> pruning -> Infomap

:class:`ClusteringPipeline` ties the pieces, each in its own module: the settings (:mod:`clustering.graph_config`),
the networks run in batches (:mod:`clustering.inference`), the graph half (:mod:`clustering.refine`), the model
file (:mod:`clustering.model_file`) and the stage timer (:mod:`clustering.timer`).
"""
from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING

import numpy as np
import torch

from .graph_config import GraphConfig
from .knn_config import KnnConfig
from .inference import ROW_BLOCK, predict_k, predict_pairs, resolve_device
from .model_file import MODEL_FORMAT, MODEL_VERSION, build_network, network_state, read_model_file
from .mapequation import infomap_cluster, knn_edges
from .refine import READS_K, cluster_edges, edge_weights, jaccard_weights, pairs_to_score
from .timer import Timer

if TYPE_CHECKING:
    from .distributed import Ranks

__all__ = ["ClusteringPipeline"]


def _on_device(net: torch.nn.Module | None, device: str) -> torch.nn.Module | None:
    """``net`` itself when its parameters and buffers are all on ``device``, else a copy moved there: the network
    passed in is never moved."""
    if net is None:
        return None
    dev = torch.device(device)
    if all(t.device.type == dev.type and (dev.index is None or t.device.index == dev.index)
           for t in (*net.parameters(), *net.buffers())):
        return net
    return copy.deepcopy(net).to(dev)


class ClusteringPipeline:
    """Everything inference needs, in one object that saves to (and loads from) one file.

    Holds the preprocessing mean, the kNN settings, the two networks (either may be ``None``: without a Top-K
    predictor the Jaccard uses all K neighbours, without an SDT the Jaccard weight alone is used) and the
    :class:`GraphConfig`. Usable from Python in three lines::

        from facecluster.clustering.pipeline import ClusteringPipeline
        pipe = ClusteringPipeline.load("model.pt")
        labels = pipe(features)            # (N, d) raw embeddings -> (N,) cluster ids

    Args:
        mean: ``(d,)`` training mean for centring (``None``: plain L2 normalisation).
        graph: the graph settings (K, transform, Jaccard, combine rule, threshold, Infomap seed).
        topk: a :class:`models.TopKPredictor` or ``None``.
        sdt: a :class:`models.SDT` or ``None``.
        knn: the kNN settings, a :class:`~clustering.knn.KnnConfig` (or its dict, as a model file stores it).
        batch_size: centres per network forward; ``None`` picks 256 on a CPU (the fastest of 128..2048 measured for
            the project's models on 2 cores: larger batches fall out of cache) and 4096 on a GPU.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (:func:`resolve_device`).
        meta: free-form provenance stored in the file (training data, metrics, versions).

    The networks given are left as they came (the evaluation callback passes the live training model): one on
    ``device`` is shared, not copied, and run in eval mode with its own mode restored after each run
    (:func:`~clustering.inference.evaluating`); one elsewhere is copied to ``device`` (the pipeline runs the copy,
    which does not follow later training of the original).
    """

    def __init__(self, mean: np.ndarray | None, graph: GraphConfig, topk: torch.nn.Module | None = None,
                 sdt: torch.nn.Module | None = None, *, knn: KnnConfig | dict | None = None,
                 batch_size: int | None = None,
                 device: str = "auto", meta: dict | None = None) -> None:
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.graph = graph
        self.knn = KnnConfig.from_dict(knn)
        self.device = resolve_device(device)
        self.batch_size = batch_size or (256 if torch.device(self.device).type == "cpu" else 4096)
        self.row_block = ROW_BLOCK  # network batches never cross a multiple of this row id (clustering.inference)
        self.meta = dict(meta or {})
        self.topk = _on_device(topk, self.device)
        self.sdt = _on_device(sdt, self.device)

    @property
    def feat_dim(self) -> int | None:
        """Feature dimension the model expects (from the mean, else the networks), ``None`` if it has neither."""
        if self.mean is not None:
            return int(self.mean.shape[0])
        for m in (self.topk, self.sdt):
            if m is not None and hasattr(getattr(m, "config", None), "feat_dim"):
                return int(m.config.feat_dim)
        return None

    # ---- running -------------------------------------------------------------------------------------------
    def graph_inputs(self, feats: np.ndarray, timer: Timer | None = None, progress: bool = False,
                     k: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Preprocess and build the kNN graph: ``(x, nbrs, sims)``. ``k`` overrides ``graph.k``; either is capped
        at the number of faces (a collection smaller than K is clustered with K = N)."""
        from .preprocess import preprocess

        timer = timer or Timer()
        with timer("preprocess"):
            x = preprocess(feats, self.mean)
        return (x, *self._knn(x, k, timer, progress))

    def _knn(self, x: np.ndarray, k: int | None, timer: Timer, progress: bool, device: str | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """The kNN graph (stage ``"knn"``); ``device="all"``: on every GPU faiss sees (a distributed run's rank 0),
        on the CPU without one or on a CPU pipeline."""
        from .knn import knn_search

        options = self.knn_options()
        if device == "all" and options["device"] != "cpu":
            options["device"] = "all"
        with timer("knn"):
            return knn_search(x, min(k or self.graph.k, x.shape[0]), progress=progress, **options)

    def knn_options(self) -> dict:
        """Keyword arguments for :func:`clustering.knn.knn_search` / ``knn_index``: the model's kNN settings
        (``config``) on this pipeline's device."""
        return {"config": self.knn, "device": self.device if self.device.startswith("cuda") else "cpu"}

    def predict(self, x: np.ndarray, nbrs: np.ndarray, sims: np.ndarray, timer: Timer | None = None,
                progress: bool = False) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Run the networks on every face of a kNN graph: ``(k (N,) or None, pair_prob (N, K) or None)``, for
        any graph rule (the evaluation callback, ``export.py --tune``, :meth:`graph_data`)."""
        k, pair_prob, _ = self.scores(x, nbrs, sims, timer, progress)
        return k, pair_prob

    def scores(self, x: np.ndarray, nbrs: np.ndarray, sims: np.ndarray, timer: Timer | None = None,
               progress: bool = False, *, rule: GraphConfig | None = None, ranks: Ranks | None = None
               ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """``(k, pair_prob, jaccard_prob)`` of a kNN graph. Without ``rule`` the networks score every face (no
        ``jaccard_prob``: None). With ``rule`` they score only what that graph rule can use, and the same
        clustering follows: the pair classifier scores the centres with a pair that can pass the threshold
        (:func:`~clustering.refine.pairs_to_score`), each up to its last such neighbour (the other pairs get 0);
        the Top-K predictor runs on every face when the rule's Jaccard reads k, else only on the centres the pair
        classifier scores (``k`` is then None). ``jaccard_prob`` is the rule's Jaccard probability, computed on
        the way. ``ranks`` (with ``rule``; :mod:`clustering.distributed`): this rank scores its own rows
        ``lo:hi`` (:meth:`~clustering.distributed.Ranks.span`) only; ``k`` is then every face's (all-gathered),
        ``pair_prob`` and ``jaccard_prob`` are those rows'."""
        timer = timer or Timer()
        n, K = nbrs.shape
        if ranks is not None and rule is None:
            raise ValueError("a distributed run scores for a graph rule (rule=...)")
        span = None if ranks is None else ranks.span(n)
        lo, hi = span or (0, n)
        own = None if span is None else np.arange(lo, hi)
        run_k = dict(batch_size=self.batch_size, device=self.device, progress=progress,
                     row_block=self.row_block if ranks is None else ranks.row_block)
        k = pair_prob = p = None
        if self.topk is not None and (rule is None or rule.jaccard in READS_K):
            with timer("topk"):
                k = predict_k(self.topk, x, nbrs, sims, rows=own, **run_k)
                if ranks is not None:
                    k = ranks.all_rows(k, n)  # the Jaccard of a row reads its neighbours' k
        rows = widths = None
        if rule is not None:
            with timer("jaccard"):
                p = jaccard_weights(nbrs, sims, k, rule, span=span)
            need = pairs_to_score(p, nbrs[lo:hi], rule, first_row=lo) if self.sdt is not None else None
            if need is not None:
                rows = lo + np.flatnonzero(need.any(axis=1))
                widths = K - np.argmax(need[rows - lo, ::-1], axis=1)  # up to the last pair needed, self included
            else:
                rows = own  # every pair of these rows
        if self.sdt is None or (rows is not None and len(rows) == 0):
            return k, pair_prob, p
        k_in = k
        if k_in is None:
            k_in = np.full(n, K, dtype=np.int64)  # no Top-K predictor (the GNN baselines): all K
            if self.topk is not None:
                with timer("topk"):
                    k_in[rows if rows is not None else slice(None)] = predict_k(self.topk, x, nbrs, sims, rows=rows,
                                                                                **run_k)
        with timer("sdt"):
            pair_prob = predict_pairs(self.sdt, x, nbrs, sims, k_in, rows=rows, widths=widths, span=span, **run_k)
        return k, pair_prob, p

    def run_graph(self, x: np.ndarray, nbrs: np.ndarray, sims: np.ndarray, timer: Timer | None = None,
                  progress: bool = False) -> np.ndarray:
        """Networks + graph half on a ready kNN graph, the networks scoring only what the model's graph rule can
        use (:meth:`scores`). Returns ``(N,)`` cluster ids."""
        timer = timer or Timer()
        return self._prune_and_cluster(nbrs, sims, [*self.scores(x, nbrs, sims, timer, progress, rule=self.graph)],
                                       timer)

    def _prune_and_cluster(self, nbrs: np.ndarray, sims: np.ndarray, scores: list, timer: Timer,
                           ranks: Ranks | None = None, stats: dict | None = None) -> np.ndarray | None:
        """The graph half after :meth:`scores`: edge weights (stage ``"jaccard"``), then prune and Infomap
        (:func:`~clustering.refine.cluster_edges`). ``scores`` (``[k, pair_prob, jaccard_prob]``) is emptied once
        the weights are made, so those ``(N, K)`` arrays are freed before Infomap unless the caller holds them.
        With ``ranks``: the weights and the pruning of this rank's rows, the kept edges gathered on rank 0, which
        runs Infomap (the other ranks return None). ``stats``: receives the edge counts (``cluster_edges``)."""
        n = nbrs.shape[0]
        lo, hi = (0, n) if ranks is None else ranks.span(n)
        k = scores[0]
        with timer("jaccard"):
            w = edge_weights(nbrs[lo:hi], sims[lo:hi], self.graph, k=None if k is None else k[lo:hi],
                             pair_prob=scores[1], jaccard_prob=scores[2])
        scores.clear()
        if ranks is None:
            return cluster_edges(nbrs, w, self.graph, timer, stats=stats)
        with timer("infomap"):
            edges = ranks.gather_on_first(*knn_edges(nbrs[lo:hi], w, self.graph.threshold, first_row=lo))
            del w
            if edges is None:
                return None
            if stats is not None:
                stats["edges"] = int(len(edges[0]))
            return infomap_cluster(n, *edges, seed=self.graph.seed, num_trials=self.graph.num_trials, stats=stats)

    def cluster(self, feats, timer: Timer | None = None, progress: bool = False, *, keep: dict | None = None,
                ranks: Ranks | None = None) -> tuple[np.ndarray | None, dict]:
        """Cluster raw ``(N, d)`` embeddings (checked by the caller): ``(labels (N,) int64, info)``.

        Identical faces (rows equal after preprocessing) are one node of the graph, expanded afterwards, so they
        always share a cluster: as separate nodes a predicted ``k_i = 1`` (or a threshold) could cut the edge
        between them. ``info``: ``k`` (neighbours used: the model's K, capped at the number of distinct faces) and
        ``n_distinct``.

        Memory: a memory-mapped ``feats`` is read in chunks and its pages released once preprocessed
        (:func:`~clustering.preprocess.preprocess`); every stage holds ``O(N K)`` beyond the ``(N, d)`` features,
        and the features, the predicted k and the pair and Jaccard probabilities are freed before Infomap (which
        gets the pruned edge list only). ``keep``: a dict that receives the kNN graph of the distinct faces
        (``nbrs``, ``sims``), the predicted ``k`` (or None), the index used (``knn``) and the edge counts
        (``edges``, ``links``: :func:`~clustering.refine.cluster_edges`), for diagnosis.

        ``ranks``: one rank of a distributed run (:mod:`clustering.distributed`): rank 0 builds the kNN graph (on
        every GPU of its node, or its CPU) and broadcasts it, each rank scores its own rows, rank 0 clusters the
        gathered edges and returns the labels (the others: None), those of a one-process run."""
        from .knn import faiss_gpus, id_dtype, resolve_method
        from .preprocess import preprocess, unique_rows

        timer = timer or Timer()
        with timer("preprocess"):
            x = preprocess(feats, self.mean, release=True)
            del feats  # freed here when the caller handed over its only reference (cluster.py does)
            first, inverse = unique_rows(x)
            if len(first) < len(x):
                x = x[first]
        k = min(self.graph.k, x.shape[0])
        if ranks is None:
            nbrs, sims = self._knn(x, k, timer, progress)
        else:
            n = x.shape[0]
            nbrs, sims = self._knn(x, k, timer, progress, device="all") if ranks.rank == 0 else (None, None)
            with timer("knn"):
                nbrs, sims = ranks.broadcast(nbrs, (n, k), id_dtype(n)), ranks.broadcast(sims, (n, k), np.float32)
        scores = [*self.scores(x, nbrs, sims, timer, progress, rule=self.graph, ranks=ranks)]
        if keep is not None:
            device = self.knn_options()["device"]
            keep.update(nbrs=nbrs, sims=sims, k=scores[0],
                        knn=resolve_method(self.knn, x.shape[0], bool(faiss_gpus(device))))
        del x  # the networks are done: Infomap needs the graph only
        labels = self._prune_and_cluster(nbrs, sims, scores, timer, ranks, stats=keep)
        return (None if labels is None else labels[inverse]), {"k": int(k), "n_distinct": int(len(first))}

    def __call__(self, feats: np.ndarray, timer: Timer | None = None, progress: bool = False) -> np.ndarray:
        """Cluster raw ``(N, d)`` embeddings; returns ``(N,)`` int64 cluster ids in input order.

        Any N >= 1 works: a collection smaller than K is clustered with K = N; identical faces share a cluster.
        Raises :class:`~clustering.errors.InputError` for an empty or wrongly shaped array, a dimension other than the
        model's, and rows with NaN/inf or all zeros."""
        return self.cluster(self.checked(feats), timer, progress)[0]

    def checked(self, feats: np.ndarray) -> np.ndarray:
        """``feats`` as an array, after the input checks of :meth:`__call__` (:class:`~clustering.errors.InputError`)."""
        from .io import check_features, check_shape

        feats = feats if hasattr(feats, "shape") else np.asarray(feats)
        check_shape(feats, "features", self.feat_dim)
        check_features(feats, "features")
        return feats

    def graph_data(self, feats: np.ndarray, *, networks: bool = True, timer: Timer | None = None,
                   progress: bool = False):
        """The kNN graph of raw ``(N, d)`` embeddings as a PyTorch Geometric ``Data``, for PyG code.

        Same input checks as :meth:`__call__`. ``x (N, d)`` preprocessed features, ``edge_index (2, N K)``
        neighbour -> face and ``edge_attr (N K,)`` cosine similarity (:func:`clustering.graph.knn_data`; edge
        ``i K + s`` is the pair ``(i, nbrs[i, s])``).
        With ``networks`` also what the model adds: ``k (N,)`` predicted Top-K sizes (with a Top-K predictor),
        ``pair_prob (N K,)`` pair probabilities (with a pair classifier) and ``edge_weight (N K,)``, the weights
        the model's graph rule gives Infomap (edges at or under ``graph.threshold`` are pruned)."""
        from .graph import knn_data

        timer = timer or Timer()
        x, nbrs, sims = self.graph_inputs(self.checked(feats), timer, progress)
        data = knn_data(x, nbrs, sims)
        if networks:
            k, pair_prob = self.predict(x, nbrs, sims, timer, progress)
            if k is not None:
                data.k = torch.from_numpy(k)
            if pair_prob is not None:
                data.pair_prob = torch.from_numpy(pair_prob).reshape(-1)
            with timer("jaccard"):
                w = edge_weights(nbrs, sims, self.graph, k=k, pair_prob=pair_prob)
                data.edge_weight = torch.from_numpy(w).reshape(-1)
        return data

    # ---- the model file ------------------------------------------------------------------------------------
    def state(self) -> dict:
        """A plain dict (tensors, numbers, strings) holding everything inference needs (:mod:`clustering.model_file`)."""
        return {"format": MODEL_FORMAT, "version": MODEL_VERSION,
                "mean": None if self.mean is None else torch.from_numpy(self.mean.copy()),
                "graph": self.graph.to_dict(), "knn": self.knn.to_dict(),
                "topk": network_state(self.topk), "sdt": network_state(self.sdt),
                # plain JSON types only, so that the file loads with torch.load(weights_only=True)
                "meta": json.loads(json.dumps(self.meta, default=str))}

    def save(self, path: str) -> None:
        """Write the model file atomically (:func:`~clustering.io.atomic_write`: a temporary file renamed into
        place)."""
        from .io import atomic_write

        state = self.state()
        atomic_write(path, lambda fh: torch.save(state, fh))

    @classmethod
    def from_state(cls, state: dict, device: str = "auto") -> "ClusteringPipeline":
        """The pipeline of a :meth:`state` (checked by :func:`~clustering.model_file.check_state` when read from a
        file; networks rebuilt by :func:`~clustering.model_file.build_network`)."""
        mean = state.get("mean")
        device = resolve_device(device)
        topk, sdt = (None if net is None else net.to(device).eval()  # built here: moved, not copied
                     for net in (build_network(state.get("topk")), build_network(state.get("sdt"))))
        return cls(None if mean is None else mean.numpy(), GraphConfig(**state["graph"]), topk, sdt,
                   knn=state.get("knn"), device=device, meta=state.get("meta"))

    @classmethod
    def load(cls, path: str, device: str = "auto") -> "ClusteringPipeline":
        """Load a model file written by :meth:`save` (``export.py``). Raises :class:`~clustering.errors.InputError`
        with a one-line message for a missing, truncated, foreign or incompatible file."""
        from .errors import InputError

        state = read_model_file(path)
        device = resolve_device(device)  # a missing GPU is reported as such, not as a bad model file
        try:
            return cls.from_state(state, device=device)
        except InputError:
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{path}: model file does not match this code's networks: {first}") from None
