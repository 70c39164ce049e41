"""Cluster face embeddings with an exported model: one command, no Lightning or W&B import.

    python cluster.py --model MODEL.pt --features FEATS [--dim D] [--labels LABELS] --out OUT [--metrics-json M]

FEATS is ``.npy`` / ``.npz`` / ``.bin`` (``.bin`` needs ``--dim``); LABELS ``.meta`` / ``.txt`` / ``.npy``.
OUT gets one cluster id per line, in input order; ``OUT.json`` beside it records the versions, the model's hash
and every parameter that made it. With labels, M gets
``{"pairwise": {precision, recall, f}, "bcubed": {...}, "nmi", "n_clusters", "n_faces", "seconds": {stage: s}}``.
Bad input ends with a one-line message naming the file and the problem, exit status 2, and no partial output.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np


def _atomic_write(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _versions() -> dict:
    import faiss
    import infomap
    import torch

    return {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "faiss": faiss.__version__, "infomap": infomap.__version__}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model file written by export.py")
    ap.add_argument("--features", required=True, help="features: .npy, .npz or .bin (with --dim)")
    ap.add_argument("--dim", type=int, help="feature dimension of a .bin file")
    ap.add_argument("--labels", help="identity labels (.meta/.txt/.npy) to evaluate against")
    ap.add_argument("--out", required=True, help="output: one cluster id per line, input order")
    ap.add_argument("--metrics-json", help="write metrics here (needs --labels)")
    ap.add_argument("--seed", type=int, default=None, help="Infomap seed (default: the model's)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--knn-method", default=None, choices=["auto", "flat", "ivf", "hnsw"],
                    help="kNN index (default: the model's setting, else flat up to 300K faces, IVF above)")
    ap.add_argument("--batch-size", type=int, default=None, help="nodes per network forward")
    ap.add_argument("--progress", action="store_true", help="progress bars on every stage")
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    from clustering.io import InputError, load_features, load_labels
    from clustering.metrics import evaluate
    from clustering.pipeline import ClusteringPipeline, Timer

    t_start = time.perf_counter()
    if args.metrics_json and not args.labels:
        raise InputError(f"{args.metrics_json}: --metrics-json needs --labels")
    for out in filter(None, (args.out, args.metrics_json)):
        folder = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(folder):
            raise InputError(f"{out}: output folder {folder} does not exist")
    timer = Timer()
    with timer("load"):
        pipe = ClusteringPipeline.load(args.model, device=args.device)
        if args.dim is not None and pipe.feat_dim is not None and args.dim != pipe.feat_dim:
            raise InputError(f"{args.features}: --dim {args.dim} differs from the model's feature dimension "
                             f"{pipe.feat_dim}")
        feats = load_features(args.features, dim=args.dim)
        if pipe.feat_dim is not None and feats.shape[1] != pipe.feat_dim:
            raise InputError(f"{args.features}: features have dimension {feats.shape[1]}, the model expects "
                             f"{pipe.feat_dim}")
        labels = load_labels(args.labels, n=feats.shape[0]) if args.labels else None
    if args.seed is not None:
        pipe.graph.seed = args.seed
    if args.knn_method:
        pipe.knn["method"] = args.knn_method
    if args.batch_size:
        pipe.batch_size = args.batch_size
    n = feats.shape[0]
    k = min(pipe.graph.k, n)
    notes = []
    if k < pipe.graph.k:
        notes.append(f"only {n} faces: clustering with K = {k} neighbours instead of the model's {pipe.graph.k}")
        print(f"note: {args.features}: {notes[-1]}", file=sys.stderr)
    x, nbrs, sims = pipe.graph_inputs(feats, timer, progress=args.progress, k=k)
    pred = pipe.run_graph(x, nbrs, sims, timer, progress=args.progress)

    with timer("write"):
        _atomic_write(args.out, "".join(f"{c}\n" for c in pred.tolist()))
    seconds = {**{s: round(v, 4) for s, v in timer.seconds.items()}, "total": round(time.perf_counter() - t_start, 4)}
    result = {"n_faces": int(n), "n_clusters": int(pred.max() + 1) if n else 0, "seconds": seconds}
    if labels is not None:
        m = evaluate(labels, pred)
        result.update({"pairwise": {"precision": m["pairwise_p"], "recall": m["pairwise_r"], "f": m["pairwise_f"]},
                       "bcubed": {"precision": m["bcubed_p"], "recall": m["bcubed_r"], "f": m["bcubed_f"]},
                       "nmi": m["nmi"], "n_clusters": m["n_clusters"], "n_faces": m["n_faces"]})
        if args.metrics_json:
            _atomic_write(args.metrics_json, json.dumps(result, indent=1) + "\n")
    sidecar = {"command": sys.argv, "model": os.path.abspath(args.model), "model_sha256": _sha256(args.model),
               "features": os.path.abspath(args.features), "n_faces": int(n), "k": int(k),
               "graph": pipe.graph.to_dict(), "knn": pipe.knn, "batch_size": pipe.batch_size,
               "device": pipe.device, "versions": _versions(), "notes": notes, "seconds": seconds,
               "model_meta": pipe.meta}
    _atomic_write(args.out + ".json", json.dumps(sidecar, indent=1, default=str) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from clustering.io import InputError

    try:
        result = run(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"error: {args.features}: out of memory; try --knn-method ivf or a smaller --batch-size",
              file=sys.stderr)
        return 3
    line = f"{result['n_faces']} faces -> {result['n_clusters']} clusters"
    if "pairwise" in result:
        line += (f" | pairwise P/R/F {result['pairwise']['precision']:.4f}/{result['pairwise']['recall']:.4f}/"
                 f"{result['pairwise']['f']:.4f} | BCubed P/R/F {result['bcubed']['precision']:.4f}/"
                 f"{result['bcubed']['recall']:.4f}/{result['bcubed']['f']:.4f} | NMI {result['nmi']:.4f}")
    print(line)
    print("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result["seconds"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
