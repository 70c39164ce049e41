"""benchmarks/plots.py: the README's figures from whatever rows the result files hold."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from plots import (ladder_points, plot_cluster_sizes, plot_f_vs_threshold, plot_scale_ladder,  # noqa: E402
                   size_histogram)

PNG = b"\x89PNG\r\n\x1a\n"


def _rec(method: str, split: str, fp: float, fb: float) -> dict:
    return {"method": method, "split": split, "pairwise_f": fp, "bcubed_f": fb}


def _ladder(folder: Path, faces: bool) -> list[Path]:
    """Two result files: the first with every rung's faces, the second (an older run) without; the method "m" is
    in both."""
    rungs = {"1x": {"n_identities": 10, "seed": 101}, "3x": {"n_identities": 30, "seed": 103}}
    a = {"protocol": {"rungs": rungs, **({"faces": {"train": 70, "1x": 71, "3x": 215}} if faces else {})},
         "records": [_rec("m", s, 0.9, 0.8) for s in ("train", "3x", "1x")] + [_rec("hdbscan", "1x", 0.5, 0.6)]}
    b = {"protocol": {"rungs": {"1x": rungs["1x"]}},
         "records": [_rec("m", "1x", 0.7, 0.75), _rec("gat", "1x", 0.4, 0.5)]}
    paths = [folder / "scale.json", folder / "scale_old.json"]
    for p, d in zip(paths, (a, b)):
        p.write_text(json.dumps(d))
    return paths


def test_ladder_points_read_every_row_but_train(tmp_path: Path) -> None:
    paths = _ladder(tmp_path, faces=True)
    series, unit = ladder_points(paths)
    assert unit == "identities"  # the older file does not record faces
    assert series == {"m (scale)": [(10, "1x", 0.9, 0.8), (30, "3x", 0.9, 0.8)], "HDBSCAN": [(10, "1x", 0.5, 0.6)],
                      "m (scale_old)": [(10, "1x", 0.7, 0.75)], "gat": [(10, "1x", 0.4, 0.5)]}
    series, unit = ladder_points(paths[:1])
    assert unit == "faces" and series["m"] == [(71, "1x", 0.9, 0.8), (215, "3x", 0.9, 0.8)]


def test_plots_write_pngs(tmp_path: Path) -> None:
    from test_pretrained import tiny_model

    path = plot_scale_ladder(_ladder(tmp_path, faces=False), tmp_path)
    assert path.name == "scale_ladder.png" and path.read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="no rung rows"):
        plot_scale_ladder([], tmp_path)
    model = tiny_model(tmp_path / "m.pt", 0.7, np.full(128, 0.01, np.float32))
    path = plot_f_vs_threshold(model, tmp_path)
    assert path.name == "f_vs_threshold.png" and path.read_bytes()[:8] == PNG
    # today's record: each grid point scored alone and among the training faces (both drawn)
    from facecluster.clustering.pipeline import ClusteringPipeline

    pipe = ClusteringPipeline.load(str(model), device="cpu")
    rows = [{"jaccard": "none", "combine": "product", "threshold": t, "score": 0.8,
             **{n: {"pairwise_f": 0.9 - t / 10, "bcubed_f": 0.8, "score": 0.85 - t / 10} for n in ("val", "val+train")}}
            for t in (0.4, 0.5)]
    pipe.meta = {"tuning": {"sets": {"val": {"n_faces": 50, "n_scored": 50}, "val+train": {"n_faces": 90,
                                                                                         "n_scored": 50}},
                            "chosen": rows[1], "grid": rows}}
    pipe.save(str(tmp_path / "new.pt"))
    path.unlink()
    assert plot_f_vs_threshold(tmp_path / "new.pt", tmp_path).read_bytes()[:8] == PNG
    true = np.repeat(np.arange(50), np.arange(1, 51))
    path = plot_cluster_sizes(true, np.arange(len(true)), tmp_path, "t")
    assert path.name == "cluster_sizes.png" and path.read_bytes()[:8] == PNG


def test_size_histogram_bins() -> None:
    labels = np.array([0] + [1] * 2 + [2] * 3 + [3] * 4 + [4] * 5 + [5] * 2000)
    h = size_histogram(labels)
    assert h.sum() == 6 and h[0] == 1 and h[1] == 1 and h[2] == 2 and h[3] == 1 and h[-1] == 1
