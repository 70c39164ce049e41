"""LightningDataModules: labelled face features -> kNN graphs -> per-node subgraph batches."""

from .face_graph import FaceGraphDataModule, GraphSplit, SubgraphDataset

__all__ = ["FaceGraphDataModule", "GraphSplit", "SubgraphDataset"]
