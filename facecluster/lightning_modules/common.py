"""What both LightningModules share: optimiser construction and the Top-K loss / prediction."""
from __future__ import annotations

import os
import random
from dataclasses import asdict
from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from facecluster.clustering.model_file import NETWORKS

__all__ = ["BaseModule", "param_groups", "topk_loss", "k_from_output", "network_spec", "read_checkpoint", "step_seed",
           "upgrade_class_path", "upgrade_network_spec"]

# the networks of models/ a checkpoint may record: those a model file may hold
NETWORK_CLASSES = tuple(name for names in NETWORKS.values() for name in names)


def network_spec(net: torch.nn.Module) -> dict:
    """``class_path``/``init_args`` that rebuild a network of ``models/`` from its dataclass ``.config``:
    ``{"class_path": "facecluster.models.sdt.SDT", "init_args": {"config": {"feat_dim": 256, ...}}}``."""
    return {"class_path": f"{type(net).__module__}.{type(net).__name__}", "init_args": {"config": asdict(net.config)}}


def read_checkpoint(path: str) -> dict:
    """A Lightning checkpoint read with ``torch.load(weights_only=True)``: tensors, numbers, strings and containers
    only, so that a checkpoint from elsewhere never runs code (a pickled object can run any code when it is built).
    The checkpoints ``train.py`` writes hold nothing else (their hyper-parameters are LightningCLI's plain
    ``class_path`` / ``init_args`` dicts). Raises :class:`~clustering.errors.InputError`, one line: a missing or
    unreadable file, or one holding another Python object (named), which is never loaded."""
    import pickle
    import re

    from facecluster.clustering.errors import InputError
    from facecluster.clustering.io import check_input_file

    check_input_file(path, "checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused an object
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        what = f"a Python object ({found.group(1)})" if found else "Python objects"
        raise InputError(f"{path}: checkpoint holds {what} beyond tensors and plain values; such objects are never "
                         f"loaded (they could run code): not a checkpoint written by train.py") from None
    except Exception as exc:
        raise InputError(f"{path}: not a readable checkpoint ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:100]})") from None


# the top-level packages of the code before it was one package: a checkpoint's class paths name them
PRE_PACKAGE = ("models", "clustering", "lightning_modules", "datamodules", "callbacks")


def upgrade_class_path(path: str) -> str:
    """A class path a checkpoint recorded, in today's form: one written before the package
    (``lightning_modules.SDTModule``, ``models.sdt.SDT``) named under ``facecluster.``; any other unchanged."""
    return f"facecluster.{path}" if path.split(".", 1)[0] in PRE_PACKAGE else path


def upgrade_network_spec(spec):
    """A network's recorded ``class_path``/``init_args`` in today's form: a checkpoint written before the networks
    took a dataclass config has the fields flat in ``init_args``; they move under ``config``; one written before the
    package (``models.sdt.SDT``) names the module under ``facecluster.``. Anything else (today's form, a network
    object, ``None``) is returned as it is."""
    if isinstance(spec, dict) and str(spec.get("class_path", "")).rsplit(".", 1)[-1] in NETWORK_CLASSES:
        path = upgrade_class_path(str(spec["class_path"]))
        if path != spec["class_path"]:
            spec = {**spec, "class_path": path}
        args = spec.get("init_args")
        if isinstance(args, dict) and set(args) != {"config"}:
            return {**spec, "init_args": {"config": args}}
    return spec


def param_groups(module: torch.nn.Module) -> list[dict]:
    """Trainable parameters in two groups: matrices (the optimiser's configured weight decay) and vectors
    (biases, norms, lambdas: ``weight_decay=0``), as nanoGPT does."""
    params = [p for p in module.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2]},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def step_seed(*keys: int) -> int:
    """A 32-bit seed mixed from the run's seed (``PL_GLOBAL_SEED``, set by ``seed_everything``; 0 without it) and
    ``keys`` (``numpy.random.SeedSequence``: no collisions between nearby keys)."""
    run_seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
    return int(np.random.SeedSequence([run_seed, *keys]).generate_state(1)[0])


class BaseModule(pl.LightningModule):
    """What both modules share: one ``_step`` for train and val, the k metrics, and the optimiser.

    Builds the injected optimiser (and optional scheduler) over the trainable parameters, and completes the
    hyper-parameters that LightningCLI records for ``load_from_checkpoint``.

    Every training step first re-seeds the global RNGs (torch: dropout; numpy, random) with
    :func:`step_seed` ``(epoch, batch_idx, rank)``: a step's randomness then depends on where it is in the run, not
    on what ran before it, so a run resumed from a checkpoint draws the masks an uninterrupted run draws. (The
    data order is the datamodule's: a function of seed and epoch as well.)
    """

    optimizer: OptimizerCallable
    scheduler: LRSchedulerCallable | None
    scheduler_interval: str

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        seed = step_seed(self.current_epoch, batch_idx, self.global_rank)
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)

    def record_effective_hparams(self, **networks: torch.nn.Module | None) -> None:
        """Write the full configs of the injected networks (and the scheduler's arguments) into ``hparams``.

        LightningCLI's hyper-parameters leave out the values set by argument links (``feat_dim``, ``k``,
        ``T_max``), so a checkpoint could not rebuild the networks; the networks' own ``.config`` is the complete
        record. Only CLI-made hyper-parameters (dicts) are rewritten; a module built in Python keeps the objects.
        """
        for name, net in networks.items():
            if net is not None and isinstance(self.hparams.get(name), dict):
                self.hparams[name] = network_spec(net)
        spec = self.hparams.get("scheduler")
        if isinstance(spec, dict) and isinstance(getattr(self.scheduler, "keywords", None), dict):
            spec.setdefault("init_args", {}).update(self.scheduler.keywords)

    def _step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        """The loss of one batch, with its metrics logged under ``stage`` ("train" or "val")."""
        raise NotImplementedError

    def log_k_metrics(self, stage: str, k_pred: Tensor, k_star: Tensor) -> None:
        """``{stage}/k_mae`` (mean ``|k - k*|``) and ``{stage}/k_acc`` (share with ``k == k*``) of a batch (B,)."""
        batch_size, sync = k_star.shape[0], stage != "train"
        self.log(f"{stage}/k_mae", (k_pred - k_star).abs().float().mean(), batch_size=batch_size, sync_dist=sync)
        self.log(f"{stage}/k_acc", (k_pred == k_star).float().mean(), batch_size=batch_size, sync_dist=sync)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def configure_optimizers(self):
        optimizer = self.optimizer(param_groups(self))
        if self.scheduler is None:
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self.scheduler(optimizer), "interval": self.scheduler_interval}}


def topk_loss(out: Tensor, k_star: Tensor, K: int, head: str,
              regression_loss: Literal["l1", "smooth_l1"] = "l1") -> Tensor:
    """Loss of a :class:`models.TopKPredictor` output against the target ``k*`` (B,) in 1..K.

    * ``head="classification"`` (``out`` logits ``(B, K)``): cross-entropy over the K classes ``k* - 1``;
    * ``head="regression"`` (``out`` = k / K in [0, 1], ``(B,)``): L1, or smooth L1 with ``beta = 1 / K``
      (quadratic within one rank of the target), on ``k* / K``.
    """
    if head == "classification":
        return F.cross_entropy(out, k_star - 1)
    target = k_star.to(out.dtype) / K
    if regression_loss == "l1":
        return F.l1_loss(out, target)
    if regression_loss == "smooth_l1":
        return F.smooth_l1_loss(out, target, beta=1.0 / K)
    raise ValueError(f"regression_loss must be 'l1' or 'smooth_l1', got {regression_loss!r}")


def k_from_output(out: Tensor, K: int, head: str) -> Tensor:
    """Predicted k in 1..K (B,) long from a Top-K output, the rule of :meth:`models.TopKPredictor.predict_k`
    applied to an output already computed (no second forward)."""
    if head == "classification":
        return out.argmax(dim=-1) + 1
    return torch.round(out * K).long().clamp(1, K)
