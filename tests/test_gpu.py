"""GPU machines (issue 9). CPU-only tests simulate CUDA: torch.cuda.is_available() patched to True, and either the
real faiss-cpu (no GPU support: the kNN must fall back to the CPU with a note) or a faiss patched to "see" GPUs (to
check which device and index it is given). ``@pytest.mark.gpu`` tests run where CUDA exists
(``scripts/gpu_check.sh``) and are skipped here with the reason."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from facecluster.clustering.graph_config import GraphConfig
from facecluster.clustering.knn import knn_index, knn_search, resolve_method
from facecluster.clustering.knn_config import KnnConfig
from facecluster.clustering.metrics import evaluate
from facecluster.clustering.pipeline import ClusteringPipeline
from facecluster.clustering.preprocess import fit_mean, preprocess
from facecluster.clustering.synthetic import make_synthetic
from test_cluster_cli import D, ENV, make_model

ROOT = Path(__file__).resolve().parents[1]
FAISS_HAS_GPU = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
cpu_faiss_only = pytest.mark.skipif(FAISS_HAS_GPU, reason="this faiss build has GPU support")


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, np.ndarray]:
    return make_synthetic(n_identities=40, dim=D, seed=5, max_size=30)


def _plain(x: np.ndarray, device: str) -> ClusteringPipeline:
    """No networks (nothing to move to a GPU that is not there): cosine kNN + Infomap."""
    return ClusteringPipeline(fit_mean(x), GraphConfig(k=10, jaccard="none", transform="cosine", threshold=0.5),
                              knn={"method": "flat"}, device=device)


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch):
    """torch says CUDA is there, current device 1 (as on DDP rank 1)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)


@pytest.fixture
def fake_faiss_gpu(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """faiss "sees" two GPUs; the copy to one GPU records the device and keeps the index on the CPU, the copy to
    several (``index_cpu_to_gpus_list`` with ``shard=True``) records the devices and builds what faiss builds
    there, a ``faiss.IndexShards`` of one copy of the (trained, empty) index per device, here CPU copies."""
    devices: list[list[int]] = []

    def to_gpu(res, device, index):
        devices.append([device])
        return index

    def to_gpus_list(index, co=None, gpus=None):
        assert co.shard and index.ntotal == 0  # sharded, and filled afterwards (the vectors split among shards)
        devices.append(list(gpus))
        shards = faiss.IndexShards(index.d, True, True)  # threaded, successive ids: global ids across shards
        copies = [faiss.clone_index(index) for _ in gpus]
        for c in copies:
            shards.add_shard(c)
        shards.referenced_objects = copies
        return shards

    class ClonerOptions:
        shard = False
        common_ivf_quantizer = False

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 2)
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: object(), raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", to_gpu, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpus_list", to_gpus_list, raising=False)
    monkeypatch.setattr(faiss, "GpuMultipleClonerOptions", ClonerOptions, raising=False)
    monkeypatch.setattr(faiss, "GpuParameterSpace", faiss.ParameterSpace, raising=False)
    return devices


@cpu_faiss_only
def test_cuda_torch_with_faiss_cpu_falls_back_to_the_cpu(faces, fake_cuda, caplog) -> None:
    x, _ = faces
    pipe = _plain(x, "auto")
    assert pipe.device == "cuda"
    with caplog.at_level(logging.WARNING, logger="facecluster.clustering.knn"):
        labels = pipe(x)
    assert "kNN runs on the CPU" in caplog.text and "faiss-cpu" in caplog.text
    np.testing.assert_array_equal(labels, _plain(x, "cpu")(x))


@cpu_faiss_only
def test_cluster_cli_with_cuda_torch_and_faiss_cpu(faces, tmp_path: Path) -> None:
    """cluster.py --device auto on a (simulated) CUDA machine with pip's faiss-cpu: a note, then the result."""
    x, _ = faces
    model = make_model(tmp_path / "plain.pt", x, nets=False)
    np.save(tmp_path / "x.npy", x)
    argv = ["cluster.py", "--model", str(model), "--features", str(tmp_path / "x.npy")]
    code = f"""
        import runpy, sys, torch
        torch.cuda.is_available = lambda: True
        sys.argv = {argv + ["--out", str(tmp_path / "gpu.txt")]!r}
        runpy.run_path("cluster.py", run_name="__main__")
    """
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=ENV, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "note: the kNN runs on the CPU: this faiss build has no GPU support" in r.stderr
    assert json.loads((tmp_path / "gpu.txt.json").read_text())["device"] == "cuda"
    cpu = subprocess.run([sys.executable, *argv, "--out", str(tmp_path / "cpu.txt"), "--device", "cpu"], cwd=ROOT,
                         env=ENV, capture_output=True, text=True, timeout=120)
    assert cpu.returncode == 0 and (tmp_path / "gpu.txt").read_text() == (tmp_path / "cpu.txt").read_text()


def test_faiss_uses_the_process_cuda_device(faces, fake_cuda, fake_faiss_gpu, monkeypatch) -> None:
    x = preprocess(faces[0])
    knn_search(x, 5, device="cuda:1", method="flat")
    monkeypatch.setenv("LOCAL_RANK", "1")                   # a torchrun rank owns one GPU:
    knn_search(x, 5, device="cuda", method="flat")          # torch's current device (1 here), not device 0
    _plain(faces[0], "auto")(faces[0])                       # the pipeline passes its own device
    assert fake_faiss_gpu == [[1], [1], [1]]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    knn_search(x, 5, device="cuda", method="flat")          # no torch CUDA: the rank's LOCAL_RANK
    assert fake_faiss_gpu[-1] == [1]


@pytest.mark.parametrize("method", ["flat", "ivf"])
def test_a_process_that_owns_no_gpu_shards_the_index_over_all(faces, fake_faiss_gpu, monkeypatch, method) -> None:
    """Without LOCAL_RANK, "cuda" / "auto" spread the index over every GPU faiss sees (IndexShards): the same
    neighbours as one index (exact search: identical; IVF: the shards share the trained lists)."""
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    x = preprocess(faces[0])
    ref = knn_search(x, 8, device="cpu", method=method, nlist=8, nprobe=8)
    index = knn_index(x, 8, device="auto", method=method, nlist=8, nprobe=8)
    assert fake_faiss_gpu == [[0, 1]] and isinstance(index.index, faiss.IndexShards)
    assert index.index.count() == 2 and faiss.downcast_index(index.index.at(0)).ntotal < len(x)
    got = knn_search(x, 8, device="cuda", method=method, nlist=8, nprobe=8)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_allclose(got[1], ref[1], atol=1e-6)


def test_exact_search_on_a_gpu_above_the_cpu_limit(faces, fake_faiss_gpu) -> None:
    x = preprocess(faces[0])
    assert knn_index(x, 5, device="cpu", flat_max=50).method == "ivfsq"
    assert isinstance(knn_index(x, 5, device="cpu", flat_max=50).index, faiss.IndexIVFScalarQuantizer)
    assert resolve_method(KnnConfig(flat_max=50, pq_min=100), 100, on_gpu=False) == "ivfpq"
    assert knn_index(x, 5, device="cuda:0", flat_max=50).method == "flat"
    assert knn_index(x, 5, device="cuda:0", flat_max=50, gpu_flat_max=50).method == "ivfsq"
    assert knn_index(x, 5, device="cuda:0", method="hnsw").method == "ivf"  # no GPU HNSW in faiss


# ------------------------------------------------------------------------------------------------ on a GPU


@pytest.mark.gpu
def test_gpu_knn_matches_cpu() -> None:
    x = preprocess(np.random.default_rng(0).standard_normal((20_000, 64)).astype(np.float32))
    nb_c, s_c = knn_search(x, 20, device="cpu", method="flat")
    nb_g, s_g = knn_search(x, 20, device="cuda", method="flat")
    np.testing.assert_allclose(s_g, s_c, atol=1e-4)
    assert np.mean(nb_g == nb_c) > 0.99


@pytest.mark.gpu
def test_gpu_pipeline_matches_cpu(faces) -> None:
    from facecluster.models import SDT, SDTConfig, TopKConfig, TopKPredictor

    x, _ = faces
    torch.manual_seed(0)
    kw = dict(feat_dim=D, k=10, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32)
    topk, sdt = TopKPredictor(TopKConfig(**kw)), SDT(SDTConfig(**kw))
    gpu = ClusteringPipeline(fit_mean(x), GraphConfig(k=10), topk, sdt, device="cuda")
    assert next(gpu.topk.parameters()).is_cuda
    on_gpu = gpu(x)
    on_cpu = ClusteringPipeline(gpu.mean, gpu.graph, topk.cpu(), sdt.cpu(), device="cpu")(x)
    assert evaluate(on_cpu, on_gpu)["pairwise_f"] > 0.99  # float differences may move a borderline edge, no more


@pytest.mark.gpu
def test_gpu_cluster_cli(faces, tmp_path: Path) -> None:
    x, y = faces
    model = make_model(tmp_path / "model.pt", x)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    r = subprocess.run([sys.executable, "cluster.py", "--model", str(model), "--features", str(tmp_path / "x.npy"),
                        "--labels", str(tmp_path / "y.npy"), "--out", str(tmp_path / "c.txt"), "--device", "cuda"],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "c.txt.json").read_text())["device"] == "cuda"
