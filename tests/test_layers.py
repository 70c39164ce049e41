"""The layers import downwards only: ``models/`` (plain networks) never imports ``clustering/``, and importing
``models`` for the SDT and the Top-K predictor (a model file, ``cluster.py``) does not import PyTorch Geometric."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Top-level package names a module imports (absolute imports, anywhere in the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_models_never_import_clustering() -> None:
    higher = {"clustering", "lightning_modules", "datamodules", "callbacks", "cluster", "export", "train"}
    bad = {p.name: sorted(_imports(p) & higher) for p in (ROOT / "models").glob("*.py") if _imports(p) & higher}
    assert not bad, f"models/ imports a higher layer: {bad}"


def test_models_and_a_non_gnn_model_file_load_without_pyg(tmp_path: Path) -> None:
    """``import models``, then a model file with a Top-K predictor and an SDT loaded and run: no
    ``torch_geometric`` in ``sys.modules`` (the GNNs load lazily); ``models.LGCN`` still works, and imports it."""
    code = f"""
        import sys
        import models
        assert "torch_geometric" not in sys.modules, "import models imported PyG"
        import numpy as np
        from clustering.graph_config import GraphConfig
        from clustering.pipeline import ClusteringPipeline
        from models import SDT, SDTConfig, TopKConfig, TopKPredictor
        kw = dict(feat_dim=8, k=5, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32)
        ClusteringPipeline(None, GraphConfig(k=5, jaccard="none"), TopKPredictor(TopKConfig(**kw)),
                           SDT(SDTConfig(**kw)), device="cpu").save({str(tmp_path / "m.pt")!r})
        pipe = ClusteringPipeline.load({str(tmp_path / "m.pt")!r}, device="cpu")
        pipe.predict(*pipe.graph_inputs(np.random.default_rng(0).standard_normal((40, 8)).astype("float32")))
        assert "torch_geometric" not in sys.modules, "loading a non-GNN model file imported PyG"
        assert models.LGCN.__module__ == "models.gnn" and "torch_geometric" in sys.modules
        print("ok")
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
