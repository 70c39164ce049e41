"""The model file: one ``torch.save`` dict holding everything inference needs (:class:`ClusteringPipeline.save`),
read back with ``weights_only=True`` and checked field by field before anything is built from it."""
from __future__ import annotations

from dataclasses import asdict

import torch

from .graph_config import GraphConfig

__all__ = ["MODEL_FORMAT", "MODEL_VERSION", "NETWORKS", "STATE_KEYS", "check_state", "read_model_file",
           "network_state", "build_network"]

MODEL_FORMAT = "facecluster-model"
MODEL_VERSION = 1
# the classes each network slot may hold: the "sdt" slot is the pair classifier (the SDT or a GNN baseline)
NETWORKS = {"topk": ("TopKPredictor",), "sdt": ("SDT", "LGCN", "PivotGAT")}
STATE_KEYS = ("format", "version", "mean", "graph", "knn", "topk", "sdt", "meta")


def check_state(state: dict) -> None:
    """Validate every field of a model file's state (after its format and version) before anything is built from
    it: raise ``ValueError`` naming the field. A model file must never run to the end and write garbage (a NaN
    mean, weights with NaN) or fail half-way (graph k = 0, an unknown transform or kNN method). A network's
    ``config`` is checked by building its dataclass (:func:`models.config.config_from_dict`: unknown or missing
    fields, values out of range), the error naming the slot and the field."""
    from facecluster import models
    from facecluster.models.config import config_from_dict

    from .knn_config import check_knn_options

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


def read_model_file(path: str) -> dict:
    """The checked state of a model file written by :meth:`ClusteringPipeline.save`. Raises
    :class:`~clustering.errors.InputError` with a one-line message for a missing, truncated, foreign, other-version or
    invalid file."""
    from .errors import InputError
    from .io.files import check_model_file

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
        check_state(state)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: invalid model file: {' '.join(str(exc).split())}") from None
    return state


def network_state(net: torch.nn.Module | None) -> dict | None:
    """A network as the model file stores it: ``{"class", "config" (its dataclass as a dict), "state_dict"}``."""
    if net is None:
        return None
    return {"class": type(net).__name__, "config": asdict(net.config),
            "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}


def build_network(entry: dict | None) -> torch.nn.Module | None:
    """The network of a :func:`network_state` entry (checked by :func:`check_state`): ``Class(Class.config_class(
    **config))``, fields the entry leaves out taking their defaults, then its weights."""
    from facecluster import models
    from facecluster.models.config import config_from_dict

    if entry is None:
        return None
    net_cls = getattr(models, entry["class"])  # a class name of NETWORKS (check_state)
    net = net_cls(config_from_dict(net_cls.config_class, entry["config"]))
    net.load_state_dict(entry["state_dict"])
    return net
