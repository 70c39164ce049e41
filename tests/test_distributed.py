"""One clustering over several processes (``clustering.distributed``, ``cluster.py`` under ``torchrun``): 2 CPU
processes (gloo) give the labels of the one-process run, bit for bit."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from facecluster.clustering.distributed import Ranks
from facecluster.clustering.graph_config import GraphConfig
from facecluster.clustering.synthetic import make_synthetic
from test_cluster_cli import make_model, run_cli


@pytest.mark.parametrize(("n", "block", "world", "spans"), [
    (1200, 256, 2, [(0, 512), (512, 1200)]),   # 5 blocks: 2 + 3, the last one short
    (1200, 256, 3, [(0, 256), (256, 768), (768, 1200)]),
    (100, 256, 2, [(0, 0), (0, 100)]),         # one block: a rank may get none
])
def test_ranks_deal_whole_row_blocks(n: int, block: int, world: int, spans: list) -> None:
    got = [Ranks(r, world, row_block=block).span(n) for r in range(world)]
    assert got == spans


@pytest.mark.parametrize("graph", [GraphConfig(k=10, threshold=0.05),                       # Top-K Jaccard x SDT
                                   GraphConfig(k=10, jaccard="none", threshold=0.5)])     # edge prob. x SDT
def test_two_cpu_processes_give_the_one_process_labels(tmp_path: Path, graph: GraphConfig) -> None:
    """``torchrun --nproc_per_node=2 cluster.py ...`` (gloo) against ``cluster.py ...``: the same OUT. Row blocks of
    128 rows, so each rank scores its share (with the default 65,536 rank 1 would get nothing here); the model's
    rule reads every k (Top-K Jaccard: the k are all-gathered) or none (the Top-K predictor on the SDT's centres)."""
    x, y = make_synthetic(n_identities=120, dim=32, seed=7)
    model = make_model(tmp_path / "model.pt", x, graph)
    np.save(tmp_path / "x.npy", x)
    args = ["--model", model, "--features", tmp_path / "x.npy", "--row-block", 128, "--device", "cpu"]
    one = run_cli([*args, "--out", tmp_path / "one.txt"], tmp_path)
    assert one.rc == 0, one.stderr
    two = run_cli([*args, "--out", tmp_path / "two.txt"], tmp_path, prefix=[
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "cluster.py"])
    assert two.rc == 0, two.stderr
    assert (tmp_path / "two.txt").read_text() == (tmp_path / "one.txt").read_text()
    assert len(x) > 3 * 128 and len(set((tmp_path / "one.txt").read_text().split())) > 1
    side = json.loads((tmp_path / "two.txt.json").read_text())
    assert side["world_size"] == 2 and side["row_block"] == 128
    assert two.stdout.count("faces ->") == 1  # rank 0 alone reports
