"""Quality as the collection grows (the shape of the paper's Table 1, on synthetic data, on a CPU).

    python benchmarks/scale.py --write-train artifacts/scale        # the ~8K-face synthetic train file
    make model FEATURES=artifacts/scale/train_features.npy LABELS=artifacts/scale/train_labels.npy DIM=256 \\
        MODEL=artifacts/scale/model.pt
    python benchmarks/scale.py --model method=artifacts/scale/model.pt --json benchmarks/results/scale.json
    python benchmarks/scale.py ... --sizes 1 3 12 30                  # add the 30x rung (~240K faces)

Protocol. The train file is generator seed 11 with 1,100 identities (7,986 faces). Rung ``m`` is a new collection
drawn by the same generator law (``clustering/synthetic.py``, defaults unchanged) with ``1100 m`` identities and
seed ``100 + m``: new people, same embedding space, ``m`` times the training size. Every rung is preprocessed with
the mean of the train file and searched with exact (flat) K = 80 kNN. Baselines choose their one parameter on the
train file (best mean of pairwise and BCubed F) and apply it unchanged to every rung: cosine kNN + Infomap (the
similarity threshold), HDBSCAN (scikit-learn, ``min_cluster_size``), FC-ES. The oracle-k Top-K Jaccard uses the
true labels (a ceiling, not a method). A model (``--model NAME=PATH``) runs with the settings stored in its file,
chosen at export on validation identities of its own train file; no rung is ever tuned on.

Diagnosis per rung and method: the five largest predicted clusters (faces, identities), and for a model the mean
absolute error of its predicted k against the oracle k* per band of k*.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from common import ROOT, largest_clusters  # noqa: I001  (benchmarks/ is the script folder)
from quality import GRID, parse_overrides, record, run_baselines, run_hdbscan
from clustering.edges import oracle_k
from clustering.knn import knn_search
from clustering.metrics import evaluate
from clustering.pipeline import ClusteringPipeline
from clustering.preprocess import fit_mean, preprocess
from clustering.refine import refine_and_cluster
from clustering.synthetic import make_synthetic
from clustering.timer import Timer

K = 80
TRAIN = dict(n_identities=1100, seed=11)
K_BANDS = ((1, 1), (2, 5), (6, 20), (21, 79), (80, 80))


def rung_config(mult: int, train_identities: int = TRAIN["n_identities"]) -> dict:
    """Generator settings of rung ``mult``: ``mult`` times the train file's identities, a seed of its own."""
    return dict(n_identities=train_identities * mult, seed=100 + mult)


def k_error(k_pred: np.ndarray, k_star: np.ndarray) -> list[dict]:
    """Mean absolute error and mean predicted k per band of the oracle k*."""
    rows = []
    for lo, hi in K_BANDS:
        m = (k_star >= lo) & (k_star <= hi)
        if m.any():
            rows.append({"k_star": f"{lo}-{hi}" if lo != hi else str(lo), "faces": int(m.sum()),
                         "mae": round(float(np.abs(k_pred[m] - k_star[m]).mean()), 2),
                         "mean_k": round(float(k_pred[m].mean()), 2)})
    return rows


def run_models(specs: list[str], splits: dict) -> list[dict]:
    """Rows of exported models, ``NAME=PATH[@field=value,...]``; the overrides change graph settings only (an
    ablation of a non-learned part, e.g. ``@combine=jaccard`` for no SDT), so the networks run once per file."""
    rows = []
    pipes = {path: ClusteringPipeline.load(path, device="cpu")
             for path in dict.fromkeys(spec.split("=", 1)[1].partition("@")[0] for spec in specs)}
    for split, (feats, labels) in splits.items():
        for path, pipe in pipes.items():
            timer = Timer()
            x, nbrs, sims = pipe.graph_inputs(feats, timer)
            k, q = pipe.predict(x, nbrs, sims, timer)
            k_err = k_error(k, oracle_k(nbrs, labels)) if k is not None else None
            for spec in specs:
                name, rest = spec.split("=", 1)
                spec_path, _, over = rest.partition("@")
                if spec_path != path:
                    continue
                overrides = parse_overrides(over)
                cfg = replace(pipe.graph, **overrides)
                t = Timer()
                pred = refine_and_cluster(nbrs, sims, cfg, k=k, pair_prob=q, timer=t)
                stages = {**timer.seconds, **t.seconds}
                r = record("synthetic-scale", split, name, evaluate(labels, pred), sum(stages.values()),
                           {**cfg.to_dict(), "model": path, "overrides": overrides,
                            "stages": {s: round(v, 2) for s, v in stages.items()},
                            "meta": {key: v for key, v in pipe.meta.items() if key in ("description", "trained_on")}})
                r["largest"] = largest_clusters(labels, pred)
                r["k_error"] = k_err
                rows.append(r)
                print(f"  {name} {split}: F_P {r['pairwise_f']:.4f} F_B {r['bcubed_f']:.4f}", flush=True)
    return rows


def markdown(rows: list[dict], rungs: list[str]) -> str:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["split"]): r for r in rows}
    head = "| method | " + " | ".join(rungs) + " |\n" + "|---" * (len(rungs) + 1) + "|\n"
    lines = []
    for m in methods:
        cells = [f"{by[m, s]['pairwise_f']:.3f} / {by[m, s]['bcubed_f']:.3f}" if (m, s) in by else "-"
                 for s in rungs]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[1, 3, 12], help="rungs, as multiples of the train size")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH[@field=value,...]",
                    help="exported model (repeatable); @... overrides its graph settings (ablations)")
    ap.add_argument("--methods", nargs="*", default=["knn-infomap", "hdbscan", "topk-jaccard-oracle"],
                    choices=["knn-infomap", "fc-es", "hdbscan", "topk-jaccard-oracle"])
    ap.add_argument("--write-train", metavar="DIR", help="write DIR/train_{features,labels}.npy and exit")
    ap.add_argument("--json", help="write every record here")
    ap.add_argument("--train-identities", type=int, default=TRAIN["n_identities"],
                    help="identities of the train file (the rungs scale with it unless --rung-identities is given); "
                         "tests use a tiny value")
    ap.add_argument("--train-seed", type=int, default=TRAIN["seed"],
                    help="generator seed of the train file (benchmarks/ladder.py draws several)")
    ap.add_argument("--rung-identities", type=int,
                    help="identities of the 1x rung (default: --train-identities); the rungs stay the same for "
                         "every train file when this is fixed")
    args = ap.parse_args(argv)

    train_cfg = {**TRAIN, "n_identities": args.train_identities, "seed": args.train_seed}
    rung_ids = args.rung_identities or args.train_identities
    train = make_synthetic(**train_cfg)
    if args.write_train:
        folder = Path(args.write_train)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "train_features.npy", train[0])
        np.save(folder / "train_labels.npy", train[1])
        print(f"{folder}/train_{{features,labels}}.npy: {train[0].shape[0]} faces, {args.train_identities} identities")
        return
    t_start = time.perf_counter()
    splits = {"train": train}
    for mult in args.sizes:
        splits[f"{mult}x"] = make_synthetic(**rung_config(mult, rung_ids))
    mean = fit_mean(train[0])
    graphs = {}
    for split, (feats, labels) in splits.items() if args.methods else ():  # the baselines' graphs
        t0 = time.perf_counter()
        nbrs, sims = knn_search(preprocess(feats, mean), K, method="flat")
        graphs[split] = {"nbrs": nbrs, "sims": sims, "labels": labels, "seconds": time.perf_counter() - t0}
        print(f"{split}: {len(labels)} faces, {len(np.unique(labels))} identities, kNN {graphs[split]['seconds']:.0f} s",
              flush=True)
    rows = []
    grid_methods = [m for m in args.methods if m in GRID]
    if grid_methods:
        rows += run_baselines("synthetic-scale", graphs, grid_methods)
    if "hdbscan" in args.methods:
        rows += run_hdbscan("synthetic-scale", graphs)
    if args.model:
        rows += run_models(args.model, splits)
    rungs = ["train"] + [f"{m}x" for m in args.sizes]
    print(markdown(rows, rungs))
    if args.json:
        out = {"protocol": {"train": train_cfg, "rungs": {f"{m}x": rung_config(m, rung_ids)
                                                         for m in args.sizes},
                            "faces": {split: int(len(labels)) for split, (_, labels) in splits.items()}, "k": K,
                            "knn": "flat", "generator": "clustering/synthetic.py defaults"},
               "seconds": round(time.perf_counter() - t_start, 1), "records": rows}
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
