"""Cluster face embeddings with an exported model: one command, no Lightning or W&B import.

Cluster a folder of photos (faces found and embedded with dlib; people/index.html, faces.csv; see
``python cluster.py photos --help`` and ``clustering/people.py``):

    python cluster.py photos DIR --out people/ --model MODEL.pt

Cluster a collection:

    python cluster.py [--model MODEL.pt] --features FEATS [--dim D] [--labels LABELS] --out OUT [--metrics-json M]

Without ``--model``, 128-d faces (dlib / ``face_recognition`` encodings) are clustered with the shipped model
``pretrained/dlib128.pt`` (one line on stderr says so; ``make pretrained`` rebuilds it); faces of another width need
a model trained for them (``make model``; the error says how).

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

The same input, model and seed give byte-identical output, run after run and for any number of threads
(``OMP_NUM_THREADS``, torch's, MKL's, faiss's), on one machine and device: exact kNN (the default up to 300K faces),
the networks in eval mode with matrix products whose rounding does not depend on the thread count (this command sets
``MKL_CBWR=AUTO,STRICT`` unless the environment sets ``MKL_CBWR``; see ``clustering/threads.py``), seeded Infomap;
tested with 1, 2 and 3 threads. Not promised: on another CPU type (MKL picks its code path per CPU), on a GPU
against the CPU (other rounding: a few labels can differ), with ``--knn-method ivf`` (k-means and lists built by
several threads) or ``hnsw`` (a graph built by several threads) across thread counts: measured identical for 1, 2
and 3 threads (``tests/test_promises.py``), but faiss does not promise it (``OMP_NUM_THREADS=1`` does).

``OUT.json`` also records ``features_sha256``, a fingerprint of the faces OUT lists (their float32 rows, in OUT's
order): ``--assign-to`` refuses PREVIOUS_FEATS whose fingerprint differs from the one PREVIOUS_OUT.json records
(reordered, changed or other faces), and a model other than the one that made PREVIOUS_OUT. Without
PREVIOUS_OUT.json (or one from an older version) it runs with a note that it could not check.

Bad input ends with a one-line message naming the file and the problem on stderr, exit status 2 (usage errors
too, with a hint; 1 for an unexpected error, also one line unless --traceback; 3 for out of memory; 130 for Ctrl-C
and 143 for SIGTERM, at any moment), and nothing written. What can be checked before the work is checked first,
within seconds: every input must be a regular file (no FIFO or device), every output new or a regular file in a
folder where a file can be created (each output's temporary file is created there at the start). The outputs are
written all or nothing (``clustering.io.AtomicFiles``): each is fsynced, then renamed into place, OUT.json last;
an error, Ctrl-C or SIGTERM at any moment leaves every output as it was (those already renamed are put back), and
only the death of the process between two renames (SIGKILL, a power loss) can leave OUT and OUT.json out of step:
OUT.json records OUT's SHA-256 (``out_sha256``), and ``--assign-to`` refuses a PREVIOUS_OUT that does not match its
record. Identical faces always share a cluster; a collection with fewer distinct faces than the model's K is
clustered with K = that number (noted on stderr). ``--device cuda`` needs a CUDA device torch sees; the kNN runs
on the CPU (with a note) when faiss has no GPU support.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

# numpy, torch and the project's modules are imported inside the functions, so that main() sees a Ctrl-C during
# their (seconds-long) import like any other

# the input path flags, with what each file is (for messages); --assign-to's file is an input that --out may replace
INPUT_FLAGS = {"model": "model", "features": "features", "labels": "labels", "assign_to": "previous clustering",
               "previous_features": "previous features", "previous_labels": "previous labels"}
PATH_FLAGS = (*INPUT_FLAGS, "out", "metrics_json")


HELP = """Cluster face embeddings: one cluster id per face, in input order (OUT), and OUT.json, the record of the run.
No number of people is needed; 128-d dlib / face_recognition encodings need no --model (the shipped one is used)."""

EXAMPLES = """examples:
  %(prog)s --features faces.npy --out clusters.txt
  %(prog)s --model model.pt --features feats.bin --dim 512 --labels labels.meta --out c.txt --metrics-json m.json
  %(prog)s --features new.npy --assign-to clusters.txt --previous-features faces.npy --out clusters.txt
  %(prog)s photos ~/Pictures --out people/           (a folder of photos; photos --help)"""

EXIT = """Exit status: 0 done, 2 bad input or usage (one line on stderr), 1 unexpected error, 3 out of memory, 130 Ctrl-C,
143 SIGTERM; nothing is written unless everything succeeded. The promises, formats and the incremental mode are
described in the README ("Cluster your own embeddings") and in facecluster/commands/cluster.py."""


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, like every other error of this command, with a hint."""

    argv: list[str] = []

    def error(self, message: str):
        hint = ""
        flag = re.match(r"argument (--[\w-]+)", message)
        if flag and flag.group(1) in self.argv[:-1]:
            value = self.argv[self.argv.index(flag.group(1)) + 1]
            if value.startswith("-") and value.split("=")[0] not in self._option_string_actions:  # not a flag
                hint = f"; for a value that starts with '-', write {flag.group(1)}={value} or ./{value}"
        from facecluster.clustering.cli import one_line

        self.exit(2, f"error: {one_line(message)}{hint} (see {self.prog} --help)\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from facecluster.clustering.knn_config import KNN_METHODS  # dataclasses only: no numpy, torch or faiss yet

    ap = _Parser(description=f"{HELP}\n\n{EXAMPLES}", epilog=EXIT, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.argv = list(sys.argv[1:] if argv is None else argv)
    ap.add_argument("--model", help="model file written by export.py (default: the shipped model "
                                    "pretrained/dlib128.pt, for 128-d dlib / face_recognition encodings)")
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
    ap.add_argument("--knn-method", default=None, choices=KNN_METHODS,
                    help="kNN index (default: the model's setting, else flat up to 300K faces, IVF-SQ8 above, IVF-PQ "
                         "from 20M)")
    ap.add_argument("--batch-size", type=int, default=None, help="nodes per network forward")
    ap.add_argument("--row-block", type=int, default=None,
                    help="rows per block (default 65536): network batches never cross a block, and a distributed run "
                         "(torchrun) deals whole blocks to its ranks; a given value gives the same labels with any "
                         "number of ranks")
    ap.add_argument("--progress", action="store_true", help="progress bars on every stage")
    ap.add_argument("--traceback", action="store_true", help="on an unexpected error, show the full traceback")
    return ap.parse_args(argv)


def _check_args(args: argparse.Namespace) -> None:
    """Argument combinations and output paths, before anything is read (cheap, no torch import)."""
    from facecluster.clustering.io import InputError, check_input_file

    for flag in PATH_FLAGS:
        if getattr(args, flag) == "":
            raise InputError(f"--{flag.replace('_', '-')}: empty path")
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
    if args.labels and incremental and not args.previous_labels:
        raise InputError(f"{args.labels}: --labels with --assign-to needs --previous-labels too (OUT and its metrics "
                         f"cover all faces)")
    for flag, value in (("--dim", args.dim), ("--previous-dim", args.previous_dim),
                        ("--batch-size", args.batch_size), ("--row-block", args.row_block)):
        if value is not None and value <= 0:
            raise InputError(f"{flag} must be a positive integer, got {value}")
    if args.seed is not None and args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    for flag, what in INPUT_FLAGS.items():
        if getattr(args, flag) is not None:
            check_input_file(getattr(args, flag), what)
    outs = _output_paths(args)
    real_in = {os.path.realpath(getattr(args, f)) for f in INPUT_FLAGS if f != "assign_to" and getattr(args, f)}
    if args.model is None:  # the shipped model may be read
        from facecluster.clustering.pretrained import default_model_path

        real_in.add(os.path.realpath(default_model_path()))
    for out in outs:
        if args.assign_to and out != args.out and os.path.realpath(out) == os.path.realpath(args.assign_to):
            raise InputError(f"{out}: output path is PREVIOUS_OUT; only --out may replace it")
        if os.path.realpath(out) in real_in:
            raise InputError(f"{out}: output path is one of the input files; it would be overwritten")
    if len({os.path.realpath(p) for p in outs}) < len(outs):
        raise InputError(f"{args.metrics_json}: --metrics-json must differ from --out and OUT.json")


def _output_paths(args: argparse.Namespace) -> list[str]:
    """OUT, the metrics and OUT.json, in the order they are renamed into place: the record that describes the
    others (``out_sha256``) last."""
    return [args.out] + ([args.metrics_json] if args.metrics_json else []) + [args.out + ".json"]


def _check_previous(args: argparse.Namespace, prev_sha256: str, model_sha256: str, notes: list[str]) -> None:
    """PREVIOUS_OUT, PREVIOUS_FEATS and the model must be those of PREVIOUS_OUT.json's run."""
    from facecluster.clustering.io import InputError, file_sha256
    from facecluster.clustering.run_record import check_same_model, read_record

    record = args.assign_to + ".json"
    if not os.path.exists(record):
        notes.append(f"{args.assign_to}: no {os.path.basename(record)} beside it; cannot check that "
                     f"{args.previous_features} and {args.model} are the faces and the model that made it")
        return
    side = read_record(record)
    if "out_sha256" in side and side["out_sha256"] != file_sha256(args.assign_to):
        raise InputError(f"{args.assign_to}: not the file {record} describes (its SHA-256 differs from the "
                         f"recorded out_sha256: edited, or an interrupted write); use the pair one run wrote")
    check_same_model(side, model_sha256, result=args.assign_to, record_path=record, model=args.model)
    if "features_sha256" not in side:
        notes.append(f"{record} records no fingerprint of its faces (an older cluster.py); cannot check that "
                     f"{args.previous_features} are its faces in its order")
    elif side["features_sha256"] != prev_sha256:
        raise InputError(f"{args.previous_features}: not the faces {args.assign_to} clusters, in its order: their "
                         f"fingerprint differs from the one {record} records (reordered, changed or other faces?)")


@dataclass
class _Inputs:
    """What :func:`_read_inputs` reads and checks (numpy only, before torch is imported)."""

    feats: Any                 # (N, d) the faces to cluster; with --assign-to the NEW faces
    labels: Any                # their labels (None without --labels)
    model_sha256: str
    fingerprint: Any           # SHA-256 of the faces OUT lists, in its order: fed the previous faces so far
    notes: list[str] = field(default_factory=list)  # printed on stderr, recorded in OUT.json
    prev_feats: Any = None     # with --assign-to: the faces PREVIOUS_OUT clusters, their ids and labels
    prev_ids: Any = None
    prev_labels: Any = None
    features_sha256: str = ""  # the fingerprint's digest once fed the new faces too (read before clustering)
    n_new: int = 0             # the faces of --features

    def take_feats(self):
        """The features, this object's reference dropped: the pipeline frees them once preprocessed (1 GB for
        1M faces of 256 floats)."""
        feats, self.feats = self.feats, None
        return feats


def run(args: argparse.Namespace) -> dict | None:
    """Check the arguments and reserve the outputs, read the inputs, load the model, cluster (or assign the new
    faces to PREVIOUS_OUT's clusters), then write every output at once. Returns the result (metrics with labels);
    under ``torchrun``, rank 0 does all this and the other ranks score their rows and return None."""
    from facecluster.clustering.io import AtomicFiles
    from facecluster.clustering.cli import one_line

    t_start = time.perf_counter()
    _check_args(args)
    ranks = _ranks(args)
    if ranks is not None and ranks.rank != 0:
        return _follow(args, ranks)
    with AtomicFiles(_output_paths(args)) as outputs:  # every output checked and reserved before any work
        t_load = time.perf_counter()
        inputs = _read_inputs(args)
        pipe = _load_model(args, inputs.feats)
        from facecluster.clustering.timer import Timer

        timer = Timer()
        timer.seconds["load"] = time.perf_counter() - t_load
        pred, labels, k, info = (_assign_new(args, pipe, inputs, timer) if args.assign_to is not None
                                 else _cluster_all(args, pipe, inputs, timer, ranks))
        for note in inputs.notes:
            print(f"note: {one_line(note)}", file=sys.stderr)
        result = _result(args, pred, labels, info, timer, t_start, n_new=inputs.n_new)
        texts = _output_texts(args, pipe, inputs, pred, k, info, result)
        outputs.commit({path: (lambda fh, text=text: fh.write(text.encode("utf-8")))
                        for path, text in texts.items()})
    return result


def _ranks(args: argparse.Namespace):
    """This process's :class:`~clustering.distributed.Ranks` under ``torchrun`` (``WORLD_SIZE`` > 1), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from facecluster.clustering.distributed import init_ranks
    from facecluster.clustering.inference import ROW_BLOCK
    from facecluster.clustering.io import InputError

    if args.assign_to is not None:
        raise InputError(f"{args.assign_to}: --assign-to runs in one process, not under torchrun")
    return init_ranks(args.row_block or ROW_BLOCK)


def _follow(args: argparse.Namespace, ranks) -> None:
    """A rank other than 0 of a distributed run: read the faces, score this rank's rows, hand its edges to rank
    0 (which writes every output); nothing is written here."""
    inputs = _read_inputs(args)
    pipe = _load_model(args, inputs.feats)
    pipe.cluster(inputs.take_feats(), progress=args.progress, ranks=ranks)


def _read_inputs(args: argparse.Namespace) -> _Inputs:
    """Read and check the features, labels and (with --assign-to) the previous result, numpy only: bad data is
    reported without waiting for torch."""
    import hashlib

    from facecluster.clustering.io import (InputError, check_id_room, check_model_file, file_sha256, hash_rows,
                               load_cluster_ids, load_features, load_labels)

    if args.model is not None:
        check_model_file(args.model)  # cheap checks before importing torch; ClusteringPipeline.load does the rest
    feats = load_features(args.features, dim=args.dim)
    if args.model is None:  # the shipped model, for the width of these faces
        from facecluster.clustering.pretrained import default_model, default_model_note

        args.model = str(default_model(feats.shape[1], args.features))
        check_model_file(args.model)
        print(default_model_note(args.model), file=sys.stderr)
    inputs = _Inputs(feats=feats, labels=load_labels(args.labels, n=feats.shape[0]) if args.labels else None,
                     model_sha256=file_sha256(args.model), fingerprint=hashlib.sha256(), n_new=int(feats.shape[0]))
    if args.assign_to is None:
        inputs.features_sha256 = hash_rows(inputs.fingerprint, feats).hexdigest()
        return inputs
    prev_dim = args.previous_dim if args.previous_dim is not None else args.dim
    prev_feats = load_features(args.previous_features, dim=prev_dim)
    if prev_feats.shape[1] != feats.shape[1]:
        raise InputError(f"{args.previous_features}: previous features have dimension {prev_feats.shape[1]}, "
                         f"the new ones ({args.features}) {feats.shape[1]}")
    inputs.prev_feats = prev_feats
    inputs.prev_ids = load_cluster_ids(args.assign_to, n=prev_feats.shape[0])
    check_id_room(inputs.prev_ids, feats.shape[0], args.assign_to)
    inputs.prev_labels = (load_labels(args.previous_labels, n=prev_feats.shape[0]) if args.previous_labels
                          else None)
    _check_previous(args, hash_rows(inputs.fingerprint, prev_feats).hexdigest(), inputs.model_sha256, inputs.notes)
    inputs.features_sha256 = hash_rows(inputs.fingerprint, feats).hexdigest()  # previous faces, then the new
    return inputs


def _load_model(args: argparse.Namespace, feats):
    """The model file as a :class:`~clustering.pipeline.ClusteringPipeline`, checked against the features, with
    the command line's seed, kNN method and batch size."""
    from dataclasses import replace

    import torch

    from facecluster.clustering.io import InputError
    from facecluster.clustering.pipeline import ClusteringPipeline

    pipe = ClusteringPipeline.load(args.model, device=args.device)
    if args.dim is not None and pipe.feat_dim is not None and args.dim != pipe.feat_dim:
        raise InputError(f"{args.features}: --dim {args.dim} differs from the model's feature dimension "
                         f"{pipe.feat_dim} ({args.model})")
    if pipe.feat_dim is not None and feats.shape[1] != pipe.feat_dim:
        raise InputError(f"{args.features}: features have dimension {feats.shape[1]}, the model {args.model} "
                         f"expects {pipe.feat_dim}")
    if args.seed is not None:
        try:
            pipe.graph = replace(pipe.graph, seed=args.seed)  # checked by GraphConfig
        except ValueError as exc:
            raise InputError(f"--seed {args.seed}: {exc}") from None
    if args.knn_method:
        pipe.knn = replace(pipe.knn, method=args.knn_method)
    if args.batch_size:
        pipe.batch_size = args.batch_size
    if args.row_block:
        pipe.row_block = args.row_block
    torch.manual_seed(pipe.graph.seed)  # inference draws nothing at random; this makes sure of it
    return pipe


def _cluster_all(args: argparse.Namespace, pipe, inputs: _Inputs, timer, ranks=None):
    """Cluster the features: ``(ids, labels, K used, info)`` (``ranks``: rank 0 of a distributed run)."""
    pred, info = pipe.cluster(inputs.take_feats(), timer, progress=args.progress, ranks=ranks)
    if ranks is not None:
        info["world_size"] = ranks.world
    k = info.pop("k")
    n = inputs.n_new
    _note_small_k(args, pipe, k, f"{n} face{'s' if n > 1 else ''}", inputs.notes)
    return pred, inputs.labels, k, info


def _assign_new(args: argparse.Namespace, pipe, inputs: _Inputs, timer):
    """Add the new faces to PREVIOUS_OUT's clusters: ``(ids of previous then new faces, their labels, K used,
    info)``."""
    import numpy as np

    from facecluster.clustering.incremental import assign_new_faces

    new_ids, info = assign_new_faces(pipe, inputs.prev_feats, inputs.prev_ids, inputs.feats, timer=timer,
                                     progress=args.progress)
    pred = np.concatenate([inputs.prev_ids, new_ids])
    labels = None if inputs.labels is None else np.concatenate([inputs.prev_labels, inputs.labels])
    k = info.pop("k")
    _note_small_k(args, pipe, k, f"{inputs.prev_feats.shape[0]} previous + {inputs.feats.shape[0]} new faces",
                  inputs.notes)
    return pred, labels, k, info


def _note_small_k(args: argparse.Namespace, pipe, k: int, what: str, notes: list[str]) -> None:
    if k < pipe.graph.k:
        notes.append(f"{args.features}: only {what}: clustering with K = {k} neighbours instead of the model's "
                     f"{pipe.graph.k}")


def _result(args: argparse.Namespace, pred, labels, info: dict, timer, t_start: float, n_new: int) -> dict:
    """Counts, the metrics (with labels) and the seconds per stage (``n_new``: the faces of --features)."""
    import numpy as np

    from facecluster.clustering.metrics import evaluate

    n = int(pred.shape[0])
    result = {"n_faces": n, "n_clusters": int(np.unique(pred).shape[0])}
    if args.assign_to is not None:
        result.update({"n_previous": n - int(n_new), "n_new": int(n_new), **info})
    if labels is not None:
        with timer("evaluate"):
            m = evaluate(labels, pred)
        result.update({"pairwise": {"precision": m["pairwise_p"], "recall": m["pairwise_r"], "f": m["pairwise_f"]},
                       "bcubed": {"precision": m["bcubed_p"], "recall": m["bcubed_r"], "f": m["bcubed_f"]},
                       "nmi": m["nmi"], "n_clusters": m["n_clusters"], "n_faces": m["n_faces"]})
    result["seconds"] = {**{s: round(v, 4) for s, v in timer.seconds.items()},
                         "total": round(time.perf_counter() - t_start, 4)}
    return result


def _output_texts(args: argparse.Namespace, pipe, inputs: _Inputs, pred, k: int, info: dict,
                  result: dict) -> dict[str, str]:
    """``{output path: text}``: OUT (one id per line), OUT.json (the record) and the metrics JSON."""
    from facecluster.clustering.io import file_sha256
    from facecluster.clustering.run_record import dumps, run_record

    import hashlib

    texts = {args.out: "".join(f"{c}\n" for c in pred.tolist())}
    if args.metrics_json:
        texts[args.metrics_json] = json.dumps(result, indent=1) + "\n"
    sidecar = run_record(pipe, model=args.model, model_sha256=inputs.model_sha256, k=k, notes=inputs.notes,
                         seconds=result["seconds"],
                         fields={"out_sha256": hashlib.sha256(texts[args.out].encode("utf-8")).hexdigest(),
                                 "features": os.path.abspath(args.features),
                                 "features_bytes": os.path.getsize(args.features),
                                 "features_sha256": inputs.features_sha256,
                                 "n_faces": int(pred.shape[0]), "world_size": info.get("world_size", 1)})
    if args.assign_to is not None:
        sidecar["assign_to"] = {"previous_out": os.path.abspath(args.assign_to),
                                "previous_out_sha256": file_sha256(args.assign_to),
                                "previous_features": os.path.abspath(args.previous_features),
                                "previous_features_bytes": os.path.getsize(args.previous_features),
                                "n_previous": result["n_previous"], "n_new": result["n_new"], **info,
                                "order": "previous faces first (ids unchanged), then the new faces"}
    texts[args.out + ".json"] = dumps(sidecar)
    return texts


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised wherever the run is when it arrives: handled as Ctrl-C is (temporary files removed)."""


def _terminate(signum, frame) -> None:
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (kill, a job scheduler) ends the run as Ctrl-C does; the handler is put back on the way out
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() \
        else None
    argv = sys.argv[1:] if argv is None else argv
    try:
        from facecluster.clustering.threads import reproducible_products

        reproducible_products()  # before torch's first product: the same labels for any thread count
        if argv[:1] == ["photos"]:  # the photo front end: its own arguments (clustering/people.py)
            from facecluster.clustering.people import main as photos_main

            return photos_main(argv[1:])
        return _main(argv)
    except KeyboardInterrupt as exc:  # at any moment, imports included: one line, nothing written
        if isinstance(exc, _Terminated):
            print("error: terminated (SIGTERM); no output written", file=sys.stderr)
            return 128 + signal.SIGTERM
        print("error: interrupted; no output written", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    logging.basicConfig(format="note: %(message)s", level=logging.WARNING)  # library warnings (kNN on the CPU)
    from facecluster.clustering.cli import run_reporting_errors

    status, result = run_reporting_errors(
        lambda: run(args), traceback=args.traceback,
        out_of_memory=f"{args.features}: out of memory; try --knn-method ivfsq (or ivfpq) or a smaller "
                      f"--batch-size",
        where=lambda err: err.filename or args.out)
    if status:
        return status
    if result is None:  # a rank other than 0 of a distributed run: rank 0 reports
        return 0
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
