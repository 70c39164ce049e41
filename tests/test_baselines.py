"""The baselines a user would run instead (benchmarks/baselines.py): dlib's chinese whispers and the one tuning rule."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from baselines import (best_on, chinese_whispers_cluster, chinese_whispers_pairs, close_pairs,  # noqa: E402
                       tune_chinese_whispers)

from facecluster.clustering.preprocess import fit_mean, preprocess  # noqa: E402
from facecluster.clustering.synthetic import make_synthetic  # noqa: E402

pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, np.ndarray]:
    """221 128-d faces of 40 people, centred, normalised and scaled by 0.4: same-person distances 0.37-0.49 (10th to
    90th percentile), others from 0.51, about as with dlib's descriptors and their usual threshold 0.5."""
    x, y = make_synthetic(n_identities=40, dim=128, seed=5, max_size=20)
    return (0.4 * preprocess(x, fit_mean(x))).astype(np.float32), y


def test_close_pairs_are_every_pair_under_the_threshold_in_dlib_order(faces) -> None:
    x = faces[0][:150].astype(np.float64)
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    want_i, want_j = np.nonzero(np.triu(d < 0.45))  # row-major: i, then j ascending; self pairs included
    assert 150 < len(want_i) < 150 * 151 // 2
    i, j, dist = close_pairs(faces[0][:150], 0.45, block=64)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_array_equal(j, want_j)
    np.testing.assert_allclose(dist, d[want_i, want_j], atol=1e-9)


@pytest.mark.parametrize("threshold", [0.4, 0.45, 0.5])
def test_chinese_whispers_on_close_pairs_is_dlib_chinese_whispers_clustering(faces, threshold: float) -> None:
    """The tuning path (pairs found once, dlib.chinese_whispers) gives the labels of the call users make."""
    x = faces[0]
    i, j, _ = close_pairs(x, threshold, block=100)
    want = chinese_whispers_cluster(x, threshold)
    assert len(np.unique(want)) > 1
    np.testing.assert_array_equal(chinese_whispers_pairs(i, j), want)


def test_tune_chinese_whispers_takes_the_best_grid_threshold(faces) -> None:
    from facecluster.clustering.metrics import evaluate, selection_score

    x, y = faces
    grid = (0.2, 0.4, 0.45, 0.5, 0.7)
    t, m = tune_chinese_whispers(x, y, grid)
    scores = {g: selection_score(evaluate(y, chinese_whispers_cluster(x, g))) for g in grid}
    assert t == max(grid, key=lambda g: scores[g]) and selection_score(m) == pytest.approx(scores[t])
    assert scores[t] > scores[0.2] and scores[t] > scores[0.7]  # the extremes split or merge everyone


def test_best_on_keeps_the_first_of_equal_scores() -> None:
    labels = np.array([0, 0, 1, 1])
    clusterings = {"a": np.array([0, 1, 2, 3]), "b": np.array([0, 0, 1, 1]), "c": np.array([5, 5, 6, 6]),
                   "d": np.array([0, 0, 0, 0])}
    value, m = best_on(labels, list(clusterings), clusterings.__getitem__)
    assert value == "b" and m["pairwise_f"] == 1.0
