"""Quality as the collection grows (the shape of the paper's Table 1, on synthetic data, on a CPU).

    python benchmarks/scale.py --write-train artifacts/scale        # the ~8K-face synthetic train file
    make model FEATURES=artifacts/scale/train_features.npy LABELS=artifacts/scale/train_labels.npy DIM=256 \\
        MODEL=artifacts/scale/model.pt
    python benchmarks/scale.py --model method=artifacts/scale/model.pt --json benchmarks/results/scale.json
    python benchmarks/scale.py ... --sizes 1 3 12 30                  # add the 30x rung (~240K faces)
    python benchmarks/scale.py --sizes 120 --model method=artifacts/scale/model.pt \\
        --json benchmarks/results/scale_120x.json                     # the 120x rung (~976K faces)

Protocol. The train file is generator seed 11 with 1,100 identities (7,986 faces). Rung ``m`` is a new collection
drawn by the same generator law (``facecluster/clustering/synthetic.py``, defaults unchanged) with ``1100 m`` identities and
seed ``100 + m``: new people, same embedding space, ``m`` times the training size. Every split is preprocessed with
the first model's mean (the mean of its training identities, which its file holds; without a model, the train
file's mean) and searched with K = 80 and the model's kNN settings (:class:`~clustering.knn_config.KnnConfig`, ``"auto"``: exact flat search up to 300K faces,
IVF above, so the 120x rung is searched with IVF); the baselines use the same graph. Baselines choose their one
parameter on the train file (best mean of pairwise and BCubed F) and apply it unchanged to every rung: cosine kNN
+ Infomap (the similarity threshold), HDBSCAN (scikit-learn, ``min_cluster_size``), FC-ES. The oracle-k Top-K
Jaccard uses the true labels (a ceiling, not a method). A model (``--model NAME=PATH``) runs with the settings
stored in its file, chosen at export on validation identities of its own train file; no rung is ever tuned on.

Isolation and measurement. Each rung's faces are generated once into ``--workdir`` (in a process of their own: the
generator needs 6 GB at 120x) and memory-mapped from there. Each (rung, method) then runs in a fresh process
(``--no-isolate``: in this one, for tests), which reports its seconds and peak resident memory per stage and in
total (:class:`clustering.timer.Timer` with ``memory=True``: the kernel's high-water mark, reset at each stage).
A model row is the model's whole pipeline (``ClusteringPipeline.cluster``: preprocessing, kNN, networks, Jaccard,
Infomap), end to end in its own process; the first model's process writes its kNN graph to ``--workdir``, and the
baselines read it from there (one graph per split, the same for every method): their ``seconds`` add the kNN's
seconds to their own, and ``graph_peak_mb`` is the peak memory of the stages that built the graph (their
``peak_rss_mb`` is their own process's). Without a model a process of its own builds the graph. HDBSCAN runs with a time limit of ``--hdbscan-factor`` (2) times the first model's end-to-end
seconds on the rung and an address space of ``--hdbscan-memory-gb`` (12 GB); past either, its row records the
time-out or the failure instead of scores.

Diagnosis per rung and method: the five largest predicted clusters (faces, identities), and for a model the mean
absolute error of its predicted k against the oracle k* per band of k*.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from common import ROOT, largest_clusters  # noqa: I001  (benchmarks/ is the script folder)
from quality import (GRID, baseline_k, baseline_params, hdbscan_params, parse_overrides, record,
                     threshold_for_overrides, tune_baseline, tune_hdbscan)
from baselines import hdbscan_cluster
from facecluster.clustering.edges import oracle_k
from facecluster.clustering.graph_config import GraphConfig
from facecluster.clustering.knn import knn_search
from facecluster.clustering.knn_config import KNN_METHODS, KnnConfig
from facecluster.clustering.metrics import evaluate
from facecluster.clustering.preprocess import fit_mean, preprocess
from facecluster.clustering.refine import refine_and_cluster
from facecluster.clustering.synthetic import make_synthetic
from facecluster.clustering.timer import Timer

K = 80
TRAIN = dict(n_identities=1100, seed=11)
K_BANDS = ((1, 1), (2, 5), (6, 20), (21, 79), (80, 80))
DATASET = "synthetic-scale"
RESULT = "SCALE-JOB-RESULT "  # the prefix of a job's one-line JSON result on stdout


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


# ------------------------------------------------------------------------------------------------ the jobs
# Each job reads its inputs from files, runs one thing with a memory-measuring Timer and returns a JSON-able dict;
# main() runs it in a fresh process (``--job``) or, with --no-isolate, in its own.


def _measured(timer: Timer, peak_mb: float) -> dict:
    return {"stages": {s: round(v, 2) for s, v in timer.seconds.items()},
            "cpu_seconds": {s: round(v, 2) for s, v in timer.cpu_seconds.items()},
            "peak_mb": {s: round(v) for s, v in timer.peak.items()}, "peak_rss_mb": round(peak_mb),
            "peak_exact": timer.resets}


def job_generate(job: dict) -> dict:
    """Write one split's faces and labels (``.npy``) from the generator."""
    feats, labels = make_synthetic(**job["config"])
    np.save(job["features"], feats)
    np.save(job["labels"], labels)
    return {"n": int(len(labels))}


def job_model(job: dict) -> dict:
    """A model file's whole pipeline on one split (:meth:`ClusteringPipeline.cluster`), then the metrics, the
    largest clusters and the k error; with ``graph_out``, the kNN graph is written there for the baselines."""
    from facecluster.clustering.pipeline import ClusteringPipeline

    timer = Timer(memory=True)
    with timer("load"):
        pipe = ClusteringPipeline.load(job["model"], device=job.get("device", "cpu"))
        pipe.graph = replace(pipe.graph, **job["overrides"])
        if job.get("knn_method"):
            pipe.knn = replace(pipe.knn, method=job["knn_method"])
        feats = np.load(job["features"], mmap_mode="r")
    graph: dict = {}
    pred, info = pipe.cluster(feats, timer, progress=job.get("progress", False), keep=graph)
    peak = timer.peak_mb()
    labels = np.load(job["labels"])
    out = {"metrics": evaluate(labels, pred), "largest": largest_clusters(labels, pred), **_measured(timer, peak),
           "knn": graph["knn"], "n_distinct": info["n_distinct"], "edges": graph.get("edges"),
           "links": graph.get("links"),
           "params": {**pipe.graph.to_dict(), "knn": pipe.knn.to_dict(),
                      "meta": {key: v for key, v in pipe.meta.items() if key in ("description", "trained_on")}},
           "k_error": None if graph["k"] is None else k_error(graph["k"], oracle_k(graph["nbrs"], labels))}
    if job.get("graph_out") and info["n_distinct"] == len(labels):  # the graph of every face: the baselines'
        np.save(job["graph_out"] + "_nbrs.npy", graph["nbrs"])
        np.save(job["graph_out"] + "_sims.npy", graph["sims"])
        out["graph"] = {"seconds": round(timer.seconds["preprocess"] + timer.seconds["knn"], 2),
                        "peak_mb": round(max(timer.peak["preprocess"], timer.peak["knn"]))}
    return out


def job_graph(job: dict) -> dict:
    """The kNN graph alone (preprocessing with the train mean, then the kNN), written to ``graph_out``."""
    timer = Timer(memory=True)
    feats = np.load(job["features"], mmap_mode="r")
    with timer("preprocess"):
        x = preprocess(feats, np.asarray(job["mean"], dtype=np.float32), release=True)
    with timer("knn"):
        nbrs, sims = knn_search(x, K, KnnConfig.from_dict(job["knn"]), device="cpu",
                                progress=job.get("progress", False))
    np.save(job["graph_out"] + "_nbrs.npy", nbrs)
    np.save(job["graph_out"] + "_sims.npy", sims)
    return {"seconds": round(sum(timer.seconds.values()), 2), "peak_mb": round(timer.peak_mb())}


def job_baseline(job: dict) -> dict:
    """A baseline (``GRID`` method with its tuned config, or HDBSCAN) on the graph a model or job_graph wrote."""
    timer = Timer(memory=True)
    with timer("load"):
        g = {"nbrs": np.load(job["graph"] + "_nbrs.npy"), "sims": np.load(job["graph"] + "_sims.npy"),
             "labels": np.load(job["labels"])}
    if job["method"] == "hdbscan":
        with timer("hdbscan"):
            pred = hdbscan_cluster(g["nbrs"], g["sims"], job["min_cluster_size"])
    else:
        with timer("oracle_k"):
            k = baseline_k(job["method"], g)
        pred = refine_and_cluster(g["nbrs"], g["sims"], GraphConfig(**job["config"]), k=k, timer=timer)
    peak = timer.peak_mb()
    return {"metrics": evaluate(g["labels"], pred), "largest": largest_clusters(g["labels"], pred),
            **_measured(timer, peak)}


JOBS = {"generate": job_generate, "model": job_model, "graph": job_graph, "baseline": job_baseline}


def run_job(job: dict, isolate: bool, timeout: float | None = None, *, script: str | None = None,
            jobs: dict | None = None, memory_gb: float | None = None) -> dict | None:
    """Run a job of ``jobs`` (default: this script's ``JOBS``) in a fresh process of ``script`` (``isolate``; the
    script runs ``--job JSON`` through :func:`job_main`) or in this one. ``None`` when it ran past ``timeout``
    seconds (the process is killed). With ``memory_gb`` the process's address space is capped there and a job
    that fails returns ``{"failed": exit status}`` instead of stopping the benchmark (HDBSCAN at 1M faces may not
    fit). Its stderr (progress bars) passes through."""
    if not isolate:
        return (jobs or JOBS)[job["kind"]](job)
    cmd = [sys.executable, str(Path(script or __file__).resolve()), "--job", json.dumps(job)]

    def cap() -> None:
        import resource

        limit = int(memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout, cwd=ROOT,
                           preexec_fn=cap if memory_gb else None)
    except subprocess.TimeoutExpired:
        return None
    lines = [line for line in r.stdout.splitlines() if line.startswith(RESULT)]
    if r.returncode != 0 or not lines:
        if memory_gb:
            return {"failed": r.returncode}
        raise SystemExit(f"scale.py: the {job['kind']} job on {job.get('split')} failed (exit {r.returncode})")
    return json.loads(lines[-1][len(RESULT):])


def job_main(job_json: str, jobs: dict) -> None:
    """The ``--job`` entry point: run one job, print its result as one JSON line."""
    job = json.loads(job_json)
    print(RESULT + json.dumps(jobs[job["kind"]](job), default=float), flush=True)


# ------------------------------------------------------------------------------------------------ the ladder


def split_files(workdir: Path, config: dict) -> tuple[str, str]:
    stem = workdir / f"synthetic_n{config['n_identities']}_s{config['seed']}"
    return f"{stem}_features.npy", f"{stem}_labels.npy"


def ensure_split(workdir: Path, split: str, config: dict, isolate: bool) -> tuple[str, str]:
    """The split's ``.npy`` files in ``workdir``, generated (once) when absent."""
    feats, labels = split_files(workdir, config)
    if not (os.path.exists(feats) and os.path.exists(labels)):
        t0 = time.perf_counter()
        n = run_job({"kind": "generate", "split": split, "config": config, "features": feats, "labels": labels},
                    isolate)["n"]
        print(f"{split}: generated {n} faces in {time.perf_counter() - t0:.0f} s", flush=True)
    return feats, labels


def _row(split: str, method: str, res: dict, params: dict, seconds: float) -> dict:
    r = record(DATASET, split, method, res["metrics"], seconds, params)
    r.update({key: res[key] for key in ("largest", "stages", "cpu_seconds", "peak_mb", "peak_rss_mb", "peak_exact", "k_error",
                                        "knn", "n_distinct", "edges", "links") if key in res})
    return r


@functools.lru_cache(maxsize=None)
def _model_spec(spec: str) -> tuple[str, str, dict, dict | None]:
    """``NAME=PATH[@field=value,...]`` -> name, path, graph overrides and, for an ablation that leaves the threshold
    open, the validation threshold it gets (:func:`quality.threshold_for_overrides`; added to the overrides)."""
    from facecluster.clustering.pipeline import ClusteringPipeline

    name, rest = spec.split("=", 1)
    path, _, over = rest.partition("@")
    overrides, tuned = parse_overrides(over), None
    if overrides and "threshold" not in overrides:
        pipe = ClusteringPipeline.load(path, device="cpu")
        pipe.graph = replace(pipe.graph, **overrides)
        t, score = threshold_for_overrides(pipe, overrides)
        overrides, tuned = {**overrides, "threshold": t}, {"threshold": t, "val_score": round(score, 4)}
    return name, path, overrides, tuned


def run_split(split: str, files: tuple[str, str], args: argparse.Namespace, tuned: dict, mean: np.ndarray
              ) -> list[dict]:
    """Every method of one split, each in its own process: the models first (the first writes the kNN graph),
    then the baselines on that graph, HDBSCAN last with its time limit."""
    feats, labels = files
    graph_out = feats[: -len("_features.npy")] + f"_k{K}"
    graph = None
    rows: list[dict] = []
    method_seconds = None
    for spec in args.model:
        name, path, overrides, tuned_on_val = _model_spec(spec)
        share = graph is None
        job = {"kind": "model", "split": split, "model": os.path.abspath(path), "overrides": overrides,
               "features": feats,
               "labels": labels, "knn_method": args.knn_method, "progress": args.progress, "device": args.device,
               "graph_out": graph_out if share else None}
        res = run_job(job, args.isolate)
        graph = res.get("graph", graph)
        seconds = sum(res["stages"].values())
        method_seconds = seconds if method_seconds is None else method_seconds
        rows.append(_row(split, name, res, {**res.get("params", {}), "model": path, "overrides": overrides,
                                            "retuned_on_val": tuned_on_val}, seconds))
        print(f"  {name} {split}: F_P {rows[-1]['pairwise_f']:.4f} F_B {rows[-1]['bcubed_f']:.4f} "
              f"({seconds:.0f} s, peak {res['peak_rss_mb']} MB)", flush=True)
    if args.methods and graph is None:
        graph = run_job({"kind": "graph", "split": split, "features": feats, "mean": mean.tolist(),
                         "knn": replace(KnnConfig(), **({"method": args.knn_method} if args.knn_method else {}))
                         .to_dict(), "graph_out": graph_out, "progress": args.progress}, args.isolate)
    for method in args.methods:
        job = {"kind": "baseline", "split": split, "method": method, "graph": graph_out, "labels": labels}
        timeout = memory_gb = None
        if method == "hdbscan":
            memory_gb = args.hdbscan_memory_gb
            job["min_cluster_size"] = tuned["hdbscan"]
            params = hdbscan_params(tuned["hdbscan"])
            if method_seconds is not None and args.isolate:
                timeout = args.hdbscan_factor * method_seconds
        else:
            job["config"] = tuned[method].to_dict()
            params = baseline_params(method, tuned[method])
        res = run_job(job, args.isolate, timeout, memory_gb=memory_gb)
        if res is None:
            rows.append({"dataset": DATASET, "split": split, "method": method, "timed_out": True,
                         "limit_seconds": round(timeout, 1), "params": params,
                         "note": f"stopped after {args.hdbscan_factor:g}x the method's {method_seconds:.0f} s"})
            print(f"  {method} {split}: timed out after {timeout:.0f} s", flush=True)
            continue
        if "failed" in res:
            rows.append({"dataset": DATASET, "split": split, "method": method, "failed": res["failed"],
                         "memory_limit_gb": memory_gb, "params": params,
                         "note": f"exit status {res['failed']} within a {memory_gb:g} GB address-space limit"})
            print(f"  {method} {split}: failed (exit {res['failed']}, {memory_gb:g} GB limit)", flush=True)
            continue
        own = sum(res["stages"].values())
        r = _row(split, method, res, params, own + graph["seconds"])
        r["graph_seconds"], r["graph_peak_mb"] = graph["seconds"], graph["peak_mb"]
        rows.append(r)
        print(f"  {method} {split}: F_P {r['pairwise_f']:.4f} F_B {r['bcubed_f']:.4f} ({own:.0f} s + kNN "
              f"{graph['seconds']:.0f} s, peak {res['peak_rss_mb']} MB)", flush=True)
    return rows


def markdown(rows: list[dict], rungs: list[str]) -> str:
    """F_P / F_B per method and rung."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["split"]): r for r in rows}

    def cell(r: dict | None) -> str:
        if r is None:
            return "-"
        if r.get("timed_out"):
            return f"timed out (> {r['limit_seconds']:.0f} s)"
        if "failed" in r:
            return f"failed (> {r['memory_limit_gb']:g} GB)"
        return f"{r['pairwise_f']:.3f} / {r['bcubed_f']:.3f}"

    head = "| method | " + " | ".join(rungs) + " |\n" + "|---" * (len(rungs) + 1) + "|\n"
    return head + "\n".join(f"| {m} | " + " | ".join(cell(by.get((m, s))) for s in rungs) + " |" for m in methods)


def stage_markdown(rows: list[dict]) -> str:
    """Seconds per stage and peak resident memory (MB, in brackets) per row, and the end-to-end total."""
    stages = list(dict.fromkeys(s for r in rows for s in r.get("stages", {})))
    head = ("| method | split | " + " | ".join(stages) + " | total s | peak MB |\n"
            + "|---" * (len(stages) + 4) + "|\n")
    lines = []
    for r in rows:
        if r.get("timed_out") or "failed" in r:
            what = (f"> {r['limit_seconds']:.0f} (timed out) | -" if r.get("timed_out")
                    else f"- | > {r['memory_limit_gb']:g} GB (failed)")
            lines.append(f"| {r['method']} | {r['split']} | " + " | ".join("-" for _ in stages) + f" | {what} |")
            continue
        cells = [f"{r['stages'][s]:.1f} ({r['peak_mb'][s]})" if s in r["stages"] else "-" for s in stages]
        lines.append(f"| {r['method']} | {r['split']} | " + " | ".join(cells) +
                     f" | {r['seconds']:.1f} | {r['peak_rss_mb']} |")
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[1, 3, 12], help="rungs, as multiples of the train size")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH[@field=value,...]",
                    help="exported model (repeatable); @... overrides its graph settings (ablations; a threshold left "
                         "open is the validation one for the overridden rule)")
    ap.add_argument("--methods", nargs="*", default=["knn-infomap", "hdbscan", "topk-jaccard-oracle"],
                    choices=["knn-infomap", "fc-es", "hdbscan", "topk-jaccard-oracle"])
    ap.add_argument("--write-train", metavar="DIR", help="write DIR/train_{features,labels}.npy and exit")
    ap.add_argument("--json", help="write every record here")
    ap.add_argument("--workdir", default="artifacts/scale/rungs",
                    help="where each split's faces and kNN graph are written (reused when present)")
    ap.add_argument("--knn-method", choices=KNN_METHODS, help="kNN index for every split (default: the model's)")
    ap.add_argument("--hdbscan-factor", type=float, default=2.0,
                    help="HDBSCAN's time limit, in multiples of the first model's seconds on the split")
    ap.add_argument("--hdbscan-memory-gb", type=float, default=12.0,
                    help="HDBSCAN's address-space limit (its row records the failure past it)")
    ap.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                    help="each (split, method) in a fresh process (default), for its own peak memory")
    ap.add_argument("--progress", action="store_true", help="progress bars of the kNN and the networks")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                    help="where the models run (cuda: networks on the GPU, faiss on every GPU it sees)")
    ap.add_argument("--train-identities", type=int, default=TRAIN["n_identities"],
                    help="identities of the train file (the rungs scale with it unless --rung-identities is given); "
                         "tests use a tiny value")
    ap.add_argument("--train-seed", type=int, default=TRAIN["seed"],
                    help="generator seed of the train file (benchmarks/ladder.py draws several)")
    ap.add_argument("--rung-identities", type=int,
                    help="identities of the 1x rung (default: --train-identities); the rungs stay the same for "
                         "every train file when this is fixed")
    ap.add_argument("--job", help=argparse.SUPPRESS)  # internal: run one job (JSON) in this process
    args = ap.parse_args(argv)
    if args.job:
        return job_main(args.job, JOBS)

    train_cfg = {**TRAIN, "n_identities": args.train_identities, "seed": args.train_seed}
    rung_ids = args.rung_identities or args.train_identities
    if args.write_train:
        train = make_synthetic(**train_cfg)
        folder = Path(args.write_train)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "train_features.npy", train[0])
        np.save(folder / "train_labels.npy", train[1])
        print(f"{folder}/train_{{features,labels}}.npy: {train[0].shape[0]} faces, {args.train_identities} identities")
        return
    t_start = time.perf_counter()
    workdir = Path(args.workdir).resolve()  # absolute: the jobs run in the repository root
    workdir.mkdir(parents=True, exist_ok=True)
    configs = {"train": train_cfg, **{f"{m}x": rung_config(m, rung_ids) for m in args.sizes}}
    files = {split: ensure_split(workdir, split, cfg, args.isolate) for split, cfg in configs.items()}
    train_feats, train_labels = np.load(files["train"][0]), np.load(files["train"][1])
    mean = fit_mean(train_feats)
    if args.model:  # the first model's own mean: every method on the graph its pipeline builds
        from facecluster.clustering.pipeline import ClusteringPipeline

        model_mean = ClusteringPipeline.load(_model_spec(args.model[0])[1], device="cpu").mean
        mean = mean if model_mean is None else model_mean
    tuned = {}
    if args.methods:  # each baseline's one parameter, chosen on the train graph (exact search)
        nbrs, sims = knn_search(preprocess(train_feats, mean), K, method="flat", device="cpu")
        g = {"nbrs": nbrs, "sims": sims, "labels": train_labels}
        tuned = {m: tune_baseline(m, g)[0] for m in args.methods if m in GRID}
        if "hdbscan" in args.methods:
            tuned["hdbscan"] = tune_hdbscan(g)[0]
    rows = []

    def write() -> None:
        out = {"protocol": {"train": train_cfg, "rungs": {s: c for s, c in configs.items() if s != "train"},
                            "faces": faces, "k": K,
                            "mean": "the first model's" if args.model else "the train file's",
                            "knn": (f"{args.knn_method} for every split" if args.knn_method else
                                    "the model's KnnConfig (auto: exact flat up to 300K faces, IVF above)"),
                            "generator": "facecluster/clustering/synthetic.py defaults", "isolated": args.isolate,
                            "device": args.device,
                            "hdbscan_limit": f"{args.hdbscan_factor:g}x the first model's seconds"},
               "command": "python benchmarks/scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "date": time.strftime("%Y-%m-%d"), "seconds": round(time.perf_counter() - t_start, 1),
               "records": rows}
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=float)

    faces = {split: len(np.load(files[split][1], mmap_mode="r")) for split in configs}
    for split in configs:
        n = faces[split]
        print(f"{split}: {n} faces, {configs[split]['n_identities']} identities", flush=True)
        rows += run_split(split, files[split], args, tuned, mean)
        if args.json:  # after every split: a long run keeps what it has measured
            write()
    rungs = list(configs)
    print(markdown(rows, rungs))
    print(stage_markdown(rows))

if __name__ == "__main__":
    os.chdir(ROOT)
    main()
