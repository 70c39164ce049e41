"""Plain ``nn.Module`` networks: the Top-K predictor, the Sparse Differential Transformer, the GNN pair classifiers
(baselines) and their parts."""

from typing import Union

from .diff_attention import SparseDiffAttention, topk_mask
from .embedding import NeighbourEmbedding
from .gnn import LGCN, LGCNConfig, PivotGAT, PivotGATConfig, PivotGNN
from .sdt import SDT, SDTConfig
from .topk import TopKConfig, TopKPredictor

# The pair classifiers: a centre's K neighbours in, K same-identity logits out, called as
# ``model(x (B, K, F), sims (B, K), k_pred (B,), **inputs) -> (B, W)``; ``inputs`` are ``proj`` for a network with a
# token ``embed`` (the SDT), ``adj`` (pivot-subgraph links) for one with a ``pivot_u`` (the GNNs). Every network is
# built from one dataclass config, nanoGPT style (``SDT(SDTConfig(feat_dim=256, window=32))``), kept as ``.config``:
# ``type(net)(net.config)`` rebuilds it, ``dataclasses.asdict(net.config)`` is its field dict and
# ``type(net).config_class`` the dataclass. The pair-training module, the model file and the pipeline take any of them.
PairClassifier = Union[SDT, PivotGNN]

__all__ = ["LGCN", "LGCNConfig", "NeighbourEmbedding", "PairClassifier", "PivotGAT", "PivotGATConfig",
           "PivotGNN", "SDT", "SDTConfig", "SparseDiffAttention", "TopKConfig", "TopKPredictor", "topk_mask"]
