"""The graph half's settings: :class:`GraphConfig`, one typed definition (``Literal`` fields, checked when made)
that the evaluation callback (``evaluation.graph``), ``export.py`` (:func:`add_graph_arguments`), ``cluster.py``,
the model file and the benchmarks (:func:`parse_graph_value`) all derive their options from."""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Literal, get_args, get_origin, get_type_hints

from .edges import TRANSFORMS

__all__ = ["GraphConfig", "graph_fields", "graph_field_help", "parse_graph_value", "add_graph_arguments",
           "graph_from_args", "TRANSFORM_NAMES", "JACCARDS", "COMBINES"]

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
