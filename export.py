"""Export trained networks to one self-contained model file for ``cluster.py`` (and ``ClusteringPipeline.load``).

    python export.py --ckpt runs/lfw_sdt/checkpoints/best.ckpt --out artifacts/model.pt --tune

The file holds both networks' weights and hyper-parameters (an :class:`SDTModule` checkpoint carries its Top-K
predictor; a :class:`TopKModule` checkpoint gives the Top-K predictor alone), the preprocessing mean fitted on
the training identities, K, the edge transform, the Jaccard variant, the combine rule and the pruning threshold:
everything inference needs, and nothing of Lightning.

``--tune`` chooses the graph settings (Jaccard variant, combine rule, threshold) on the checkpoint's own
validation split (identities held out from training, rebuilt from the datamodule settings stored in the
checkpoint): the grid point with the best mean of pairwise F and BCubed F. Test data is never looked at. Without
``--tune`` the values given on the command line are used.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import replace

import numpy as np
import torch

from clustering.metrics import evaluate, selection_score
from clustering.pipeline import ClusteringPipeline, GraphConfig, refine_and_cluster

JACCARDS = ("topk", "none")
COMBINES = ("product", "jaccard")
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.0, 0.91, 0.05))


def load_module(path: str):
    """The LightningModule of a checkpoint (TopKModule or SDTModule, by its recorded class) on the CPU."""
    from lightning_modules import SDTModule, TopKModule

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    name = str(ckpt.get("hyper_parameters", {}).get("_class_path", ""))
    cls = SDTModule if name.endswith("SDTModule") else TopKModule
    return cls.load_from_checkpoint(path, map_location="cpu"), ckpt


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


def tune(pipe: ClusteringPipeline, x, nbrs, sims, labels, base: GraphConfig, *, jaccards=JACCARDS,
         combines=COMBINES, thresholds=THRESHOLDS) -> tuple[GraphConfig, list[dict]]:
    """Grid search of (jaccard, combine, threshold) on a labelled split by
    :func:`~clustering.metrics.selection_score`; returns the best config and the table. Without an SDT only
    ``combine="jaccard"`` is tried."""
    k, q = pipe.predict(x, nbrs, sims)
    if q is None:
        combines = ("jaccard",)
    table = []
    for jac, comb, th in itertools.product(jaccards, combines, thresholds):
        cfg = replace(base, jaccard=jac, combine=comb, threshold=float(th))
        m = evaluate(labels, refine_and_cluster(nbrs, sims, cfg, k=k, pair_prob=q))
        table.append({"jaccard": jac, "combine": comb, "threshold": float(th), "pairwise_f": m["pairwise_f"],
                      "bcubed_f": m["bcubed_f"], "score": selection_score(m)})
    best = max(table, key=lambda r: r["score"])
    return replace(base, jaccard=best["jaccard"], combine=best["combine"], threshold=best["threshold"]), table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="SDTModule or TopKModule checkpoint")
    ap.add_argument("--out", required=True, help="model file to write")
    ap.add_argument("--tune", action="store_true", help="choose jaccard/combine/threshold on the val split")
    ap.add_argument("--transform", default="sigmoid", choices=["sigmoid", "exp"])
    ap.add_argument("--jaccard", default="topk", choices=["topk", "all", "plain", "none"])
    ap.add_argument("--combine", default="product", choices=["product", "mean", "sdt", "jaccard"])
    ap.add_argument("--threshold", type=float, default=0.0)
    ap.add_argument("--early-stop", action="store_true")
    ap.add_argument("--seed", type=int, default=0, help="Infomap seed")
    ap.add_argument("--description", default="", help="free text stored in the file")
    args = ap.parse_args(argv)

    module, ckpt = load_module(args.ckpt)
    dm_hp = ckpt.get("datamodule_hyper_parameters", {})
    mean_state = ckpt.get("FaceGraphDataModule", {}).get("mean")
    mean = None if mean_state is None else np.asarray(mean_state, dtype=np.float32)
    graph = GraphConfig(k=int(dm_hp.get("k", 80)), transform=args.transform, jaccard=args.jaccard,
                        combine=args.combine, threshold=args.threshold, early_stop=args.early_stop, seed=args.seed)
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
