"""Lightning callbacks."""

from .clustering_evaluation import ClusteringEvaluation, cluster_figure

__all__ = ["ClusteringEvaluation", "cluster_figure"]
