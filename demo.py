"""``make demo``: the shipped model on real faces, with no training, next to what face-clustering users run today.

Clusters lfw-dlib test (``data/lfw-dlib``: 3,246 faces of 1,429 people, dlib's 128-d descriptors, the encoder of
``face_recognition``) and prints, from this one run, pairwise / BCubed F, the clusters and the seconds of:

* this method with the shipped model ``pretrained/dlib128.pt`` (what ``cluster.py`` uses without ``--model``),
* HDBSCAN on the kNN graph (``min_cluster_size`` tuned on lfw-dlib train, here),
* dlib's chinese whispers on the raw descriptors (``dlib.chinese_whispers_clustering``), at face_recognition's
  usual threshold 0.5 and at a threshold tuned on lfw-dlib train, here,
* cosine kNN + Infomap (similarity threshold tuned on lfw-dlib train, here).

Every baseline parameter is chosen on lfw-dlib train by the rule of ``benchmarks/quality.py`` (best mean of pairwise
and BCubed F), never on test; the shipped model's settings were chosen on the validation identities of lfw-dlib
train when it was made (``make pretrained``). A record of the run goes to ``artifacts/demo/demo.json``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "artifacts" / "demo"
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def row(name: str, labels, pred, cluster_s: float, tune_s: float | None = None, params: dict | None = None) -> dict:
    """One line of the table: the metrics of ``pred`` against ``labels`` and the seconds spent."""
    from facecluster.clustering.metrics import evaluate

    m = evaluate(labels, pred)
    return {"method": name, "pairwise_f": m["pairwise_f"], "bcubed_f": m["bcubed_f"], "nmi": m["nmi"],
            "n_clusters": m["n_clusters"], "tune_seconds": tune_s, "seconds": cluster_s, "params": params or {}}


def timed(fn, *args):
    """``(fn(*args), seconds)``."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def main() -> int:
    t_start = time.perf_counter()
    import numpy as np

    from baselines import CW_THRESHOLD, chinese_whispers_cluster, hdbscan_cluster, tune_chinese_whispers
    from facecluster.clustering.knn import knn_search
    from facecluster.clustering.pipeline import ClusteringPipeline
    from facecluster.clustering.preprocess import fit_mean, preprocess
    from facecluster.clustering.pretrained import default_model, lfw_dlib_dir, load_lfw_dlib, repo_relative
    from facecluster.clustering.refine import refine_and_cluster
    from facecluster.clustering.timer import Timer
    from quality import K, tune_baseline, tune_hdbscan

    folder = lfw_dlib_dir()
    if folder is None:
        raise SystemExit("error: lfw-dlib not found: data/lfw-dlib is part of the repository (or set "
                         "FACECLUSTER_DATA to a folder holding lfw-dlib/)")
    (train_x, train_y), (test_x, test_y) = load_lfw_dlib("train", folder), load_lfw_dlib("test", folder)
    folder = repo_relative(folder)
    print(f"lfw-dlib test ({folder}): {len(test_y):,} faces of {len(np.unique(test_y)):,} people, dlib 128-d "
          f"descriptors; baselines tuned on lfw-dlib train ({len(train_y):,} faces) in this run", flush=True)
    rows = []

    # this method: the shipped model, no training
    model = default_model(test_x.shape[1])
    timer = Timer()
    with timer("load"):
        pipe = ClusteringPipeline.load(str(model), device="cpu")
    pred = pipe(test_x, timer)
    stages = dict(timer.seconds)
    rows.append(row(f"**this method** (shipped {repo_relative(model)}, no training)", test_y, pred,
                    sum(stages.values()), params={"graph": pipe.graph.to_dict(), "stages": stages}))
    print(f"  this method: {sum(stages.values()):.1f} s", flush=True)

    # the baselines' kNN graphs: the train split's mean, exact K = 80, as benchmarks/quality.py builds them
    mean = fit_mean(train_x)
    graphs, knn_s = {}, {}
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        (nbrs, sims), knn_s[split] = timed(lambda f: knn_search(preprocess(f, mean), K, method="flat"), x)
        graphs[split] = {"nbrs": nbrs, "sims": sims, "labels": y}
    test = graphs["test"]

    (mcs, _), tune_s = timed(tune_hdbscan, graphs["train"])
    pred, s = timed(hdbscan_cluster, test["nbrs"], test["sims"], mcs)
    rows.append(row(f"HDBSCAN (min_cluster_size {mcs}, tuned on train)", test_y, pred, s + knn_s["test"],
                    tune_s + knn_s["train"], {"min_cluster_size": mcs}))
    print(f"  HDBSCAN: {s + knn_s['test']:.1f} s (tuning {tune_s + knn_s['train']:.1f} s)", flush=True)

    pred, s = timed(chinese_whispers_cluster, test_x, CW_THRESHOLD)
    rows.append(row(f"dlib chinese whispers (threshold {CW_THRESHOLD}, face_recognition's)", test_y, pred, s,
                    params={"threshold": CW_THRESHOLD}))
    (cw_t, _), tune_s = timed(tune_chinese_whispers, train_x, train_y)
    pred, s = timed(chinese_whispers_cluster, test_x, cw_t)
    rows.append(row(f"dlib chinese whispers (threshold {cw_t}, tuned on train)", test_y, pred, s, tune_s,
                    {"threshold": cw_t}))
    print(f"  chinese whispers: {s:.1f} s (tuning {tune_s:.1f} s)", flush=True)

    (cfg, _), tune_s = timed(tune_baseline, "knn-infomap", graphs["train"])
    pred, s = timed(refine_and_cluster, test["nbrs"], test["sims"], cfg)
    rows.append(row(f"cosine kNN + Infomap (threshold {cfg.threshold}, tuned on train)", test_y, pred,
                    s + knn_s["test"], tune_s + knn_s["train"], {"graph": cfg.to_dict()}))

    total = time.perf_counter() - t_start
    print(f"\nlfw-dlib test: {len(test_y):,} faces, {len(np.unique(test_y)):,} true identities")
    print("| method | F_P | F_B | clusters | tuning on train (s) | clustering test (s) |\n|---|---|---|---|---|---|")
    for r in rows:
        tune = "-" if r["tune_seconds"] is None else f"{r['tune_seconds']:.1f}"
        print(f"| {r['method']} | {r['pairwise_f']:.3f} | {r['bcubed_f']:.3f} | {r['n_clusters']:,} | {tune} | "
              f"{r['seconds']:.1f} |")
    print("this method, seconds per stage: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    print(f"HDBSCAN and kNN + Infomap include their kNN graph (train {knn_s['train']:.1f} s, test "
          f"{knn_s['test']:.1f} s); total {total:.0f} s")
    print(f"the same from the command line: .venv/bin/python cluster.py --features {folder}/features/test.bin "
          f"--dim 128 --labels {folder}/labels/test.meta --out clusters.txt")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "demo.json").write_text(json.dumps({"data": str(folder), "n_faces": len(test_y),
                                               "n_identities": int(len(np.unique(test_y))), "rows": rows,
                                               "knn_seconds": knn_s, "seconds": total}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
