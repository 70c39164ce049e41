"""Incremental clustering (``clustering.incremental``, ``cluster.py --assign-to``): old faces keep their ids, new
faces of known identities join their cluster, new identities get new ids; in the library and through the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facecluster.clustering.graph_config import GraphConfig
from facecluster.clustering.incremental import assign_new_faces, map_modules, subgraph_weights
from facecluster.clustering.metrics import evaluate
from facecluster.clustering.pipeline import ClusteringPipeline
from facecluster.clustering.preprocess import fit_mean
from facecluster.clustering.synthetic import make_synthetic

ROOT = Path(__file__).resolve().parents[1]
K = 10
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def split():
    """~400 faces of 80 identities; the new faces: every face of 10 held-out identities plus 20% of the others."""
    x, y = make_synthetic(n_identities=80, dim=32, max_size=30, near_pair_frac=0.0, lowq_frac=0.0, sigma_min=0.4,
                          sigma_max=0.8, seed=0)
    rng = np.random.default_rng(0)
    held = rng.choice(80, 10, replace=False)
    is_new = np.isin(y, held) | (rng.random(len(y)) < 0.2)
    old, new = np.flatnonzero(~is_new), np.flatnonzero(is_new)
    # cosine kNN + Infomap (no networks): a model whose full run is good on this data, so joins can be judged
    pipe = ClusteringPipeline(fit_mean(x), GraphConfig(k=K, jaccard="none", transform="cosine", threshold=0.6))
    return x, y, old, new, pipe


def test_map_modules_majority_ties_and_new_ids() -> None:
    # nodes: 4 new faces, then 5 old faces; modules: 0 = {new0, old 7, old 7, old 3}, 1 = {new1, old 3, old 9}
    # (tie 3 vs 9 -> 3), 3 = {new2}, 2 = {new3}: new ids follow the order of the new faces, not the module numbers
    modules = np.array([0, 1, 3, 2, 0, 0, 0, 1, 1])
    prev = np.array([7, 7, 3, 3, 9])
    np.testing.assert_array_equal(map_modules(modules, 4, prev), [7, 3, 10, 11])
    np.testing.assert_array_equal(map_modules(modules, 4, prev, next_id=100), [7, 3, 100, 101])
    np.testing.assert_array_equal(map_modules(np.array([0, 1, 0]), 3, np.array([], np.int64)), [0, 1, 0])


def test_old_ids_kept_known_join_new_identities_new(split) -> None:
    x, y, old, new, pipe = split
    prev = pipe(x[old])
    new_ids, info = assign_new_faces(pipe, x[old], prev.copy(), x[new])
    assert new_ids.shape == (len(new),) and new_ids.dtype == np.int64
    assert info["k"] == K and 0 < info["n_reached"] <= len(old)
    top = prev.max()
    # new faces of known identities join the cluster holding most of their identity's old faces
    known = np.isin(y[new], y[old])
    g_old, c_old = y[old], prev
    cells, counts = np.unique(np.stack([g_old, c_old]), axis=1, return_counts=True)
    order = np.lexsort((-counts, cells[0]))
    first = np.r_[True, cells[0, order][1:] != cells[0, order][:-1]]
    major = dict(zip(cells[0, order][first], cells[1, order][first]))
    right = np.mean(new_ids[known] == np.array([major[g] for g in y[new][known]]))
    assert right >= 0.9, f"only {right:.1%} of new faces of known identities joined their cluster"
    # faces of new identities get new ids (above every old id), one per identity
    fresh = new_ids[~known]
    assert (~known).sum() >= 20 and np.mean(fresh > top) >= 0.9
    assert evaluate(y[new][~known], fresh)["pairwise_f"] >= 0.9
    assert info["n_joined"] == int((new_ids <= top).sum())
    assert info["n_new_clusters"] == len(np.unique(new_ids[new_ids > top]))
    # the result is close to clustering everything at once
    f_inc = evaluate(np.r_[y[old], y[new]], np.r_[prev, new_ids])["pairwise_f"]
    f_all = evaluate(y, pipe(x))["pairwise_f"]
    assert f_inc >= f_all - 0.03, (f_inc, f_all)


def test_arbitrary_old_ids_and_determinism(split) -> None:
    x, _, old, new, pipe = split
    prev = pipe(x[old]) * 5 + 1000                      # gaps, large ids: kept as they are
    a, _ = assign_new_faces(pipe, x[old], prev, x[new])
    b, _ = assign_new_faces(pipe, x[old], prev, x[new])
    np.testing.assert_array_equal(a, b)
    joined = a <= prev.max()
    assert np.isin(a[joined], prev).all()
    assert (a[~joined] > prev.max()).all() and a[~joined].min() == prev.max() + 1


def test_duplicates_join_and_tiny_sets(split) -> None:
    x, _, old, new, pipe = split
    prev = pipe(x[old])
    ids, _ = assign_new_faces(pipe, x[old], prev, x[old[:15]] * 3.0)  # the same faces again (other norm)
    np.testing.assert_array_equal(ids, prev[:15])
    # fewer faces than K in all: K is capped at the distinct faces of P + Q (an identical face is one node)
    ids, info = assign_new_faces(pipe, x[old[:1]], np.array([4]), x[old[:1]])
    assert info["k"] == 1 and ids.tolist() == [4]
    ids, info = assign_new_faces(pipe, x[old[:2]], np.array([0, 1]), x[new[:3]])
    assert info["k"] == 5 and ids.shape == (3,)


@pytest.mark.parametrize("prev_links", ["same", "all", "none"])
def test_with_networks_old_ids_never_change(split, prev_links: str) -> None:
    """With (untrained) Top-K and SDT networks and every old-link variant the contract holds."""
    import torch

    from facecluster.models import SDT, SDTConfig, TopKConfig, TopKPredictor

    x, _, old, new, _ = split
    torch.manual_seed(0)
    kw = dict(feat_dim=32, k=K, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32)
    pipe = ClusteringPipeline(fit_mean(x), GraphConfig(k=K), TopKPredictor(TopKConfig(**kw)), SDT(SDTConfig(**kw)))
    prev = pipe(x[old])
    ids, info = assign_new_faces(pipe, x[old], prev, x[new], prev_links=prev_links)
    assert ids.shape == (len(new),)
    assert np.isin(ids[ids <= prev.max()], prev).all()
    assert info["n_joined"] + (ids > prev.max()).sum() == len(new)


@pytest.mark.parametrize("graph", [GraphConfig(k=K), GraphConfig(k=K, combine="mean", jaccard="plain"),
                                   GraphConfig(k=K, jaccard="all", transform="exp", threshold=0.1, early_stop=True)],
                         ids=["topk-product", "plain-mean", "fcESER-earlystop"])
def test_subgraph_weights_equal_a_full_run(split, graph: GraphConfig) -> None:
    """The new faces' lists and edge weights (networks included) are exactly those of clustering everything at
    once; the old faces they reach have their full-run lists, and their weights to faces in the subgraph agree."""
    import torch

    from facecluster.clustering.knn import knn_search
    from facecluster.clustering.preprocess import preprocess
    from facecluster.clustering.refine import edge_weights
    from facecluster.models import SDT, SDTConfig, TopKConfig, TopKPredictor

    x, _, old, new, _ = split
    torch.manual_seed(0)
    kw = dict(feat_dim=32, k=K, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32)
    pipe = ClusteringPipeline(fit_mean(x), graph, TopKPredictor(TopKConfig(**kw)), SDT(SDTConfig(**kw)))
    z = preprocess(np.concatenate([x[old], x[new]]), pipe.mean)
    nbrs, sims = knn_search(z, K, **pipe.knn_options())
    k_all, q_all = pipe.predict(z, nbrs, sims)
    w_all = edge_weights(nbrs, sims, graph, k=k_all, pair_prob=q_all)

    rows, nb, w = subgraph_weights(pipe, z, len(old), K)
    n_q = len(new)
    np.testing.assert_array_equal(rows[:n_q], np.arange(len(old), len(z)))
    assert len(old) > len(rows) - n_q > 0                                # some old faces reached, not all
    np.testing.assert_array_equal(nb, nbrs[rows])
    np.testing.assert_allclose(w[:n_q], w_all[rows[:n_q]], rtol=1e-5, atol=1e-6)
    inside = np.isin(nb[n_q:], rows)
    if not graph.early_stop:
        np.testing.assert_allclose(w[n_q:][inside], w_all[rows[n_q:]][inside], rtol=1e-5, atol=1e-6)
    assert (w[n_q:][~inside] == 0).all()


# ------------------------------------------------------------------------------------------------ CLI

def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cluster.py", *map(str, args)], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=120)


def test_cli_assign_to(split, tmp_path: Path) -> None:
    x, y, old, new, pipe = split
    model = tmp_path / "model.pt"
    pipe.save(str(model))
    for name, arr in (("old.npy", x[old]), ("new.npy", x[new]), ("old_y.npy", y[old]), ("new_y.npy", y[new])):
        np.save(tmp_path / name, arr)
    x[new].astype("<f4").tofile(tmp_path / "new.bin")
    out = tmp_path / "out"
    out.mkdir()
    r = _cli("--model", model, "--features", tmp_path / "old.npy", "--out", out / "prev.txt")
    assert r.returncode == 0, r.stderr
    prev_text = (out / "prev.txt").read_text()
    (out / "inplace.txt").write_text(prev_text)
    common = ["--model", model, "--previous-features", tmp_path / "old.npy"]
    procs = [  # two additions at once: to a separate OUT (.npy, metrics) and in place (.bin with --dim)
        subprocess.Popen([sys.executable, "cluster.py", *map(str, args)], cwd=ROOT, env=ENV, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for args in ([*common, "--assign-to", out / "prev.txt", "--features", tmp_path / "new.npy", "--labels",
                      tmp_path / "new_y.npy", "--previous-labels", tmp_path / "old_y.npy", "--out", out / "all.txt",
                      "--metrics-json", out / "m.json"],
                     [*common, "--assign-to", out / "inplace.txt", "--features", tmp_path / "new.bin", "--dim", 32,
                      "--out", out / "inplace.txt"])]
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        assert "joined existing clusters" in stdout
    lines = (out / "all.txt").read_text().splitlines()
    assert len(lines) == len(old) + len(new)
    assert "".join(f"{v}\n" for v in lines[: len(old)]) == prev_text          # old faces: ids unchanged
    assert (out / "inplace.txt").read_text() == (out / "all.txt").read_text()  # in place, .bin: the same
    # the library gives the same ids as the CLI
    ids, _ = assign_new_faces(pipe, x[old], np.array(lines[: len(old)], dtype=np.int64), x[new])
    np.testing.assert_array_equal(ids, np.array(lines[len(old):], dtype=np.int64))
    m = json.loads((out / "m.json").read_text())
    assert m["n_faces"] == len(old) + len(new) and m["n_new"] == len(new) and m["n_previous"] == len(old)
    assert m["pairwise"]["f"] > 0.9 and {"precision", "recall", "f"} == set(m["bcubed"])
    side = json.loads((out / "all.txt.json").read_text())
    assert side["assign_to"]["n_new"] == len(new) and side["assign_to"]["previous_out"] == str(out / "prev.txt")
    assert len(side["assign_to"]["previous_out_sha256"]) == 64 and side["model_sha256"]
    assert not [f for f in os.listdir(out) if f.startswith(".")]
