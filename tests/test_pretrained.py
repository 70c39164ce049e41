"""``clustering.pretrained``: which model runs without ``--model``, and where the lfw-dlib embeddings are found."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clustering import pretrained
from clustering.io import InputError


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
