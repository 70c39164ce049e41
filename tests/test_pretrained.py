"""``clustering.pretrained``: which model runs without ``--model``, and where the lfw-dlib embeddings are found."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecluster.clustering import pretrained
from facecluster.clustering.io import InputError


def test_default_model_only_for_128d(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "dlib128.pt"
    fake.write_bytes(b"x")
    monkeypatch.setattr(pretrained, "default_model_path", lambda: fake)
    assert pretrained.default_model(128) == fake
    for dim in (64, 127, 512):
        with pytest.raises(InputError) as err:
            pretrained.default_model(dim, "faces.npy")
        msg = str(err.value)
        assert msg.startswith("faces.npy: ") and f"{dim}-d" in msg and "make model" in msg and "\n" not in msg
    fake.unlink()
    with pytest.raises(InputError, match="make pretrained"):
        pretrained.default_model(128)


def test_default_model_path_is_in_the_repository() -> None:
    path = pretrained.default_model_path()
    assert path == Path(__file__).resolve().parents[1] / "pretrained" / "dlib128.pt"
    assert "--model" in pretrained.default_model_note(path) and str(path) in pretrained.default_model_note(path)


def _fake_lfw(root: Path, n: dict[str, int], splits=("train", "test")) -> Path:
    folder = root / "lfw-dlib"
    (folder / "features").mkdir(parents=True)
    (folder / "labels").mkdir()
    rng = np.random.default_rng(0)
    for s in splits:
        rng.standard_normal((n[s], 128)).astype("<f4").tofile(folder / "features" / f"{s}.bin")
        (folder / "labels" / f"{s}.meta").write_text("".join(f"{i % 3}\n" for i in range(n[s])))
    return folder


def test_lfw_dlib_lookup_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """$FACECLUSTER_DATA first, then the repository's data/, then ../shared/data; a folder missing a split is
    passed over."""
    env = tmp_path / "env"
    monkeypatch.setenv(pretrained.DATA_ENV, str(env))
    repo = pretrained.ROOT
    assert pretrained.data_roots() == [env, repo / "data", repo.parent / "shared" / "data"]
    _fake_lfw(env, {"train": 5}, splits=("train",))  # no test split: not used
    assert pretrained.lfw_dlib_dir() != env / "lfw-dlib"
    monkeypatch.setenv(pretrained.DATA_ENV, str(tmp_path / "full"))
    folder = _fake_lfw(tmp_path / "full", {"train": 5, "test": 4})
    assert pretrained.lfw_dlib_dir() == folder
    feats, labels = pretrained.load_lfw_dlib("test")
    assert feats.shape == (4, 128) and feats.dtype == np.float32 and labels.tolist() == [0, 1, 2, 0]


def test_lfw_dlib_absent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(pretrained, "data_roots", lambda: [tmp_path / "a", tmp_path / "b"])
    assert pretrained.lfw_dlib_dir() is None
    with pytest.raises(FileNotFoundError, match="lfw-dlib not found"):
        pretrained.load_lfw_dlib("train")


def tiny_model(path: Path, score: float, mean: np.ndarray) -> Path:
    """An untrained 1-layer model file for 128-d faces whose meta holds a validation tuning result."""
    import torch

    from facecluster.clustering.graph_config import GraphConfig
    from facecluster.clustering.pipeline import ClusteringPipeline
    from facecluster.models import SDT, SDTConfig, TopKConfig, TopKPredictor

    torch.manual_seed(0)
    kw = dict(feat_dim=128, k=10, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32)
    best = {"jaccard": "none", "combine": "product", "threshold": 0.5, "pairwise_f": score, "bcubed_f": score,
            "score": score}
    ClusteringPipeline(mean, GraphConfig(k=10), TopKPredictor(TopKConfig(**kw)), SDT(SDTConfig(**kw)),
                       meta={"tuning": {"n_faces": 50, "best": best, "grid": [best]}}).save(str(path))
    return path


def test_make_pretrained_chooses_on_validation_then_tests(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``make pretrained`` (with --reuse: no training here) copies the seed of best validation score (ties: the
    lowest seed), then records every seed's test numbers, their mean and sd, and the chosen file's SHA-256."""
    import hashlib
    import json

    from scripts import make_pretrained

    monkeypatch.setenv(pretrained.DATA_ENV, str(tmp_path / "data"))
    _fake_lfw(tmp_path / "data", {"train": 40, "test": 60})
    work = tmp_path / "work"
    work.mkdir()
    mean = np.full(128, 0.01, np.float32)
    for seed, score in ((0, 0.5), (1, 0.7), (2, 0.7)):
        tiny_model(work / f"seed{seed}.pt", score, mean * (seed + 1))
    out = tmp_path / "shipped" / "m.pt"
    assert make_pretrained.main(["--out", str(out), "--workdir", str(work), "--reuse"]) == 0
    assert out.read_bytes() == (work / "seed1.pt").read_bytes()
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["chosen_seed"] == 1 and rec["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert rec["bytes"] == out.stat().st_size and "make pretrained" in rec["command"]
    assert [rec["seeds"][s]["validation"]["score"] for s in "012"] == [0.5, 0.7, 0.7]
    assert all(rec["seeds"][s]["reused"] and rec["seeds"][s]["train_seconds"] is None for s in "012")
    f = [rec["seeds"][s]["test"]["pairwise_f"] for s in "012"]
    assert rec["test_over_seeds"]["pairwise_f"] == {"mean": round(float(np.mean(f)), 4),
                                                    "sd": round(float(np.std(f, ddof=1)), 4)}
    assert rec["data"]["sha256"]["labels/test.meta"] == hashlib.sha256(
        (tmp_path / "data" / "lfw-dlib" / "labels" / "test.meta").read_bytes()).hexdigest()
