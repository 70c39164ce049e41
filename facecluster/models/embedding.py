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

    With :math:`W = [W_1, W_2, w_s, w_g]` split by input block, the first term :math:`\sqrt{F} W_1 x_j` depends on
    one face only: inference computes it once per face (:meth:`project`, ``(N, F) -> (N, d)``) and gathers it per
    (centre, neighbour) pair, so only :math:`F W_2 (x_j \odot x_0)` is computed per pair (:meth:`tokens`): half
    the per-pair multiply-adds, and no ``2F + 2``-wide input is ever built. Same function and parameters either
    way (tested).

    **Relational tokens** (``relational=True``): the features themselves are left out; token j is read from how
    neighbour j relates to the others,

    .. math::
        e_j = W\,[S_{j,0}, \dots, S_{j,K-1},\; s_j - s_{j+1}] + b + r_j, \qquad S = X X^\top,

    the cosine of neighbour j to every neighbour of the list (rank order; :math:`S_{j,0} = s_j`), zero-padded to
    ``max_k`` columns when the list is shorter. Such tokens do not change when the embedding space is rotated, so a
    network cannot learn where its training identities lie (with feature tokens it does: on a synthetic train file
    of 1,350 identities the Top-K predictor's k error was 0.2 on the training faces and 2.5-76 on held-out ones), and
    what it learns carries to new people. They have no per-face term (:meth:`project` is not used).

    ``feature_rank = r > 0`` adds the features back through a rank-r bottleneck, :math:`U V \sqrt{F} x_j` with
    :math:`V \in R^{r \times F}`, :math:`U \in R^{d \times r}`: room for a few directions that mean the same for
    every identity (the recognition model's own, e.g. where its low-quality faces gather), not for the location of
    each training identity.

    Args:
        feat_dim (int): feature width F.
        d_model (int): token width.
        max_k (int): the most neighbours K a forward may see (size of the rank table). A forward with fewer
            neighbours (a collection with fewer than ``max_k`` faces) uses the first K rank embeddings; nothing is
            padded.
        relational (bool): relational tokens (above) instead of feature tokens.
        feature_rank (int): with relational tokens, the rank of the features' own term (0: none).

    Shapes:
        forward: x (B, K, F), sims (B, K) -> (B, K, d_model), K <= max_k. project: (..., F) -> (..., d_model).
        tokens: x (B, K, F), a (B, K, d_model) = project(x), sims (B, K) -> (B, K, d_model).
    """

    def __init__(self, feat_dim: int, d_model: int, max_k: int, relational: bool = False,
                 feature_rank: int = 0) -> None:
        super().__init__()
        if feature_rank and not relational:
            raise ValueError("feature_rank needs relational tokens (feature tokens hold the whole features)")
        self.feat_dim = feat_dim
        self.d_model = d_model
        self.max_k = max_k
        self.relational = relational
        self.feature_rank = feature_rank
        self.proj = nn.Linear(max_k + 1 if relational else 2 * feat_dim + 2, d_model)
        self.feature_down = nn.Linear(feat_dim, feature_rank, bias=False) if feature_rank else None  # V
        self.feature_up = nn.Linear(feature_rank, d_model, bias=False) if feature_rank else None     # U
        self.rank_emb = nn.Embedding(max_k, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Default ``nn.Linear`` init; rank embedding N(0, 0.02)."""
        self.proj.reset_parameters()
        if self.feature_rank:
            self.feature_down.reset_parameters()
            self.feature_up.reset_parameters()
        nn.init.normal_(self.rank_emb.weight, std=0.02)

    def project(self, x: Tensor) -> Tensor:
        r"""The per-face term :math:`\sqrt{F} W_1 x`: (..., F) -> (..., d)."""
        Fd = self.feat_dim
        return x @ (self.proj.weight[:, :Fd].t() * math.sqrt(Fd))

    def tokens(self, x: Tensor, a: Tensor, sims: Tensor) -> Tensor:
        """Args: x (B, K, F) neighbour features, self first; a (B, K, d) their :meth:`project` rows; sims (B, K)
        cosine to the centre. Returns tokens (B, K, d)."""
        B, K, Fd = x.shape
        if K > self.max_k:
            raise ValueError(f"got K={K} neighbours, more than max_k={self.max_k}")
        w = self.proj.weight  # (d, 2F + 2)
        sims = sims.to(x.dtype)
        gap = torch.cat([sims[:, :-1] - sims[:, 1:], sims.new_zeros(B, 1)], dim=1)  # (B, K)
        e = torch.baddbmm(a, x * x[:, :1], (w[:, Fd:2 * Fd].t() * Fd).expand(B, Fd, self.d_model))  # (B, K, d)
        return e + sims.unsqueeze(-1) * w[:, 2 * Fd] + gap.unsqueeze(-1) * w[:, 2 * Fd + 1] + self.proj.bias \
            + self.rank_emb.weight[:K]

    @property
    def per_face(self) -> bool:
        """Whether the tokens have a per-face term (:meth:`project`) that inference computes once per face."""
        return not self.relational

    def relational_tokens(self, x: Tensor, sims: Tensor) -> Tensor:
        """Relational tokens (class docstring): x (B, K, F), sims (B, K) -> (B, K, d)."""
        B, K, _ = x.shape
        if K > self.max_k:
            raise ValueError(f"got K={K} neighbours, more than max_k={self.max_k}")
        S = torch.bmm(x, x.transpose(1, 2))  # (B, K, K) cosines among the neighbours
        sims = sims.to(x.dtype)
        gap = torch.cat([sims[:, :-1] - sims[:, 1:], sims.new_zeros(B, 1)], dim=1)  # (B, K)
        w = self.proj.weight  # (d, max_k + 1)
        e = S @ w[:, :K].t() + gap.unsqueeze(-1) * w[:, self.max_k]  # (B, K, d); columns past K: zero padding
        if self.feature_rank:
            e = e + self.feature_up(self.feature_down(x * math.sqrt(self.feat_dim)))  # (B, K, d) through rank r
        return e + self.proj.bias + self.rank_emb.weight[:K]

    def forward(self, x: Tensor, sims: Tensor) -> Tensor:
        """Args: x (B, K, F) neighbour features, self first; sims (B, K) cosine to the centre. Returns (B, K, d)."""
        if self.relational:
            return self.relational_tokens(x, sims)
        return self.tokens(x, self.project(x), sims)

    def extra_repr(self) -> str:
        return (f"feat_dim={self.feat_dim}, d_model={self.d_model}, max_k={self.max_k}"
                + (", relational=True" if self.relational else "")
                + (f", feature_rank={self.feature_rank}" if self.feature_rank else ""))
