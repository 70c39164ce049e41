"""The layers import downwards only: ``facecluster/models/`` (plain networks) never imports ``clustering/`` (or
any layer above it), and importing ``models`` for the SDT and the Top-K predictor (a model file, ``cluster.py``) does not import PyTorch Geometric."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """The packages a module imports (absolute imports, anywhere in the file): the top-level name, or for the
    project's own ``facecluster.<layer>``; a relative import that climbs out of its package (``from ..clustering``)
    as ``facecluster.<layer>`` too."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "facecluster"
                                    else [])
        elif isinstance(node, ast.ImportFrom) and node.level >= 2:
            mods = ([f"facecluster.{node.module}"] if node.module
                    else [f"facecluster.{a.name}" for a in node.names])
        else:
            continue
        for mod in mods:
            parts = mod.split(".")
            names.add(".".join(parts[:2]) if parts[0] == "facecluster" and len(parts) > 1 else parts[0])
    return names


def test_models_never_import_clustering(tmp_path: Path) -> None:
    higher = {f"facecluster.{layer}" for layer in ("clustering", "lightning_modules", "datamodules", "callbacks",
                                                   "commands")}
    files = sorted((ROOT / "facecluster" / "models").glob("*.py"))
    assert len(files) >= 5
    bad = {p.name: sorted(_imports(p) & higher) for p in files if _imports(p) & higher}
    assert not bad, f"facecluster/models/ imports a higher layer: {bad}"
    # the rule itself sees each form of such an import
    for code in ("from facecluster.clustering import io", "import facecluster.clustering.io",
                 "from facecluster import clustering", "from ..clustering import io", "from .. import callbacks"):
        (tmp_path / "probe.py").write_text(f"import torch\n{code}\n")
        assert _imports(tmp_path / "probe.py") & higher, code


def test_models_and_a_non_gnn_model_file_load_without_pyg(tmp_path: Path) -> None:
    """``import models``, then a model file with a Top-K predictor and an SDT loaded and run: no
    ``torch_geometric`` in ``sys.modules`` (the GNNs load lazily); ``models.LGCN`` still works, and imports it."""
    code = f"""
        import sys
        from facecluster import models
        assert "torch_geometric" not in sys.modules, "import models imported PyG"
        import numpy as np
        from facecluster.clustering.graph_config import GraphConfig
        from facecluster.clustering.pipeline import ClusteringPipeline
        from facecluster.models import SDT, SDTConfig, TopKConfig, TopKPredictor
        kw = dict(feat_dim=8, k=5, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32)
        ClusteringPipeline(None, GraphConfig(k=5, jaccard="none"), TopKPredictor(TopKConfig(**kw)),
                           SDT(SDTConfig(**kw)), device="cpu").save({str(tmp_path / "m.pt")!r})
        pipe = ClusteringPipeline.load({str(tmp_path / "m.pt")!r}, device="cpu")
        pipe.predict(*pipe.graph_inputs(np.random.default_rng(0).standard_normal((40, 8)).astype("float32")))
        assert "torch_geometric" not in sys.modules, "loading a non-GNN model file imported PyG"
        assert models.LGCN.__module__ == "facecluster.models.gnn" and "torch_geometric" in sys.modules
        print("ok")
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
