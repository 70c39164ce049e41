"""A seeded synthetic face-embedding generator shaped like MS1M, for the demo and the tests.

It is **not** a benchmark of record (real data, ``../shared/data``, judges every design choice); it exists so that
the demo and the tests run anywhere, with no download, on data that has the hard cases of real collections:

* **long-tailed identity sizes**: sizes follow a discrete Pareto law ``floor(min_size / 2 * U^(-1/alpha))`` clipped to
  ``max_size``; with the defaults most identities have 1-5 faces and a few have hundreds (MS1M's range),
* **varying tightness**: each identity draws its spread ``sigma ~ U(sigma_min, sigma_max)``; a face is
  ``normalise(c + sigma * g / sqrt(d))`` with ``g ~ N(0, I)``, so its cosine to its centre is about
  ``1 / sqrt(1 + sigma^2)``,
* **near-identical identities**: a fraction ``near_pair_frac`` of identities take a centre close to another
  identity's (``cos ~ near_pair_cos``), like siblings or look-alikes,
* **low-quality outliers**: a fraction ``lowq_frac`` of faces are blurred towards one shared "low-quality"
  direction (``lowq_strength``) and get extra noise, as blurry or profile faces do in real collections,
* **an uncentred embedding space**: every face is shifted by ``offset`` along a common direction and given a random
  norm, as raw embeddings are, so that the preprocessing (mean-centring, normalisation) matters. The common
  direction and the low-quality direction come from ``space_seed``, shared by splits drawn with different
  ``seed`` (one recognition model, new people), so a mean fitted on one split centres the others.

Faces are shuffled; labels are ``0 .. n_identities - 1``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["SyntheticConfig", "make_synthetic"]


@dataclass
class SyntheticConfig:
    """Parameters of :func:`make_synthetic` (defaults: ~7.4K faces of 1,000 identities, d = 256)."""

    n_identities: int = 1000
    dim: int = 256
    alpha: float = 1.1          # Pareto tail exponent of identity sizes (smaller = heavier tail)
    min_size: int = 3           # scale of the size law: size = floor(min_size / 2 * U^(-1/alpha)), at least 1
    max_size: int = 400         # largest identity
    sigma_min: float = 0.6      # tightest identity spread
    sigma_max: float = 1.4      # loosest identity spread
    near_pair_frac: float = 0.1 # share of identities given a near-identical twin centre
    near_pair_cos: float = 0.6  # cosine between twin centres
    lowq_frac: float = 0.05     # share of low-quality faces
    lowq_strength: float = 0.8  # how far a low-quality face is pulled to the shared low-quality direction
    offset: float = 1.0         # shift of all faces along a common direction (uncentred raw embeddings)
    seed: int = 0
    space_seed: int = 1234      # seed of the embedding space itself (common offset, low-quality direction):
                                # splits drawn with different ``seed`` share it, as faces embedded by one model do

    def to_dict(self) -> dict:
        return asdict(self)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def make_synthetic(cfg: SyntheticConfig | None = None, **overrides) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``(features (N, dim) float32, labels (N,) int64)``; the same config gives the same arrays.

    Args:
        cfg: a :class:`SyntheticConfig`; keyword ``overrides`` replace its fields (``make_synthetic(n_identities=50)``).
    """
    cfg = SyntheticConfig(**{**(cfg.to_dict() if cfg else {}), **overrides})
    rng = np.random.default_rng(cfg.seed)
    n_id, d = cfg.n_identities, cfg.dim

    u = rng.random(n_id)
    sizes = np.floor(0.5 * cfg.min_size * u ** (-1.0 / cfg.alpha)).astype(np.int64)
    sizes = np.clip(sizes, 1, cfg.max_size)

    centres = _unit(rng.standard_normal((n_id, d)))
    n_twins = int(round(cfg.near_pair_frac * n_id))
    if n_twins and n_id > 1:
        twins = rng.choice(n_id, size=n_twins, replace=False)
        partners = (twins + rng.integers(1, n_id, size=n_twins)) % n_id
        noise = _unit(rng.standard_normal((n_twins, d)))
        # remove the component along the partner so that cos(twin, partner) is exactly near_pair_cos
        noise = _unit(noise - (noise * centres[partners]).sum(1, keepdims=True) * centres[partners])
        c = cfg.near_pair_cos
        centres[twins] = c * centres[partners] + np.sqrt(1 - c * c) * noise

    labels = np.repeat(np.arange(n_id), sizes)
    n = labels.shape[0]
    sigma = rng.uniform(cfg.sigma_min, cfg.sigma_max, size=n_id)[labels]
    feats = centres[labels] + sigma[:, None] * rng.standard_normal((n, d)) / np.sqrt(d)
    feats = _unit(feats)

    space = np.random.default_rng(cfg.space_seed)
    blur_dir = _unit(space.standard_normal(d))
    common = _unit(space.standard_normal(d))
    lowq = rng.random(n) < cfg.lowq_frac
    if lowq.any():
        m = int(lowq.sum())
        s = cfg.lowq_strength * rng.uniform(0.5, 1.0, size=(m, 1))
        feats[lowq] = _unit((1 - s) * feats[lowq] + s * blur_dir + 0.3 * rng.standard_normal((m, d)) / np.sqrt(d))

    feats = feats + cfg.offset * common
    feats *= rng.uniform(0.5, 2.0, size=(n, 1))

    order = rng.permutation(n)
    return feats[order].astype(np.float32), labels[order].astype(np.int64)
