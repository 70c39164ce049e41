"""Clustering quality of every available method on real and synthetic data; prints a Markdown table.

    python benchmarks/quality.py --datasets lfw-dlib synthetic --json benchmarks/results/quality.json
    python benchmarks/quality.py --datasets lfw-dlib --model full=artifacts/lfw.pt --json ...

Protocol: the preprocessing mean is fitted on the train split; each baseline's threshold is chosen on the train
split (the grid value with the best mean of pairwise F and BCubed F) and applied unchanged to the test split. An
exported model (``--model NAME=PATH``) is evaluated with the settings stored in it (chosen on train data at export).
Each record's ``seconds`` is the whole pipeline on that split (preprocessing and kNN included).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np

from common import largest_clusters, load_dataset  # noqa: I001  (first: it puts the checkout on sys.path)
from baselines import HDBSCAN_GRID, best_on, hdbscan_cluster  # (benchmarks/ is the script folder)
from facecluster.clustering.edges import oracle_k
from facecluster.clustering.graph_config import GraphConfig, parse_graph_value
from facecluster.clustering.knn import knn_search
from facecluster.clustering.metrics import evaluate
from facecluster.clustering.pipeline import ClusteringPipeline
from facecluster.clustering.preprocess import fit_mean, preprocess
from facecluster.clustering.refine import refine_and_cluster
from facecluster.clustering.timer import Timer

K = 80
GRID = {
    "knn-infomap": (GraphConfig(k=K, jaccard="none", transform="cosine"),
                    [round(t, 2) for t in np.arange(0.30, 0.91, 0.05)]),
    "fc-es": (GraphConfig(k=K, jaccard="all", transform="exp", early_stop=True),
              [round(t, 3) for t in np.arange(0.0, 0.91, 0.05)]),
    # the oracle is a ceiling for the Top-K predictor, reported as the specification defines it: Top-K Jaccard
    # then Infomap with no further pruning (a threshold tuned on train shatters lfw-dlib test's 236-face identity)
    "topk-jaccard-oracle": (GraphConfig(k=K, jaccard="topk", transform="sigmoid"), [0.0]),
}
DESCRIPTION = {
    "knn-infomap": "cosine kNN + similarity threshold + Infomap",
    "fc-es": "FC-ES: exp-transform weighted Jaccard over all K, early stopping at theta, Infomap",
    "topk-jaccard-oracle": "Top-K Jaccard (sigmoid) with the oracle k* from labels + Infomap (a ceiling, not a method)",
}


def record(dataset: str, split: str, method: str, metrics: dict, seconds: float, params: dict) -> dict:
    keys = ("pairwise_f", "pairwise_p", "pairwise_r", "bcubed_f", "bcubed_p", "bcubed_r", "nmi", "n_clusters")
    return {"dataset": dataset, "split": split, "method": method, **{k: metrics[k] for k in keys},
            "seconds": round(seconds, 3), "params": params}


def baseline_k(method: str, graph: dict) -> np.ndarray | None:
    """The k a baseline reads: the oracle k* from the labels for the oracle, none otherwise."""
    return oracle_k(graph["nbrs"], graph["labels"]) if method == "topk-jaccard-oracle" else None


def tune_baseline(method: str, g: dict) -> tuple[GraphConfig, dict]:
    """The ``GRID`` threshold of ``method`` with the best selection score on the split graph ``g`` (``nbrs``,
    ``sims``, ``labels``: the train split): ``(config, its metrics there)``."""
    base, grid = GRID[method]
    k = baseline_k(method, g)
    return best_on(g["labels"], [replace(base, threshold=float(t)) for t in grid],
                   lambda cfg: refine_and_cluster(g["nbrs"], g["sims"], cfg, k=k))


def tune_hdbscan(g: dict) -> tuple[int, dict]:
    """The ``HDBSCAN_GRID`` ``min_cluster_size`` with the best selection score on the split graph ``g`` (the train
    split): ``(min_cluster_size, its metrics there)``."""
    return best_on(g["labels"], HDBSCAN_GRID, lambda mcs: hdbscan_cluster(g["nbrs"], g["sims"], mcs))


def baseline_params(method: str, cfg: GraphConfig) -> dict:
    """The record's ``params`` of a tuned baseline: its settings, where and over what it was tuned, what it is."""
    return {**cfg.to_dict(), "tuned_on": "train", "grid": list(map(float, GRID[method][1])),
            "description": DESCRIPTION[method]}


HDBSCAN_DESCRIPTION = "scikit-learn HDBSCAN on the kNN graph (sparse precomputed distances)"


def hdbscan_params(min_cluster_size: int) -> dict:
    """The record's ``params`` of HDBSCAN (:func:`baseline_params`' twin): its tuned value, where and over what."""
    return {"min_cluster_size": min_cluster_size, "tuned_on": "train", "grid": list(HDBSCAN_GRID),
            "description": HDBSCAN_DESCRIPTION}


def run_baselines(dataset: str, graphs: dict, methods: list[str]) -> list[dict]:
    rows = []
    for method in methods:
        cfg = tune_baseline(method, graphs["train"])[0]
        for split, g in graphs.items():
            timer = Timer()
            with timer("total"):
                labels = refine_and_cluster(g["nbrs"], g["sims"], cfg, k=baseline_k(method, g))
            m = evaluate(g["labels"], labels)
            rows.append(record(dataset, split, method, m, timer.seconds["total"] + g["seconds"],
                               baseline_params(method, cfg)))
            rows[-1]["largest"] = largest_clusters(g["labels"], labels)
    return rows


def run_hdbscan(dataset: str, graphs: dict) -> list[dict]:
    """HDBSCAN rows: ``min_cluster_size`` chosen on the train split, applied unchanged to every split."""
    mcs = tune_hdbscan(graphs["train"])[0]
    rows = []
    for split, g in graphs.items():
        t0 = time.perf_counter()
        pred = hdbscan_cluster(g["nbrs"], g["sims"], mcs)
        r = record(dataset, split, "hdbscan", evaluate(g["labels"], pred),
                   time.perf_counter() - t0 + g["seconds"],
                   hdbscan_params(mcs))
        r["largest"] = largest_clusters(g["labels"], pred)
        rows.append(r)
    return rows


def parse_overrides(spec: str) -> dict:
    """``"field=value,..."`` -> GraphConfig overrides, each value cast to its field's type
    (:func:`~clustering.graph_config.parse_graph_value`: a text field keeps its text, ``jaccard=none`` is the Jaccard
    variant "none"; ``none`` is None elsewhere, ``edge_recall=none``), checked against the allowed values."""
    out = {}
    for item in filter(None, spec.split(",")):
        key, text = item.split("=", 1)
        try:
            out[key] = parse_graph_value(key, text)
        except ValueError as exc:
            raise SystemExit(f"{exc} in {spec!r}") from None
    try:
        GraphConfig(**out)  # every value checked here, not when the model runs
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"{exc} in {spec!r}") from None
    return out


def retune_threshold(pipe: ClusteringPipeline) -> tuple[float, float]:
    """Best threshold for ``pipe.graph`` (its Jaccard and combine rule kept) on the validation identities of the
    checkpoint the model was exported from (held out from training), by ``export.py``'s own grid search and
    choice (alone and among the training faces)."""
    from facecluster.commands.export import load_module, tune, tune_sets, val_split  # Lightning: only for this re-tuning

    _, ckpt = load_module(pipe.meta["checkpoint"])
    cfg, table, _ = tune(pipe, tune_sets(val_split(ckpt)), pipe.graph, jaccards=(pipe.graph.jaccard,),
                         combines=(pipe.graph.combine,))
    return cfg.threshold, next(r["score"] for r in table if r["threshold"] == cfg.threshold)


TUNED_FIELDS = ("jaccard", "combine", "threshold")  # the graph settings export.py --tune's grid covers


def threshold_from_grid(pipe: ClusteringPipeline) -> tuple[float, float] | None:
    """The threshold ``export.py --tune`` scored best for ``pipe.graph``'s Jaccard and combine rule, read from the
    grid the model file records (``meta.tuning.grid``: every grid point scored on the validation identities, alone
    and among the training faces; the same score and the same choice as the export). ``None`` when the file holds
    no grid or the grid lacks the rule."""
    rows = [r for r in pipe.meta.get("tuning", {}).get("grid", [])
            if (r["jaccard"], r["combine"]) == (pipe.graph.jaccard, pipe.graph.combine)]
    if not rows:
        return None
    best = max(rows, key=lambda r: r["score"])
    return float(best["threshold"]), float(best["score"])


def threshold_for_overrides(pipe: ClusteringPipeline, overrides: dict) -> tuple[float, float] | None:
    """The validation threshold of an ablation (``pipe.graph`` already overridden): ``None`` when the overrides fix
    the threshold or there are none; read from the recorded grid when they change only the rule (Jaccard,
    combine), else chosen again on the checkpoint's validation identities (:func:`retune_threshold`)."""
    if not overrides or "threshold" in overrides:
        return None
    if set(overrides) <= set(TUNED_FIELDS):
        found = threshold_from_grid(pipe)
        if found is not None:
            return found
    return retune_threshold(pipe)


def run_model(dataset: str, name: str, path: str, splits: dict) -> list[dict]:
    """Rows of an exported model. ``path`` may end in ``@field=value,...`` to override its graph settings (an
    ablation of a non-learned part: ``@transform=exp``, ``@jaccard=all``, ...); the threshold is then chosen again
    on the model's validation identities unless the overrides fix it too (:func:`threshold_for_overrides`)."""
    path, _, spec = path.partition("@")
    pipe = ClusteringPipeline.load(path, device="cpu")
    overrides = parse_overrides(spec)
    pipe.graph = replace(pipe.graph, **overrides)
    tuned = None
    found = threshold_for_overrides(pipe, overrides)
    if found is not None:
        t, val_score = found
        pipe.graph = replace(pipe.graph, threshold=t)
        tuned = {"threshold": t, "val_score": round(val_score, 4)}
    rows = []
    for split, s in splits.items():
        timer = Timer()
        t0 = time.perf_counter()
        labels = pipe(s.feats, timer)
        m = evaluate(s.labels, labels)
        params = {**pipe.graph.to_dict(), "model": path, "overrides": overrides, "retuned_on_val": tuned,
                  "stages": {k: round(v, 3) for k, v in timer.seconds.items()},
                  "meta": {k: v for k, v in pipe.meta.items() if k in ("description", "trained_on", "checkpoint")}}
        rows.append(record(dataset, split, name, m, time.perf_counter() - t0, params))
    return rows


def markdown(rows: list[dict]) -> str:
    head = "| dataset | split | method | F_P | P_P | R_P | F_B | P_B | R_B | NMI | clusters | s |\n" + "|---" * 12 + "|\n"
    lines = [f"| {r['dataset']} | {r['split']} | {r['method']} | {r['pairwise_f']:.4f} | {r['pairwise_p']:.4f} | "
             f"{r['pairwise_r']:.4f} | {r['bcubed_f']:.4f} | {r['bcubed_p']:.4f} | {r['bcubed_r']:.4f} | "
             f"{r['nmi']:.4f} | {r['n_clusters']} | {r['seconds']:.1f} |" for r in rows]
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["lfw-dlib", "synthetic"])
    ap.add_argument("--methods", nargs="*", default=[*GRID, "hdbscan"], choices=[*GRID, "hdbscan"],
                    help="baselines to run (none: `--methods` alone, to evaluate --model files only)")
    ap.add_argument("--model", action="append", default=[], metavar="[DATASET:]NAME=PATH[@field=value,...]",
                    help="exported model to evaluate (repeatable); DATASET: restricts it to one dataset, @... "
                         "overrides its graph settings (e.g. @transform=exp)")
    ap.add_argument("--json", help="write the records here (merged with records of other methods already there)")
    args = ap.parse_args(argv)

    rows: list[dict] = []
    for dataset in args.datasets:
        splits = load_dataset(dataset)
        if splits is None:
            continue
        mean = fit_mean(splits["train"].feats)
        graphs = {}
        for split, s in splits.items():
            t0 = time.perf_counter()
            x = preprocess(s.feats, mean)
            nbrs, sims = knn_search(x, K, method="flat")
            graphs[split] = {"nbrs": nbrs, "sims": sims, "labels": s.labels, "seconds": time.perf_counter() - t0}
        rows += run_baselines(dataset, graphs, [m for m in args.methods if m in GRID])
        if "hdbscan" in args.methods:
            rows += run_hdbscan(dataset, graphs)
        for spec in args.model:
            target, _, rest = spec.rpartition(":") if ":" in spec.split("=")[0] else ("", "", spec)
            if target and target != dataset:
                continue
            name, path = rest.split("=", 1)
            rows += run_model(dataset, name, path, splits)
    print(markdown(rows))
    if args.json:
        import os

        old = []
        if os.path.exists(args.json):
            with open(args.json) as fh:
                old = json.load(fh)
        new_keys = {(r["dataset"], r["split"], r["method"]) for r in rows}
        merged = [r for r in old if (r["dataset"], r["split"], r["method"]) not in new_keys] + rows
        with open(args.json, "w") as fh:
            json.dump(merged, fh, indent=1)


if __name__ == "__main__":
    main()
