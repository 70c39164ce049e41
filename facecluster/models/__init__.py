"""Plain ``nn.Module`` networks: the Top-K predictor, the Sparse Differential Transformer, the GNN pair classifiers
(baselines) and their parts.

The GNN baselines (``LGCN``, ``PivotGAT``, their configs, ``PivotGNN``) and ``PairClassifier`` load lazily, on
first access (``models.LGCN``, ``from facecluster.models import LGCN``): they need PyTorch Geometric, which importing
``models`` for the SDT and the Top-K predictor (a model file, ``cluster.py``) does not import."""

from typing import Union

from .diff_attention import SparseDiffAttention, topk_mask
from .embedding import NeighbourEmbedding
from .sdt import SDT, SDTConfig
from .topk import TopKConfig, TopKPredictor

# The pair classifiers: a centre's K neighbours in, K same-identity logits out, called as
# ``model(x (B, K, F), sims (B, K), k_pred (B,), **inputs) -> (B, W)``; ``inputs`` are ``proj`` for a network with a
# token ``embed`` (the SDT), ``adj`` (pivot-subgraph links) for one with a ``pivot_u`` (the GNNs). Every network is
# built from one dataclass config, nanoGPT style (``SDT(SDTConfig(feat_dim=256, window=32))``), kept as ``.config``:
# ``type(net)(net.config)`` rebuilds it, ``dataclasses.asdict(net.config)`` is its field dict and
# ``type(net).config_class`` the dataclass. The pair-training module, the model file and the pipeline take any of them.
# ``PairClassifier = Union[SDT, PivotGNN]``, made on first access (below).

_GNN_NAMES = ("LGCN", "LGCNConfig", "PivotGAT", "PivotGATConfig", "PivotGNN")

__all__ = ["LGCN", "LGCNConfig", "NeighbourEmbedding", "PairClassifier", "PivotGAT", "PivotGATConfig",
           "PivotGNN", "SDT", "SDTConfig", "SparseDiffAttention", "TopKConfig", "TopKPredictor", "topk_mask"]


def __getattr__(name: str):
    """The GNN names and ``PairClassifier``, imported from :mod:`models.gnn` (and PyG) on first access."""
    if name in _GNN_NAMES or name == "PairClassifier":
        from . import gnn

        found = {key: getattr(gnn, key) for key in _GNN_NAMES}
        found["PairClassifier"] = Union[SDT, gnn.PivotGNN]
        globals().update(found)  # later accesses are plain module attributes
        return found[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
