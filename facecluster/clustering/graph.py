"""The kNN graph and its per-node subgraphs in PyTorch Geometric's terms, converted with PyG's own utilities.

The project keeps the kNN graph as dense ``nbrs (N, K)`` / ``sims (N, K)`` arrays (every face has exactly K
neighbours, self first: the fastest layout for the Jaccard and the networks). These functions give the same graph
as PyG objects, so that PyG layers plug in, and convert back:

* :func:`knn_data`: a :class:`torch_geometric.data.Data` with ``x (N, d)``, ``edge_index (2, N K)`` and
  ``edge_attr (N K,)`` = cosine similarity. Edge ``e = i K + s`` runs from neighbour ``j = nbrs[i, s]`` (source,
  ``edge_index[0]``) to the query face ``i`` (target, ``edge_index[1]``): PyG's ``source_to_target`` flow, as
  ``torch_cluster.knn_graph`` builds it, so a ``MessagePassing`` layer aggregates, at every face, over its K
  neighbours. The self pair ``s = 0`` is kept (``torch_geometric.utils.remove_self_loops`` drops it).
* :func:`knn_arrays`: back to ``(nbrs, sims)`` with ``torch_geometric.utils.to_dense_batch`` (edges grouped by
  their target face).
* :func:`pivot_adjacency`: L-GCN's instance pivot subgraphs (Wang et al. 2019, "Linkage based face clustering via
  graph convolution network") of a batch of centres, as a dense ``(B, K, K)`` adjacency: the nodes of centre c's
  subgraph are its K neighbours; nodes a and b are linked when b is among the ``u`` nearest neighbours of a (or a
  among b's) in the *whole* kNN graph (:mod:`models.pivot`, beside the networks that read it; re-exported here).
* :func:`subgraph_batch`: dense per-centre subgraphs ``(B, K, ...)`` + adjacency -> one
  :class:`torch_geometric.data.Batch` (node ``b K + a`` is node a of subgraph b; ``edge_index`` with those offsets,
  from ``torch_geometric.utils.dense_to_sparse``); :func:`dense_subgraphs` is the way back
  (``to_dense_batch`` / ``to_dense_adj``). :func:`subgraph_batch` is :mod:`models.pivot`'s, re-exported.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.utils import to_dense_adj, to_dense_batch

from facecluster.models.pivot import pivot_adjacency, subgraph_batch

from .subgraphs import as_tensor

__all__ = ["knn_data", "knn_arrays", "pivot_adjacency", "subgraph_batch", "dense_subgraphs"]


def knn_data(x: np.ndarray | Tensor, nbrs: np.ndarray | Tensor, sims: np.ndarray | Tensor, **attrs) -> Data:
    r"""The kNN graph as a PyG :class:`~torch_geometric.data.Data`.

    .. math::
        \mathcal{E} = \{(j \to i) : j = \mathrm{nbrs}[i, s],\ s = 0..K-1\},\qquad
        \mathrm{edge\_attr}_{(j \to i)} = a_{ij} = \mathrm{sims}[i, s]

    Args:
        x: ``(N, d)`` preprocessed features (shared with a torch tensor input; numpy arrays are viewed, not copied).
        nbrs: ``(N, K)`` int64 neighbour ids, self first.
        sims: ``(N, K)`` float32 cosine similarities aligned with ``nbrs``.
        **attrs: more node- or graph-level attributes (``y`` labels, ``k_star``, ...), given to ``Data``.

    Returns:
        ``Data(x, edge_index (2, N K) int64, edge_attr (N K,) float32, **attrs)``, edges in row-major order of
        ``nbrs`` (edge ``i K + s`` is ``nbrs[i, s] -> i``).
    """
    nb = as_tensor(nbrs, torch.int64)
    n, k = nb.shape
    target = torch.arange(n).repeat_interleave(k)                          # (N K,) i
    edge_index = torch.stack([nb.reshape(-1), target])                     # (2, N K): j -> i
    return Data(x=as_tensor(x, torch.float32), edge_index=edge_index,
                edge_attr=as_tensor(sims, torch.float32).reshape(-1), num_nodes=n, **attrs)


def knn_arrays(data: Data) -> tuple[Tensor, Tensor]:
    """``(nbrs (N, K), sims (N, K))`` of a graph built by :func:`knn_data` (every face with the same number K of
    incoming edges, grouped by target): ``to_dense_batch`` over the edges with their target face as batch vector."""
    target = data.edge_index[1]
    nbrs, mask = to_dense_batch(data.edge_index[0], target, fill_value=-1, batch_size=data.num_nodes)
    if not bool(mask.all()):
        raise ValueError("not a kNN graph: faces have different numbers of neighbours")
    sims, _ = to_dense_batch(data.edge_attr, target, batch_size=data.num_nodes)
    return nbrs, sims


def dense_subgraphs(batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
    """Inverse of :func:`subgraph_batch`: ``(x (B, K, F), mask (B, K), adj (B, K, K))`` by ``to_dense_batch``
    and ``to_dense_adj`` (``mask`` is False where a subgraph has fewer than K nodes)."""
    x, mask = to_dense_batch(batch.x, batch.batch)
    adj = to_dense_adj(batch.edge_index, batch.batch, edge_attr=batch.edge_weight, max_num_nodes=x.size(1))
    return x, mask, adj
