"""Training entry point (LightningCLI)::

    python train.py fit --config configs/trainer/cpu.yaml --config configs/logger/csv.yaml \
        --config configs/experiment/lfw_topk.yaml

Configs are layered with repeated ``--config`` (later files override earlier ones); any value can be overridden on
the command line (``--model.init_args.optimizer.init_args.lr=1e-3``). See ``configs/README.md``.

Each network takes one dataclass config (``models.SDTConfig``, ...), written under its ``init_args.config``
(``--model.init_args.model.init_args.config.d_model=64``, short ``--model.model.config.d_model=64``). Values shared
by data and networks are given once: ``data.k`` is linked to the networks' ``config.k`` and the data's feature width
(:meth:`FaceGraphDataModule.feature_dim`: the synthetic ``dim``, ``data.dim`` or the ``.npy`` header) to their
``config.feat_dim``, both at parse time (link targets: ``--print_config`` and the saved ``config.yaml`` leave them
out; the checkpoint's hyper-parameters record each network's whole config); ``data.pivot_u`` (the pivot subgraph
links the GNN baselines read) is set from the network's ``pivot_u`` when the classes are instantiated.
Three callbacks are always present and configured at the top level: ``evaluation``
(:class:`callbacks.ClusteringEvaluation`, the end-to-end val clustering metrics), ``checkpoint``
(``ModelCheckpoint`` on ``val/pairwise_f``: ``best.ckpt``) and ``last_checkpoint`` (``last.ckpt`` after every epoch,
in the same ``checkpoint.dirpath``; every N steps instead with ``--last_checkpoint.every_n_train_steps=N``).

Resuming: the same command plus ``--ckpt_path last`` continues from the newest ``last*.ckpt`` in
``checkpoint.dirpath`` (none there: a fresh start) and ends where the uninterrupted run ends: the data order is a
function of (seed, epoch) (:class:`datamodules.face_graph.EpochShuffle`), the dropout RNG is re-seeded from (seed,
epoch, batch) before every step (:class:`lightning_modules.common.BaseModule`) and the train loader is
resumable inside an epoch (:class:`datamodules.face_graph.ResumableLoader`); tests/test_resume.py.
"""
from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from facecluster import lightning_modules  # noqa: F401  (short class_path names: TopKModule, SDTModule)
from facecluster import models  # noqa: F401  (short class_path names: TopKPredictor, SDT, LGCN, PivotGAT)
from facecluster.callbacks import ClusteringEvaluation
from facecluster.datamodules import FaceGraphDataModule

NETWORKS = ("model", "topk")  # network arguments of TopKModule / SDTModule whose shapes come from the data


def pivot_u_of(module: pl.LightningModule) -> int | None:
    """The ``pivot_u`` of a module's pair classifier (the GNN baselines), else ``None``."""
    return getattr(getattr(module, "model", None), "pivot_u", None)


class FaceClusterCLI(LightningCLI):
    """LightningCLI with the data-to-network links and the two standard callbacks.

    The links are parse-time links, which skip a target the chosen module lacks (``topk`` of :class:`TopKModule`);
    instantiation-time links (``apply_on="instantiate"`` from ``data.feat_dim``) would fail there, because
    Lightning's hyper-parameter instantiator asserts that every link target exists.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        shape_args = ("data.source", "data.features", "data.dim", "data.synthetic.dim")
        for net in NETWORKS:
            parser.link_arguments("data.k", f"model.init_args.{net}.init_args.config.k")
            parser.link_arguments(shape_args, f"model.init_args.{net}.init_args.config.feat_dim",
                                  compute_fn=FaceGraphDataModule.feature_dim)
        # the batches carry the pivot-subgraph links a GNN pair classifier reads (its pivot_u; None for the others)
        parser.link_arguments("model", "data.pivot_u", compute_fn=pivot_u_of, apply_on="instantiate")
        # a cosine schedule spans the whole run (interval "epoch"); skipped for schedulers without T_max
        parser.link_arguments("trainer.max_epochs", "model.init_args.scheduler.init_args.T_max")
        parser.add_lightning_class_args(ClusteringEvaluation, "evaluation")
        parser.link_arguments("data.k", "evaluation.graph.k")  # the validation graph's K
        # best.ckpt by the clustering metric, and last.ckpt every epoch (ModelCheckpoint's own save_last only
        # refreshes last.ckpt when a new best is saved), both in checkpoint.dirpath; `--ckpt_path last` resumes
        # from last.ckpt (the newest file named last*.ckpt there)
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": "val/score", "checkpoint.mode": "max",
                             "checkpoint.filename": "best", "checkpoint.enable_version_counter": False})
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults({"last_checkpoint.filename": "last", "last_checkpoint.enable_version_counter": False})
        parser.link_arguments("checkpoint.dirpath", "last_checkpoint.dirpath")


def cli_main(args: list[str] | None = None, run: bool = True) -> FaceClusterCLI:
    """Run the CLI (``args=None``: ``sys.argv``); tests call ``cli_main(["fit", ...])`` and read ``cli.trainer``."""
    return FaceClusterCLI(
        pl.LightningModule,
        FaceGraphDataModule,
        subclass_mode_model=True,
        args=args,
        run=run,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
    )


def main(argv: list[str] | None = None) -> int:
    """``facecluster train`` / ``python train.py``: LightningCLI on ``argv`` (default ``sys.argv[1:]``)."""
    cli_main(argv)
    return 0


if __name__ == "__main__":
    cli_main()
