"""Tests of ``clustering.synthetic``: determinism, shape, and the hard cases it promises (long tail, twins, offset)."""

from __future__ import annotations

import numpy as np
import pytest

from facecluster.clustering.preprocess import fit_mean, preprocess
from facecluster.clustering.synthetic import SyntheticConfig, make_synthetic


def _identity_mean_cosines(feats: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cosines between the (centred, normalised) mean faces of every pair of identities, upper triangle."""
    z = preprocess(feats, fit_mean(feats))
    g = labels.max() + 1
    m = np.zeros((g, z.shape[1]))
    np.add.at(m, labels, z)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    return (m @ m.T)[np.triu_indices(g, 1)]


def test_same_seed_same_arrays_different_seed_different() -> None:
    a, la = make_synthetic(n_identities=60, seed=3)
    b, lb = make_synthetic(n_identities=60, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    c, lc = make_synthetic(n_identities=60, seed=4)
    assert a.shape != c.shape or not np.array_equal(a, c)
    assert not np.array_equal(a[:10], c[:10])


def test_shape_dtype_and_labels() -> None:
    x, y = make_synthetic(n_identities=80, seed=0)
    assert x.ndim == 2 and x.shape[1] == 256 and x.dtype == np.float32
    assert y.shape == (x.shape[0],) and y.dtype == np.int64
    np.testing.assert_array_equal(np.unique(y), np.arange(80))  # every identity has at least one face
    assert np.isfinite(x).all()
    assert not np.all(np.diff(y) >= 0)  # shuffled, not grouped by identity
    norms = np.linalg.norm(x, axis=1)
    assert norms.std() > 0.1  # raw norms vary, as raw embeddings do


def test_long_tail_of_identity_sizes() -> None:
    _, y = make_synthetic(n_identities=300, seed=1)
    sizes = np.bincount(y)
    assert sizes.max() >= 10 * np.median(sizes)
    assert (sizes == 1).sum() >= 0.1 * len(sizes)  # many singletons
    assert sizes.max() <= SyntheticConfig().max_size


def test_twin_identities_exist() -> None:
    cos = _identity_mean_cosines(*make_synthetic(n_identities=200, seed=0, lowq_frac=0.0))
    assert (cos > 0.4).sum() >= 5
    # without twins, no two identity means are that close: the twins are what makes them
    cos0 = _identity_mean_cosines(*make_synthetic(n_identities=200, seed=0, lowq_frac=0.0, near_pair_frac=0.0))
    assert (cos0 > 0.4).sum() == 0
    # with the default low-quality faces too, twins are still there
    assert (_identity_mean_cosines(*make_synthetic(n_identities=200, seed=0)) > 0.4).sum() >= 5


def test_offset_makes_raw_space_uncentred() -> None:
    x, y = make_synthetic(n_identities=100, seed=2, near_pair_frac=0.0, lowq_frac=0.0)
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(y), 3000), rng.integers(0, len(y), 3000)
    diff = y[i] != y[j]
    raw = preprocess(x)
    assert (raw[i[diff]] * raw[j[diff]]).sum(1).mean() > 0.3
    z = preprocess(x, fit_mean(x))
    strangers = (z[i[diff]] * z[j[diff]]).sum(1).mean()
    assert abs(strangers) < 0.05
    x0, _ = make_synthetic(n_identities=100, seed=2, near_pair_frac=0.0, lowq_frac=0.0, offset=0.0)
    raw0 = preprocess(x0)
    assert abs((raw0[i[diff]] * raw0[j[diff]]).sum(1).mean()) < 0.05


def test_overrides_and_config_object() -> None:
    cfg = SyntheticConfig(n_identities=40, dim=32, seed=5)
    x, y = make_synthetic(cfg)
    assert x.shape[1] == 32 and y.max() == 39
    x2, y2 = make_synthetic(cfg, n_identities=25, max_size=4)
    assert x2.shape[1] == 32  # cfg fields kept
    assert y2.max() == 24 and np.bincount(y2).max() <= 4
    x3, y3 = make_synthetic(n_identities=40, dim=32, seed=5)
    np.testing.assert_array_equal(x, x3)  # a config and the same keywords agree
    assert cfg.n_identities == 40  # the caller's config is not modified
    assert cfg.to_dict()["dim"] == 32
    with pytest.raises(TypeError):
        make_synthetic(n_identies=10)


def test_tight_identities_are_tighter() -> None:
    tight, yt = make_synthetic(n_identities=50, seed=6, sigma_min=0.2, sigma_max=0.3, lowq_frac=0.0)
    loose, yl = make_synthetic(n_identities=50, seed=6, sigma_min=1.5, sigma_max=1.6, lowq_frac=0.0)

    def same_cos(x, y):
        z = preprocess(x, fit_mean(x))
        s = z @ z.T
        same = (y[:, None] == y[None, :]) & ~np.eye(len(y), dtype=bool)
        return s[same].mean()

    assert same_cos(tight, yt) > same_cos(loose, yl) + 0.2
