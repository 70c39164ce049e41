"""Cluster face embeddings with an exported model: one command, no Lightning or W&B import.

Cluster a collection:

    python cluster.py --model MODEL.pt --features FEATS [--dim D] [--labels LABELS] --out OUT [--metrics-json M]

Add new faces to an earlier result, without re-clustering it (incremental):

    python cluster.py --model MODEL.pt --features NEW_FEATS [--dim D] --out OUT \\
        --assign-to PREVIOUS_OUT --previous-features PREVIOUS_FEATS [--previous-dim D] \\
        [--labels NEW_LABELS --previous-labels PREVIOUS_LABELS --metrics-json M]

FEATS is ``.npy`` / ``.npz`` / ``.bin`` (``.bin`` needs ``--dim``); LABELS ``.meta`` / ``.txt`` / ``.npy`` / ``.npz``.
OUT gets one integer cluster id per line, in input order. With ``--assign-to``, OUT lists ALL faces: first the
previous faces (PREVIOUS_FEATS, in their order, with exactly the ids PREVIOUS_OUT gave them), then the new faces
(NEW_FEATS, in their order); a new face either joins an existing cluster (takes its id) or starts a new one (ids
from max(previous ids) + 1). OUT is thus a drop-in replacement for PREVIOUS_OUT, extended by the new faces, and
OUT with the concatenated features (PREVIOUS_FEATS then NEW_FEATS) can be the previous result of the next addition.
OUT may be PREVIOUS_OUT itself (it is replaced atomically once everything succeeded). Use the model that made
PREVIOUS_OUT. How: the new faces and the old faces in their kNN lists get the model's refined edge weights
(kNN in old + new, Top-K Jaccard, SDT, threshold); Infomap clusters that subgraph (old-old edges only inside one
previous cluster); each group joins the previous cluster holding most of its old faces, groups without old faces
become new clusters. Details: ``clustering/incremental.py``.

``OUT.json`` beside OUT records the versions, the model's SHA-256 and every parameter that made it (with
``--assign-to`` also PREVIOUS_OUT's SHA-256, the previous features and the counts of joined faces and new
clusters). With labels (for ``--assign-to``: ``--labels`` for the new faces and ``--previous-labels`` for the
previous ones; the metrics are then over all faces of OUT), M gets
``{"pairwise": {precision, recall, f}, "bcubed": {...}, "nmi", "n_clusters", "n_faces", "seconds": {stage: s}}``.

The same input, model and seed give byte-identical output, run after run (exact kNN up to 300K faces, seeded
Infomap, seeded IVF sample, networks in eval mode).

Bad input ends with a one-line message naming the file and the problem on stderr, exit status 2 (1 for an
unexpected error, also one line unless --traceback; 3 for out of memory), and nothing written: every output goes
to a temporary file in the destination folder, renamed into place only when all outputs are ready. A collection
with fewer faces than the model's K is clustered with K = N (noted on stderr).
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


def _atomic_write_all(texts: dict[str, str]) -> None:
    """Write every ``{path: text}`` to a temporary file beside it, then rename them all into place; on any error
    remove the temporary files (nothing partial is left)."""
    umask = os.umask(0)
    os.umask(umask)
    tmps: dict[str, str] = {}
    try:
        for path, text in texts.items():
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                                       prefix=f".{os.path.basename(path)}.", suffix=".tmp")
            tmps[path] = tmp
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.chmod(tmp, 0o666 & ~umask)
        for path, tmp in tmps.items():
            os.replace(tmp, path)
    finally:
        for tmp in tmps.values():
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
    ap.add_argument("--features", required=True,
                    help="features: .npy, .npz or .bin (with --dim); with --assign-to, the NEW faces")
    ap.add_argument("--dim", type=int, help="feature dimension of a .bin file")
    ap.add_argument("--labels", help="identity labels (.meta/.txt/.npy/.npz) of --features, to evaluate against")
    ap.add_argument("--out", required=True,
                    help="output: one cluster id per line, input order (with --assign-to: previous faces, then new)")
    ap.add_argument("--metrics-json", help="write metrics here (needs --labels, and --previous-labels with "
                                           "--assign-to)")
    inc = ap.add_argument_group("incremental clustering (add --features to an earlier result)")
    inc.add_argument("--assign-to", metavar="PREVIOUS_OUT",
                     help="an earlier OUT of this command (one id per line); its faces keep their ids")
    inc.add_argument("--previous-features", metavar="PREVIOUS_FEATS",
                     help="the features PREVIOUS_OUT clusters, in its order (.npy/.npz/.bin)")
    inc.add_argument("--previous-dim", type=int, metavar="D",
                     help="feature dimension of a .bin PREVIOUS_FEATS (default: --dim)")
    inc.add_argument("--previous-labels", metavar="PREVIOUS_LABELS",
                     help="identity labels of PREVIOUS_FEATS, for the metrics over all faces")
    ap.add_argument("--seed", type=int, default=None, help="Infomap and torch seed (default: the model's)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--knn-method", default=None, choices=["auto", "flat", "ivf", "hnsw"],
                    help="kNN index (default: the model's setting, else flat up to 300K faces, IVF above)")
    ap.add_argument("--batch-size", type=int, default=None, help="nodes per network forward")
    ap.add_argument("--progress", action="store_true", help="progress bars on every stage")
    ap.add_argument("--traceback", action="store_true", help="on an unexpected error, show the full traceback")
    return ap.parse_args(argv)


def _check_args(args: argparse.Namespace) -> None:
    """Argument combinations and output paths, before anything is read (cheap, no torch import)."""
    from clustering.io import InputError

    incremental = args.assign_to is not None
    if incremental and not args.previous_features:
        raise InputError(f"{args.assign_to}: --assign-to needs --previous-features (the faces it clusters)")
    if not incremental:
        for flag, value in (("--previous-features", args.previous_features), ("--previous-dim", args.previous_dim),
                            ("--previous-labels", args.previous_labels)):
            if value is not None:
                raise InputError(f"{flag} {value}: only used with --assign-to PREVIOUS_OUT")
    if args.metrics_json and not args.labels:
        raise InputError(f"{args.metrics_json}: --metrics-json needs --labels")
    if args.metrics_json and incremental and not args.previous_labels:
        raise InputError(f"{args.metrics_json}: --metrics-json with --assign-to needs --previous-labels too "
                         f"(the metrics are over all faces)")
    if args.previous_labels and not args.labels:
        raise InputError(f"{args.previous_labels}: --previous-labels needs --labels for the new faces too")
    for flag, value in (("--dim", args.dim), ("--previous-dim", args.previous_dim),
                        ("--batch-size", args.batch_size)):
        if value is not None and value <= 0:
            raise InputError(f"{flag} must be a positive integer, got {value}")
    if args.seed is not None and args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    outs = [args.out, args.out + ".json"] + ([args.metrics_json] if args.metrics_json else [])
    inputs = [p for p in (args.model, args.features, args.labels, args.previous_features, args.previous_labels)
              if p]
    real_in = {os.path.realpath(p) for p in inputs}
    for out in outs:
        if args.assign_to and out != args.out and os.path.realpath(out) == os.path.realpath(args.assign_to):
            raise InputError(f"{out}: output path is PREVIOUS_OUT; only --out may replace it")
        folder = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(folder):
            raise InputError(f"{out}: output folder {folder} does not exist")
        if os.path.isdir(out):
            raise InputError(f"{out}: output path is a directory")
        if os.path.realpath(out) in real_in:
            raise InputError(f"{out}: output path is one of the input files; it would be overwritten")
    if len({os.path.realpath(p) for p in outs}) < len(outs):
        raise InputError(f"{args.metrics_json}: --metrics-json must differ from --out and OUT.json")


def run(args: argparse.Namespace) -> dict:
    from clustering.io import InputError, check_model_file, load_cluster_ids, load_features, load_labels

    t_start = time.perf_counter()
    _check_args(args)
    incremental = args.assign_to is not None
    check_model_file(args.model)  # cheap checks before importing torch; ClusteringPipeline.load does the rest
    seconds_load = time.perf_counter()
    # numpy-only reads first: bad data is reported without waiting for torch
    feats = load_features(args.features, dim=args.dim)
    labels = load_labels(args.labels, n=feats.shape[0]) if args.labels else None
    prev_feats = prev_ids = prev_labels = None
    if incremental:
        prev_dim = args.previous_dim if args.previous_dim is not None else args.dim
        prev_feats = load_features(args.previous_features, dim=prev_dim)
        if prev_feats.shape[1] != feats.shape[1]:
            raise InputError(f"{args.previous_features}: previous features have dimension {prev_feats.shape[1]}, "
                             f"the new ones ({args.features}) {feats.shape[1]}")
        prev_ids = load_cluster_ids(args.assign_to, n=prev_feats.shape[0])
        if args.previous_labels:
            prev_labels = load_labels(args.previous_labels, n=prev_feats.shape[0])

    import torch

    from clustering.metrics import evaluate
    from clustering.pipeline import ClusteringPipeline, Timer

    timer = Timer()
    pipe = ClusteringPipeline.load(args.model, device=args.device)
    if args.dim is not None and pipe.feat_dim is not None and args.dim != pipe.feat_dim:
        raise InputError(f"{args.features}: --dim {args.dim} differs from the model's feature dimension "
                         f"{pipe.feat_dim} ({args.model})")
    if pipe.feat_dim is not None and feats.shape[1] != pipe.feat_dim:
        raise InputError(f"{args.features}: features have dimension {feats.shape[1]}, the model {args.model} "
                         f"expects {pipe.feat_dim}")
    timer.seconds["load"] = time.perf_counter() - seconds_load
    if args.seed is not None:
        pipe.graph.seed = args.seed
    if args.knn_method:
        pipe.knn["method"] = args.knn_method
    if args.batch_size:
        pipe.batch_size = args.batch_size
    torch.manual_seed(pipe.graph.seed)  # inference draws nothing at random; this makes sure of it

    n_new = feats.shape[0]
    n_prev = 0 if prev_feats is None else prev_feats.shape[0]
    n = n_prev + n_new
    k = min(pipe.graph.k, n)
    notes = []
    if k < pipe.graph.k:
        what = f"{n_prev} previous + {n_new} new faces" if incremental else f"{n} face{'s' if n > 1 else ''}"
        notes.append(f"only {what}: clustering with K = {k} neighbours instead of the model's {pipe.graph.k}")
        print(f"note: {args.features}: {notes[-1]}", file=sys.stderr)
    inc_info = None
    if incremental:
        from clustering.incremental import assign_new_faces

        new_ids, inc_info = assign_new_faces(pipe, prev_feats, prev_ids, feats, k=k, timer=timer,
                                             progress=args.progress)
        pred = np.concatenate([prev_ids, new_ids])
        if labels is not None and prev_labels is not None:
            labels = np.concatenate([prev_labels, labels])
        else:
            labels = None
    else:
        x, nbrs, sims = pipe.graph_inputs(feats, timer, progress=args.progress, k=k)
        pred = pipe.run_graph(x, nbrs, sims, timer, progress=args.progress)

    texts = {args.out: "".join(f"{c}\n" for c in pred.tolist())}
    result = {"n_faces": int(n), "n_clusters": int(np.unique(pred).shape[0])}
    if inc_info is not None:
        result.update({"n_previous": int(n_prev), "n_new": int(n_new), **inc_info})
    if labels is not None:
        with timer("evaluate"):
            m = evaluate(labels, pred)
        result.update({"pairwise": {"precision": m["pairwise_p"], "recall": m["pairwise_r"], "f": m["pairwise_f"]},
                       "bcubed": {"precision": m["bcubed_p"], "recall": m["bcubed_r"], "f": m["bcubed_f"]},
                       "nmi": m["nmi"], "n_clusters": m["n_clusters"], "n_faces": m["n_faces"]})
    seconds = {**{s: round(v, 4) for s, v in timer.seconds.items()}, "total": round(time.perf_counter() - t_start, 4)}
    result["seconds"] = seconds
    if args.metrics_json:
        texts[args.metrics_json] = json.dumps(result, indent=1) + "\n"
    sidecar = {"command": sys.argv, "cwd": os.getcwd(), "model": os.path.abspath(args.model),
               "model_sha256": _sha256(args.model),
               "features": os.path.abspath(args.features), "features_bytes": os.path.getsize(args.features),
               "n_faces": int(n), "k": int(k), "seed": int(pipe.graph.seed), "graph": pipe.graph.to_dict(),
               "knn": pipe.knn, "batch_size": pipe.batch_size, "device": pipe.device, "versions": _versions(),
               "notes": notes, "seconds": seconds, "model_meta": pipe.meta}
    if incremental:
        sidecar["assign_to"] = {"previous_out": os.path.abspath(args.assign_to),
                                "previous_out_sha256": _sha256(args.assign_to),
                                "previous_features": os.path.abspath(args.previous_features),
                                "previous_features_bytes": os.path.getsize(args.previous_features),
                                "n_previous": int(n_prev), "n_new": int(n_new), **inc_info,
                                "order": "previous faces first (ids unchanged), then the new faces"}
    texts[args.out + ".json"] = json.dumps(sidecar, indent=1, default=str) + "\n"
    _atomic_write_all(texts)
    return result


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from clustering.io import InputError

    try:
        result = run(args)
    except InputError as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"error: {args.features}: out of memory; try --knn-method ivf or a smaller --batch-size",
              file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("error: interrupted; no output written", file=sys.stderr)
        return 130
    except OSError as err:
        if args.traceback:
            raise
        where = err.filename or args.out
        print(f"error: {where}: {_one_line(err.strerror or err)}", file=sys.stderr)
        return 1
    except Exception as err:  # a bug, not bad input: still one line, the traceback on request
        if args.traceback:
            raise
        print(f"error: unexpected {type(err).__name__}: {_one_line(err)} (rerun with --traceback for details)",
              file=sys.stderr)
        return 1
    line = f"{result['n_faces']} faces -> {result['n_clusters']} clusters"
    if "n_new" in result:
        line += (f" ({result['n_new']} new faces: {result['n_joined']} joined existing clusters, "
                 f"{result['n_new_clusters']} new clusters)")
    if "pairwise" in result:
        line += (f" | pairwise P/R/F {result['pairwise']['precision']:.4f}/{result['pairwise']['recall']:.4f}/"
                 f"{result['pairwise']['f']:.4f} | BCubed P/R/F {result['bcubed']['precision']:.4f}/"
                 f"{result['bcubed']['recall']:.4f}/{result['bcubed']['f']:.4f} | NMI {result['nmi']:.4f}")
    print(line)
    print("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result["seconds"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
