"""Training of the Top-K predictor (METHOD.md step 4) on the Ada-NETS target ``k*``."""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable

from facecluster.clustering.graph_config import GraphConfig
from facecluster.clustering.pipeline import ClusteringPipeline
from facecluster.models import TopKConfig, TopKPredictor
from facecluster.models.config import config_from_dict

from .common import BaseModule, k_from_output, read_checkpoint, topk_loss, upgrade_network_spec

__all__ = ["TopKModule", "load_topk"]


class TopKModule(BaseModule):
    """Trains a :class:`models.TopKPredictor` to predict ``k*`` from a centre's K neighbours.

    Loss: cross-entropy over the classes ``k* - 1`` (classification head) or L1 / smooth L1 on ``k* / K``
    (regression head). Logs ``{stage}/loss``, ``{stage}/k_mae`` (mean ``|k - k*|``) and ``{stage}/k_acc``
    (share with ``k == k*``).

    Args:
        model: the network (its ``config.feat_dim`` and ``config.k`` are linked to the datamodule by ``train.py``).
        optimizer: optimiser factory (``params -> Optimizer``); weight decay applies to matrices only.
        scheduler: optional LR-scheduler factory (``optimizer -> LRScheduler``).
        scheduler_interval: ``"epoch"`` or ``"step"``.
        regression_loss: ``"l1"`` or ``"smooth_l1"`` for the regression head.
    """

    def __init__(
        self,
        model: TopKPredictor,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        regression_loss: Literal["l1", "smooth_l1"] = "l1",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.regression_loss = regression_loss
        self.record_effective_hparams(model=model)

    def forward(self, feats: torch.Tensor, sims: torch.Tensor) -> torch.Tensor:
        return self.model(feats, sims)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        feats, sims, k_star = batch["feats"], batch["sims"], batch["k_star"]  # (B, K, d), (B, K), (B,)
        B, K = sims.shape
        out = self.model(feats, sims)  # (B, K) logits or (B,) k / K
        loss = topk_loss(out, k_star, K, self.model.head, self.regression_loss)
        k_pred = k_from_output(out.detach(), K, self.model.head)  # (B,)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=B, sync_dist=stage != "train")
        self.log_k_metrics(stage, k_pred, k_star)
        return loss

    def pipeline(self, graph: GraphConfig, mean: np.ndarray | None, **kwargs) -> ClusteringPipeline:
        """Inference object with this Top-K predictor and no SDT (shares the network: no copy; it is run in eval
        mode and left in its own). ``kwargs`` go to :class:`~clustering.pipeline.ClusteringPipeline` (``knn``,
        ``batch_size``, ...)."""
        kwargs.setdefault("device", str(self.device))
        return ClusteringPipeline(mean, graph, topk=self.model, sdt=None, **kwargs)


def load_topk(checkpoint: str) -> TopKPredictor:
    """The trained :class:`models.TopKPredictor` of a :class:`TopKModule` checkpoint, on the CPU.

    Rebuilt from the network's recorded config and its ``model.*`` weights, without instantiating the
    LightningModule (which, called while LightningCLI instantiates another module, would pick up that module's
    hyper-parameters). The config is ``init_args: {config: {...}}``, or, in a checkpoint written before the networks
    took a dataclass config, the same fields flat in ``init_args`` (:func:`~.common.upgrade_network_spec`); a config
    that does not fit :class:`TopKConfig` is a one-line ``ValueError``. Read with ``weights_only=True``
    (:func:`~.common.read_checkpoint`): a file holding other Python objects is refused, never unpickled.
    """
    ckpt = read_checkpoint(str(checkpoint))
    spec = upgrade_network_spec(ckpt.get("hyper_parameters", {}).get("model"))
    if isinstance(spec, TopKPredictor):
        net = spec
    elif isinstance(spec, dict) and str(spec.get("class_path", "")).endswith("TopKPredictor"):
        try:
            net = TopKPredictor(config_from_dict(TopKConfig, (spec.get("init_args") or {}).get("config")))
        except ValueError as exc:
            raise ValueError(f"{checkpoint}: Top-K network config: {exc}") from None
    else:
        raise ValueError(f"{checkpoint}: not a TopKModule checkpoint (hyper-parameter 'model' is {spec!r:.80})")
    net.load_state_dict({key[len("model."):]: value for key, value in ckpt["state_dict"].items()
                         if key.startswith("model.")})
    return net
