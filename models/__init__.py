"""Plain ``nn.Module`` networks: the Top-K predictor, the Sparse Differential Transformer and their parts."""

from .diff_attention import SparseDiffAttention, topk_mask
from .embedding import NeighbourEmbedding
from .sdt import SDT
from .topk import TopKPredictor

__all__ = ["NeighbourEmbedding", "SDT", "SparseDiffAttention", "TopKPredictor", "topk_mask"]
