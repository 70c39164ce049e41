"""Sparse Differential Transformer (METHOD.md section 1, step 6): pair classifier centre vs each neighbour."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .config import (check_config_type, check_divisible, check_dropout, check_feature_rank, check_flag,
                     check_integer, check_positive)
from .diff_attention import SparseDiffAttention, TopkPlan
from .embedding import NeighbourEmbedding


@dataclass(frozen=True)
class SDTConfig:
    """Architecture of an :class:`SDT` (every value checked when the config is made).

    Attributes:
        feat_dim: feature width F.
        k: the most neighbours K (rank-embedding size); fewer at inference are fine.
        d_model: token width; divisible by ``2 * num_heads`` (differential attention splits each head's Q and K
            in two), by ``num_heads`` with ``differential=False``.
        num_layers: blocks.
        num_heads: differential heads (half a plain Transformer's). With ``differential=False`` these are plain
            heads of width d_model / num_heads: double them for a like-for-like ablation.
        dim_feedforward: MLP hidden width.
        dropout: attention and residual dropout, in [0, 1).
        differential: differential (True) or plain softmax attention (False).
        use_topk_mask: sparse Top-k attention mask; False for dense attention.
        mask_margin: added to k_pred before masking (keys kept per row = clamp(k_pred + margin, 1, K)).
        window: look only at the first ``window`` neighbours (pairs beyond get no logit;
            :func:`clustering.inference.predict_pairs` leaves them to the Jaccard weight). Attention and its Top-k
            mask cost grow with the square of the sequence: a window of 32 of K = 80 makes the SDT ~5x cheaper.
            None uses all K; else at least 1.
        relational: tokens from the cosines among the neighbours instead of their features
            (:class:`~models.embedding.NeighbourEmbedding`); False in model files written before it existed.
        feature_rank: with relational tokens, the features also enter through a rank-``feature_rank`` bottleneck
            (0: not at all).
    """

    feat_dim: int
    k: int = 80
    d_model: int = 128
    num_layers: int = 2
    num_heads: int = 2
    dim_feedforward: int = 256
    dropout: float = 0.1
    differential: bool = True
    use_topk_mask: bool = True
    mask_margin: int = 0
    window: int | None = None
    relational: bool = False
    feature_rank: int = 0

    def __post_init__(self) -> None:
        check_positive(self, "feat_dim", "k", "d_model", "num_layers", "num_heads", "dim_feedforward")
        check_flag(self, "differential", "use_topk_mask", "relational")
        check_feature_rank(self)
        split = 2 * self.num_heads if self.differential else self.num_heads  # SparseDiffAttention's head split
        check_divisible(self, "d_model", split, "2 * num_heads" if self.differential else "num_heads")
        check_dropout(self)
        check_integer(self, "mask_margin")
        if self.window is not None:
            check_positive(self, "window")


class SDTBlock(nn.Module):
    """Pre-norm residual block: ``x = x + Drop(Attn(LN(x), k))``; ``x = x + Drop(MLP(LN(x)))``, MLP with GELU.

    Args:
        d_model (int): width. num_heads (int): heads of :class:`SparseDiffAttention`. layer_idx (int): 0-based
        depth (sets lambda_init). dim_feedforward (int): MLP hidden width. dropout (float): attention and residual
        dropout. differential (bool): differential or plain attention.

    Shapes: x (B, K, d), k (B,) long or None -> (B, K, d).
    """

    def __init__(
        self, d_model: int, num_heads: int, layer_idx: int, dim_feedforward: int, dropout: float, differential: bool
    ) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = SparseDiffAttention(d_model, num_heads, layer_idx, dropout=dropout, differential=differential)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, dim_feedforward),
            nn.GELU(),
            nn.Linear(dim_feedforward, d_model),
        )
        self.drop = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        """Default init of the norms, the attention and the MLP."""
        self.ln_1.reset_parameters()
        self.attn.reset_parameters()
        self.ln_2.reset_parameters()
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def forward(self, x: Tensor, k: Tensor | TopkPlan | None, queries: int | None = None) -> Tensor:
        """Args: x (B, K, d); k (B,) long keys kept per score row, its :class:`TopkPlan`, or None (dense);
        queries: compute the first ``Q = queries`` tokens only (all K attend as keys), or None for all.
        Returns (B, Q, d)."""
        h = self.ln_1(x)
        x = x[:, :queries] + self.drop(self.attn(h, k, queries=queries))  # (B, Q, d)
        x = x + self.drop(self.mlp(self.ln_2(x)))  # (B, Q, d)
        return x


class SDT(nn.Module):
    r"""Sparse Differential Transformer: for a centre i and its K neighbours, the logit that neighbour j has i's
    identity.

    Token j: :math:`e_j = \mathrm{NeighbourEmbedding}(x, s)_j + E_{in}[j < \hat k] + E_{off}[\mathrm{clip}(j -
    \hat k, -8, 8)]`, so the model knows where the predicted Top-K boundary :math:`\hat k` (``k_pred``) lies and
    can look at the neighbours around it. Then ``num_layers`` pre-norm blocks of :class:`SparseDiffAttention`
    (layer l has ``layer_idx=l``) whose score rows keep the top :math:`\mathrm{clamp}(\hat k + m, 1, K)` keys
    (``m = mask_margin``; no mask if ``use_topk_mask=False``) and a GELU MLP, a final LayerNorm, and the pair head
    :math:`z_j = w^\top [h_j, h_0 \odot h_j] + b`. Position 0 (the centre with itself) gets a logit too; the
    caller decides whether to use it.

    Args:
        config (SDTConfig): the architecture (``model.config``; ``dataclasses.asdict`` gives its fields).

    Shapes:
        x (B, K, F) preprocessed features, self first; sims (B, K); k_pred (B,) long in 1..K -> logits (B, W),
        ``W = min(window, K)``.
    """

    max_offset: int = 8

    config_class = SDTConfig

    def __init__(self, config: SDTConfig) -> None:
        super().__init__()
        check_config_type(self, config)
        self.config = config  # rebuilds the module: SDT(config)
        self.k = config.k
        self.differential = config.differential
        self.use_topk_mask = config.use_topk_mask
        self.mask_margin = config.mask_margin
        self.window = config.window
        d_model = config.d_model
        self.embed = NeighbourEmbedding(config.feat_dim, d_model, config.k, config.relational,
                                       config.feature_rank)
        self.inside_emb = nn.Embedding(2, d_model)  # rank j < k_pred
        self.offset_emb = nn.Embedding(2 * self.max_offset + 1, d_model)  # clip(j - k_pred, -8, 8) + 8
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            SDTBlock(d_model, config.num_heads, l, config.dim_feedforward, config.dropout, config.differential)
            for l in range(config.num_layers)
        )
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(2 * d_model, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Default init of every layer; the k_pred embeddings N(0, 0.02)."""
        self.embed.reset_parameters()
        nn.init.normal_(self.inside_emb.weight, std=0.02)
        nn.init.normal_(self.offset_emb.weight, std=0.02)
        for block in self.blocks:
            block.reset_parameters()
        self.ln_f.reset_parameters()
        self.head.reset_parameters()

    @property
    def lambdas(self) -> list[Tensor]:
        """Current lambda of every layer (0-d tensors; zeros for plain attention), for logging."""
        return [block.attn.lambda_full for block in self.blocks]

    def forward(self, x: Tensor, sims: Tensor, k_pred: Tensor, *, proj: Tensor | None = None,
                width: int | None = None) -> Tensor:
        """Args: x (B, K, F); sims (B, K); k_pred (B,) long predicted Top-K; proj (B, K, d)
        ``self.embed.project(x)`` when precomputed per face (inference), else None; width: the logits of the
        first ``width`` neighbours (self included) are all the caller needs (the last block then computes those
        tokens only: the same values, less work), None for all. Returns pair logits (B, W) for the first
        ``W = min(window, K, width)`` neighbours (``W = K`` without a window or width)."""
        if self.window is not None and x.size(1) > self.window:
            x, sims = x[:, : self.window], sims[:, : self.window]  # (B, W, F), (B, W)
            proj = None if proj is None else proj[:, : self.window]  # (B, W, d)
        B, K, _ = x.shape
        k_pred = k_pred.to(device=x.device, dtype=torch.long).view(B, 1)  # (B, 1)
        rank = torch.arange(K, device=x.device).view(1, K)  # (1, K)
        offset = (rank - k_pred).clamp(-self.max_offset, self.max_offset) + self.max_offset  # (B, K)
        h = self.embed(x, sims) if proj is None else self.embed.tokens(x, proj, sims)  # (B, K, d)
        h = h + self.inside_emb((rank < k_pred).long()) + self.offset_emb(offset)  # (B, K, d)
        h = self.drop(h)
        mask_k = (k_pred.view(B) + self.mask_margin).clamp(1, K) if self.use_topk_mask else None  # (B,)
        plan = TopkPlan(mask_k, B, K)  # how the Top-k mask splits this batch, once for every layer
        width = None if width is None or width >= K else max(int(width), 1)
        for i, block in enumerate(self.blocks):
            h = block(h, plan, queries=width if i == len(self.blocks) - 1 else None)  # (B, K, d); last (B, W, d)
        h = self.ln_f(h)
        pair = torch.cat([h, h[:, :1] * h], dim=-1)  # (B, W, 2d)
        return self.head(pair).squeeze(-1)  # (B, W)

    def extra_repr(self) -> str:
        return (
            f"k={self.k}, differential={self.differential}, use_topk_mask={self.use_topk_mask}, "
            f"mask_margin={self.mask_margin}"
        )
