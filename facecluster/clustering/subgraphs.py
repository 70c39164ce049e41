"""Per-node subgraph tensors: a centre and its K neighbours, gathered in one batched index (no per-sample loop).

One implementation shared by the training datamodules and by inference.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["gather_rows", "gather_subgraphs"]


def gather_rows(x: torch.Tensor, ids: torch.Tensor, buf: torch.Tensor | None = None) -> torch.Tensor:
    """``x[ids]`` for ``(N, d)`` rows ``x`` and int32 or int64 ids of any shape: ``(*ids.shape, d)``. With ``buf`` (a contiguous
    tensor of at least ``ids.numel()`` rows of width d, on ``x``'s device and of its dtype) the rows are written into
    it, and the result is a view of it, overwritten by the next call with the same buffer. A loop that gathers tens
    of MB per block into fresh memory pays that memory's page faults each time (on the machine of the README's
    timings, 0.94 s instead of 0.09 s to gather 1.3M rows of 128 floats): its blocks reuse one buffer instead."""
    if buf is None:
        return x[ids]
    out = buf[: ids.numel()]
    torch.index_select(x, 0, ids.reshape(-1), out=out)
    return out.view(*ids.shape, x.shape[1])


def gather_subgraphs(x: torch.Tensor, nbrs: torch.Tensor, sims: torch.Tensor,
                     idx: torch.Tensor, buf: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbour features and similarities of the centres ``idx``.

    Args:
        x: ``(N, d)`` preprocessed features (float32 tensor, CPU or GPU).
        nbrs: ``(N, K)`` int64 neighbour ids, self first.
        sims: ``(N, K)`` float32 cosine similarities.
        idx: ``(B,)`` int64 centre ids.
        buf: a buffer of at least ``B K`` rows for the features (:func:`gather_rows`: ``feats`` is then a view of
            it, valid until the next call with the same buffer), or None.

    Returns:
        ``feats (B, K, d)`` and ``sims (B, K)``, on the device of ``x``.
    """
    nb = nbrs[idx]                       # (B, K)
    return gather_rows(x, nb.to(x.device), buf), sims[idx].to(x.device)


def as_tensor(a: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Zero-copy tensor view of a numpy array (copied only when dtype or layout require)."""
    if isinstance(a, torch.Tensor):
        return a.to(dtype)
    return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)
