"""A centre's pivot subgraph in plain tensors, what the GNN pair classifiers read (L-GCN, Wang et al. 2019,
"Linkage based face clustering via graph convolution network"):

* :func:`pivot_adjacency`: the instance pivot subgraphs of a batch of centres as a dense ``(B, K, K)`` adjacency:
  the nodes of centre c's subgraph are its K neighbours; nodes a and b are linked when b is among the ``u`` nearest
  neighbours of a (or a among b's) in the *whole* kNN graph. Plain torch.
* :func:`subgraph_batch`: dense per-centre subgraphs ``(B, K, ...)`` + adjacency -> one
  :class:`torch_geometric.data.Batch` (node ``b K + a`` is node a of subgraph b; ``edge_index`` with those offsets,
  from ``torch_geometric.utils.dense_to_sparse``). PyG is imported when it is called, so that importing this module
  (the training batches, inference) does not import PyG.

Both live here, beside the networks that read them, so that ``models/`` imports nothing of ``clustering/``;
:mod:`clustering.graph` re-exports them with the other PyG conversions.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["pivot_adjacency", "subgraph_batch"]


def pivot_adjacency(nbrs: Tensor, idx: Tensor, u: int) -> Tensor:
    r"""L-GCN's instance-pivot-subgraph links for the centres ``idx``, as a dense ``(B, K, K)`` bool adjacency.

    With :math:`v_a = \mathrm{nbrs}[c, a]` the nodes of centre c's subgraph (self first) and :math:`N_u(v)` the u
    nearest neighbours of face v (self excluded) in the whole kNN graph:

    .. math::
        A_{c,ab} = [\,v_b \in N_u(v_a)\ \lor\ v_a \in N_u(v_b)\,]

    (symmetric, no self loops). Vectorised: the ``B K u`` ids of ``N_u(v_a)`` are looked up in each centre's sorted
    node list with one batched ``searchsorted``; no loop over centres or nodes.

    Args:
        nbrs: ``(N, K)`` int64 kNN graph (self first), on the device the result should have.
        idx: ``(B,)`` int64 centres.
        u: neighbours per node that make links (1..K-1).

    Returns:
        ``(B, K, K)`` bool, on the device of ``nbrs``.
    """
    if not 1 <= u < nbrs.size(1):
        raise ValueError(f"u must be in 1..{nbrs.size(1) - 1} (K - 1), got {u}")
    idx = idx.to(nbrs.device)
    nodes = nbrs[idx]                                                      # (B, K) v_a
    B, K = nodes.shape
    their = nbrs[nodes][:, :, 1:u + 1].reshape(B, K * u).contiguous()      # (B, K u) N_u(v_a)
    srt, order = torch.sort(nodes, dim=1)                                  # (B, K)
    pos = torch.searchsorted(srt, their).clamp_(max=K - 1)                 # (B, K u)
    found = srt.gather(1, pos) == their                                    # v in the subgraph
    local = order.gather(1, pos)                                           # (B, K u) its node slot
    b, flat = found.nonzero(as_tuple=True)
    adj = torch.zeros(B, K, K, dtype=torch.bool, device=nbrs.device)
    adj[b, flat // u, local[b, flat]] = True
    adj |= adj.transpose(1, 2).clone()
    adj.diagonal(dim1=1, dim2=2).fill_(False)  # a repeated id (an empty faiss slot) is no link to itself
    return adj


def subgraph_batch(x: Tensor, adj: Tensor, **node_attrs: Tensor) -> Batch:
    """Dense per-centre subgraphs as one PyG :class:`~torch_geometric.data.Batch` (a disjoint union).

    Args:
        x: ``(B, K, F)`` node features of B subgraphs of K nodes.
        adj: ``(B, K, K)`` adjacency (bool or weights; entry ``[b, a, c]`` is the edge ``a -> c``).
        **node_attrs: more ``(B, K, ...)`` node tensors (e.g. ``sims``), flattened to ``(B K, ...)``.

    Returns:
        ``Batch(x (B K, F), edge_index (2, E), edge_weight (E,), batch (B K,), ptr (B + 1,), **node_attrs)``, node
        ``b K + a`` being node a of subgraph b; ``edge_index`` from ``dense_to_sparse`` (offset ``b K`` per
        subgraph), in row-major order of ``adj``.
    """
    from torch_geometric.data import Batch
    from torch_geometric.utils import dense_to_sparse

    B, K = x.shape[:2]
    edge_index, weight = dense_to_sparse(adj.contiguous())
    batch = torch.arange(B, device=x.device).repeat_interleave(K)
    ptr = torch.arange(0, (B + 1) * K, K, device=x.device)
    flat = {name: t.reshape(B * K, *t.shape[2:]) for name, t in node_attrs.items()}
    return Batch(x=x.reshape(B * K, *x.shape[2:]), edge_index=edge_index, edge_weight=weight.float(),
                 batch=batch, ptr=ptr, **flat)
