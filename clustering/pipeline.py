"""The inference pipeline, one implementation for the evaluation callback, ``cluster.py``, the benchmarks and
library users (METHOD.md section 1):

    preprocess -> kNN -> Top-K prediction -> Top-K Jaccard -> SDT refinement -> pruning -> Infomap

:class:`GraphConfig` holds every non-learned choice; :func:`refine_and_cluster` runs the graph half from a kNN graph
and (optionally) predicted ``k`` and SDT pair probabilities; :func:`predict_k` / :func:`predict_pairs` run the two
networks in batches over nodes.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .edges import early_stop_mask, edge_prob, plain_jaccard, topk_jaccard
from .mapequation import infomap_cluster, knn_edges
from .subgraphs import as_tensor, gather_subgraphs

__all__ = ["GraphConfig", "combine_edges", "edge_weights", "refine_and_cluster", "predict_k", "predict_pairs", "Timer"]


@dataclass
class GraphConfig:
    """Non-learned settings of the graph half.

    Attributes:
        k: neighbours per face in the kNN graph (self included).
        transform: edge probability from distance, ``"sigmoid"`` (this method), ``"exp"`` (FC-ESER) or
            ``"cosine"`` (the similarity itself, plain kNN + Infomap).
        jaccard: ``"topk"`` (per-node k; all K when no k is given), ``"all"`` (all K neighbours, ignore k),
            ``"plain"`` (Ada-NETS count Jaccard) or ``"none"`` (the raw edge probability).
        combine: how the SDT pair probability ``q`` and the Jaccard probability ``p`` make the edge weight:
            ``"product"`` (``p * q``), ``"mean"`` (``(p + q) / 2``), ``"sdt"`` (``q``), ``"jaccard"`` (``p``).
        threshold: edges with weight <= threshold are pruned before Infomap.
        early_stop: FC-ESER's early stopping: walking each face's neighbours in cosine order, also prune every
            neighbour after the first pruned one.
        edge_recall: FC-ESER's edge recall (with ``early_stop``): a pruned edge whose SDT pair probability exceeds
            this value comes back, weighted by that probability (FC-ESER uses a learned pair classifier; the SDT is
            this project's). ``None``: no recall.
        seed: Infomap seed.
        num_trials: Infomap trials (the best is kept).
    """

    k: int = 80
    transform: str = "sigmoid"
    jaccard: str = "topk"
    combine: str = "product"
    threshold: float = 0.0
    early_stop: bool = False
    edge_recall: float | None = None
    seed: int = 0
    num_trials: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


class Timer:
    """Collects per-stage wall-clock seconds: ``with timer("knn"): ...``; ``timer.seconds`` is a dict."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def jaccard_weights(nbrs: np.ndarray, sims: np.ndarray, k: np.ndarray | None, cfg: GraphConfig) -> np.ndarray:
    """Edge probability ``(N, K)`` aligned with ``nbrs`` by ``cfg.jaccard`` / ``cfg.transform``."""
    if cfg.jaccard == "topk":
        return topk_jaccard(nbrs, sims, k, transform=cfg.transform)
    if cfg.jaccard == "all":
        return topk_jaccard(nbrs, sims, None, transform=cfg.transform)
    if cfg.jaccard == "plain":
        return plain_jaccard(nbrs, k)
    if cfg.jaccard == "none":
        return edge_prob(sims, cfg.transform)
    raise ValueError(f"unknown jaccard {cfg.jaccard!r} (topk, all, plain, none)")


def combine_edges(p: np.ndarray, q: np.ndarray | None, how: str) -> np.ndarray:
    """Edge weight from Jaccard probability ``p`` and SDT pair probability ``q`` (``None``: ``p`` alone)."""
    if q is None or how == "jaccard":
        return p
    if how == "product":
        return p * q
    if how == "mean":
        return 0.5 * (p + q)
    if how == "sdt":
        return q
    raise ValueError(f"unknown combine {how!r} (product, mean, sdt, jaccard)")


def edge_weights(nbrs: np.ndarray, sims: np.ndarray, cfg: GraphConfig, *, k: np.ndarray | None = None,
                 pair_prob: np.ndarray | None = None) -> np.ndarray:
    """Refined edge weights ``(N, K)`` aligned with ``nbrs``: Jaccard -> combine with SDT -> early stopping
    (pruned entries set to 0). Edges with weight <= ``cfg.threshold`` are dropped later, by :func:`knn_edges`."""
    p = jaccard_weights(nbrs, sims, k, cfg)
    w = combine_edges(p, pair_prob, cfg.combine)
    if cfg.early_stop:
        w = np.where(early_stop_mask(w, cfg.threshold), w, 0.0)
        if cfg.edge_recall is not None and pair_prob is not None:
            back = (w <= cfg.threshold) & (pair_prob > cfg.edge_recall)
            w = np.where(back, pair_prob, w)
    return w


def refine_and_cluster(nbrs: np.ndarray, sims: np.ndarray, cfg: GraphConfig, *, k: np.ndarray | None = None,
                       pair_prob: np.ndarray | None = None, timer: Timer | None = None) -> np.ndarray:
    """Graph half of the pipeline: Jaccard -> combine with SDT -> prune -> Infomap. Returns ``(N,)`` labels."""
    timer = timer or Timer()
    with timer("jaccard"):
        w = edge_weights(nbrs, sims, cfg, k=k, pair_prob=pair_prob)
    with timer("infomap"):
        rows, cols, ww = knn_edges(nbrs, w, cfg.threshold)
        return infomap_cluster(nbrs.shape[0], rows, cols, ww, seed=cfg.seed, num_trials=cfg.num_trials)


def _batches(n: int, batch_size: int, progress: bool, desc: str):
    return tqdm(range(0, n, batch_size), desc=desc, disable=not progress, unit="batch")


@torch.inference_mode()
def project_faces(model: torch.nn.Module, xt: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``model.embed.project`` of every face, ``(N, d)``, on the device of ``xt``, computed in chunks.

    Part of the networks' token embedding depends on one face only: inference computes it once per face and
    gathers it per (centre, neighbour) pair (see :class:`models.NeighbourEmbedding`)."""
    chunk = 64 * batch_size
    return torch.cat([model.embed.project(xt[i:i + chunk]) for i in range(0, xt.shape[0], chunk)])


@torch.inference_mode()
def predict_k(model: torch.nn.Module, x: np.ndarray | torch.Tensor, nbrs: np.ndarray, sims: np.ndarray, *,
              batch_size: int = 256, device: str | torch.device = "cpu", progress: bool = False) -> np.ndarray:
    """Predicted Top-K size ``k_i`` in 1..K for every face, ``(N,)`` int64 (model in eval mode, batched)."""
    model.eval()
    device = torch.device(device)
    xt = as_tensor(x, torch.float32).to(device)
    table = project_faces(model, xt, batch_size)
    nb = as_tensor(nbrs, torch.int64)
    st = as_tensor(sims, torch.float32)
    out = np.empty(nb.shape[0], dtype=np.int64)
    for start in _batches(nb.shape[0], batch_size, progress, "Top-K"):
        idx = torch.arange(start, min(start + batch_size, nb.shape[0]))
        feats, s = gather_subgraphs(xt, nb, st, idx)
        proj = table[nb[idx].to(device)]  # (B, K, d): the per-face part of the token embedding
        out[start:start + len(idx)] = model.predict_k(feats, s, proj=proj).cpu().numpy()
    return out


@torch.inference_mode()
def predict_pairs(model: torch.nn.Module, x: np.ndarray | torch.Tensor, nbrs: np.ndarray, sims: np.ndarray,
                  k: np.ndarray, *, batch_size: int = 256, device: str | torch.device = "cpu",
                  progress: bool = False) -> np.ndarray:
    """Pair-classifier (SDT or GNN) probability that ``(i, nbrs[i, s])`` share an identity, ``(N, K)`` float32
    (model in eval mode). A network with a token ``embed`` gets its per-face part precomputed (``proj``); one with a
    ``pivot_u`` (the GNN baselines) gets each batch's pivot-subgraph links ``adj``
    (:func:`clustering.graph.pivot_adjacency` on the whole kNN graph).

    Beyond an SDT's window the value is 1 (no vote), so the Jaccard weight alone decides those edges: zeroing them
    instead cuts identities larger than the window apart (measured on lfw-dlib test, whose largest identity has
    236 faces: pairwise F 0.75 instead of 0.94 with a window of 32)."""
    model.eval()
    device = torch.device(device)
    xt = as_tensor(x, torch.float32).to(device)
    table = project_faces(model, xt, batch_size) if hasattr(model, "embed") else None
    pivot_u = getattr(model, "pivot_u", None)
    if pivot_u:
        from .graph import pivot_adjacency  # PyG: imported only for the GNNs
    window = getattr(model, "window", None)  # an SDT with a window scores (and needs) the first W neighbours only
    nb_all = as_tensor(nbrs, torch.int64)
    nb = nb_all[:, :window]
    st = as_tensor(sims, torch.float32)[:, :window]
    kt = as_tensor(k, torch.int64)
    out = np.ones(nbrs.shape, dtype=np.float32)  # 1 beyond the window: no SDT vote, the Jaccard weight decides
    # centres in order of k, so that each batch's Top-k attention mask needs only a small partial top-k
    order = torch.argsort(kt, stable=True)
    for start in _batches(nb.shape[0], batch_size, progress, "SDT"):
        idx = order[start:start + batch_size]
        feats, s = gather_subgraphs(xt, nb, st, idx)
        inputs = {}
        if table is not None:
            inputs["proj"] = table[nb[idx].to(device)]  # (B, K, d): the per-face part of the token embedding
        if pivot_u:
            inputs["adj"] = pivot_adjacency(nb_all, idx, pivot_u).to(device)  # (B, K, K)
        logits = model(feats, s, kt[idx].to(device), **inputs)  # (B, W)
        out[idx.numpy(), : logits.size(1)] = torch.sigmoid(logits.float()).cpu().numpy()
    return out


MODEL_FORMAT = "facecluster-model"
MODEL_VERSION = 1


class ClusteringPipeline:
    """Everything inference needs, in one object that saves to (and loads from) one file.

    Holds the preprocessing mean, the kNN settings, the two networks (either may be ``None``: without a Top-K
    predictor the Jaccard uses all K neighbours, without an SDT the Jaccard weight alone is used) and the
    :class:`GraphConfig`. Usable from Python in three lines::

        from clustering.pipeline import ClusteringPipeline
        pipe = ClusteringPipeline.load("model.pt")
        labels = pipe(features)            # (N, d) raw embeddings -> (N,) cluster ids

    Args:
        mean: ``(d,)`` training mean for centring (``None``: plain L2 normalisation).
        graph: the graph settings (K, transform, Jaccard, combine rule, threshold, Infomap seed).
        topk: a :class:`models.TopKPredictor` or ``None``.
        sdt: a :class:`models.SDT` or ``None``.
        knn: keyword arguments for :func:`clustering.knn.knn_search` (method, nprobe, ...).
        batch_size: centres per network forward; ``None`` picks 256 on a CPU (the fastest of 128..2048 measured for
            the project's models on 2 cores: larger batches fall out of cache) and 4096 on a GPU.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        meta: free-form provenance stored in the file (training data, metrics, versions).
    """

    def __init__(self, mean: np.ndarray | None, graph: GraphConfig, topk: torch.nn.Module | None = None,
                 sdt: torch.nn.Module | None = None, *, knn: dict | None = None, batch_size: int | None = None,
                 device: str = "auto", meta: dict | None = None) -> None:
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.graph = graph
        self.topk = topk
        self.sdt = sdt
        self.knn = dict(knn or {})
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.batch_size = batch_size or (256 if torch.device(self.device).type == "cpu" else 4096)
        self.meta = dict(meta or {})
        for m in (self.topk, self.sdt):
            if m is not None:
                m.to(self.device).eval()

    @property
    def feat_dim(self) -> int | None:
        """Feature dimension the model expects (from the mean, else the networks), ``None`` if it has neither."""
        if self.mean is not None:
            return int(self.mean.shape[0])
        for m in (self.topk, self.sdt):
            if m is not None and "feat_dim" in getattr(m, "config", {}):
                return int(m.config["feat_dim"])
        return None

    # ---- running -------------------------------------------------------------------------------------------
    def graph_inputs(self, feats: np.ndarray, timer: Timer | None = None, progress: bool = False,
                     k: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Preprocess and build the kNN graph: ``(x, nbrs, sims)``. ``k`` overrides ``graph.k``; either is capped
        at the number of faces (a collection smaller than K is clustered with K = N)."""
        from .knn import knn_search
        from .preprocess import preprocess

        timer = timer or Timer()
        with timer("preprocess"):
            x = preprocess(feats, self.mean)
        with timer("knn"):
            nbrs, sims = knn_search(x, min(k or self.graph.k, x.shape[0]), progress=progress, **self.knn_options())
        return x, nbrs, sims

    def knn_options(self) -> dict:
        """Keyword arguments for :func:`clustering.knn.knn_search` / ``knn_index``: the model's kNN settings on
        this pipeline's device."""
        return {"device": "cuda" if self.device.startswith("cuda") else "cpu", **self.knn}

    def predict(self, x: np.ndarray, nbrs: np.ndarray, sims: np.ndarray, timer: Timer | None = None,
                progress: bool = False) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Run the networks on a kNN graph: ``(k (N,) or None, pair_prob (N, K) or None)``."""
        timer = timer or Timer()
        k = q = None
        if self.topk is not None:
            with timer("topk"):
                k = predict_k(self.topk, x, nbrs, sims, batch_size=self.batch_size, device=self.device,
                              progress=progress)
        if self.sdt is not None:
            with timer("sdt"):
                k_in = k if k is not None else np.full(nbrs.shape[0], nbrs.shape[1], dtype=np.int64)
                q = predict_pairs(self.sdt, x, nbrs, sims, k_in, batch_size=self.batch_size, device=self.device,
                                  progress=progress)
        return k, q

    def run_graph(self, x: np.ndarray, nbrs: np.ndarray, sims: np.ndarray, timer: Timer | None = None,
                  progress: bool = False) -> np.ndarray:
        """Networks + graph half on a ready kNN graph. Returns ``(N,)`` cluster ids."""
        timer = timer or Timer()
        k, q = self.predict(x, nbrs, sims, timer, progress)
        return refine_and_cluster(nbrs, sims, self.graph, k=k, pair_prob=q, timer=timer)

    def __call__(self, feats: np.ndarray, timer: Timer | None = None, progress: bool = False) -> np.ndarray:
        """Cluster raw ``(N, d)`` embeddings; returns ``(N,)`` int64 cluster ids in input order.

        Any N >= 1 works: a collection smaller than K is clustered with K = N. Raises
        :class:`~clustering.io.InputError` for an empty or wrongly shaped array, a dimension other than the model's,
        and rows with NaN/inf or all zeros."""
        timer = timer or Timer()
        x, nbrs, sims = self.graph_inputs(self.checked(feats), timer, progress)
        return self.run_graph(x, nbrs, sims, timer, progress)

    def checked(self, feats: np.ndarray) -> np.ndarray:
        """``feats`` as an array, after the input checks of :meth:`__call__` (:class:`~clustering.io.InputError`)."""
        from .io import check_features, check_shape

        feats = np.asarray(feats) if not isinstance(feats, np.ndarray) else feats
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
            k, q = self.predict(x, nbrs, sims, timer, progress)
            if k is not None:
                data.k = torch.from_numpy(k)
            if q is not None:
                data.pair_prob = torch.from_numpy(q).reshape(-1)
            with timer("jaccard"):
                data.edge_weight = torch.from_numpy(edge_weights(nbrs, sims, self.graph, k=k, pair_prob=q)).reshape(-1)
        return data

    # ---- the model file ------------------------------------------------------------------------------------
    def state(self) -> dict:
        """A plain dict (tensors, numbers, strings) holding everything inference needs."""

        def net(m: torch.nn.Module | None) -> dict | None:
            if m is None:
                return None
            return {"class": type(m).__name__, "config": dict(m.config),
                    "state_dict": {k: v.detach().cpu() for k, v in m.state_dict().items()}}

        return {"format": MODEL_FORMAT, "version": MODEL_VERSION,
                "mean": None if self.mean is None else torch.from_numpy(self.mean.copy()),
                "graph": self.graph.to_dict(), "knn": self.knn,
                "topk": net(self.topk), "sdt": net(self.sdt),
                # plain JSON types only, so that the file loads with torch.load(weights_only=True)
                "meta": json.loads(json.dumps(self.meta, default=str))}

    def save(self, path: str) -> None:
        """Write the model file atomically (a temporary file renamed into place)."""
        import os
        import tempfile

        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pt")
        os.close(fd)
        try:
            torch.save(self.state(), tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @classmethod
    def from_state(cls, state: dict, device: str = "auto") -> "ClusteringPipeline":
        from models import LGCN, SDT, PivotGAT, TopKPredictor

        classes = {"TopKPredictor": TopKPredictor, "SDT": SDT, "LGCN": LGCN, "PivotGAT": PivotGAT}

        def net(d: dict | None) -> torch.nn.Module | None:
            if d is None:
                return None
            m = classes[d["class"]](**d["config"])
            m.load_state_dict(d["state_dict"])
            return m

        mean = state.get("mean")
        return cls(None if mean is None else mean.numpy(), GraphConfig(**state["graph"]), net(state.get("topk")),
                   net(state.get("sdt")), knn=state.get("knn"),
                   device=device, meta=state.get("meta"))

    @classmethod
    def load(cls, path: str, device: str = "auto") -> "ClusteringPipeline":
        """Load a model file written by :meth:`save` (``export.py``). Raises :class:`~clustering.io.InputError`
        with a one-line message for a missing, truncated, foreign or incompatible file."""
        from .io import InputError, check_model_file

        check_model_file(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InputError(f"{path}: not a readable model file ({type(exc).__name__}); truncated or not a "
                             f"file written by export.py") from None
        if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
            raise InputError(f"{path}: not a {MODEL_FORMAT} file (write one with export.py)")
        if state.get("version") != MODEL_VERSION:
            raise InputError(f"{path}: model file version {state.get('version')} is not supported by this code "
                             f"(version {MODEL_VERSION}); re-export it with this version's export.py")
        try:
            return cls.from_state(state, device=device)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{path}: model file does not match this code's networks: {first}") from None
