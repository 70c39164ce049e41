"""Per-node subgraph tensors: a centre and its K neighbours, gathered in one batched index (no per-sample loop).

One implementation shared by the training datamodules and by inference.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["gather_subgraphs"]


def gather_subgraphs(x: torch.Tensor, nbrs: torch.Tensor, sims: torch.Tensor,
                     idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Neighbour features and similarities of the centres ``idx``.

    Args:
        x: ``(N, d)`` preprocessed features (float32 tensor, CPU or GPU).
        nbrs: ``(N, K)`` int64 neighbour ids, self first.
        sims: ``(N, K)`` float32 cosine similarities.
        idx: ``(B,)`` int64 centre ids.

    Returns:
        ``feats (B, K, d)`` and ``sims (B, K)``, on the device of ``x``.
    """
    nb = nbrs[idx]                       # (B, K)
    return x[nb.to(x.device)], sims[idx].to(x.device)


def as_tensor(a: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Zero-copy tensor view of a numpy array (copied only when dtype or layout require)."""
    if isinstance(a, torch.Tensor):
        return a.to(dtype)
    return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)
