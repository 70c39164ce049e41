"""Plain ``nn.Module`` networks: the Top-K predictor, the Sparse Differential Transformer, the GNN pair classifiers
(baselines) and their parts."""

from typing import Union

from .diff_attention import SparseDiffAttention, topk_mask
from .embedding import NeighbourEmbedding
from .gnn import LGCN, PivotGAT, PivotGNN
from .sdt import SDT
from .topk import TopKPredictor

# The pair classifiers: a centre's K neighbours in, K same-identity logits out, called as
# ``model(x (B, K, F), sims (B, K), k_pred (B,), **inputs) -> (B, W)``; ``inputs`` are ``proj`` for a network with a
# token ``embed`` (the SDT), ``adj`` (pivot-subgraph links) for one with a ``pivot_u`` (the GNNs). Every one has a
# ``.config`` that rebuilds it. The pair-training module, the model file and the pipeline take any of them.
PairClassifier = Union[SDT, PivotGNN]

__all__ = ["LGCN", "NeighbourEmbedding", "PairClassifier", "PivotGAT", "PivotGNN", "SDT", "SparseDiffAttention",
           "TopKPredictor", "topk_mask"]
