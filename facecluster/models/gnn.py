"""GNN pair classifiers on a centre's pivot subgraph (the learned GNN baselines of the paper's Table 1).

Same interface as :class:`models.SDT` (a centre's K neighbours in, K same-identity logits out), so that the pair
module, ``export.py``, the model file, ``cluster.py`` and the benchmarks take them unchanged; they also need the
subgraph's links, ``adj (B, K, K)`` from :func:`models.pivot.pivot_adjacency` (``pivot_u`` tells the callers
which u), and ignore the predicted Top-K size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv

from .config import check_config_type, check_divisible, check_dropout, check_flag, check_positive
from .pivot import subgraph_batch

__all__ = ["LGCN", "LGCNConfig", "PivotGAT", "PivotGATConfig", "PivotGNN"]


@dataclass(frozen=True)
class LGCNConfig:
    """Architecture of an :class:`LGCN`, and the fields every :class:`PivotGNN` has (every value checked when the
    config is made).

    Attributes:
        feat_dim: feature width F.
        k: K of the training graph (recorded; any K works at inference).
        hidden: width of every layer.
        num_layers: graph convolutions (L-GCN has 4).
        pivot_u: u, the neighbours per node that make links (L-GCN: 10); below ``k`` (a node has k - 1 other
            neighbours). At inference a collection of K <= u faces (K is capped at their number) links each node to
            its K - 1 others.
        dropout: dropout after every convolution, in [0, 1).
        pivot_sims: append the scaled cosine to the pivot to the node features (False: L-GCN's features).
    """

    feat_dim: int
    k: int = 80
    hidden: int = 64
    num_layers: int = 4
    pivot_u: int = 10
    dropout: float = 0.0
    pivot_sims: bool = False

    def __post_init__(self) -> None:
        check_positive(self, "feat_dim", "k", "hidden", "num_layers", "pivot_u")
        if self.pivot_u >= self.k:
            raise ValueError(f"{type(self).__name__}.pivot_u must be below k = {self.k} (a node's links come from its "
                             f"pivot_u nearest among its k - 1 other neighbours), got {self.pivot_u}")
        check_dropout(self)
        check_flag(self, "pivot_sims")


@dataclass(frozen=True)
class PivotGATConfig(LGCNConfig):
    """Architecture of a :class:`PivotGAT`: the fields of :class:`LGCNConfig` (two layers by default) and

    Attributes:
        heads: attention heads per layer (``hidden`` must be divisible by it).
    """

    num_layers: int = 2
    heads: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "heads")
        check_divisible(self, "hidden", self.heads, "heads")


class PivotGNN(nn.Module):
    r"""A pair classifier over the instance pivot subgraph of each centre (L-GCN, Wang et al. 2019).

    The subgraph of centre c has its K neighbours :math:`v_0 = c, v_1, \dots, v_{K-1}` as nodes, linked when one is
    among the other's ``pivot_u`` nearest neighbours in the whole kNN graph (``adj``). Node features are relative to
    the pivot, :math:`h^{(0)}_a = x_{v_a} - x_c` (with ``pivot_sims`` also :math:`\sqrt{F}\, s_a`, the cosine to the
    pivot, which a linear layer cannot read off the difference); ``num_layers`` graph convolutions
    (:meth:`make_conv`, a PyG layer run on the subgraphs as one :class:`~torch_geometric.data.Batch`, with
    :meth:`edge_features` as edge input), each followed by PReLU and dropout, then a per-node MLP classifier
    :math:`z_a = w_2^\top \mathrm{PReLU}(W_1 h_a + b_1) + b_2`: the logit that :math:`v_a` has the centre's identity
    ("linked to the pivot"). Permutation-equivariant in the nodes other than the centre (no rank input: only the
    features, the pivot similarity and the links).

    Args:
        config (LGCNConfig): the architecture (a subclass's own config: :class:`PivotGATConfig`).

    Shapes:
        x (B, K, F) preprocessed features, self first; sims (B, K) (read with ``pivot_sims``); k_pred (B,) (unused);
        adj (B, K, K) bool -> logits (B, K).
    """

    config_class: type[LGCNConfig] = LGCNConfig  # the exact config type each subclass takes

    def __init__(self, config: LGCNConfig) -> None:
        super().__init__()
        check_config_type(self, config)
        self.config = config  # rebuilds the module: type(self)(config)
        self.k = config.k
        self.pivot_u = config.pivot_u
        self.pivot_sims = config.pivot_sims
        hidden, num_layers = config.hidden, config.num_layers
        in_dim = config.feat_dim + int(config.pivot_sims)
        self.convs = nn.ModuleList(self.make_conv(in_dim if l == 0 else hidden, hidden)
                                   for l in range(num_layers))
        self.acts = nn.ModuleList(nn.PReLU(hidden) for _ in range(num_layers))
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.PReLU(hidden), nn.Linear(hidden, 1))
        self.reset_parameters()

    def make_conv(self, in_dim: int, out_dim: int) -> nn.Module:
        """One graph convolution ``in_dim -> out_dim`` (subclasses)."""
        raise NotImplementedError

    def edge_features(self, batch) -> Tensor | None:
        """Edge inputs of the convolutions, computed once per forward from the subgraph ``batch`` (none here)."""
        return None

    def reset_parameters(self) -> None:
        """Each layer's own default init; PReLU slopes 0.25."""
        for conv in self.convs:
            conv.reset_parameters()
        for m in [*self.acts, *self.head]:
            m.reset_parameters()

    def forward(self, x: Tensor, sims: Tensor, k_pred: Tensor | None = None, *, adj: Tensor | None = None,
                proj: Tensor | None = None) -> Tensor:
        """Args: x (B, K, F); sims (B, K); k_pred ignored; adj (B, K, K) bool pivot-subgraph links (required);
        proj ignored. Returns pair logits (B, K)."""
        if adj is None:
            raise ValueError(f"{type(self).__name__} needs the pivot-subgraph links adj (B, K, K): give the "
                             f"datamodule pivot_u={self.pivot_u}")
        B, K, F = x.shape
        h0 = x - x[:, :1]  # (B, K, F) relative to the pivot
        if self.pivot_sims:
            h0 = torch.cat([h0, sims.to(x.dtype).unsqueeze(-1) * F**0.5], dim=-1)  # (B, K, F + 1)
        batch = subgraph_batch(h0, adj, raw=x)  # nodes b K + a
        h, edge_index, edge_attr = batch.x, batch.edge_index, self.edge_features(batch)  # (B K, F), (2, E)
        for conv, act in zip(self.convs, self.acts):
            h = self.drop(act(conv(h, edge_index, edge_attr)))  # (B K, hidden)
        return self.head(h).view(B, K)  # (B, K)

    def extra_repr(self) -> str:
        return f"k={self.k}, pivot_u={self.pivot_u}"


class LGCN(PivotGNN):
    r"""L-GCN-style linkage classifier: :class:`PivotGNN` with ``GCNConv`` layers,

    .. math::
        H^{(l+1)} = \mathrm{PReLU}\big(\hat D^{-1/2} \hat A \hat D^{-1/2} H^{(l)} W^{(l)}\big),\quad
        \hat A = A + I

    on the pivot subgraph's links A (L-GCN aggregates with the mean :math:`D^{-1} A` and concatenates the node's
    own state; ``GCNConv``'s symmetric normalisation with self loops is the PyG standard).

    Args:
        config (LGCNConfig): the architecture.
    """

    def make_conv(self, in_dim: int, out_dim: int) -> nn.Module:
        return GCNConv(in_dim, out_dim)  # called as conv(h, edge_index, edge_weight=None)


class PivotGAT(PivotGNN):
    r"""Attention GNN baseline: :class:`PivotGNN` with ``GATConv`` layers (Velickovic et al. 2018),

    .. math::
        h_a' = \big\Vert_{m=1}^{M} \sum_{b \in \mathcal{N}(a) \cup \{a\}} \alpha^m_{ab} W^m h_b,\quad
        \alpha^m_{ab} = \mathrm{softmax}_b\,\mathrm{LeakyReLU}\big(a^{m\top} [W^m h_a \Vert W^m h_b \Vert
        W_e^m\, s_{ab}]\big)

    with M = ``heads`` heads of width ``hidden / heads`` concatenated and the edge feature :math:`s_{ab}` the cosine
    similarity of the two faces (``edge_dim=1``; self loops get the mean, PyG's ``fill_value="mean"``).

    Args:
        config (PivotGATConfig): the architecture (``heads`` and the :class:`LGCNConfig` fields).
    """

    config_class = PivotGATConfig

    def __init__(self, config: PivotGATConfig) -> None:
        check_config_type(self, config)
        self.heads = config.heads  # read by make_conv, during the base class's __init__
        super().__init__(config)

    def make_conv(self, in_dim: int, out_dim: int) -> nn.Module:
        return GATConv(in_dim, out_dim // self.heads, heads=self.heads, edge_dim=1)

    def edge_features(self, batch) -> Tensor:
        src, dst = batch.edge_index
        return (batch.raw[src] * batch.raw[dst]).sum(-1, keepdim=True)  # (E, 1) cosine of the two faces
