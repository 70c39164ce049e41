"""End-to-end clustering metrics on the validation split, logged like any other metric."""
from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

from facecluster.clustering.graph_config import GraphConfig
from facecluster.clustering.metrics import evaluate, selection_score
from facecluster.clustering.refine import refine_and_cluster
from facecluster.clustering.timer import Timer

__all__ = ["ClusteringEvaluation"]

log = logging.getLogger(__name__)


class ClusteringEvaluation(Callback):
    """Runs the whole inference pipeline (Top-K -> Top-K Jaccard -> SDT -> pruning -> Infomap) with the module's
    current networks on the datamodule's validation split and logs the clustering metrics.

    The split's ready kNN graph is used (``datamodule.val_graph``: x, nbrs, sims, labels), the networks come from
    ``pl_module.pipeline(graph, datamodule.mean)`` and the metrics from :func:`clustering.metrics.evaluate`. They
    are logged through ``pl_module.log`` as ``{prefix}pairwise_{p,r,f}``, ``{prefix}bcubed_{p,r,f}``,
    ``{prefix}nmi``, ``{prefix}n_clusters``, ``{prefix}n_singletons`` (plus ``{prefix}cluster_seconds``), so they
    reach every logger and a ``ModelCheckpoint`` can monitor them. Under DDP rank 0 computes and broadcasts; every
    rank logs the same values. A figure (cluster-size distribution, predicted vs true k) goes to a
    :class:`WandbLogger` (``wandb.Image``) or :class:`TensorBoardLogger`, and is skipped for other loggers.

    Args:
        every_n_epochs: run at the end of every n-th validation epoch (a ModelCheckpoint monitoring these metrics
            needs the same ``every_n_epochs``).
        graph: the graph settings (:class:`~clustering.graph_config.GraphConfig`). Its ``k``
            is the datamodule's (``train.py`` links ``data.k`` to ``evaluation.graph.k``, and the validation graph has
            that many neighbours whatever the value). In a config: ``evaluation: {graph: {threshold: 0.5}}`` or
            ``--evaluation.graph.threshold=0.5``.
        batch_size: centres per network forward (None: the pipeline's default for the device).
        log_figure: log the figure when the logger can take one.
        prefix: metric-name prefix.

    Attributes:
        last_metrics: the metrics of the latest run (dict), for tests and scripts.
    """

    METRICS = ("pairwise_p", "pairwise_r", "pairwise_f", "bcubed_p", "bcubed_r", "bcubed_f", "nmi", "n_clusters",
               "n_singletons")

    def __init__(
        self,
        every_n_epochs: int = 1,
        graph: GraphConfig = GraphConfig(),  # noqa: B008  (read-only default: the callback never changes it)
        batch_size: int | None = None,
        log_figure: bool = True,
        prefix: str = "val/",
    ) -> None:
        self.every_n_epochs = every_n_epochs
        self.graph = graph
        self.batch_size = batch_size
        self.log_figure = log_figure
        self.prefix = prefix
        self.last_metrics: dict[str, float] | None = None

    def _due(self, trainer: pl.Trainer) -> bool:
        return not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def cluster(self, pl_module: pl.LightningModule, datamodule) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """Cluster the validation split; returns ``(metrics, arrays)`` (arrays: pred, labels, k, k_star)."""
        split = datamodule.val_graph
        graph = replace(self.graph, k=datamodule.k)
        pipe = pl_module.pipeline(graph, datamodule.mean, batch_size=self.batch_size)
        timer = Timer()
        start = time.perf_counter()
        # = ClusteringPipeline.run_graph, keeping k
        k, pair_prob = pipe.predict(split.x, split.nbrs, split.sims, timer)
        pred = refine_and_cluster(split.nbrs, split.sims, graph, k=k, pair_prob=pair_prob, timer=timer)
        metrics = evaluate(split.labels, pred)
        metrics = {name: float(metrics[name]) for name in self.METRICS}
        metrics["score"] = selection_score(metrics)  # what checkpoints and export.py --tune select by
        metrics["cluster_seconds"] = time.perf_counter() - start
        return metrics, {"pred": pred, "labels": split.labels, "k": k, "k_star": split.k_star}

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._due(trainer):
            return
        datamodule = trainer.datamodule
        if datamodule is None or getattr(datamodule, "val_graph", None) is None:
            log.warning("ClusteringEvaluation: the datamodule has no validation graph; skipped")
            return
        metrics = arrays = None
        if trainer.is_global_zero:
            metrics, arrays = self.cluster(pl_module, datamodule)
        metrics = trainer.strategy.broadcast(metrics, src=0)
        self.last_metrics = metrics
        for name, value in metrics.items():
            pl_module.log(f"{self.prefix}{name}", value, prog_bar=name in ("pairwise_f", "bcubed_f"),
                          sync_dist=False, rank_zero_only=False)
        if trainer.is_global_zero and self.log_figure:
            self._log_figure(trainer, arrays)

    def _log_figure(self, trainer: pl.Trainer, arrays: dict[str, np.ndarray]) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, (WandbLogger, TensorBoardLogger))]
        if not loggers:
            return
        fig = cluster_figure(**arrays)
        key = f"{self.prefix}clustering"
        for logger in loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                logger.experiment.log({key: wandb.Image(fig), "trainer/global_step": trainer.global_step})
            else:
                logger.experiment.add_figure(key, fig, global_step=trainer.global_step, close=False)
        import matplotlib.pyplot as plt

        plt.close(fig)


def cluster_figure(pred: np.ndarray, labels: np.ndarray, k: np.ndarray | None, k_star: np.ndarray):
    """Two panels: cluster-size distribution (predicted vs true identities, log-log) and predicted vs true k."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for ids, name in ((labels, "true identities"), (pred, "predicted clusters")):
        sizes = np.bincount(np.unique(ids, return_inverse=True)[1])
        values, counts = np.unique(sizes, return_counts=True)
        ax1.loglog(values, counts, "o-", ms=3, label=name)
    ax1.set(xlabel="cluster size", ylabel="number of clusters", title="cluster sizes")
    ax1.legend()
    if k is not None:
        K = int(max(k.max(), k_star.max()))
        h, _, _ = np.histogram2d(k_star, k, bins=K, range=[[0.5, K + 0.5], [0.5, K + 0.5]])
        ax2.imshow(np.log1p(h), origin="lower", extent=(0.5, K + 0.5, 0.5, K + 0.5), cmap="viridis")
        ax2.plot([1, K], [1, K], "w--", lw=0.8)
        ax2.set(xlabel="predicted k", ylabel="k*", title=f"Top-K (MAE {np.abs(k - k_star).mean():.2f})")
    else:
        ax2.hist(k_star, bins=np.arange(0.5, k_star.max() + 1.5), color="gray")
        ax2.set(xlabel="k*", ylabel="faces", title="k* (no Top-K predictor)")
    fig.tight_layout()
    return fig
