"""Training of a pair classifier (METHOD.md step 6): the Sparse Differential Transformer, staged, joint with the
Top-K predictor, or on the oracle ``k*``; or one of the GNN baselines (:class:`models.LGCN`, :class:`models.PivotGAT`)
through the same loop."""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryPrecision, BinaryRecall

from facecluster.clustering.graph_config import GraphConfig
from facecluster.clustering.pipeline import ClusteringPipeline
from facecluster.models import PairClassifier, TopKPredictor

from .common import BaseModule, k_from_output, network_spec, topk_loss
from .topk_module import load_topk

__all__ = ["SDTModule"]

SCHEDULES = ("staged", "joint", "oracle")


def _pair_metrics(prefix: str) -> MetricCollection:
    return MetricCollection({"pair_acc": BinaryAccuracy(), "pair_precision": BinaryPrecision(),
                             "pair_recall": BinaryRecall()}, prefix=prefix)


class SDTModule(BaseModule):
    """Trains a pair classifier (centre i vs each neighbour j: same identity?): a :class:`models.SDT`, or any
    :data:`models.PairClassifier` (the GNN baselines :class:`models.LGCN` / :class:`models.PivotGAT`, which ignore
    k and read the batch's pivot-subgraph links ``adj``: give the datamodule their ``pivot_u``).

    The SDT needs a Top-K size per centre; ``schedule`` says where it comes from during training:

    * ``"staged"``: a trained Top-K predictor (``topk_ckpt``, a :class:`TopKModule` checkpoint, or ``topk``),
      frozen; the SDT learns on the k it predicts, i.e. on the inputs it gets at inference.
    * ``"joint"``: ``topk`` (freshly initialised, or started from ``topk_ckpt``) is trained at the same time;
      loss = pair loss + ``topk_weight`` * Top-K loss; the SDT gets the current (detached) predicted k.
    * ``"oracle"``: the SDT learns on ``k*``; a Top-K predictor, if given, is frozen and used only at inference.
      The GNN baselines ignore k: they train with ``"oracle"`` and no Top-K predictor
      (``configs/experiment/lfw_{lgcn,gat}.yaml``).

    Pair loss: ``BCEWithLogits(z_ij, same_ij)`` over the K - 1 neighbours (the centre's own pair is left out unless
    ``include_self``), with an optional ``pos_weight``. Logs ``{stage}/loss``, ``{stage}/pair_loss``,
    ``{stage}/pair_{acc,precision,recall}`` (threshold 0.5), ``train/lambda_{l}`` of every SDT layer, and, with a
    Top-K predictor, ``{stage}/k_mae`` / ``{stage}/k_acc`` (plus ``{stage}/topk_loss`` when joint).

    A checkpoint is self-contained: when the Top-K predictor comes from ``topk_ckpt`` its architecture is written
    into the hyper-parameters (and ``topk_ckpt`` cleared), its weights into the state dict.

    Args:
        model: the pair classifier (its ``config.feat_dim``, ``config.k`` linked to the datamodule by ``train.py``).
        topk: a Top-K predictor (needed by ``"joint"`` unless ``topk_ckpt`` is given).
        schedule: ``"staged"``, ``"joint"`` or ``"oracle"``.
        topk_ckpt: path of a :class:`TopKModule` checkpoint to load the Top-K predictor from.
        topk_weight: weight of the Top-K loss in ``"joint"``.
        pos_weight: BCE weight of positive pairs (``None``: 1).
        include_self: also train on the centre's pair with itself (always positive).
        regression_loss: Top-K loss for a regression head (``"joint"``).
        optimizer, scheduler, scheduler_interval: as in :class:`TopKModule`.
    """

    def __init__(
        self,
        model: PairClassifier,
        topk: TopKPredictor | None = None,
        schedule: Literal["staged", "joint", "oracle"] = "staged",
        topk_ckpt: str | None = None,
        topk_weight: float = 1.0,
        pos_weight: float | None = None,
        include_self: bool = False,
        regression_loss: Literal["l1", "smooth_l1"] = "l1",
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
    ) -> None:
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        self.save_hyperparameters()
        if topk_ckpt is not None:
            topk = load_topk(topk_ckpt)
            # self-contained checkpoints: the Top-K predictor is rebuilt from its config (written into the
            # hyper-parameters below), its weights come from this module's state dict
            self.hparams["topk"] = network_spec(topk) if "_instantiator" in self.hparams else topk
            self.hparams["topk_ckpt"] = None
        if schedule in ("staged", "joint") and topk is None:
            raise ValueError(f"schedule={schedule!r} needs a Top-K predictor: give topk_ckpt (a TopKModule "
                             "checkpoint) or topk")
        if topk is not None:
            k, feat_dim = model.config.k, model.config.feat_dim
            if topk.k != k or topk.embed.feat_dim != feat_dim:
                raise ValueError(f"Top-K predictor (k={topk.k}, feat_dim={topk.embed.feat_dim}) does not match the "
                                 f"pair classifier (k={k}, feat_dim={feat_dim})")
            if schedule != "joint":
                topk.requires_grad_(False)
        self.model = model
        self.topk = topk
        self.schedule = schedule
        self.topk_weight = topk_weight
        self.include_self = include_self
        self.regression_loss = regression_loss
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.record_effective_hparams(model=model, topk=topk)
        self.register_buffer("pos_weight", None if pos_weight is None else torch.tensor(float(pos_weight)),
                             persistent=False)
        self.train_metrics = _pair_metrics("train/")
        self.val_metrics = _pair_metrics("val/")

    @property
    def frozen_topk(self) -> bool:
        return self.topk is not None and self.schedule != "joint"

    def forward(self, feats: torch.Tensor, sims: torch.Tensor, k_pred: torch.Tensor, **inputs) -> torch.Tensor:
        return self.model(feats, sims, k_pred, **inputs)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        """Loss of one batch: the Top-K predictor's k (and its loss when joint), the pair classifier's logits on
        the schedule's k, the pair loss; metrics logged under ``stage``."""
        k_pred, topk_term = self._topk_step(batch, stage)
        k_in = batch["k_star"] if self.schedule == "oracle" else k_pred
        inputs = {"adj": batch["adj"]} if "adj" in batch else {}  # a GNN's pivot-subgraph links
        logits = self.model(batch["feats"], batch["sims"], k_in, **inputs)  # (B, W): the SDT's window of the K
        same = batch["same"][:, : logits.size(1)]
        mask = self._pair_mask(same)
        pair_loss = self._pair_loss(logits, same, mask)
        loss = pair_loss if topk_term is None else topk_term + pair_loss
        self._log_pairs(stage, loss, pair_loss, logits, same, mask)
        return loss

    def _topk_step(self, batch: dict[str, torch.Tensor], stage: str) -> tuple[torch.Tensor | None,
                                                                             torch.Tensor | None]:
        """``(k_pred (B,) or None, weighted Top-K loss or None)``: the Top-K predictor's k on this batch (frozen:
        in eval mode, no gradient) and, when it is trained jointly, its weighted loss; logs the k metrics."""
        if self.topk is None:
            return None, None
        feats, sims, k_star = batch["feats"], batch["sims"], batch["k_star"]
        B, K = sims.shape
        weighted = None
        if self.frozen_topk:
            self.topk.eval()  # frozen: no dropout, whatever mode Lightning put the module in
            with torch.no_grad():
                out = self.topk(feats, sims)
        else:
            out = self.topk(feats, sims)  # (B, K) logits or (B,)
            t_loss = topk_loss(out, k_star, K, self.topk.head, self.regression_loss)
            weighted = self.topk_weight * t_loss
            self.log(f"{stage}/topk_loss", t_loss, batch_size=B, sync_dist=stage != "train")
        k_pred = k_from_output(out.detach(), K, self.topk.head)  # (B,)
        self.log_k_metrics(stage, k_pred, k_star)
        return k_pred, weighted

    def _pair_mask(self, same: torch.Tensor) -> torch.Tensor:
        """``(B, W)`` bool: the pairs the loss and metrics count (the centre's own pair only with include_self)."""
        mask = torch.ones_like(same, dtype=torch.bool)
        if not self.include_self:
            mask[:, 0] = False
        return mask

    def _pair_loss(self, logits: torch.Tensor, same: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean BCE-with-logits (``pos_weight``) over the masked pairs."""
        bce = F.binary_cross_entropy_with_logits(logits, same, pos_weight=self.pos_weight, reduction="none")
        return bce[mask].mean()

    def _log_pairs(self, stage: str, loss: torch.Tensor, pair_loss: torch.Tensor, logits: torch.Tensor,
                   same: torch.Tensor, mask: torch.Tensor) -> None:
        """The losses, the pair metrics (threshold 0.5) and, in training, every SDT layer's lambda."""
        B, sync = same.shape[0], stage != "train"
        metrics = self.train_metrics if stage == "train" else self.val_metrics
        metrics.update(torch.sigmoid(logits.detach())[mask], same[mask].long())
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=B, sync_dist=sync)
        self.log(f"{stage}/pair_loss", pair_loss, batch_size=B, sync_dist=sync)
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=B)
        if stage == "train":
            for layer, lam in enumerate(getattr(self.model, "lambdas", ())):
                self.log(f"train/lambda_{layer}", lam.detach().float(), batch_size=B)

    def pipeline(self, graph: GraphConfig, mean: np.ndarray | None, **kwargs) -> ClusteringPipeline:
        """Inference object with the Top-K predictor (if any) and the pair classifier (shares the networks: no copy;
        they are run in eval mode and left in their own). ``kwargs`` go to
        :class:`~clustering.pipeline.ClusteringPipeline`."""
        kwargs.setdefault("device", str(self.device))
        return ClusteringPipeline(mean, graph, topk=self.topk, sdt=self.model, **kwargs)
