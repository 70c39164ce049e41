"""The scale-ladder benchmark (benchmarks/scale.py) and the HDBSCAN baseline, on tiny synthetic data."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from baselines import hdbscan_cluster  # noqa: E402
from common import largest_clusters  # noqa: E402
from scale import RESULT, k_error, main as scale_main, run_job, rung_config  # noqa: E402

from facecluster.clustering.graph_config import GraphConfig
from facecluster.clustering.knn import knn_search  # noqa: E402
from facecluster.clustering.metrics import evaluate  # noqa: E402
from facecluster.clustering.pipeline import ClusteringPipeline
from facecluster.clustering.preprocess import fit_mean, preprocess  # noqa: E402
from facecluster.clustering.synthetic import make_synthetic  # noqa: E402
from facecluster.models import SDT, SDTConfig, TopKConfig, TopKPredictor  # noqa: E402


def test_largest_clusters_counts_faces_identities_and_purity() -> None:
    true = np.array([0, 0, 0, 1, 1, 2, 3])
    pred = np.array([5, 5, 5, 5, 7, 7, 9])
    assert largest_clusters(true, pred, top=2) == [
        {"faces": 4, "identities": 2, "purity": 0.75},
        {"faces": 2, "identities": 2, "purity": 0.5},
    ]


def test_k_error_by_band_of_the_oracle_k() -> None:
    k_star = np.array([1, 1, 3, 80])
    k_pred = np.array([1, 5, 2, 60])
    rows = {r["k_star"]: r for r in k_error(k_pred, k_star)}
    assert rows["1"] == {"k_star": "1", "faces": 2, "mae": 2.0, "mean_k": 3.0}
    assert rows["2-5"]["mae"] == 1.0 and rows["80"]["mae"] == 20.0
    assert "6-20" not in rows  # empty bands are left out


def test_rungs_scale_the_train_identities_with_their_own_seed() -> None:
    assert rung_config(12, 1100) == {"n_identities": 13200, "seed": 112}
    assert rung_config(1, 50)["seed"] != rung_config(3, 50)["seed"]


def test_hdbscan_on_the_knn_graph_finds_separated_identities_and_keeps_noise_apart() -> None:
    x, y = make_synthetic(n_identities=30, dim=32, seed=3, max_size=20, near_pair_frac=0.0, lowq_frac=0.0,
                          sigma_min=0.2, sigma_max=0.3)
    nbrs, sims = knn_search(preprocess(x, fit_mean(x)), 10, method="flat")
    pred = hdbscan_cluster(nbrs, sims, 2)
    assert pred.shape == y.shape and pred.min() >= 0  # noise points become singletons, not label -1
    m = evaluate(y, pred)
    assert m["pairwise_f"] > 0.95 and m["bcubed_f"] > 0.95
    # a lone far-away face is noise, kept apart as a singleton of its own
    far = np.vstack([x, -x.mean(0, keepdims=True) * 50]).astype(np.float32)
    nbrs, sims = knn_search(preprocess(far, fit_mean(x)), 10, method="flat")
    pred = hdbscan_cluster(nbrs, sims, 2)
    assert (pred == pred[-1]).sum() == 1


def test_scale_ladder_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    scale_main(["--write-train", "data", "--train-identities", "40"])
    feats = np.load("data/train_features.npy")
    assert feats.shape[1] == 256 and len(np.load("data/train_labels.npy")) == len(feats)
    torch.manual_seed(0)
    tiny = dict(feat_dim=256, k=80, d_model=8, num_layers=1, num_heads=1, dim_feedforward=8)
    pipe = ClusteringPipeline(fit_mean(feats), GraphConfig(k=80, threshold=0.05),
                              TopKPredictor(TopKConfig(**tiny)), SDT(SDTConfig(**tiny)),
                              knn={"method": "flat"}, device="cpu")
    jac = pipe.graph.jaccard  # the grid export.py --tune records: an ablation that leaves the threshold open reads it
    pipe.meta["tuning"] = {"grid": [{"jaccard": jac, "combine": c, "threshold": t, "score": sc} for c, t, sc in
                                    [("product", 0.05, 0.9), ("jaccard", 0.3, 0.7), ("jaccard", 0.55, 0.8),
                                     ("jaccard", 0.7, 0.75)]]}
    pipe.save("model.pt")
    scale_main(["--train-identities", "40", "--sizes", "1", "2", "--json", "out.json", "--model", "m=model.pt",
                "--model", "m-nosdt=model.pt@combine=jaccard,threshold=0.0",
                "--model", "m-open=model.pt@combine=jaccard", "--workdir", "rungs", "--no-isolate"])
    out = json.loads(Path("out.json").read_text())
    assert out["protocol"]["rungs"] == {"1x": {"n_identities": 40, "seed": 101}, "2x": {"n_identities": 80, "seed": 102}}
    rows = {(r["method"], r["split"]): r for r in out["records"]}
    methods = {"knn-infomap", "hdbscan", "topk-jaccard-oracle", "m", "m-nosdt", "m-open"}
    assert set(rows) == {(m, s) for m in methods for s in ("train", "1x", "2x")}
    assert rows["hdbscan", "1x"]["params"]["tuned_on"] == "train"
    assert rows["m-nosdt", "2x"]["params"]["combine"] == "jaccard" and rows["m", "2x"]["params"]["combine"] == "product"
    nosdt = rows["m-nosdt", "2x"]["params"]
    assert nosdt["threshold"] == 0.0 and nosdt["retuned_on_val"] is None
    assert rows["m-open", "2x"]["params"]["threshold"] == 0.55  # the best Top-K Jaccard row of the grid, not 0.05
    assert rows["m-open", "1x"]["params"]["retuned_on_val"] == {"threshold": 0.55, "val_score": 0.8}
    assert all(0.0 <= r["pairwise_f"] <= 1.0 and r["largest"] for r in out["records"])
    n_1x = len(make_synthetic(**rung_config(1, 40))[1])
    assert sum(band["faces"] for band in rows["m", "1x"]["k_error"]) == n_1x  # every face in one band of k*
    assert out["protocol"]["faces"]["1x"] == n_1x and out["protocol"]["faces"]["train"] == len(feats)
    # seconds and peak memory per stage; the baselines read the model's graph and add its kNN seconds
    m, base = rows["m", "2x"], rows["knn-infomap", "2x"]
    assert {"load", "preprocess", "knn", "topk", "sdt", "jaccard", "infomap"} <= set(m["stages"]) == set(m["peak_mb"])
    assert m["seconds"] == pytest.approx(sum(m["stages"].values()), abs=0.01) and m["knn"] == "flat"
    assert 0 < m["peak_mb"]["knn"] <= m["peak_rss_mb"]
    assert base["graph_seconds"] == pytest.approx(m["stages"]["preprocess"] + m["stages"]["knn"], abs=0.02)
    assert base["seconds"] == pytest.approx(sum(base["stages"].values()) + base["graph_seconds"], abs=0.02)
    assert sorted(Path("rungs").glob("*_k80_nbrs.npy"))  # the splits' graphs, kept for the next run


def test_scale_jobs_in_their_own_process_and_the_time_limit(tmp_path: Path) -> None:
    """A job in a fresh process gives what it gives in this one (with its own peak memory); one that runs past
    its time limit is stopped and reported as such (None)."""
    x, y = make_synthetic(n_identities=30, seed=4)
    nbrs, sims = knn_search(preprocess(x, fit_mean(x)), 80, method="flat")
    for name, a in (("x_nbrs", nbrs), ("x_sims", sims), ("y", y)):
        np.save(tmp_path / f"{name}.npy", a)
    job = {"kind": "baseline", "split": "t", "method": "knn-infomap", "graph": str(tmp_path / "x"),
           "labels": str(tmp_path / "y.npy"), "config": GraphConfig(k=80, jaccard="none", transform="cosine",
                                                                     threshold=0.4).to_dict()}
    here, there = run_job(job, isolate=False), run_job(job, isolate=True)
    assert here["metrics"] == there["metrics"] and there["peak_rss_mb"] > 0 and RESULT.strip()
    assert run_job(job, isolate=True, timeout=0.2) is None
