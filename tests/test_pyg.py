"""The kNN graph and its subgraphs in PyTorch Geometric's terms, and the GNN pair classifiers built on them."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_DATA
from torch_geometric.data import Batch, Data
from torch_geometric.utils import scatter, subgraph

from facecluster.clustering.graph import dense_subgraphs, knn_arrays, knn_data, pivot_adjacency, subgraph_batch
from facecluster.clustering.graph_config import GraphConfig
from facecluster.clustering.knn import knn_search
from facecluster.clustering.pipeline import ClusteringPipeline
from facecluster.clustering.refine import edge_weights
from facecluster.clustering.synthetic import SyntheticConfig, make_synthetic
from facecluster.datamodules import FaceGraphDataModule
from facecluster.datamodules.face_graph import as_pyg_batch
from facecluster.lightning_modules import SDTModule
from facecluster.models import LGCN, LGCNConfig, PivotGAT
from facecluster.commands.train import cli_main

GNNS = [LGCN, PivotGAT]


@pytest.fixture(scope="module")
def graph() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """60 unit vectors of width 8 and their kNN graph with K = 10."""
    x = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    nbrs, sims = knn_search(x, 10)
    return x, nbrs, sims


def test_knn_data_matches_the_arrays(graph) -> None:
    x, nbrs, sims = graph
    data = knn_data(x, nbrs, sims, y=torch.arange(60))
    assert isinstance(data, Data) and data.num_nodes == 60 and data.num_edges == 600 and data.y.shape == (60,)
    src, dst = data.edge_index
    # edge i K + s: neighbour nbrs[i, s] -> face i, weighted by their similarity
    assert torch.equal(dst, torch.arange(60).repeat_interleave(10))
    assert torch.equal(src, torch.from_numpy(nbrs).view(-1))
    assert torch.equal(data.edge_attr, torch.from_numpy(sims).view(-1))
    np.testing.assert_allclose((data.x[src] * data.x[dst]).sum(-1), data.edge_attr, atol=1e-5)
    # a PyG aggregation at each face runs over its K neighbours
    np.testing.assert_allclose(scatter(data.edge_attr, dst, reduce="sum"), sims.sum(1), rtol=1e-5)
    nb, s = knn_arrays(data)
    assert torch.equal(nb, torch.from_numpy(nbrs)) and torch.equal(s, torch.from_numpy(sims))
    with pytest.raises(ValueError, match="not a kNN graph"):
        knn_arrays(Data(edge_index=data.edge_index[:, 1:], edge_attr=data.edge_attr[1:], num_nodes=60))


@pytest.mark.parametrize("u", [1, 3, 9])
def test_pivot_adjacency_is_the_kNN_graph_restricted_to_each_subgraph(graph, u: int) -> None:
    _, nbrs, _ = graph
    nb, idx = torch.from_numpy(nbrs), torch.tensor([0, 7, 59, 7])
    adj = pivot_adjacency(nb, idx, u)
    assert adj.shape == (4, 10, 10) and torch.equal(adj, adj.transpose(1, 2))
    assert not adj.diagonal(dim1=1, dim2=2).any()
    # reference: PyG's subgraph() of the u-NN graph on each centre's nodes, one centre at a time
    unn = torch.stack([nb[:, 1:u + 1].reshape(-1), torch.arange(60).repeat_interleave(u)])
    for b, c in enumerate(idx.tolist()):
        edges, _ = subgraph(nb[c], unn, relabel_nodes=True, num_nodes=60)
        ref = torch.zeros(10, 10, dtype=torch.bool)
        ref[edges[0], edges[1]] = ref[edges[1], edges[0]] = True
        assert torch.equal(adj[b], ref)
    with pytest.raises(ValueError, match="u must be"):
        pivot_adjacency(nb, idx, 10)


def test_subgraph_batch_round_trips_and_equals_pyg_batching(graph) -> None:
    x, nbrs, sims = graph
    nb, idx = torch.from_numpy(nbrs), torch.tensor([3, 4, 5])
    feats, adj = torch.from_numpy(x)[nb[idx]], pivot_adjacency(nb, idx, 3)
    batch = subgraph_batch(feats, adj, sims=torch.from_numpy(sims)[idx])
    assert batch.num_graphs == 3 and batch.x.shape == (30, 8) and batch.sims.shape == (30,)
    ref = Batch.from_data_list([Data(x=feats[b], edge_index=adj[b].nonzero().t()) for b in range(3)])
    assert torch.equal(batch.edge_index, ref.edge_index) and torch.equal(batch.batch, ref.batch)
    assert torch.equal(batch.ptr, ref.ptr)
    back, mask, back_adj = dense_subgraphs(batch)
    assert torch.equal(back, feats) and mask.all() and torch.equal(back_adj.bool(), adj)


def test_datamodule_gives_pyg_graphs_and_batches() -> None:
    syn = SyntheticConfig(n_identities=60, max_size=30, dim=16)
    dm = FaceGraphDataModule(synthetic=syn, k=10, val_fraction=0.25, batch_size=32, pivot_u=3)
    dm.setup("fit")
    g, data = dm.train_graph, dm.train_data
    assert data is dm.train_data and dm.val_data.num_nodes == len(dm.val_graph)  # built once
    assert torch.equal(knn_arrays(data)[0], torch.from_numpy(g.nbrs))
    assert torch.equal(data.y, torch.from_numpy(g.labels))
    assert torch.equal(data.same, torch.from_numpy(g.labels[data.edge_index[0]] == g.labels[data.edge_index[1]]))
    batch = next(iter(dm.train_dataloader()))
    assert torch.equal(batch["adj"], pivot_adjacency(torch.from_numpy(g.nbrs), batch["idx"], 3))
    pyg = as_pyg_batch(batch)
    assert pyg.num_graphs == 32 and torch.equal(pyg.y, batch["same"].view(-1)) and pyg.edge_index.max() < 320
    del batch["adj"]  # without links: the star of kNN edges centre <-> neighbour
    assert as_pyg_batch(batch).num_edges == 32 * 2 * 9


@pytest.mark.parametrize("pivot_sims", [False, True])
@pytest.mark.parametrize("cls", GNNS)
def test_gnn_shapes_and_permutation_equivariance(cls, graph, pivot_sims: bool) -> None:
    x, nbrs, sims = graph
    torch.manual_seed(0)
    model = cls(cls.config_class(8, k=10, hidden=16, num_layers=2, pivot_u=3, pivot_sims=pivot_sims)).eval()
    nb, idx = torch.from_numpy(nbrs), torch.tensor([0, 1, 2, 3, 4])
    feats, s, adj = torch.from_numpy(x)[nb[idx]], torch.from_numpy(sims)[idx], pivot_adjacency(nb, idx, 3)
    out = model(feats, s, None, adj=adj)
    assert out.shape == (5, 10) and torch.isfinite(out).all()
    # any order of the neighbours (the centre stays first) permutes the logits the same way
    perm = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.randperm(9)])
    out_p = model(feats[:, perm], s[:, perm], None, adj=adj[:, perm][:, :, perm])
    torch.testing.assert_close(out_p, out[:, perm], atol=1e-5, rtol=1e-4)
    # fewer neighbours than the trained K: fine
    assert model(feats[:, :6], s[:, :6], None, adj=adj[:, :6, :6]).shape == (5, 6)
    with pytest.raises(ValueError, match="needs the pivot-subgraph links"):
        model(feats, s, None)
    rebuilt = cls(cls.config_class(**asdict(model.config)))  # as the model file rebuilds it
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in model.parameters())


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize("cls", GNNS)
def test_gnn_trains_through_the_cli_and_exports(tiny_fit, tmp_path: Path, cls) -> None:
    cli = cli_main(tiny_fit("--model=SDTModule", f"--model.model={cls.__name__}", "--model.model.config.hidden=16",
                            "--model.model.config.num_layers=2", "--model.model.config.pivot_u=3",
                            "--model.schedule=oracle"))
    module, trainer = cli.model, cli.trainer
    assert isinstance(module.model, cls) and module.model.config.feat_dim == 16 and module.model.k == 10
    assert cli.datamodule.pivot_u == 3 and trainer.global_step == 3  # the batches carried the model's links
    assert {"train/pair_loss", "val/pair_recall", "val/pairwise_f", "val/score"} <= set(trainer.callback_metrics)
    # export with --tune on the validation identities, then the model file loads into a pipeline
    from facecluster.commands import export

    out = tmp_path / "gnn.pt"
    assert export.main(["--ckpt", str(tmp_path / "ckpt" / "best.ckpt"), "--out", str(out), "--tune"]) == 0
    pipe = ClusteringPipeline.load(str(out), device="cpu")
    assert type(pipe.sdt) is cls and pipe.topk is None and pipe.sdt.pivot_u == 3
    val = cli.datamodule.val_graph
    reloaded = SDTModule.load_from_checkpoint(tmp_path / "ckpt" / "best.ckpt", map_location="cpu")
    ref = reloaded.pipeline(pipe.graph, cli.datamodule.mean, device="cpu")
    np.testing.assert_allclose(pipe.predict(val.x, val.nbrs, val.sims)[1], ref.predict(val.x, val.nbrs, val.sims)[1],
                               atol=1e-6)
    feats, _ = make_synthetic(SyntheticConfig(n_identities=20, max_size=10, dim=16, seed=3))
    assert pipe(feats).shape == (len(feats),)


def test_pipeline_graph_data(graph) -> None:
    torch.manual_seed(0)
    x, _, _ = graph
    pipe = ClusteringPipeline(None, GraphConfig(k=10, jaccard="none"),
                              sdt=LGCN(LGCNConfig(8, k=10, hidden=8, pivot_u=3)),
                              device="cpu")
    data = pipe.graph_data(x)
    nbrs, sims = knn_arrays(data)
    _, pair_prob = pipe.predict(data.x.numpy(), nbrs.numpy(), sims.numpy())
    assert data.num_edges == 600 and not hasattr(data, "k")
    np.testing.assert_allclose(data.pair_prob.view(60, 10).numpy(), pair_prob, atol=1e-6)
    np.testing.assert_allclose(data.edge_weight.view(60, 10).numpy(),
                               edge_weights(nbrs.numpy(), sims.numpy(), pipe.graph, pair_prob=pair_prob), atol=1e-6)
    assert set(pipe.graph_data(x, networks=False).keys()) == {"x", "edge_index", "edge_attr", "num_nodes"}
