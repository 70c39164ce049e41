"""FaceGraphDataModule: identity split, preprocessing, kNN graphs, targets, batches and the cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import facecluster.datamodules.face_graph as fg
from facecluster.clustering.edges import oracle_k
from facecluster.clustering.io import InputError
from facecluster.clustering.knn import knn_search
from facecluster.clustering.preprocess import fit_mean, preprocess
from facecluster.clustering.synthetic import SyntheticConfig, make_synthetic
from facecluster.datamodules import FaceGraphDataModule

SYN = SyntheticConfig(n_identities=60, max_size=30, dim=16)


def tiny_dm(**kwargs) -> FaceGraphDataModule:
    kwargs = {"synthetic": SYN, "k": 10, "val_fraction": 0.25, "batch_size": 32, **kwargs}
    dm = FaceGraphDataModule(**kwargs)
    dm.setup("fit")
    return dm


def test_batches_have_the_shapes_and_targets_of_the_graph() -> None:
    dm = tiny_dm()
    feats, labels = make_synthetic(SYN)
    batch = next(iter(dm.train_dataloader()))
    B, K, d = 32, 10, 16
    assert batch["feats"].shape == (B, K, d) and batch["feats"].dtype == torch.float32
    assert batch["sims"].shape == (B, K) and batch["same"].shape == (B, K) and batch["same"].dtype == torch.float32
    assert batch["k_star"].shape == (B,) and batch["k_star"].dtype == torch.int64 and batch["idx"].shape == (B,)
    g, idx = dm.train_graph, batch["idx"].numpy()
    # targets from the split's own graph and labels; rows map back to the input file
    np.testing.assert_array_equal(g.labels, labels[g.rows])
    np.testing.assert_array_equal(batch["k_star"].numpy(), oracle_k(g.nbrs, g.labels)[idx])
    np.testing.assert_array_equal(batch["same"].numpy(), (g.labels[g.nbrs[idx]] == g.labels[idx, None]))
    np.testing.assert_array_equal(batch["feats"].numpy(), g.x[g.nbrs[idx]])
    # neighbours sorted by similarity, self first with similarity 1, pair (i, i) always positive
    assert torch.all(batch["sims"][:, 0] == 1) and torch.all(batch["sims"][:, :-1] >= batch["sims"][:, 1:] - 1e-6)
    assert torch.all(batch["same"][:, 0] == 1)
    assert ((batch["k_star"] >= 1) & (batch["k_star"] <= K)).all()
    np.testing.assert_allclose((batch["feats"][:, :1] * batch["feats"]).sum(-1).numpy(), batch["sims"].numpy(),
                               atol=1e-5)
    assert dm.feat_dim == d and len(dm.val_dataloader()) == int(np.ceil(len(dm.val_graph) / 32))


def test_val_split_is_disjoint_by_identity_and_seeded() -> None:
    dm = tiny_dm()
    train, val = dm.train_graph, dm.val_graph
    assert not set(train.labels) & set(val.labels)
    n = len(make_synthetic(SYN)[1])
    assert np.array_equal(np.sort(np.concatenate([train.rows, val.rows])), np.arange(n))
    n_ids = len(np.unique(np.concatenate([train.labels, val.labels])))
    assert len(np.unique(val.labels)) == round(0.25 * n_ids)
    # each split has its own graph: neighbour ids index the split, never the other part
    assert val.nbrs.max() < len(val) and train.nbrs.max() < len(train)
    assert np.array_equal(tiny_dm().val_graph.rows, val.rows)
    assert not np.array_equal(tiny_dm(split_seed=1).val_graph.rows, val.rows)


def test_mean_is_fitted_on_train_identities_only() -> None:
    dm = tiny_dm()
    feats, _ = make_synthetic(SYN)
    np.testing.assert_allclose(dm.mean, fit_mean(feats[dm.train_graph.rows]), atol=1e-6)
    assert not np.allclose(dm.mean, fit_mean(feats), atol=1e-4)
    np.testing.assert_allclose(dm.val_graph.x, preprocess(feats[dm.val_graph.rows], dm.mean), atol=1e-6)
    assert set(dm.state_dict()) == {"mean"}


def test_one_gather_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = fg.gather_subgraphs

    def counting(*args):
        calls.append(args[-1].shape[0])
        return real(*args)

    monkeypatch.setattr(fg, "gather_subgraphs", counting)
    dm = tiny_dm()
    n_batches = sum(1 for _ in dm.train_dataloader())
    assert len(calls) == n_batches and sum(calls) == len(dm.train_graph)


def test_cache_is_written_then_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = tiny_dm(cache_dir=str(tmp_path))
    assert first.cache_path().exists() and len(list(tmp_path.glob("*.npz"))) == 1

    def no_knn(*args, **kwargs):
        raise AssertionError("kNN recomputed despite the cache")

    monkeypatch.setattr(fg, "knn_search", no_knn)
    second = tiny_dm(cache_dir=str(tmp_path))
    for a, b in ((first.train_graph, second.train_graph), (first.val_graph, second.val_graph)):
        np.testing.assert_array_equal(a.nbrs, b.nbrs)
        np.testing.assert_array_equal(a.sims, b.sims)
        np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(first.mean, second.mean)
    # any parameter that changes the graphs changes the key
    keys = {FaceGraphDataModule(synthetic=SYN, cache_dir=str(tmp_path), **kw).cache_path()
            for kw in ({}, {"k": 12}, {"split_seed": 3}, {"val_fraction": 0.3}, {"knn": {"method": "hnsw"}})}
    keys.add(FaceGraphDataModule(synthetic=SyntheticConfig(n_identities=61, dim=16), cache_dir=str(tmp_path))
             .cache_path())
    assert len(keys) == 6


@pytest.mark.parametrize("fmt", ["npy", "bin"])
def test_files_source(tmp_path: Path, fmt: str) -> None:
    feats, labels = make_synthetic(SYN)
    if fmt == "npy":
        np.save(tmp_path / "f.npy", feats)
        np.save(tmp_path / "l.npy", labels)
        kwargs = {"features": str(tmp_path / "f.npy"), "labels": str(tmp_path / "l.npy")}
    else:
        feats.astype("<f4").tofile(tmp_path / "f.bin")
        (tmp_path / "l.meta").write_text("\n".join(map(str, labels)) + "\n")
        kwargs = {"features": str(tmp_path / "f.bin"), "labels": str(tmp_path / "l.meta"), "dim": 16}
    dm = tiny_dm(source="files", **kwargs)
    ref = tiny_dm()
    assert dm.feat_dim == 16
    np.testing.assert_array_equal(dm.val_graph.rows, ref.val_graph.rows)
    np.testing.assert_array_equal(dm.train_graph.nbrs, ref.train_graph.nbrs)
    # the val graph is the kNN graph of the preprocessed val features alone
    nbrs, _ = knn_search(dm.val_graph.x, 10)
    np.testing.assert_array_equal(dm.val_graph.nbrs[:, 0], nbrs[:, 0])


def test_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="needs both"):
        FaceGraphDataModule(source="files", features=str(tmp_path / "f.npy"))
    with pytest.raises(InputError, match="does not exist"):
        tiny_dm(source="files", features=str(tmp_path / "f.npy"), labels=str(tmp_path / "l.npy"))
    with pytest.raises(InputError, match="val split"):
        tiny_dm(k=200)


def test_no_validation_split() -> None:
    dm = tiny_dm(val_fraction=0.0)
    assert dm.val_graph is None and dm.val_dataloader() == [] and len(dm.train_graph) == len(make_synthetic(SYN)[1])
