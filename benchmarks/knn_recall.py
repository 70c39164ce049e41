"""Approximate kNN against exact search on the scale ladder's rungs: recall@K, time, memory and what it costs the
clustering (F_P / F_B).

    python benchmarks/knn_recall.py --sizes 12 --methods flat ivf ivfsq hnsw --model artifacts/scale/model.pt \\
        --json benchmarks/results/knn_recall.json
    python benchmarks/knn_recall.py --sizes 120 --methods ivf ivfsq hnsw --sample-only \\
        --json benchmarks/results/knn_recall.json          # ~1M faces: the index built, the sampled queries searched

The rungs are :mod:`benchmarks.scale`'s (same generator, same files in ``--workdir``), preprocessed with the mean of
the train file (with ``--model``: the model's own mean, as its pipeline does, unless ``--mean train``), K = 80. Ground truth: the exact K nearest neighbours (brute force, ``IndexFlatIP``) of ``--queries``
faces drawn at random (seed 0), so it stays affordable at 1M faces. For each method (a fresh process each, for its
own peak memory): the index is built over every face and every face searched (``--sample-only``: the sampled
queries only, the search time of all N extrapolated from theirs), then

* ``recall``: the share of the exact K neighbours found, over the sampled queries (self included);
* ``same_identity_recall``: the same over the exact neighbours of the query's own identity (those the clustering
  needs);
* ``expansion`` (whole graph only, an approximate index, ``--expand`` rounds: the config's default): both
  recalls and the seconds after each round of neighbour expansion (:func:`clustering.knn.expand_neighbours`;
  the second round's seconds include the exact re-search of the config's ``research`` share of faces),
  the first entry the index's own graph; ``recall`` and ``same_identity_recall`` are then the last round's;
* with the whole graph (not ``--sample-only``): F_P / F_B of the model's pipeline on that graph (``--model``: the
  networks, the Jaccard, Infomap) and of the baselines (cosine kNN + Infomap at its threshold tuned on the train
  file, the oracle-k Top-K Jaccard), to compare with ``flat`` (the exact graph) on the same rung.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from common import ROOT  # noqa: I001  (benchmarks/ is the script folder)
from quality import baseline_k, tune_baseline
from scale import K, TRAIN, ensure_split, job_main, rung_config, run_job
from facecluster.clustering.graph_config import GraphConfig
from facecluster.clustering.knn import expand_neighbours, knn_index, knn_query, knn_search
from facecluster.clustering.knn_config import KNN_METHODS, KnnConfig
from facecluster.clustering.metrics import evaluate
from facecluster.clustering.preprocess import fit_mean, preprocess
from facecluster.clustering.refine import refine_and_cluster
from facecluster.clustering.timer import Timer

BASELINES = ("knn-infomap", "topk-jaccard-oracle")


def job_method(job: dict) -> dict:
    """One method on one rung: build, search (all faces or the sample), recall, and the clustering."""
    import faiss

    faiss.omp_set_num_threads(job["threads"])
    timer = Timer(memory=True)
    with timer("preprocess"):
        x = preprocess(np.load(job["features"], mmap_mode="r"), np.asarray(job["mean"], np.float32), release=True)
    cfg = KnnConfig.from_dict(job["knn"])
    with np.load(job["truth"]) as truth:
        queries, exact = truth["queries"], truth["nbrs"]
    with timer("build"):
        index = knn_index(x, K, replace(cfg, expand=0), device="cpu")       # the expansion rounds timed below
    q_ids = queries if job["sample_only"] else None
    with timer("search"):
        nbrs, sims = knn_query(x, None if q_ids is None else x[q_ids], K, query_ids=q_ids, index=index)
    method = index.method
    del index
    labels = np.load(job["labels"])
    same = labels[exact] == labels[queries][:, None]

    def recalls(found: np.ndarray) -> dict:
        hit = (found[:, :, None] == exact[:, None, :]).any(axis=1)           # (Q, K): exact neighbour found
        return {"recall": round(float(hit.mean()), 4), "same_identity_recall": round(float(hit[same].mean()), 4)}

    out = {"method": method, "n": int(len(x)), "queries": int(len(queries)),
           **recalls(nbrs if job["sample_only"] else nbrs[queries])}
    if not job["sample_only"] and method != "flat" and cfg.expand:
        out["expansion"] = [{"rounds": 0, **recalls(nbrs[queries]), "seconds": 0.0}]
        for r in range(1, cfg.expand + 1):
            with timer(f"expand{r}"):
                expand_neighbours(x, nbrs, sims, rounds=1, first_round=r - 1, width=cfg.expand_width,
                                  research=cfg.research, threads=job["threads"])
            out["expansion"].append({"rounds": r, **recalls(nbrs[queries]),
                                     "seconds": round(timer.seconds[f"expand{r}"], 2)})
        out.update(recalls(nbrs[queries]))
    out.update({"seconds": {s: round(v, 2) for s, v in timer.seconds.items()},
           "cpu_seconds": {s: round(v, 2) for s, v in timer.cpu_seconds.items()},
           "peak_mb": {s: round(v) for s, v in timer.peak.items()}})
    if job["sample_only"]:
        out["search_seconds_all"] = round(timer.seconds["search"] * len(x) / len(queries), 1)
        return out
    scores = {}
    for name, cfg_dict in job["baselines"].items():
        g = {"nbrs": nbrs, "sims": sims, "labels": labels}
        pred = refine_and_cluster(nbrs, sims, GraphConfig(**cfg_dict), k=baseline_k(name, g))
        m = evaluate(labels, pred)
        scores[name] = {"pairwise_f": round(m["pairwise_f"], 4), "bcubed_f": round(m["bcubed_f"], 4)}
    if job.get("model"):
        from facecluster.clustering.pipeline import ClusteringPipeline

        pipe = ClusteringPipeline.load(job["model"], device="cpu")
        t = Timer()
        m = evaluate(labels, pipe.run_graph(x, nbrs, sims, t))
        scores["model"] = {"pairwise_f": round(m["pairwise_f"], 4), "bcubed_f": round(m["bcubed_f"], 4),
                           "seconds": {s: round(v, 1) for s, v in t.seconds.items()}}
    out["clustering"] = scores
    return out


JOBS = {"method": job_method}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[12], help="rungs, as multiples of the train size")
    ap.add_argument("--methods", nargs="+", default=["flat", "ivf", "ivfsq", "hnsw"], choices=KNN_METHODS)
    ap.add_argument("--nprobe", type=int, default=KnnConfig.nprobe, help="IVF lists probed per query")
    ap.add_argument("--expand", type=int, default=KnnConfig.expand,
                    help="rounds of neighbour expansion after an approximate search (whole graph only; 0: none)")
    ap.add_argument("--queries", type=int, default=2000, help="sampled queries for the recall")
    ap.add_argument("--sample-only", action="store_true",
                    help="search the sampled queries only (no clustering): the affordable check at 1M faces")
    ap.add_argument("--model", help="exported model: its F_P / F_B on each graph")
    ap.add_argument("--threads", type=int, default=2, help="faiss threads")
    ap.add_argument("--mean", choices=["model", "train"], default="model",
                    help="preprocess with the model's mean (default, with --model) or the train file's")
    ap.add_argument("--workdir", default="artifacts/scale/rungs")
    ap.add_argument("--json", help="append the results here")
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.job:
        return job_main(args.job, JOBS)

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    train_files = ensure_split(workdir, "train", TRAIN, True)
    train_feats, train_labels = np.load(train_files[0]), np.load(train_files[1])
    mean = fit_mean(train_feats)
    nbrs, sims = knn_search(preprocess(train_feats, mean), K, method="flat", device="cpu")
    tuned = {m: tune_baseline(m, {"nbrs": nbrs, "sims": sims, "labels": train_labels})[0].to_dict() for m in BASELINES}
    if args.model and args.mean == "model":  # the rungs preprocessed as the model's own pipeline does
        from facecluster.clustering.pipeline import ClusteringPipeline

        mean = ClusteringPipeline.load(args.model, device="cpu").mean
    results = []
    for mult in args.sizes:
        split = f"{mult}x"
        feats, labels = ensure_split(workdir, split, rung_config(mult), True)
        which = "model" if args.model and args.mean == "model" else "train"
        truth = f"{feats[: -len('_features.npy')]}_truth_q{args.queries}_{which}.npz"
        if not os.path.exists(truth):  # exact neighbours of the sampled queries (brute force over all faces)
            t0 = time.perf_counter()
            x = preprocess(np.load(feats, mmap_mode="r"), mean, release=True)
            queries = np.sort(np.random.default_rng(0).choice(len(x), size=min(args.queries, len(x)),
                                                              replace=False))
            exact, _ = knn_query(x, x[queries], K, query_ids=queries, method="flat", device="cpu")
            np.savez(truth, queries=queries, nbrs=exact)
            del x
            print(f"{split}: exact neighbours of {len(queries)} queries in {time.perf_counter() - t0:.0f} s",
                  flush=True)
        for method in args.methods:
            knn = replace(KnnConfig(), method=method, nprobe=args.nprobe, expand=args.expand).to_dict()
            job = {"kind": "method", "features": feats, "labels": labels, "truth": truth, "mean": mean.tolist(),
                   "knn": knn, "threads": args.threads, "sample_only": args.sample_only, "baselines": tuned,
                   "model": os.path.abspath(args.model) if args.model else None}
            res = {"split": split, "knn": knn, "mean": which, "date": time.strftime("%Y-%m-%d"), **run_job(
                job, True, script=__file__, jobs=JOBS)}
            results.append(res)
            print(json.dumps(res), flush=True)
    if args.json:
        old = json.load(open(args.json)) if os.path.exists(args.json) else []
        with open(args.json, "w") as fh:
            json.dump(old + results, fh, indent=1)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
