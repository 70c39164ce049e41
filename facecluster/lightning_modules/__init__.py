"""LightningModules: losses, metrics, optimisers and logging around the plain networks of ``models/``."""

from .sdt_module import SDTModule
from .topk_module import TopKModule, load_topk

__all__ = ["SDTModule", "TopKModule", "load_topk"]
