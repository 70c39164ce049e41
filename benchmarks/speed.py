"""Per-stage time and peak memory of the pipeline on synthetic data; prints a Markdown table.

    python benchmarks/speed.py --sizes 10000 100000 [--model artifacts/model.pt [--all-centres]] [--json PATH]
    python benchmarks/speed.py --sizes 1000000 --knn ivf          # 1M faces with an IVF index

Faces are 256-d, or of the model's feature width with ``--model``, centred with their own mean: they stand in for a
collection from the model's own embedding space, which the model's mean centres; the generator's space is not an
lfw-dlib model's, and its mean would leave them uncentred, every face close to every other (a regime no real
collection is in: F_P 0.66 at 20K). Each size runs in a fresh subprocess (so peak memory is its own). Stages: preprocessing, kNN (faiss); with ``--model``, what
:meth:`ClusteringPipeline.run_graph` does: Top-K prediction and pair-classifier (SDT) refinement on the centres the
model's graph rule can use (``scored_centres`` in the JSON; ``--all-centres``: on every face, the networks'
throughput), the edge weights ("jaccard": the model's graph rule, e.g. edge probability x SDT) and Infomap (pruned
at the model's threshold); without a model, the sigmoid edge probabilities, Top-K Jaccard with the oracle k* and
Infomap. Then the metrics. ``peak MB`` is the largest resident set
size seen while the stage ran (sampled every 20 ms; it includes what earlier stages still hold), ``+MB`` its rise
over the stage's start; ``cpu_seconds`` in the JSON is the process's CPU time in the stage (all threads), a
measure that other jobs sharing the cores inflate far less than the wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facecluster.clustering.knn_config import KNN_METHODS  # noqa: E402  (dataclasses only)


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Meter:
    """Wall time and sampled peak RSS per stage."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self._peak = 0.0
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, rss_mb())
            time.sleep(0.02)

    @contextmanager
    def __call__(self, stage: str):
        """Time one stage; a stage entered again (the pipeline's ``jaccard`` before and after the SDT) adds up."""
        start_mem = rss_mb()
        self._peak = start_mem
        t0, c0 = time.perf_counter(), time.process_time()
        yield
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        peak = max(self._peak, rss_mb())
        row = next((r for r in self.rows if r["stage"] == stage), None)
        if row is None:
            row = {"stage": stage, "seconds": 0.0, "cpu_seconds": 0.0, "peak_mb": 0, "delta_mb": 0}
            self.rows.append(row)
        row["seconds"] = round(row["seconds"] + seconds, 3)
        row["cpu_seconds"] = round(row["cpu_seconds"] + cpu, 3)
        row["peak_mb"] = max(row["peak_mb"], round(peak))
        row["delta_mb"] = max(row["delta_mb"], round(peak - start_mem))


def run_one(n: int, knn_method: str, model: str | None, k: int, seed: int, all_centres: bool = False) -> dict:
    import numpy as np
    import torch

    from facecluster.clustering.edges import edge_prob, oracle_k, row_normalise, topk_jaccard
    from facecluster.clustering.knn import knn_search
    from facecluster.clustering.mapequation import infomap_cluster, knn_edges
    from facecluster.clustering.metrics import evaluate
    from facecluster.clustering.preprocess import fit_mean, preprocess
    from facecluster.clustering.synthetic import make_synthetic

    pipe = None
    if model:
        from facecluster.clustering.pipeline import ClusteringPipeline

        pipe = ClusteringPipeline.load(model, device="cpu")
    dim = (pipe.feat_dim if pipe else None) or 256  # faces of the model's width (lfw-dlib models: 128)
    # identities scale with N so the size distribution stays the same (~7.4 faces per identity)
    feats, labels = make_synthetic(n_identities=max(10, round(n / 7.4)), seed=seed, dim=dim)
    feats, labels = feats[:n], labels[:n]
    n = len(feats)  # the generator may give fewer faces than asked for small N
    meter = Meter()
    with meter("preprocess"):  # centred with their own mean, also with a model (see the module docstring)
        x = preprocess(feats, fit_mean(feats))
    with meter("knn"):
        nbrs, sims = knn_search(x, k, method=knn_method, progress=n > 200_000)
    extra = {}
    if pipe is not None:  # what ClusteringPipeline.run_graph does, stage by stage
        from facecluster.clustering.refine import pairs_to_score, refine_and_cluster

        rule = None if all_centres else pipe.graph
        kv, q, p = pipe.scores(x, nbrs, sims, meter, progress=n > 200_000, rule=rule)
        need = pairs_to_score(p, nbrs, pipe.graph) if p is not None and pipe.sdt is not None else None
        extra = {"all_centres": all_centres, "scored_centres": n if need is None else int(need.any(axis=1).sum()),
                 "scored_pairs": None if need is None else int(need.sum())}
        # stages "jaccard" (the edge weights; with the Jaccard computed on the way, in scores) and "infomap"
        pred = refine_and_cluster(nbrs, sims, pipe.graph, k=kv, pair_prob=q, jaccard_prob=p, timer=meter)
        rows_kept = None
    else:
        with meter("edge_prob"):
            row_normalise(edge_prob(sims, "sigmoid"))
        kv = oracle_k(nbrs, labels)
        with meter("jaccard"):  # Top-K Jaccard with the oracle k
            w = topk_jaccard(nbrs, sims, kv)
        with meter("infomap"):
            rows_kept, cols, ww = knn_edges(nbrs, w, 0.0)
            pred = infomap_cluster(n, rows_kept, cols, ww)
    with meter("metrics"):
        m = evaluate(labels, pred)
    return {"n": n, "dim": dim, "knn": knn_method, "k": k, "threads": torch.get_num_threads(), "model": model,
            "mean_k": None if kv is None else float(np.mean(kv)), **extra,
            "edges": None if rows_kept is None else int(len(rows_kept)), "stages": meter.rows,
            "total_seconds": round(sum(r["seconds"] for r in meter.rows), 2),
            "pairwise_f": round(m["pairwise_f"], 4), "bcubed_f": round(m["bcubed_f"], 4)}


def table(results: list[dict]) -> str:
    stages = []
    for r in results:
        stages += [s["stage"] for s in r["stages"] if s["stage"] not in stages]
    head = "| N | d | kNN | " + " | ".join(f"{s} s (peak MB)" for s in stages) + " | total s | F_P / F_B |\n"
    head += "|---" * (len(stages) + 5) + "|\n"
    lines = []
    for r in results:
        by = {s["stage"]: s for s in r["stages"]}
        cells = [f"{by[s]['seconds']:.2f} ({by[s]['peak_mb']})" if s in by else "-" for s in stages]
        lines.append(f"| {r['n']:,} | {r.get('dim', 256)} | {r['knn']} | " + " | ".join(cells) +
                     f" | {r['total_seconds']:.1f} | {r['pairwise_f']:.3f} / {r['bcubed_f']:.3f} |")
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000])
    ap.add_argument("--knn", default="auto", choices=KNN_METHODS)
    ap.add_argument("--model", help="exported model: time the Top-K and SDT stages too")
    ap.add_argument("--k", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--all-centres", action="store_true",
                    help="with --model: run the networks on every face, not only the centres the model's graph rule "
                         "can use (ClusteringPipeline.run_graph): their throughput")
    ap.add_argument("--json", help="append the results to this JSON list")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size in this process
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.knn, args.model, args.k, args.seed, args.all_centres)))
        return
    results = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--knn", args.knn, "--k", str(args.k),
               "--seed", str(args.seed)] + (["--model", args.model] if args.model else []) \
            + (["--all-centres"] if args.all_centres else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(f"N={n:,}: {results[-1]['total_seconds']} s", file=sys.stderr)
    print(table(results))
    if args.json:
        old = json.load(open(args.json)) if os.path.exists(args.json) else []
        with open(args.json, "w") as fh:
            json.dump(old + results, fh, indent=1)


if __name__ == "__main__":
    main()
