"""The inference pipeline, one implementation for the evaluation callback, ``cluster.py``, the benchmarks and
library users (METHOD.md section 1):

    preprocess -> kNN -> Top-K prediction -> Top-K Jaccard -> SDT refinement -> pruning -> Infomap

:class:`GraphConfig` holds every non-learned choice; :func:`refine_and_cluster` runs the graph half from a kNN graph
and (optionally) predicted ``k`` and SDT pair probabilities; :func:`predict_k` / :func:`predict_pairs` run the two
networks in batches over nodes.
"""
from __future__ import annotations

import inspect
import json
import math
import re
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Literal, get_args, get_origin, get_type_hints

import numpy as np
import torch
from tqdm.auto import tqdm

from .edges import TRANSFORMS, early_stop_mask, edge_prob, plain_jaccard, topk_jaccard
from .mapequation import infomap_cluster, knn_edges
from .subgraphs import as_tensor, gather_subgraphs

__all__ = ["GraphConfig", "graph_fields", "add_graph_arguments", "graph_from_args", "parse_graph_value",
           "combine_edges", "edge_weights", "refine_and_cluster", "pairs_to_score", "predict_k", "predict_pairs", "Timer", "check_state",
           "resolve_device"]

Transform = Literal["sigmoid", "exp", "cosine"]
Jaccard = Literal["topk", "all", "plain", "none"]
Combine = Literal["product", "mean", "sdt", "jaccard"]
# the allowed values, one list per field: the Literal types above
TRANSFORM_NAMES: tuple[str, ...] = get_args(Transform)
JACCARDS: tuple[str, ...] = get_args(Jaccard)
COMBINES: tuple[str, ...] = get_args(Combine)
if set(TRANSFORM_NAMES) != set(TRANSFORMS):
    raise ImportError("GraphConfig's transforms and clustering.edges.TRANSFORMS differ")
MAX_K = 1024          # neighbours per face a model may ask for (the project's models use 80)
MAX_SEED = 2**31 - 2  # Infomap takes seed + 1 as a 32-bit integer
MAX_TRIALS = 100      # Infomap trials (each one a full run)


@dataclass
class GraphConfig:
    """Non-learned settings of the graph half. Every value is checked when the object is made (``__post_init__``:
    :meth:`check`), so a config that cannot run is refused where it is written (a model file, the callback's
    ``graph`` block, an ``export.py`` flag, a benchmark override), not half-way through a run.

    Attributes:
        k: neighbours per face in the kNN graph (self included).
        transform: edge probability from distance, ``"sigmoid"`` (this method), ``"exp"`` (FC-ESER) or
            ``"cosine"`` (the similarity itself, plain kNN + Infomap).
        jaccard: ``"topk"`` (per-node k; all K when no k is given), ``"all"`` (all K neighbours, ignore k),
            ``"plain"`` (Ada-NETS count Jaccard) or ``"none"`` (the raw edge probability).
        combine: how the SDT pair probability ``q`` and the Jaccard probability ``p`` make the edge weight
            (:func:`combine_edges`): ``"product"`` (``p * q``), ``"mean"`` (``(p + q) / 2``), ``"sdt"`` (``q``),
            ``"jaccard"`` (``p``).
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
    transform: Transform = "sigmoid"
    jaccard: Jaccard = "topk"
    combine: Combine = "product"
    threshold: float = 0.0
    early_stop: bool = False
    edge_recall: float | None = None
    seed: int = 0
    num_trials: int = 1

    def __post_init__(self) -> None:
        self.check()

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        """Raise ``ValueError`` naming the first field whose value this code cannot run (type or range)."""

        def integer(name: str, lo: int, hi: int) -> None:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ValueError(f"graph {name} must be an integer in {lo}..{hi}, got {v!r}")

        def real(name: str, v) -> None:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ValueError(f"graph {name} must be a finite number, got {v!r}")

        integer("k", 1, MAX_K)
        integer("seed", 0, MAX_SEED)
        integer("num_trials", 1, MAX_TRIALS)
        for name, (_, allowed) in graph_fields().items():
            if allowed and getattr(self, name) not in allowed:
                raise ValueError(f"unknown graph {name} {getattr(self, name)!r} ({', '.join(allowed)})")
        real("threshold", self.threshold)
        if not isinstance(self.early_stop, bool):
            raise ValueError(f"graph early_stop must be true or false, got {self.early_stop!r}")
        if self.edge_recall is not None:
            real("edge_recall", self.edge_recall)


def graph_fields() -> dict[str, tuple[type, tuple | None]]:
    """``{field: (type, allowed values or None)}`` of :class:`GraphConfig`, read from its annotations: ``type`` is
    ``str`` for a ``Literal`` field (its values are the allowed ones) and the non-``None`` type of an optional one."""
    out = {}
    for name, hint in get_type_hints(GraphConfig).items():
        if get_origin(hint) is Literal:
            out[name] = (str, get_args(hint))
        else:
            args = [a for a in get_args(hint) if a is not type(None)]  # float | None -> float
            out[name] = (args[0] if args else hint, None)
    return out


def graph_field_help() -> dict[str, str]:
    """One line of help per :class:`GraphConfig` field, from the ``Attributes:`` section of its docstring."""
    text = (GraphConfig.__doc__ or "").split("Attributes:", 1)[-1]
    parts = re.split(r"^\s{8}(\w+): ", text, flags=re.M)[1:]
    return {name: " ".join(body.split()).replace("``", "") for name, body in zip(parts[::2], parts[1::2])}


def parse_graph_value(name: str, text: str):
    """The value of :class:`GraphConfig` field ``name`` written as ``text`` (``"true"``/``"false"`` for a flag,
    ``"none"`` for ``None`` in an optional number; a text field keeps its text: ``jaccard=none`` is the Jaccard
    variant "none"). Raise ``ValueError`` for an unknown field or a value of the wrong kind."""
    fields = graph_fields()
    if name not in fields:
        raise ValueError(f"unknown graph setting {name!r} ({', '.join(fields)})")
    kind, allowed = fields[name]
    if kind is str:
        return text
    if text.lower() == "none":
        return None
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"graph {name} must be true or false, got {text!r}")
        return text.lower() == "true"
    return kind(text)


def add_graph_arguments(parser, exclude: tuple[str, ...] = ()) -> None:
    """One ``--field-name`` option per :class:`GraphConfig` field (but ``exclude``), its type, choices, default
    and help taken from the dataclass: flags are ``--early-stop`` / ``--no-early-stop``. Read them back with
    :func:`graph_from_args`."""
    import argparse

    defaults, helps = GraphConfig().to_dict(), graph_field_help()
    group = parser.add_argument_group("graph settings (GraphConfig)")
    for name, (kind, allowed) in graph_fields().items():
        if name in exclude:
            continue
        flag = "--" + name.replace("_", "-")
        text = helps.get(name, "").replace("%", "%%") + " (default: %(default)s)"
        if kind is bool:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=defaults[name],
                               help=text)
        else:
            group.add_argument(flag, dest=name, type=kind, choices=allowed, default=defaults[name], help=text)


def graph_from_args(args, **values) -> GraphConfig:
    """The :class:`GraphConfig` of parsed :func:`add_graph_arguments` options; ``values`` give the excluded fields
    (or override). Raises ``ValueError`` for a value out of range."""
    given = {name: getattr(args, name) for name in graph_fields() if hasattr(args, name)}
    return GraphConfig(**{**given, **values})


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
    """Edge probability ``(N, K)`` aligned with ``nbrs`` by ``cfg.jaccard`` / ``cfg.transform`` (both checked, also
    where the variant does not use the transform)."""
    if cfg.transform not in TRANSFORM_NAMES:
        raise ValueError(f"unknown transform {cfg.transform!r} ({', '.join(TRANSFORM_NAMES)})")
    if cfg.jaccard == "topk":
        return topk_jaccard(nbrs, sims, k, transform=cfg.transform)
    if cfg.jaccard == "all":
        return topk_jaccard(nbrs, sims, None, transform=cfg.transform)
    if cfg.jaccard == "plain":
        return plain_jaccard(nbrs, k)
    if cfg.jaccard == "none":
        return edge_prob(sims, cfg.transform)
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
    with timer("infomap"):
        rows, cols, ww = knn_edges(nbrs, w, cfg.threshold)
        return infomap_cluster(nbrs.shape[0], rows, cols, ww, seed=cfg.seed, num_trials=cfg.num_trials)


READS_K: tuple[str, ...] = ("topk", "plain")  # the Jaccard variants that read every face's k


def pairs_to_score(jaccard_prob: np.ndarray, nbrs: np.ndarray, cfg: GraphConfig) -> np.ndarray | None:
    """The pairs whose pair-classifier probability can change what ``cfg`` gives Infomap: ``(N, K)`` bool aligned
    with ``nbrs``, or ``None`` for every pair.

    A pair's weight combines the Jaccard probability ``p`` with a pair probability ``q`` in [0, 1]; a pair counts
    only if that weight can exceed ``cfg.threshold`` for some ``q``: ``p > threshold`` for ``"product"`` (``p q``
    lies between 0 and ``p``; any pair when the threshold is negative), ``(p + 1) / 2 > threshold`` for ``"mean"``,
    no pair for ``"jaccard"`` (``q`` unused) and every pair for ``"sdt"`` and with FC-ESER's edge recall (which reads
    ``q`` of pruned pairs). Self pairs never count (Infomap gets no self loops). Early stopping changes nothing: a
    pair that cannot exceed the threshold stops the walk whatever its ``q``. Every other pair is pruned whatever its
    ``q`` in [0, 1], so any value there (the pipeline gives 0) leaves the clustering exactly as with every pair
    scored."""
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
    need &= nbrs != np.arange(nbrs.shape[0])[:, None]
    return need


def _batches(n: int, batch_size: int, progress: bool, desc: str):
    return tqdm(range(0, n, batch_size), desc=desc, disable=not progress, unit="batch")


@torch.inference_mode()
def project_faces(model: torch.nn.Module, xt: torch.Tensor, batch_size: int = 256,
                  faces: torch.Tensor | None = None) -> torch.Tensor:
    """``model.embed.project`` of every face, ``(N, d)``, on the device of ``xt``, computed in chunks (with
    ``faces``, of those faces only: the other rows are left uninitialised).

    Part of the networks' token embedding depends on one face only: inference computes it once per face and
    gathers it per (centre, neighbour) pair (see :class:`models.NeighbourEmbedding`)."""
    chunk = 64 * batch_size
    if faces is None:
        return torch.cat([model.embed.project(xt[i:i + chunk]) for i in range(0, xt.shape[0], chunk)])
    table = xt.new_empty(xt.shape[0], model.embed.d_model)
    faces = faces.to(xt.device)
    for i in range(0, faces.shape[0], chunk):
        table[faces[i:i + chunk]] = model.embed.project(xt[faces[i:i + chunk]])
    return table


def _face_table(model: torch.nn.Module, xt: torch.Tensor, nb: torch.Tensor, rows: torch.Tensor | None,
                batch_size: int) -> torch.Tensor:
    """:func:`project_faces` of the faces the centres ``rows`` (all when None) see."""
    if rows is None or 2 * rows.shape[0] >= nb.shape[0]:
        return project_faces(model, xt, batch_size)
    return project_faces(model, xt, batch_size, faces=torch.unique(nb[rows]))


def _rows(rows: np.ndarray | None, n: int) -> torch.Tensor:
    if rows is None:
        return torch.arange(n)
    rows = as_tensor(rows, torch.int64)
    if rows.dim() != 1 or (len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= n)):
        raise ValueError(f"rows must be 1-D ids in 0..{n - 1}")
    return rows


@torch.inference_mode()
def predict_k(model: torch.nn.Module, x: np.ndarray | torch.Tensor, nbrs: np.ndarray, sims: np.ndarray, *,
              rows: np.ndarray | None = None, batch_size: int = 256, device: str | torch.device = "cpu",
              progress: bool = False) -> np.ndarray:
    """Predicted Top-K size ``k_i`` in 1..K for every face, ``(N,)`` int64 (model in eval mode, batched); with
    ``rows`` (R,), for those centres only, ``(R,)``."""
    model.eval()
    device = torch.device(device)
    xt = as_tensor(x, torch.float32).to(device)
    nb = as_tensor(nbrs, torch.int64)
    st = as_tensor(sims, torch.float32)
    centres = _rows(rows, nb.shape[0])
    table = _face_table(model, xt, nb, None if rows is None else centres, batch_size)
    out = np.empty(centres.shape[0], dtype=np.int64)
    for start in _batches(centres.shape[0], batch_size, progress, "Top-K"):
        idx = centres[start:start + batch_size]
        feats, s = gather_subgraphs(xt, nb, st, idx)
        proj = table[nb[idx].to(device)]  # (B, K, d): the per-face part of the token embedding
        out[start:start + len(idx)] = model.predict_k(feats, s, proj=proj).cpu().numpy()
    return out


@torch.inference_mode()
def predict_pairs(model: torch.nn.Module, x: np.ndarray | torch.Tensor, nbrs: np.ndarray, sims: np.ndarray,
                  k: np.ndarray, *, rows: np.ndarray | None = None, widths: np.ndarray | None = None,
                  batch_size: int = 256, device: str | torch.device = "cpu", progress: bool = False) -> np.ndarray:
    """Pair-classifier (SDT or GNN) probability that ``(i, nbrs[i, s])`` share an identity, ``(N, K)`` float32
    (model in eval mode). ``k`` (N,): the predicted Top-K sizes the SDT reads. ``rows`` (R,): score those centres
    only; ``widths`` (R,) (or (N,) without ``rows``): of each, its first ``widths`` neighbours only (an SDT then
    skips the other tokens in its last block); the pairs not scored get 0 (:func:`pairs_to_score` says which pairs
    a graph rule needs). A network with a token ``embed`` gets its per-face part precomputed (``proj``); one with a
    ``pivot_u`` (the GNN baselines) gets each batch's pivot-subgraph links ``adj``
    (:func:`clustering.graph.pivot_adjacency` on the whole kNN graph).

    Beyond an SDT's window the value is 1 (no vote), so the Jaccard weight alone decides those edges: zeroing them
    instead cuts identities larger than the window apart (measured on lfw-dlib test, whose largest identity has
    236 faces: pairwise F 0.75 instead of 0.94 with a window of 32)."""
    model.eval()
    device = torch.device(device)
    xt = as_tensor(x, torch.float32).to(device)
    pivot_u = getattr(model, "pivot_u", None)
    if pivot_u:
        from .graph import pivot_adjacency  # PyG: imported only for the GNNs
    window = getattr(model, "window", None)  # an SDT with a window scores (and needs) the first W neighbours only
    nb_all = as_tensor(nbrs, torch.int64)
    nb = nb_all[:, :window]
    st = as_tensor(sims, torch.float32)[:, :window]
    kt = as_tensor(k, torch.int64)
    centres = _rows(rows, nb.shape[0])
    width = None
    if widths is not None:
        width = as_tensor(widths, torch.int64).clamp(1, nb.shape[1])
        if width.shape != centres.shape:
            raise ValueError(f"widths must have shape {tuple(centres.shape)}, got {tuple(width.shape)}")
    table = _face_table(model, xt, nb, None if rows is None else centres, batch_size) \
        if hasattr(model, "embed") else None
    out = np.ones(nbrs.shape, dtype=np.float32)  # 1 beyond the window: no SDT vote, the Jaccard weight decides
    if rows is not None or widths is not None:
        out[:, : nb.shape[1]] = 0.0  # pairs not scored
    # centres in order of k, so that each batch's Top-k attention mask needs only a small partial top-k (dense
    # attention: in order of width, so that each batch's last block computes few tokens)
    key = width if width is not None and not getattr(model, "use_topk_mask", True) else kt[centres]
    order = torch.argsort(key, stable=True)
    centres = centres[order]
    width = None if width is None else width[order]
    takes_width = "width" in inspect.signature(model.forward).parameters
    for start in _batches(centres.shape[0], batch_size, progress, "SDT"):
        idx = centres[start:start + batch_size]
        feats, s = gather_subgraphs(xt, nb, st, idx)
        inputs = {}
        if table is not None:
            inputs["proj"] = table[nb[idx].to(device)]  # (B, K, d): the per-face part of the token embedding
        if pivot_u:
            inputs["adj"] = pivot_adjacency(nb_all, idx, pivot_u).to(device)  # (B, K, K)
        if width is not None and takes_width:
            inputs["width"] = int(width[start:start + batch_size].max())
        logits = model(feats, s, kt[idx].to(device), **inputs)  # (B, W)
        prob = torch.sigmoid(logits.float()).cpu()
        if width is not None:  # each row's pairs past its width: not scored
            prob.masked_fill_(torch.arange(prob.size(1)) >= width[start:start + batch_size, None], 0.0)
        out[idx.numpy(), : prob.size(1)] = prob.numpy()
    return out


MODEL_FORMAT = "facecluster-model"
MODEL_VERSION = 1
# the classes each network slot may hold: the "sdt" slot is the pair classifier (the SDT or a GNN baseline)
NETWORKS = {"topk": ("TopKPredictor",), "sdt": ("SDT", "LGCN", "PivotGAT")}
STATE_KEYS = ("format", "version", "mean", "graph", "knn", "topk", "sdt", "meta")


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a CUDA device, else ``"cpu"``; a CUDA device torch does not see is
    an :class:`~clustering.io.InputError` (not a model problem)."""
    from .io import InputError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"device {device!r}: not a torch device (auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r}: torch sees no CUDA device (CPU-only torch build, or no GPU or "
                             f"driver); use the CPU (--device cpu or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


def check_state(state: dict) -> None:
    """Validate every field of a model file's state (after its format and version) before anything is built from
    it: raise ``ValueError`` naming the field. A model file must never run to the end and write garbage (a NaN
    mean, weights with NaN) or fail half-way (graph k = 0, an unknown transform or kNN method). A network's
    ``config`` is checked by building its dataclass (:func:`models.config.config_from_dict`: unknown or missing
    fields, values out of range), the error naming the slot and the field."""
    import models
    from models.config import config_from_dict

    from .knn import check_knn_options

    unknown = sorted(set(state) - set(STATE_KEYS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}")
    mean = state.get("mean")
    if mean is not None:
        if not isinstance(mean, torch.Tensor) or mean.ndim != 1 or not mean.is_floating_point() or mean.numel() == 0:
            raise ValueError("mean must be a non-empty 1-D float tensor")
        if not torch.isfinite(mean).all():
            raise ValueError("mean has NaN or inf values")
        if float(mean.double().norm()) > 1.0 + 1e-3:  # a mean of unit vectors
            raise ValueError(f"mean has norm {float(mean.double().norm()):.3g}; the mean of unit vectors is at most 1")
    graph = state.get("graph")
    if not isinstance(graph, dict):
        raise ValueError("graph settings missing")
    fields = set(GraphConfig.__dataclass_fields__)
    if set(graph) - fields:
        raise ValueError(f"unknown graph setting(s) {', '.join(map(repr, sorted(set(graph) - fields)))}")
    cfg = GraphConfig(**graph)  # checked when made
    if state.get("knn") is not None:
        check_knn_options(state["knn"])
    for slot, allowed in NETWORKS.items():
        net = state.get(slot)
        if net is None:
            continue
        if not isinstance(net, dict) or set(net) != {"class", "config", "state_dict"}:
            raise ValueError(f"{slot} network must hold class, config and state_dict")
        if net["class"] not in allowed:
            raise ValueError(f"{slot} network is a {net['class']!r}, expected {' or '.join(allowed)}")
        config, weights = net["config"], net["state_dict"]
        if not isinstance(config, dict) or not isinstance(weights, dict):
            raise ValueError(f"{slot} network config and state_dict must be dicts")
        try:
            config = config_from_dict(getattr(models, net["class"]).config_class, config)
        except ValueError as exc:
            raise ValueError(f"{slot} network config: {exc}") from None
        if not all(isinstance(w, torch.Tensor) for w in weights.values()):
            raise ValueError(f"{slot} network state_dict holds non-tensors")
        bad = [name for name, w in weights.items() if w.is_floating_point() and not torch.isfinite(w).all()]
        if bad:
            raise ValueError(f"{slot} network weights have NaN or inf values ({', '.join(bad[:3])})")
        if mean is not None and config.feat_dim != mean.numel():
            raise ValueError(f"{slot} network takes features of dimension {config.feat_dim}, the mean has "
                             f"{mean.numel()}")
        if config.k < cfg.k:
            raise ValueError(f"{slot} network handles k = {config.k} neighbours, the graph asks for {cfg.k}")
    if state.get("meta") is not None and not isinstance(state["meta"], dict):
        raise ValueError("meta must be a dict")


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
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (:func:`resolve_device`).
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
        self.device = resolve_device(device)
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

    def _knn(self, x: np.ndarray, k: int | None, timer: Timer, progress: bool) -> tuple[np.ndarray, np.ndarray]:
        from .knn import knn_search

        with timer("knn"):
            return knn_search(x, min(k or self.graph.k, x.shape[0]), progress=progress, **self.knn_options())

    def knn_options(self) -> dict:
        """Keyword arguments for :func:`clustering.knn.knn_search` / ``knn_index``: the model's kNN settings on
        this pipeline's device."""
        return {"device": self.device if self.device.startswith("cuda") else "cpu", **self.knn}

    def predict(self, x: np.ndarray, nbrs: np.ndarray, sims: np.ndarray, timer: Timer | None = None,
                progress: bool = False) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Run the networks on every face of a kNN graph: ``(k (N,) or None, pair_prob (N, K) or None)``, for
        any graph rule (the evaluation callback, ``export.py --tune``, :meth:`graph_data`)."""
        k, pair_prob, _ = self.scores(x, nbrs, sims, timer, progress)
        return k, pair_prob

    def scores(self, x: np.ndarray, nbrs: np.ndarray, sims: np.ndarray, timer: Timer | None = None,
               progress: bool = False, *, rule: GraphConfig | None = None
               ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """``(k, pair_prob, jaccard_prob)`` of a kNN graph. Without ``rule`` the networks score every face (no
        ``jaccard_prob``: None). With ``rule`` they score only what that graph rule can use, and the same
        clustering follows (:func:`pairs_to_score`): the Top-K predictor runs on every face when the rule's Jaccard
        reads k, else only on the centres the pair classifier scores (``k`` is then None); the pair classifier
        scores the pairs that can pass the threshold (:func:`pairs_to_score`; in practice the centres with one,
        each up to its last such neighbour; the other pairs get 0).
        ``jaccard_prob`` is the rule's Jaccard probability, computed on the way."""
        timer = timer or Timer()
        n, K = nbrs.shape
        run_k = dict(batch_size=self.batch_size, device=self.device, progress=progress)
        k = pair_prob = p = None
        if self.topk is not None and (rule is None or rule.jaccard in READS_K):
            with timer("topk"):
                k = predict_k(self.topk, x, nbrs, sims, **run_k)
        rows = widths = None
        if rule is not None:
            with timer("jaccard"):
                p = jaccard_weights(nbrs, sims, k, rule)
            need = pairs_to_score(p, nbrs, rule) if self.sdt is not None else None
            if need is not None:
                rows = np.flatnonzero(need.any(axis=1))
                widths = K - np.argmax(need[rows, ::-1], axis=1)  # up to the last pair needed, self included
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
            pair_prob = predict_pairs(self.sdt, x, nbrs, sims, k_in, rows=rows, widths=widths, **run_k)
        return k, pair_prob, p

    def run_graph(self, x: np.ndarray, nbrs: np.ndarray, sims: np.ndarray, timer: Timer | None = None,
                  progress: bool = False) -> np.ndarray:
        """Networks + graph half on a ready kNN graph, the networks scoring only what the model's graph rule can
        use (:meth:`scores`). Returns ``(N,)`` cluster ids."""
        timer = timer or Timer()
        k, pair_prob, p = self.scores(x, nbrs, sims, timer, progress, rule=self.graph)
        return refine_and_cluster(nbrs, sims, self.graph, k=k, pair_prob=pair_prob, jaccard_prob=p, timer=timer)

    def cluster(self, feats, timer: Timer | None = None, progress: bool = False) -> tuple[np.ndarray, dict]:
        """Cluster raw ``(N, d)`` embeddings (checked by the caller): ``(labels (N,) int64, info)``.

        Identical faces (rows equal after preprocessing) are one node of the graph, expanded afterwards, so they
        always share a cluster: as separate nodes a predicted ``k_i = 1`` (or a threshold) could cut the edge
        between them. ``info``: ``k`` (neighbours used: the model's K, capped at the number of distinct faces) and
        ``n_distinct``."""
        from .preprocess import preprocess, unique_rows

        timer = timer or Timer()
        with timer("preprocess"):
            x = preprocess(feats, self.mean)
            first, inverse = unique_rows(x)
            if len(first) < len(x):
                x = x[first]
        k = min(self.graph.k, x.shape[0])
        nbrs, sims = self._knn(x, k, timer, progress)
        labels = self.run_graph(x, nbrs, sims, timer, progress)
        return labels[inverse], {"k": int(k), "n_distinct": int(len(first))}

    def __call__(self, feats: np.ndarray, timer: Timer | None = None, progress: bool = False) -> np.ndarray:
        """Cluster raw ``(N, d)`` embeddings; returns ``(N,)`` int64 cluster ids in input order.

        Any N >= 1 works: a collection smaller than K is clustered with K = N; identical faces share a cluster.
        Raises :class:`~clustering.io.InputError` for an empty or wrongly shaped array, a dimension other than the
        model's, and rows with NaN/inf or all zeros."""
        return self.cluster(self.checked(feats), timer, progress)[0]

    def checked(self, feats: np.ndarray) -> np.ndarray:
        """``feats`` as an array, after the input checks of :meth:`__call__` (:class:`~clustering.io.InputError`)."""
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
        """A plain dict (tensors, numbers, strings) holding everything inference needs."""

        def net(m: torch.nn.Module | None) -> dict | None:
            if m is None:
                return None
            return {"class": type(m).__name__, "config": asdict(m.config),  # the dataclass's fields, flat
                    "state_dict": {k: v.detach().cpu() for k, v in m.state_dict().items()}}

        return {"format": MODEL_FORMAT, "version": MODEL_VERSION,
                "mean": None if self.mean is None else torch.from_numpy(self.mean.copy()),
                "graph": self.graph.to_dict(), "knn": self.knn,
                "topk": net(self.topk), "sdt": net(self.sdt),
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
        """The pipeline of a :meth:`state` (checked by :func:`check_state` when read from a file). A network is
        rebuilt as ``Class(Class.config_class(**config))``; fields a file leaves out take their defaults."""
        import models
        from models.config import config_from_dict

        def net(d: dict | None) -> torch.nn.Module | None:
            if d is None:
                return None
            net_cls = getattr(models, d["class"])  # a class name of NETWORKS (check_state)
            m = net_cls(config_from_dict(net_cls.config_class, d["config"]))
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
        device = resolve_device(device)  # a missing GPU is reported as such, not as a bad model file
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
            check_state(state)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{path}: invalid model file: {' '.join(str(exc).split())}") from None
        try:
            return cls.from_state(state, device=device)
        except InputError:
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{path}: model file does not match this code's networks: {first}") from None
