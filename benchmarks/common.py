"""Datasets for the benchmarks: real lfw-dlib (the repository's ``data/lfw-dlib``, else ``../shared/data``; see
:func:`clustering.pretrained.lfw_dlib_dir`) and the synthetic generator."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facecluster.clustering.pretrained import data_roots, lfw_dlib_dir, load_lfw_dlib  # noqa: E402
from facecluster.clustering.synthetic import make_synthetic  # noqa: E402

# Synthetic benchmark sets: "train" and "test" use different seeds (new identities, same generator).
SYNTHETIC_SPLITS = {"train": dict(n_identities=1500, seed=1), "test": dict(n_identities=1500, seed=2)}


@dataclass
class Split:
    name: str
    feats: np.ndarray
    labels: np.ndarray


def largest_clusters(true: np.ndarray, pred: np.ndarray, top: int = 5) -> list[dict]:
    """The ``top`` largest predicted clusters: faces, distinct identities, and the share of its largest identity."""
    _, inv, sizes = np.unique(pred, return_inverse=True, return_counts=True)
    out = []
    for c in np.argsort(-sizes, kind="stable")[:top]:
        ids, counts = np.unique(true[inv == c], return_counts=True)
        out.append({"faces": int(sizes[c]), "identities": int(len(ids)),
                    "purity": round(float(counts.max() / sizes[c]), 3)})
    return out


def load_dataset(name: str) -> dict[str, Split] | None:
    """``{"train": Split, "test": Split}`` or ``None`` (with a message) when the data is absent."""
    if name == "synthetic":
        return {s: Split(s, *make_synthetic(**kw)) for s, kw in SYNTHETIC_SPLITS.items()}
    if name == "lfw-dlib":
        folder = lfw_dlib_dir()
        if folder is None:
            print(f"[skip] lfw-dlib: absent from {', '.join(str(r / 'lfw-dlib') for r in data_roots())}",
                  file=sys.stderr)
            return None
        return {s: Split(s, *load_lfw_dlib(s, folder)) for s in ("train", "test")}
    raise SystemExit(f"unknown dataset {name!r} (lfw-dlib, synthetic)")
