"""Token embedding of a centre's neighbour list, shared by the Top-K predictor and the SDT."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class NeighbourEmbedding(nn.Module):
    r"""Embeds the K neighbours of a centre (self first) as K tokens of width ``d_model``.

    For neighbour j (0-based rank, j = 0 is the centre itself) with unit-norm feature :math:`x_j \in R^F` and
    cosine similarity :math:`s_j` to the centre:

    .. math::
        e_j = W\,[\sqrt{F}\,x_j,\; F\,(x_j \odot x_0),\; s_j,\; s_j - s_{j+1}] + b + r_j

    with :math:`s_K := s_{K-1}` (the gap of the last token is 0) and :math:`r_j` a learned rank embedding.
    The factors :math:`\sqrt{F}` and :math:`F` give each entry of the two feature blocks unit scale for unit-norm
    input (the entries of :math:`F (x_j \odot x_0)` sum to :math:`F s_j`).

    Args:
        feat_dim (int): feature width F.
        d_model (int): token width.
        max_k (int): the most neighbours K a forward may see (size of the rank table). A forward with fewer
            neighbours (a collection with fewer than ``max_k`` faces) uses the first K rank embeddings; nothing is
            padded.

    Shapes:
        x (B, K, F), sims (B, K) -> (B, K, d_model), K <= max_k.
    """

    def __init__(self, feat_dim: int, d_model: int, max_k: int) -> None:
        super().__init__()
        self.feat_dim = feat_dim
        self.d_model = d_model
        self.max_k = max_k
        self.proj = nn.Linear(2 * feat_dim + 2, d_model)
        self.rank_emb = nn.Embedding(max_k, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Default ``nn.Linear`` init; rank embedding N(0, 0.02)."""
        self.proj.reset_parameters()
        nn.init.normal_(self.rank_emb.weight, std=0.02)

    def forward(self, x: Tensor, sims: Tensor) -> Tensor:
        """Args: x (B, K, F) neighbour features, self first; sims (B, K) cosine to the centre. Returns (B, K, d)."""
        B, K, Fd = x.shape
        if K > self.max_k:
            raise ValueError(f"got K={K} neighbours, more than max_k={self.max_k}")
        sims = sims.to(x.dtype)
        gap = torch.cat([sims[:, :-1] - sims[:, 1:], sims.new_zeros(B, 1)], dim=1)  # (B, K)
        feats = torch.cat(
            [
                x * math.sqrt(Fd),  # (B, K, F)
                x * x[:, :1] * Fd,  # (B, K, F)
                sims.unsqueeze(-1),  # (B, K, 1)
                gap.unsqueeze(-1),  # (B, K, 1)
            ],
            dim=-1,
        )  # (B, K, 2F + 2)
        return self.proj(feats) + self.rank_emb.weight[:K]  # (B, K, d)

    def extra_repr(self) -> str:
        return f"feat_dim={self.feat_dim}, d_model={self.d_model}, max_k={self.max_k}"
