"""Export trained networks to one self-contained model file for ``cluster.py`` (and ``ClusteringPipeline.load``).

    python export.py --ckpt runs/lfw_sdt/checkpoints/best.ckpt --out artifacts/model.pt --tune

The file holds both networks' weights and hyper-parameters (an :class:`SDTModule` checkpoint carries its Top-K
predictor; a :class:`TopKModule` checkpoint gives the Top-K predictor alone), the preprocessing mean fitted on
the training identities and the graph settings (:class:`~clustering.graph_config.GraphConfig`: K, the edge transform,
the Jaccard variant, the combine rule, the pruning threshold, early stopping and edge recall, the Infomap seed and
trials; one option per field, K excepted: it is the checkpoint's): everything inference needs, and nothing of
Lightning.

``--tune`` chooses the graph settings (Jaccard variant, combine rule, threshold) on the checkpoint's own
validation split (identities held out from training, rebuilt from the datamodule settings stored in the
checkpoint): the grid point with the best mean of pairwise F and BCubed F. Test data is never looked at. Without
``--tune`` the values given on the command line are used.
"""
from __future__ import annotations

import argparse
import io
import itertools
import json
import sys
from dataclasses import replace

import numpy as np
import torch

from clustering.errors import InputError
from clustering.graph_config import GraphConfig, add_graph_arguments, graph_from_args
from clustering.metrics import evaluate, selection_score
from clustering.pipeline import ClusteringPipeline
from clustering.refine import refine_and_cluster

# the --tune grid (a subset of GraphConfig's allowed values)
TUNE_JACCARDS = ("topk", "none")
TUNE_COMBINES = ("product", "jaccard")
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.0, 0.91, 0.05))


def load_module(path: str):
    """The LightningModule of a checkpoint (TopKModule or SDTModule, by its recorded class) on the CPU. A checkpoint
    written before the networks took a dataclass config (their fields flat in ``init_args``) is read as today's
    (:func:`lightning_modules.common.upgrade_network_spec`). Read with ``weights_only=True``
    (:func:`~lightning_modules.common.read_checkpoint`, and Lightning's own read likewise): a checkpoint from
    elsewhere runs no code; one holding other Python objects is a one-line
    :class:`~clustering.errors.InputError`."""
    from lightning_modules import SDTModule, TopKModule
    from lightning_modules.common import read_checkpoint, upgrade_network_spec

    ckpt = read_checkpoint(path)
    hparams = ckpt.get("hyper_parameters", {})
    cls = SDTModule if str(hparams.get("_class_path", "")).endswith("SDTModule") else TopKModule
    upgraded = {key: upgrade_network_spec(hparams[key]) for key in ("model", "topk") if key in hparams}
    if all(spec is hparams[key] for key, spec in upgraded.items()):
        return cls.load_from_checkpoint(path, map_location="cpu", weights_only=True), ckpt
    hparams.update(upgraded)
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    buffer.seek(0)
    return cls.load_from_checkpoint(buffer, map_location="cpu", weights_only=True), ckpt


def val_split(ckpt: dict):
    """The validation split of the checkpoint's datamodule (kNN graph from its cache when present)."""
    from datamodules import FaceGraphDataModule

    hp = {k: v for k, v in ckpt["datamodule_hyper_parameters"].items() if not k.startswith("_")}
    if isinstance(hp.get("synthetic"), dict):
        from clustering.synthetic import SyntheticConfig

        hp["synthetic"] = SyntheticConfig(**hp["synthetic"])
    dm = FaceGraphDataModule(**hp)
    dm.setup("fit")
    if dm.val_graph is None:
        raise SystemExit("error: the checkpoint's datamodule has no validation split (val_fraction=0): cannot --tune")
    return dm


def tune(pipe: ClusteringPipeline, x, nbrs, sims, labels, base: GraphConfig, *, jaccards=TUNE_JACCARDS,
         combines=TUNE_COMBINES, thresholds=THRESHOLDS) -> tuple[GraphConfig, list[dict]]:
    """Grid search of (jaccard, combine, threshold) on a labelled split by
    :func:`~clustering.metrics.selection_score`; returns the best config and the table. Without an SDT only
    ``combine="jaccard"`` is tried."""
    k, pair_prob = pipe.predict(x, nbrs, sims)
    if pair_prob is None:
        combines = ("jaccard",)
    table = []
    for jac, comb, th in itertools.product(jaccards, combines, thresholds):
        cfg = replace(base, jaccard=jac, combine=comb, threshold=float(th))
        m = evaluate(labels, refine_and_cluster(nbrs, sims, cfg, k=k, pair_prob=pair_prob))
        table.append({"jaccard": jac, "combine": comb, "threshold": float(th), "pairwise_f": m["pairwise_f"],
                      "bcubed_f": m["bcubed_f"], "score": selection_score(m)})
    best = max(table, key=lambda r: r["score"])
    return replace(base, jaccard=best["jaccard"], combine=best["combine"], threshold=best["threshold"]), table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: the file options, then one option per :class:`GraphConfig` field but ``k`` (the
    checkpoint's datamodule K), built from the dataclass (:func:`~clustering.graph_config.add_graph_arguments`)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="SDTModule or TopKModule checkpoint")
    ap.add_argument("--out", required=True, help="model file to write")
    ap.add_argument("--tune", action="store_true", help="choose jaccard/combine/threshold on the val split")
    ap.add_argument("--description", default="", help="free text stored in the file")
    add_graph_arguments(ap, exclude=("k",))
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        graph = graph_from_args(args)  # checked before the checkpoint is read; K is the checkpoint's
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    try:
        module, ckpt = load_module(args.ckpt)
    except InputError as err:  # a missing or unreadable checkpoint, or one holding objects that are never loaded
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    dm_hp = ckpt.get("datamodule_hyper_parameters", {})
    graph = replace(graph, k=int(dm_hp.get("k", graph.k)))
    mean_state = ckpt.get("FaceGraphDataModule", {}).get("mean")
    mean = None if mean_state is None else np.asarray(mean_state, dtype=np.float32)
    pipe = module.pipeline(graph, mean, device="cpu")
    meta = {"description": args.description, "checkpoint": args.ckpt, "epoch": ckpt.get("epoch"),
            "trained_on": {k: dm_hp.get(k) for k in ("source", "features", "labels", "val_fraction", "split_seed")},
            "module": type(module).__name__, "versions": {"torch": str(torch.__version__)}}
    if args.tune:
        dm = val_split(ckpt)
        v = dm.val_graph
        graph, table = tune(pipe, v.x, v.nbrs, v.sims, v.labels, graph)
        pipe.graph = graph
        best = max(table, key=lambda r: r["score"])
        meta["tuning"] = {"split": "val (identities held out from training)", "n_faces": int(len(v)),
                          "best": best, "grid": table}
        print(f"tuned on val ({len(v)} faces): {json.dumps({k: best[k] for k in ('jaccard', 'combine', 'threshold')})} "
              f"-> F_P {best['pairwise_f']:.4f} F_B {best['bcubed_f']:.4f}")
    pipe.meta = meta
    pipe.save(args.out)
    print(f"wrote {args.out}: graph {json.dumps(graph.to_dict())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
