"""Resumable training: a run killed mid-epoch and resumed with ``--ckpt_path last`` (LightningCLI) ends with the
weights and metrics of an uninterrupted run with the same seed, exactly.

The kill is simulated by a callback that raises before a given training step: nothing of that step or after it
runs, and no checkpoint is written on the way out (there is no ``OnExceptionCheckpoint``). Two cases: ``last.ckpt``
written at every epoch end (the default: the resumed run redoes the interrupted epoch from its start) and written
mid-epoch (``--last_checkpoint.every_n_train_steps``: the resumed run continues inside the epoch).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import topk_args
from pytorch_lightning.callbacks import Callback

from facecluster.commands.train import cli_main

pytestmark = pytest.mark.usefixtures("cli_env")

EPOCHS, BATCHES = 3, 5  # tiny data: 5 training batches of 64 per epoch (asserted below)


class Killed(Exception):
    """The simulated kill."""


class KillAtStep(Callback):
    """Raises :class:`Killed` before the training step that would make ``trainer.global_step == step + 1``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            raise Killed(f"killed before step {self.step + 1} (epoch {trainer.current_epoch}, batch {batch_idx})")


def final_state(cli) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """The trainer's final metrics (minus the clustering wall time) and the model's weights."""
    metrics = {name: float(value) for name, value in cli.trainer.callback_metrics.items()
               if not name.endswith("cluster_seconds")}
    metrics["best_score"] = float(cli.trainer.checkpoint_callback.best_model_score)
    return metrics, {name: t.detach().clone() for name, t in cli.model.state_dict().items()}


@pytest.mark.parametrize(("checkpointing", "kill_step", "resume_step"),
                         [((), BATCHES + 2, BATCHES),  # last.ckpt at the end of epoch 0; killed in epoch 1
                          # last.ckpt every 6 steps: after batch 0 of epoch 1; killed before its batch 3
                          ((f"--last_checkpoint.every_n_train_steps={BATCHES + 1}",), BATCHES + 3, BATCHES + 1)],
                         ids=["epoch_end_ckpt", "mid_epoch_ckpt"])
def test_killed_run_resumes_to_the_uninterrupted_result(tiny_fit, tmp_path: Path, checkpointing: tuple[str, ...],
                                                        kill_step: int, resume_step: int) -> None:
    # dropout (0.1 by default) and a cosine schedule: the random masks and the scheduler state must match too
    common = [*topk_args(), f"--trainer.max_epochs={EPOCHS}", "--trainer.limit_train_batches=1.0",
              "--model.scheduler=torch.optim.lr_scheduler.CosineAnnealingLR", *checkpointing]

    full = cli_main(tiny_fit(*common, f"--checkpoint.dirpath={tmp_path / 'a'}"))
    assert full.trainer.num_training_batches == BATCHES and full.trainer.global_step == EPOCHS * BATCHES

    args = tiny_fit(*common, f"--checkpoint.dirpath={tmp_path / 'b'}")
    kill = f"--trainer.callbacks+={{class_path: {__name__}.KillAtStep, init_args: {{step: {kill_step}}}}}"
    with pytest.raises(Killed):
        cli_main([*args, kill])
    last = tmp_path / "b" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == resume_step

    resumed = cli_main([*args, "--ckpt_path=last"])
    assert Path(resumed.trainer.ckpt_path) == last and resumed.trainer.global_step == EPOCHS * BATCHES

    metrics_a, weights_a = final_state(full)
    metrics_b, weights_b = final_state(resumed)
    assert {"train/loss", "val/loss", "val/k_mae", "val/pairwise_f", "val/bcubed_f", "val/nmi"} <= set(metrics_a)
    assert metrics_b == metrics_a  # exact float equality
    assert weights_b.keys() == weights_a.keys()
    assert all(torch.equal(weights_b[name], weights_a[name]) for name in weights_a)
