"""The kNN settings as one frozen dataclass (:class:`KnnConfig`): checked when made, stored in a model file as a
dict, and the dicts of older files (fewer keys) still load."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from facecluster.clustering.graph_config import GraphConfig
from facecluster.clustering.knn_config import KnnConfig, check_knn_options
from facecluster.clustering.pipeline import ClusteringPipeline


@pytest.mark.parametrize(("options", "message"), [
    ({"method": "lsh"}, "unknown kNN method 'lsh'"),
    ({"nprobe": 0}, "nprobe must be an integer >= 1"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"flat_max": True}, "flat_max must be an integer"),
    ({"nprobes": 8}, "unknown kNN option 'nprobes'"),
    ({"expand": -1}, "expand must be an integer >= 0"),
    ({"expand_width": 0}, "expand_width must be an integer >= 1"),
    ({"research": 1.5}, "research must be a share in"),
    ({"research": True}, "research must be a share in"),
])
def test_bad_options_are_refused_where_they_are_made(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KnnConfig.from_dict(options)
    with pytest.raises(ValueError, match=message):
        check_knn_options(options)


def test_frozen_and_old_model_file_dicts_still_load(tmp_path) -> None:
    cfg = KnnConfig(method="ivfsq", nprobe=32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.nprobe = 8  # type: ignore[misc]
    assert KnnConfig.from_dict(cfg.to_dict()) == cfg
    old = {"method": "ivf", "nprobe": 16}  # what files written before KnnConfig hold ({} by default)
    assert KnnConfig.from_dict(old) == KnnConfig(method="ivf", nprobe=16) and KnnConfig.from_dict({}) == KnnConfig()
    pipe = ClusteringPipeline(np.zeros(4, np.float32), GraphConfig(k=3), knn=old, device="cpu")
    pipe.save(str(tmp_path / "m.pt"))
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    assert state["knn"] == KnnConfig(method="ivf", nprobe=16).to_dict()
    state["knn"] = old  # an older file's subset of the keys
    torch.save(state, tmp_path / "old.pt")
    assert ClusteringPipeline.load(str(tmp_path / "old.pt"), device="cpu").knn == KnnConfig(method="ivf", nprobe=16)
