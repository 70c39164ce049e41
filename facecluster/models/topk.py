"""Top-K predictor (METHOD.md section 1, step 4): how many leading neighbours share the centre's identity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from .config import (check_choice, check_config_type, check_divisible, check_dropout, check_feature_rank,
                     check_flag, check_positive)
from .embedding import NeighbourEmbedding

Head = Literal["classification", "regression"]
HEADS: tuple[str, ...] = get_args(Head)


@dataclass(frozen=True)
class TopKConfig:
    """Architecture of a :class:`TopKPredictor` (every value checked when the config is made).

    Attributes:
        feat_dim: feature width F.
        k: the most neighbours K the model sees (rank-embedding size, the trained K).
        d_model: token width (divisible by ``num_heads``).
        num_layers: encoder layers.
        num_heads: attention heads.
        dim_feedforward: MLP hidden width.
        dropout: dropout in the encoder layers, in [0, 1).
        head: ``"classification"`` or ``"regression"``.
        relational: tokens from the cosines among the neighbours instead of their features
            (:class:`~models.embedding.NeighbourEmbedding`); False in model files written before it existed.
        feature_rank: with relational tokens, the features also enter through a rank-``feature_rank`` bottleneck
            (0: not at all).
    """

    feat_dim: int
    k: int = 80
    d_model: int = 128
    num_layers: int = 2
    num_heads: int = 4
    dim_feedforward: int = 256
    dropout: float = 0.1
    head: Head = "classification"
    relational: bool = False
    feature_rank: int = 0

    def __post_init__(self) -> None:
        check_positive(self, "feat_dim", "k", "d_model", "num_layers", "num_heads", "dim_feedforward")
        check_divisible(self, "d_model", self.num_heads, "num_heads")
        check_dropout(self)
        check_choice(self, "head", HEADS)
        check_flag(self, "relational")
        check_feature_rank(self)


class TopKPredictor(nn.Module):
    r"""Transformer that predicts k_i, the number of leading neighbours (self included) of identity(i).

    Tokens are :class:`NeighbourEmbedding` of the centre's K neighbours (self first), passed through a pre-norm
    ``nn.TransformerEncoder`` (GELU, final LayerNorm), giving :math:`h_0, \dots, h_{K-1}`.

    - ``head="classification"``: logits :math:`z_c = w^\top h_c + b`, (B, K); class c means k = c + 1, i.e.
      token c is the last neighbour with the centre's identity. ``predict_k = argmax_c z_c + 1``.
    - ``head="regression"``: :math:`\hat r = \sigma(w^\top h_0 + b) \in [0, 1]`, (B,), a prediction of k / K
      read from the centre token. ``predict_k = clamp(round(\hat r K), 1, K)``.

    Fewer neighbours at inference (K < ``k``, a collection with fewer than ``k`` faces) is supported: the first K
    rank embeddings are used, no padding; classification then has K classes, regression is read as k / K with the
    K of the input.

    Args:
        config (TopKConfig): the architecture (``model.config``; ``dataclasses.asdict`` gives its fields).

    Shapes:
        x (B, K, F) preprocessed (centred, L2-normalised) features sorted by similarity, self first;
        sims (B, K) cosine similarities to the centre -> (B, K) logits or (B,) in [0, 1].
    """

    config_class = TopKConfig

    def __init__(self, config: TopKConfig) -> None:
        super().__init__()
        check_config_type(self, config)
        self.config = config  # rebuilds the module: TopKPredictor(config)
        self.k = config.k
        self.head = config.head
        self.embed = NeighbourEmbedding(config.feat_dim, config.d_model, config.k, config.relational,
                                       config.feature_rank)
        layer = nn.TransformerEncoderLayer(
            config.d_model,
            config.num_heads,
            dim_feedforward=config.dim_feedforward,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, config.num_layers, norm=nn.LayerNorm(config.d_model), enable_nested_tensor=False
        )
        self.out = nn.Linear(config.d_model, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every sub-module with its own default init (rank embedding N(0, 0.02))."""
        self.embed.reset_parameters()
        for m in self.encoder.modules():
            if isinstance(m, nn.MultiheadAttention):
                m._reset_parameters()
            elif isinstance(m, (nn.Linear, nn.LayerNorm)):
                m.reset_parameters()
        self.out.reset_parameters()

    def forward(self, x: Tensor, sims: Tensor, *, proj: Tensor | None = None) -> Tensor:
        """Args: x (B, K, F); sims (B, K); proj (B, K, d) ``self.embed.project(x)`` when precomputed per face
        (inference), else None. Returns logits (B, K) (classification) or k / K in [0, 1], (B,)."""
        tokens = self.embed(x, sims) if proj is None else self.embed.tokens(x, proj, sims)  # (B, K, d)
        h = self.encoder(tokens)  # (B, K, d)
        if self.head == "classification":
            return self.out(h).squeeze(-1)  # (B, K)
        return torch.sigmoid(self.out(h[:, 0]).squeeze(-1))  # (B,)

    @torch.no_grad()
    def predict_k(self, x: Tensor, sims: Tensor, *, proj: Tensor | None = None) -> Tensor:
        """Predicted k in 1..K, LongTensor (B,), for either head (K = x.size(1)); arguments as :meth:`forward`."""
        K = x.size(1)
        y = self(x, sims, proj=proj)
        if self.head == "classification":
            return y.argmax(dim=-1) + 1  # (B,)
        return torch.round(y * K).long().clamp(1, K)  # (B,)

    def extra_repr(self) -> str:
        return f"k={self.k}, head={self.head!r}"
