"""The shipped default model, for 128-d dlib / ``face_recognition`` encodings, and the lfw-dlib data it is trained on.

``cluster.py`` without ``--model`` (and the photo front end) call :func:`default_model` with the width of the faces
they were given: 128-d faces get ``pretrained/dlib128.pt`` (``make pretrained`` writes it, with its record
``pretrained/dlib128.json``); any other width gets an :class:`~clustering.io.InputError` saying how to train a
model (``make model``). :func:`lfw_dlib_dir` finds the lfw-dlib embeddings: the repository's own copy
(``data/lfw-dlib``) first, ``../shared/data/lfw-dlib`` beside the repository as a fallback.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .io import InputError, load_features, load_labels

__all__ = ["DLIB_DIM", "default_model_path", "default_model", "default_model_note", "data_roots", "lfw_dlib_dir",
           "load_lfw_dlib", "repo_relative"]

ROOT = Path(__file__).resolve().parents[2]  # the checkout: facecluster/clustering/ is two folders below it
DLIB_DIM = 128  # dlib's ResNet face descriptor, as face_recognition.face_encodings returns it
DATA_ENV = "FACECLUSTER_DATA"  # a folder holding lfw-dlib/, tried before the repository's own data/


def repo_relative(path: str | os.PathLike) -> str:
    """``path`` relative to the repository root when it is inside it, else absolute: how records and messages name
    files (so that they name no folder of this machine)."""
    full = Path(path).resolve()
    return str(full.relative_to(ROOT)) if full.is_relative_to(ROOT) else str(full)


PACKAGED = Path(__file__).resolve().parents[1] / "pretrained"  # pip install .: the wheel's copy of pretrained/


def default_model_path() -> Path:
    """``Path``: where the shipped model lives: ``pretrained/dlib128.pt`` of the checkout (``make pretrained`` writes
    it there), else the copy an installed package carries (``facecluster/pretrained/``, pyproject.toml)."""
    here = ROOT / "pretrained" / "dlib128.pt"
    packaged = PACKAGED / "dlib128.pt"
    return packaged if not here.is_file() and packaged.is_file() else here


def default_model(dim: int, source: str = "features") -> Path:
    """The shipped model for ``dim``-wide faces (``int``; ``source`` names them in messages);
    :class:`~clustering.io.InputError` with a one-line message when ``dim`` is not 128 (it tells how to train a model
    for that width) or when the file is missing."""
    if dim != DLIB_DIM:
        raise InputError(f"{source}: {dim}-d faces and no --model: the shipped model takes {DLIB_DIM}-d dlib / "
                         f"face_recognition encodings; train a model for {dim}-d faces from labelled ones with `make "
                         f"model FEATURES=train.npy LABELS=train_labels.npy MODEL=my_model.pt` (DIM={dim} for a "
                         f".bin) and pass --model my_model.pt")
    path = default_model_path()
    if not path.is_file():
        raise InputError(f"{path}: the shipped model is missing; rebuild it with `make pretrained` or pass --model")
    return path


def default_model_note(path: str | os.PathLike) -> str:
    """The one line a command prints on stderr when it uses the shipped model at ``path``."""
    return (f"note: no --model given: using the shipped model {path} (for {DLIB_DIM}-d dlib / face_recognition "
            f"encodings, trained on lfw-dlib train; see README \"Shipped model\")")


def data_roots() -> list[Path]:
    """Folders that may hold ``lfw-dlib/``, in the order they are tried: ``$FACECLUSTER_DATA`` when set, the
    repository's ``data/``, then ``../shared/data`` beside the repository."""
    roots = [Path(os.environ[DATA_ENV])] if os.environ.get(DATA_ENV) else []
    return roots + [ROOT / "data", ROOT.parent / "shared" / "data"]


def lfw_dlib_dir() -> Path | None:
    """The first ``lfw-dlib`` folder of :func:`data_roots` that holds both splits (``features/{train,test}.bin``,
    ``labels/{train,test}.meta``), or ``None``."""
    for root in data_roots():
        folder = root / "lfw-dlib"
        if all((folder / sub / f"{s}.{ext}").is_file() for s in ("train", "test")
               for sub, ext in (("features", "bin"), ("labels", "meta"))):
            return folder
    return None


def load_lfw_dlib(split: str, folder: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """lfw-dlib's ``split`` ("train" or "test") from ``folder`` (default :func:`lfw_dlib_dir`): ``(N, 128)`` float32
    raw dlib descriptors and ``(N,)`` int64 identity labels. ``FileNotFoundError`` naming the folders tried when
    there is none."""
    folder = folder or lfw_dlib_dir()
    if folder is None:
        raise FileNotFoundError("lfw-dlib not found in " + ", ".join(str(r / "lfw-dlib") for r in data_roots()))
    feats = np.asarray(load_features(folder / "features" / f"{split}.bin", dim=DLIB_DIM))
    return feats, load_labels(folder / "labels" / f"{split}.meta", n=feats.shape[0])
