"""Seconds and peak resident memory per stage of one model's pipeline (``ClusteringPipeline.cluster``) on one
features file, in this process (run it alone: the peaks are this process's).

    python benchmarks/peak_memory.py --model artifacts/scale/model.pt \\
        --features artifacts/scale/rungs/synthetic_n13200_s112_features.npy \\
        --labels artifacts/scale/rungs/synthetic_n13200_s112_labels.npy [--knn-method flat]

The features are memory-mapped; the peaks are :class:`clustering.timer.Timer`'s (``memory=True``: the kernel's
high-water mark reset at each stage). It uses nothing but ``ClusteringPipeline.load`` / ``.cluster`` and the
timer, so it also measures older code of this repository (with this timer; "before" in the README).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facecluster.clustering.metrics import evaluate  # noqa: E402
from facecluster.clustering.pipeline import ClusteringPipeline  # noqa: E402
from facecluster.clustering.timer import Timer  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--features", required=True, help=".npy, memory-mapped")
    ap.add_argument("--labels", help=".npy: the metrics too")
    ap.add_argument("--knn-method", help="override the model's kNN method")
    args = ap.parse_args(argv)
    timer = Timer(memory=True)
    with timer("load"):
        pipe = ClusteringPipeline.load(args.model, device="cpu")
        if args.knn_method:  # a dict in code older than KnnConfig
            pipe.knn = ({**pipe.knn, "method": args.knn_method} if isinstance(pipe.knn, dict)
                        else replace(pipe.knn, method=args.knn_method))
        feats = np.load(args.features, mmap_mode="r")
    pred = pipe.cluster(feats, timer)[0]
    out = {"n": int(len(pred)), "seconds": {s: round(v, 1) for s, v in timer.seconds.items()},
           "cpu_seconds": {s: round(v, 1) for s, v in timer.cpu_seconds.items()},
           "peak_mb": {s: round(v) for s, v in timer.peak.items()}, "peak_rss_mb": round(timer.peak_mb())}
    if args.labels:
        m = evaluate(np.load(args.labels), pred)
        out.update(pairwise_f=round(m["pairwise_f"], 4), bcubed_f=round(m["bcubed_f"], 4))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
