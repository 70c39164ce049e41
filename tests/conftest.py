"""Shared fixtures of the training tests: tiny synthetic data and tiny networks for the real CLI."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# ~340 faces of 60 identities (d = 16), K = 10: a few batches, val split (25% of identities) larger than K
TINY_DATA = ["--data.synthetic.n_identities=60", "--data.synthetic.max_size=30", "--data.synthetic.dim=16",
             "--data.k=10", "--data.val_fraction=0.25", "--data.batch_size=64", "--data.num_workers=0"]
TINY_NET = ["--model.model.config.d_model=16", "--model.model.config.num_layers=1",
            "--model.model.config.dim_feedforward=32", "--model.model.config.num_heads=2"]


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch):
    """One intra-op thread (tiny matmuls: faster, and immune to contention on a shared CPU) and a clean
    ``sys.argv`` (pytest's own arguments would otherwise reach LightningCLI's warning)."""
    monkeypatch.setattr(sys, "argv", ["train.py"])
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def tiny_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``tiny_fit(module_args)`` -> ``fit`` arguments of a one-epoch, three-step CPU run writing under tmp_path."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")

    def make(*extra: str, steps: int = 3) -> list[str]:
        return ["fit", *TINY_DATA, "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.max_epochs=1",
                f"--trainer.limit_train_batches={steps}", "--trainer.logger=false",
                "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
                f"--trainer.default_root_dir={tmp_path}", f"--checkpoint.dirpath={tmp_path / 'ckpt'}", *extra]

    return make


def topk_args() -> list[str]:
    return ["--model=TopKModule", "--model.model=TopKPredictor", *TINY_NET]


def sdt_args(schedule: str, *extra: str) -> list[str]:
    return ["--model=SDTModule", "--model.model=SDT", *TINY_NET, f"--model.schedule={schedule}", *extra]


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.gpu`` tests run where torch sees a CUDA device and are skipped, with the reason, elsewhere
    (``scripts/gpu_check.sh`` runs them on a GPU machine)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is False on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
