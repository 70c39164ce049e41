"""Tests of ``clustering.pipeline``: graph settings through ``refine_and_cluster``, the networks in batches, the
``ClusteringPipeline`` model file (save / load / errors) and ``Timer``. All on tiny synthetic data, CPU only."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from facecluster.clustering.edges import oracle_k, same_identity
from facecluster.clustering.graph_config import GraphConfig
from facecluster.clustering.inference import predict_k, predict_pairs
from facecluster.clustering.io import InputError, load_features, load_labels
from facecluster.clustering.knn import knn_search
from facecluster.clustering.metrics import evaluate, pairwise
from facecluster.clustering.model_file import MODEL_FORMAT, MODEL_VERSION
from facecluster.clustering.pipeline import ClusteringPipeline
from facecluster.clustering.pretrained import lfw_dlib_dir
from facecluster.clustering.preprocess import fit_mean, preprocess
from facecluster.clustering.refine import combine_edges, pairs_to_score, refine_and_cluster
from facecluster.clustering.synthetic import make_synthetic
from facecluster.clustering.timer import Timer
from facecluster.models import SDT, SDTConfig, TopKConfig, TopKPredictor

K = 20
LFW = lfw_dlib_dir() or Path("data/lfw-dlib")  # the repository's copy, else ../shared/data; the test skips without


@pytest.fixture(scope="module")
def easy():
    """A small, easy synthetic set (well-separated identities, no twins, no low-quality faces) and its kNN graph."""
    x, y = make_synthetic(n_identities=150, dim=64, seed=0, near_pair_frac=0.0, lowq_frac=0.0, sigma_min=0.4,
                          sigma_max=0.8, max_size=60)
    z = preprocess(x, fit_mean(x))
    nbrs, sims = knn_search(z, K, method="flat", device="cpu")
    return x, y, z, nbrs, sims


# ---------------------------------------------------------------- graph half


@pytest.mark.parametrize("cfg,use_k,use_q,min_f", [
    (GraphConfig(k=K), "oracle", False, 0.9),                                     # this method, oracle k*
    (GraphConfig(k=K, transform="exp"), "oracle", False, 0.9),
    (GraphConfig(k=K, jaccard="plain"), "oracle", False, 0.9),                    # Ada-NETS count Jaccard
    (GraphConfig(k=K, jaccard="all", transform="exp", threshold=0.1, early_stop=True), None, False, 0.85),  # FC-ESER
    (GraphConfig(k=K, jaccard="none", transform="sigmoid", threshold=0.5), None, False, 0.9),
    (GraphConfig(k=K, jaccard="none", transform="cosine"), None, False, 0.85),  # cosine kNN + Infomap
    (GraphConfig(k=K, combine="product", threshold=0.1), "oracle", True, 0.95),
    (GraphConfig(k=K, combine="sdt", threshold=0.5), "oracle", True, 0.95),
    (GraphConfig(k=K, combine="mean", threshold=0.3, early_stop=True), "oracle", True, 0.95),
    (GraphConfig(k=K, combine="jaccard", num_trials=2), "oracle", True, 0.9),
])
def test_graph_config_variants_cluster_well(easy, cfg, use_k, use_q, min_f) -> None:
    _, y, _, nbrs, sims = easy
    k = oracle_k(nbrs, y) if use_k else None
    pair_prob = same_identity(nbrs, y).astype(np.float32) if use_q else None
    timer = Timer()
    labels = refine_and_cluster(nbrs, sims, cfg, k=k, pair_prob=pair_prob, timer=timer)
    assert labels.shape == y.shape and labels.dtype == np.int64
    f = pairwise(y, labels)[2]
    assert f > min_f, f"{cfg}: pairwise F {f:.3f}"
    assert set(timer.seconds) == {"jaccard", "infomap"}


def test_oracle_topk_jaccard_beats_all_k_on_easy_data(easy) -> None:
    _, y, _, nbrs, sims = easy
    with_k = evaluate(y, refine_and_cluster(nbrs, sims, GraphConfig(k=K), k=oracle_k(nbrs, y)))
    without = evaluate(y, refine_and_cluster(nbrs, sims, GraphConfig(k=K)))
    assert with_k["pairwise_f"] > 0.97 and with_k["bcubed_f"] > 0.95
    assert with_k["bcubed_f"] > without["bcubed_f"]


def test_combine_edges() -> None:
    p = np.array([[1.0, 0.5, 0.2]], np.float32)
    pair_prob = np.array([[1.0, 0.4, 0.8]], np.float32)
    np.testing.assert_allclose(combine_edges(p, pair_prob, "product"), [[1.0, 0.2, 0.16]], rtol=1e-6)
    np.testing.assert_allclose(combine_edges(p, pair_prob, "mean"), [[1.0, 0.45, 0.5]], rtol=1e-6)
    np.testing.assert_array_equal(combine_edges(p, pair_prob, "sdt"), pair_prob)
    np.testing.assert_array_equal(combine_edges(p, pair_prob, "jaccard"), p)
    np.testing.assert_array_equal(combine_edges(p, None, "product"), p)
    with pytest.raises(ValueError, match="unknown combine"):
        combine_edges(p, pair_prob, "max")


def test_combine_jaccard_ignores_pair_prob(easy) -> None:
    _, y, _, nbrs, sims = easy
    k = oracle_k(nbrs, y)
    cfg = GraphConfig(k=K, combine="jaccard")
    a = refine_and_cluster(nbrs, sims, cfg, k=k)
    b = refine_and_cluster(nbrs, sims, cfg, k=k, pair_prob=np.zeros(nbrs.shape, np.float32))
    np.testing.assert_array_equal(a, b)
    # while "product" with an all-zero SDT output prunes every edge: all singletons
    c = refine_and_cluster(nbrs, sims, GraphConfig(k=K), k=k, pair_prob=np.zeros(nbrs.shape, np.float32))
    assert len(np.unique(c)) == len(y)


def test_unknown_jaccard_raises(easy) -> None:
    _, _, _, nbrs, sims = easy
    with pytest.raises(ValueError, match="unknown graph jaccard 'dice'"):  # where the config is made
        GraphConfig(k=K, jaccard="dice")
    cfg = GraphConfig(k=K)
    cfg.jaccard = "dice"  # set afterwards: refused when it is used
    with pytest.raises(ValueError, match="unknown jaccard 'dice'"):
        refine_and_cluster(nbrs, sims, cfg)


def test_early_stop_prunes_after_first_weak_neighbour() -> None:
    # weights = the cosine itself (jaccard "none", transform "cosine"); columns are not sorted on purpose:
    # row 0 walks 1 (0.9, kept), 2 (0.05, pruned) -> 3 (0.9) is pruned too with early stopping.
    nbrs = np.array([[0, 1, 2, 3], [1, 0, 2, 3], [2, 3, 1, 0], [3, 2, 1, 0]])
    sims = np.array([[1, 0.9, 0.05, 0.9], [1, 0.9, 0.05, 0.05], [1, 0.05, 0.05, 0.05], [1, 0.05, 0.05, 0.9]],
                    np.float32)
    plain = refine_and_cluster(nbrs, sims, GraphConfig(k=4, jaccard="none", transform="cosine", threshold=0.1))
    assert pairwise(np.array([0, 0, 1, 0]), plain)[2] == pytest.approx(1.0)
    stop = refine_and_cluster(nbrs, sims, GraphConfig(k=4, jaccard="none", transform="cosine", threshold=0.1,
                                                      early_stop=True))
    assert pairwise(np.array([0, 0, 1, 2]), stop)[2] == pytest.approx(1.0) and len(np.unique(stop)) == 3


def test_graph_config_to_dict_round_trip() -> None:
    cfg = GraphConfig(k=30, transform="exp", jaccard="all", combine="mean", threshold=0.2, early_stop=True, seed=4)
    assert GraphConfig(**cfg.to_dict()) == cfg


# ---------------------------------------------------------------- networks in batches


def _tiny_models(feat_dim: int, k: int, seed: int = 0) -> tuple[TopKPredictor, SDT]:
    torch.manual_seed(seed)
    topk = TopKPredictor(TopKConfig(feat_dim, k=k, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32))
    sdt = SDT(SDTConfig(feat_dim, k=k, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32))
    return topk, sdt


def test_predict_k_and_pairs_batch_invariant(easy) -> None:
    _, _, z, nbrs, sims = easy
    topk, sdt = _tiny_models(z.shape[1], K)
    k_big = predict_k(topk, z, nbrs, sims, batch_size=4096)
    k_small = predict_k(topk, z, nbrs, sims, batch_size=37)
    assert k_big.shape == (len(z),) and k_big.dtype == np.int64
    assert ((k_big >= 1) & (k_big <= K)).all()
    np.testing.assert_array_equal(k_big, k_small)
    q_big = predict_pairs(sdt, z, nbrs, sims, k_big, batch_size=4096)
    q_small = predict_pairs(sdt, z, nbrs, sims, k_big, batch_size=37)
    assert q_big.shape == nbrs.shape and q_big.dtype == np.float32
    assert ((q_big >= 0) & (q_big <= 1)).all()
    np.testing.assert_allclose(q_big, q_small, rtol=1e-5, atol=1e-6)
    # run in eval mode (dropout 0.1 would make the two batch sizes disagree), and left in their own mode
    assert topk.training and sdt.training


# ---------------------------------------------------------------- ClusteringPipeline and its model file


@pytest.fixture(scope="module")
def small():
    x, y = make_synthetic(n_identities=40, dim=32, seed=1, max_size=30)
    return x, y


def _pipeline(x: np.ndarray, with_nets: bool = True) -> ClusteringPipeline:
    topk, sdt = _tiny_models(x.shape[1], 10) if with_nets else (None, None)
    return ClusteringPipeline(fit_mean(x), GraphConfig(k=10, threshold=0.05), topk, sdt, knn={"method": "flat"},
                              batch_size=64, device="cpu", meta={"note": "test", "n": 3})


def test_pipeline_save_load_round_trip(small, tmp_path: Path) -> None:
    x, _ = small
    pipe = _pipeline(x)
    labels = pipe(x)
    assert labels.shape == (len(x),) and labels.dtype == np.int64
    path = tmp_path / "model.pt"
    pipe.save(str(path))
    assert path.exists() and not list(tmp_path.glob(".*"))  # atomic write leaves no temporary file
    loaded = ClusteringPipeline.load(str(path), device="cpu")
    np.testing.assert_array_equal(loaded(x), labels)
    np.testing.assert_array_equal(loaded.mean, pipe.mean)
    assert loaded.graph == pipe.graph and loaded.knn == pipe.knn and loaded.meta == pipe.meta
    assert loaded.batch_size == 256 and loaded.feat_dim == 32  # a runtime setting, not stored: the CPU default
    for a, b in ((pipe.topk, loaded.topk), (pipe.sdt, loaded.sdt)):
        assert type(a) is type(b) and a.config == b.config
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[key].cpu(), sb[key].cpu()) for key in sa)
    # a fresh untrained pair of networks (other seed) gives other Top-K predictions: the file carries the weights
    other = _pipeline(x)
    torch.manual_seed(123)
    other.topk.reset_parameters()
    xp, nb, sm = pipe.graph_inputs(x)
    assert not np.array_equal(pipe.predict(xp, nb, sm)[0], other.predict(xp, nb, sm)[0])


def test_pipeline_without_networks_round_trip(small, tmp_path: Path) -> None:
    x, y = small
    pipe = ClusteringPipeline(None, GraphConfig(k=10, jaccard="none", transform="sigmoid", threshold=0.5),
                              knn={"method": "flat"}, device="cpu")
    labels = pipe(x)
    path = tmp_path / "plain.pt"
    pipe.save(str(path))
    loaded = ClusteringPipeline.load(str(path), device="cpu")
    assert loaded.topk is None and loaded.sdt is None and loaded.mean is None and loaded.feat_dim is None
    np.testing.assert_array_equal(loaded(x), labels)


def _load_error(path: Path, match: str, one_line: bool = True) -> str:
    with pytest.raises(InputError, match=match) as err:
        ClusteringPipeline.load(str(path), device="cpu")
    msg = str(err.value)
    assert str(path) in msg, msg
    if one_line:
        assert "\n" not in msg, f"message is not one line: {msg!r}"
    return msg


def test_load_missing_file(tmp_path: Path) -> None:
    _load_error(tmp_path / "absent.pt", "does not exist")


def test_load_truncated_file(small, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    _pipeline(small[0]).save(str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _load_error(path, "not a readable model file")


def test_load_text_file(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_text("hello\n")
    _load_error(path, "not a readable model file")


@pytest.mark.parametrize("obj", [{"weights": torch.zeros(3)}, torch.zeros(3), {"format": "something-else"}])
def test_load_non_model_torch_file(tmp_path: Path, obj) -> None:
    path = tmp_path / "other.pt"
    torch.save(obj, path)
    _load_error(path, MODEL_FORMAT)


def test_load_wrong_version(small, tmp_path: Path) -> None:
    state = _pipeline(small[0]).state()
    assert state["format"] == MODEL_FORMAT and state["version"] == MODEL_VERSION
    state["version"] = MODEL_VERSION + 98
    path = tmp_path / "future.pt"
    torch.save(state, path)
    msg = _load_error(path, "version")
    assert str(MODEL_VERSION + 98) in msg


def _mismatched_file(small, tmp_path: Path) -> Path:
    state = _pipeline(small[0]).state()
    state["topk"]["config"]["d_model"] = 32  # weights no longer fit the network the config builds
    path = tmp_path / "mismatch.pt"
    torch.save(state, path)
    return path


def test_load_mismatched_network(small, tmp_path: Path) -> None:
    _load_error(_mismatched_file(small, tmp_path), "does not match", one_line=False)


def test_load_mismatched_network_message_is_one_line(small, tmp_path: Path) -> None:
    _load_error(_mismatched_file(small, tmp_path), "does not match")


# a model file as the code before the dataclass configs wrote it (MODEL_VERSION 1): each network's config the flat
# dict of its keyword arguments (``dict(net.config)``), written out here field by field, not taken from the dataclass
_V1_TOPK = dict(feat_dim=32, k=10, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32, dropout=0.1,
                head="classification")
_V1_SDT = dict(feat_dim=32, k=10, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32, dropout=0.1,
               differential=True, use_topk_mask=True, mask_margin=0, window=None)


def _v1_state(x: np.ndarray) -> tuple[dict, ClusteringPipeline]:
    """A version-1 model state (the networks' weights are the same modules' either way), and the pipeline built
    directly from the same networks in Python."""
    topk, sdt = _tiny_models(x.shape[1], 10)
    graph, mean = GraphConfig(k=10, threshold=0.05), fit_mean(x)
    state = {"format": MODEL_FORMAT, "version": 1, "mean": torch.from_numpy(mean.copy()), "graph": graph.to_dict(),
             "knn": {"method": "flat"},
             "topk": {"class": "TopKPredictor", "config": dict(_V1_TOPK), "state_dict": topk.state_dict()},
             "sdt": {"class": "SDT", "config": dict(_V1_SDT), "state_dict": sdt.state_dict()},
             "meta": {"note": "version 1"}}
    return state, ClusteringPipeline(mean, graph, topk, sdt, knn={"method": "flat"}, device="cpu")


def test_version_1_model_file_loads_and_clusters_identically(small, tmp_path: Path) -> None:
    """A file written before the networks took dataclass configs loads and gives the same clustering: the stored
    network dict is unchanged (``{class, config, state_dict}``, config the flat field dict), so this code writes
    the same file (version 1). A file from before a field existed (the SDT's ``window``) takes its default."""
    x, _ = small
    state, direct = _v1_state(x)
    labels = direct(x)
    assert MODEL_VERSION == 1
    path = tmp_path / "v1.pt"
    torch.save(state, path)
    loaded = ClusteringPipeline.load(str(path), device="cpu")
    assert loaded.topk.config == TopKConfig(**_V1_TOPK) and loaded.sdt.config == SDTConfig(**_V1_SDT)
    np.testing.assert_array_equal(loaded(x), labels)
    again = loaded.state()  # and written back in the same shape
    assert again.keys() == state.keys() and again["version"] == 1
    for slot, kwargs, config in (("topk", _V1_TOPK, TopKConfig), ("sdt", _V1_SDT, SDTConfig)):
        # every field the version-1 file gave, in its order, then the fields added since at their defaults (under
        # which the networks compute what they computed before)
        added = {k: v for k, v in asdict(config(feat_dim=1)).items() if k not in kwargs}
        assert again[slot].keys() == state[slot].keys() and again[slot]["config"] == {**kwargs, **added}
        assert list(again[slot]["config"]) == list(kwargs) + list(added)  # field order too
    del state["sdt"]["config"]["window"]
    torch.save(state, path)
    older = ClusteringPipeline.load(str(path), device="cpu")
    assert older.sdt.config.window is None
    np.testing.assert_array_equal(older(x), labels)


# ---------------------------------------------------------------- Timer


def test_timer_collects_and_accumulates() -> None:
    timer = Timer()
    with timer("a"):
        time.sleep(0.01)
    with timer("a"):
        time.sleep(0.01)
    with pytest.raises(RuntimeError):
        with timer("b"):
            raise RuntimeError("boom")
    assert set(timer.seconds) == {"a", "b"}
    assert timer.seconds["a"] >= 0.02 and timer.seconds["b"] >= 0.0


def test_pipeline_timer_stages(small) -> None:
    x, _ = small
    timer = Timer()
    _pipeline(x)(x, timer=timer)
    assert set(timer.seconds) == {"preprocess", "knn", "topk", "sdt", "jaccard", "infomap"}
    assert all(v >= 0 for v in timer.seconds.values())


# ---------------------------------------------------------------- optional: real data


@pytest.mark.slow
@pytest.mark.skipif(not (LFW / "features" / "test.bin").exists(),
                    reason=f"real data absent: {LFW} (lfw-dlib embeddings) not found")
def test_lfw_dlib_oracle_topk_jaccard() -> None:
    """The lfw-dlib test split (3,246 faces, 128-d dlib features): centred with the train mean, K = 80, oracle k*."""
    train = load_features(LFW / "features" / "train.bin", dim=128)
    feats = load_features(LFW / "features" / "test.bin", dim=128)
    labels = load_labels(LFW / "labels" / "test.meta", n=feats.shape[0])
    assert feats.shape == (3246, 128)
    x = preprocess(feats, fit_mean(train))
    nbrs, sims = knn_search(x, 80, method="flat", device="cpu")
    pred = refine_and_cluster(nbrs, sims, GraphConfig(k=80), k=oracle_k(nbrs, labels))
    m = evaluate(labels, pred)
    # METHOD.md section 5 reports pairwise recall 0.957 for this setting; measured here: P 0.953, R 0.958, F_B 0.960
    assert m["pairwise_r"] > 0.94 and m["pairwise_f"] > 0.93 and m["bcubed_f"] > 0.93, m


def test_edge_recall_brings_back_pruned_edges_the_sdt_vouches_for() -> None:
    from facecluster.clustering.graph_config import GraphConfig
    from facecluster.clustering.refine import edge_weights

    nbrs = np.array([[0, 1, 2, 3], [1, 0, 2, 3], [2, 1, 0, 3], [3, 2, 1, 0]])
    sims = np.array([[1.0, 0.9, 0.2, 0.8]] * 4, dtype=np.float32)
    pair_prob = np.array([[1.0, 0.95, 0.1, 0.97]] * 4, dtype=np.float32)
    cfg = GraphConfig(k=4, jaccard="none", transform="cosine", combine="jaccard", threshold=0.5, early_stop=True)
    w = edge_weights(nbrs, sims, cfg, pair_prob=pair_prob)
    assert w[0, 1] == pytest.approx(0.9) and w[0, 2] == 0.0 and w[0, 3] == 0.0  # stopped at rank 2
    w = edge_weights(nbrs, sims, replace(cfg, edge_recall=0.9), pair_prob=pair_prob)
    assert w[0, 2] == 0.0                          # the SDT does not vouch for it (0.1)
    assert w[0, 3] == pytest.approx(0.97)          # recalled, weighted by the SDT probability


# ---------------------------------------------------------------- scoring only what the graph rule can use


def test_pairs_to_score_by_rule() -> None:
    nbrs = np.array([[0, 1, 2], [1, 0, 2], [1, 2, 0], [3, 2, 1]])  # row 2's self pair is in column 1
    p = np.array([[1.0, 0.2, 0.1], [1.0, 0.7, 0.1], [1.0, 0.5, 0.4], [0.9, 0.95, 0.0]], dtype=np.float32)
    product = GraphConfig(k=3, jaccard="none", threshold=0.5)
    expect = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]], dtype=bool)  # p > 0.5, self pairs aside
    np.testing.assert_array_equal(pairs_to_score(p, nbrs, product), expect)
    np.testing.assert_array_equal(pairs_to_score(p, nbrs, replace(product, early_stop=True)), expect)
    # "mean": (p + q) / 2 <= (p + 1) / 2 can pass 0.6 only where p > 0.2
    np.testing.assert_array_equal(pairs_to_score(p, nbrs, replace(product, combine="mean", threshold=0.6)),
                                  [[0, 0, 0], [0, 1, 0], [1, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(pairs_to_score(p, nbrs, replace(product, threshold=0.0)),
                                  [[0, 1, 1], [0, 1, 1], [1, 0, 1], [0, 1, 0]])  # never a self pair
    assert pairs_to_score(p, nbrs, replace(product, threshold=-0.1)) is None  # p q = 0 passes a negative threshold
    assert pairs_to_score(p, nbrs, replace(product, combine="sdt")) is None
    assert pairs_to_score(p, nbrs, replace(product, early_stop=True, edge_recall=0.9)) is None
    assert not pairs_to_score(p, nbrs, replace(product, combine="jaccard")).any()


@pytest.mark.parametrize("cfg", [
    GraphConfig(k=K, jaccard="none", threshold=0.5),                     # lfw-dlib's rule
    GraphConfig(k=K, jaccard="none", threshold=0.5, early_stop=True),
    GraphConfig(k=K, jaccard="topk", threshold=0.2),                      # the synthetic models' rule
    GraphConfig(k=K, jaccard="none", combine="mean", threshold=0.75),
    GraphConfig(k=K, jaccard="none", combine="jaccard", threshold=0.5),
    GraphConfig(k=K, jaccard="all", threshold=0.3, early_stop=True, edge_recall=0.5),  # every pair
])
def test_pruned_scoring_clusters_exactly_as_full_scoring(easy, cfg) -> None:
    """run_graph scores only the centres the rule can use; the clustering is the one of scoring every centre."""
    _, _, z, nbrs, sims = easy
    topk, sdt = _tiny_models(z.shape[1], K)
    pipe = ClusteringPipeline(None, cfg, topk, sdt, batch_size=64, device="cpu")
    centres = {"topk": 0, "sdt": 0}
    for name, net in (("topk", topk), ("sdt", sdt)):
        net.register_forward_hook(lambda m, inp, out, name=name: centres.__setitem__(name, centres[name] + len(inp[0])))
    labels = pipe.run_graph(z, nbrs, sims)
    scored = dict(centres)
    k, q = pipe.predict(z, nbrs, sims)
    assert centres["sdt"] - scored["sdt"] == len(z)  # predict scores every centre
    full = refine_and_cluster(nbrs, sims, cfg, k=k, pair_prob=q)
    np.testing.assert_array_equal(labels, full)
    _, _, p = pipe.scores(z, nbrs, sims, rule=cfg)
    need = pairs_to_score(p, nbrs, cfg)
    expect = len(z) if need is None else int(need.any(axis=1).sum())
    assert scored["sdt"] == expect
    assert scored["topk"] == (len(z) if cfg.jaccard in ("topk", "plain") else expect)
    if cfg.combine == "jaccard":
        assert expect == 0 and scored["topk"] == 0  # the rule reads neither k nor q: no network runs
    elif cfg.jaccard == "none" and cfg.combine == "product":
        assert 0 < expect < len(z)  # this data has centres the rule never links: they were skipped
        assert need.sum() < need.any(axis=1).sum() * (K - 1)  # and rows whose later neighbours were skipped


def test_predict_pairs_rows_and_widths_score_what_they_say(easy) -> None:
    """Scored pairs equal the full run's (the SDT's last block computes only the first ``width`` tokens); the
    others are 0."""
    _, _, z, nbrs, sims = easy
    topk, sdt = _tiny_models(z.shape[1], K)
    k = predict_k(topk, z, nbrs, sims)
    full = predict_pairs(sdt, z, nbrs, sims, k)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(z), 200, replace=False))
    widths = rng.integers(1, K + 1, len(rows))
    dense = SDT(replace(sdt.config, use_topk_mask=False))
    dense.load_state_dict(sdt.state_dict())
    for sdt in (sdt, dense):
        full = predict_pairs(sdt, z, nbrs, sims, k)
        part = predict_pairs(sdt, z, nbrs, sims, k, rows=rows, widths=widths, batch_size=32)
        scored = np.zeros(nbrs.shape, dtype=bool)
        scored[rows] = np.arange(K)[None, :] < widths[:, None]
        np.testing.assert_allclose(part[scored], full[scored], rtol=1e-5, atol=1e-6)
        assert (part[~scored] == 0).all()
        np.testing.assert_array_equal(predict_k(topk, z, nbrs, sims, rows=rows), k[rows])
