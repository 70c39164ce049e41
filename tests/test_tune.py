"""``export.py --tune``: the validation identities scored alone and among the training faces, the worse of the two
kept, and the best of those scores chosen."""
from __future__ import annotations

import numpy as np

from facecluster.clustering.graph_config import GraphConfig
from facecluster.clustering.pipeline import ClusteringPipeline
from facecluster.clustering.synthetic import SyntheticConfig
from facecluster.datamodules import FaceGraphDataModule
from facecluster.commands.export import TOLERANCE, choose, tune, tune_sets


def _row(jac: str, comb: str, th: float, val: float, stress: float) -> dict:
    return {"jaccard": jac, "combine": comb, "threshold": th, "val": {"score": val}, "val+train": {"score": stress},
            "score": min(val, stress), "fold_scores": [min(val, stress)] * 4 + [min(val, stress) - 0.01]}


def test_choose_keeps_the_best_worst_set_score_and_records_the_candidates_within_the_tolerance() -> None:
    best = _row("topk", "product", 0.05, 0.95, 0.90)
    simpler = _row("topk", "jaccard", 0.55, 0.905, 0.898)  # 0.002 below, no pair classifier: recorded, not kept
    far = _row("none", "jaccard", 0.5, 0.88, 0.88)         # 0.02 below: not a candidate
    chosen, record = choose([simpler, best, far], ["val", "val+train"])
    assert chosen is best and record["tolerance"] == TOLERANCE
    assert record["best"]["threshold"] == 0.05 and [c["threshold"] for c in record["candidates"]] == [0.55, 0.05]
    assert [c["networks"] for c in record["candidates"]] == [1, 2]
    assert record["candidates"][1]["drop"] == 0.05 and "fold_se" in record["candidates"][1]
    # the score is the worse set's: a rule best at the training density alone is not kept
    dense_only = _row("none", "product", 0.0, 0.99, 0.85)
    assert choose([best, dense_only], ["val", "val+train"])[0] is best
    assert len(choose([best, simpler, far], ["val", "val+train"], tolerance=0.03)[1]["candidates"]) == 3
    assert choose([best], ["val", "val+train"])[0] is best


def test_tune_sets_put_the_validation_faces_among_the_training_faces() -> None:
    dm = FaceGraphDataModule(synthetic=SyntheticConfig(n_identities=60, seed=3), k=10, val_fraction=0.3)
    dm.setup("fit")
    alone, among = tune_sets(dm)
    v, t = dm.val_graph, dm.train_graph
    assert alone.name == "val" and alone.mask is None and alone.nbrs is v.nbrs
    assert among.name == "val+train" and len(among.labels) == len(v) + len(t) and among.mask.sum() == len(v)
    np.testing.assert_array_equal(among.x[: len(v)], v.x)
    assert among.nbrs.shape == (len(v) + len(t), 10) and (among.nbrs[:, 0] == np.arange(len(among.labels))).all()
    # denser: a validation face's K-th neighbour is at least as close among the training faces as alone
    assert (among.sims[: len(v), -1] >= v.sims[:, -1] - 1e-6).all()
    assert [s.name for s in tune_sets(dm, distractors=False)] == ["val"]


def test_tune_scores_every_grid_point_on_both_sets_and_keeps_the_worse() -> None:
    dm = FaceGraphDataModule(synthetic=SyntheticConfig(n_identities=60, seed=3), k=10, val_fraction=0.3)
    dm.setup("fit")
    pipe = ClusteringPipeline(dm.mean, GraphConfig(k=10, jaccard="none", transform="cosine"), device="cpu")
    cfg, table, record = tune(pipe, tune_sets(dm), pipe.graph, jaccards=("none",), thresholds=(0.3, 0.6, 0.9))
    assert len(table) == 3 and {r["combine"] for r in table} == {"jaccard"}  # no pair classifier: Jaccard alone
    for r in table:
        assert r["score"] == min(r["val"]["score"], r["val+train"]["score"])
        assert len(r["fold_scores"]) == 5
    assert record["tolerance"] == TOLERANCE
    assert (cfg.jaccard, cfg.combine, cfg.threshold) in {(r["jaccard"], r["combine"], r["threshold"])
                                                         for r in table}
    assert record["best"]["score"] == max(r["score"] for r in table)


def _model_file(tmp_path, **graph) -> tuple[str, FaceGraphDataModule]:
    """A model file (no networks) whose meta records labelled training files, and the datamodule of that split."""
    from facecluster.clustering.synthetic import make_synthetic

    feats, labels = make_synthetic(SyntheticConfig(n_identities=60, dim=16, seed=3))
    np.save(tmp_path / "f.npy", feats)
    np.save(tmp_path / "l.npy", labels)
    on = {"source": "files", "features": str(tmp_path / "f.npy"), "labels": str(tmp_path / "l.npy"),
          "val_fraction": 0.3, "split_seed": 0}
    dm = FaceGraphDataModule(source="files", features=on["features"], labels=on["labels"], k=10, val_fraction=0.3)
    dm.setup("fit")
    pipe = ClusteringPipeline(dm.mean, GraphConfig(k=10, transform="cosine", **graph), device="cpu",
                              meta={"trained_on": on})
    pipe.save(str(tmp_path / "m.pt"))
    return str(tmp_path / "m.pt"), dm


def test_export_model_retunes_a_file_on_its_rebuilt_split_and_keeps_its_setting_within_the_tolerance(
        tmp_path, capsys) -> None:
    from facecluster.commands.export import main

    path, dm = _model_file(tmp_path, jaccard="none", combine="jaccard", threshold=0.9)
    out = str(tmp_path / "out.pt")
    # tolerance 0: the best grid point replaces the file's own, which scores lower
    assert main(["--model", path, "--out", out, "--tune", "--tolerance", "0"]) == 0
    new = ClusteringPipeline.load(out, device="cpu")
    t = new.meta["tuning"]
    assert t["sets"]["val"]["n_faces"] == len(dm.val_graph) and t["sets"]["val+train"]["n_scored"] == len(dm.val_graph)
    assert new.graph.threshold == t["choice"]["best"]["threshold"] != 0.9 and "kept" not in t["choice"]
    assert new.meta["retuned_from"]["graph"]["threshold"] == 0.9 and new.meta["trained_on"]["val_fraction"] == 0.3
    np.testing.assert_array_equal(new.mean, dm.mean)
    # a tolerance that covers it: the file's own setting stays, and the record says so
    assert main(["--model", path, "--out", out, "--tune", "--tolerance", "1"]) == 0
    kept = ClusteringPipeline.load(out, device="cpu")
    assert (kept.graph.jaccard, kept.graph.threshold) == ("none", 0.9) and kept.meta["tuning"]["choice"]["kept"]
    assert kept.meta["tuning"]["chosen"]["threshold"] == 0.9


def test_export_model_refuses_what_it_cannot_retune(tmp_path, capsys) -> None:
    import pytest

    from facecluster.commands.export import main

    path, _ = _model_file(tmp_path, jaccard="none", threshold=0.5)
    out = str(tmp_path / "out.pt")
    for argv in (["--model", path, "--out", out], ["--model", path, "--out", out, "--tune", "--threshold", "0.3"],
                 ["--model", path, "--ckpt", "x.ckpt", "--out", out, "--tune"]):
        with pytest.raises(SystemExit):
            main(argv)
    pipe = ClusteringPipeline.load(path, device="cpu")
    pipe.mean = pipe.mean + 1e-3  # the data or the split changed since: refused before anything is scored
    pipe.save(str(tmp_path / "shifted.pt"))
    assert main(["--model", str(tmp_path / "shifted.pt"), "--out", out, "--tune"]) == 2
    assert "preprocessing mean differs" in capsys.readouterr().err
    pipe.meta = {}
    pipe.save(str(tmp_path / "bare.pt"))
    assert main(["--model", str(tmp_path / "bare.pt"), "--out", out, "--tune"]) == 2
    assert "records no labelled training files" in capsys.readouterr().err



def test_tuning_summary_reads_both_records(tmp_path) -> None:
    from facecluster.commands.export import grid_value, main, tuning_summary

    path, dm = _model_file(tmp_path, jaccard="none", combine="jaccard", threshold=0.5)
    assert main(["--model", path, "--out", str(tmp_path / "out.pt"), "--tune"]) == 0
    tuning = ClusteringPipeline.load(str(tmp_path / "out.pt"), device="cpu").meta["tuning"]
    t = tuning_summary(tuning)
    assert set(t["sets"]) == {"val", "val+train"} and t["sets"]["val"]["n_faces"] == len(dm.val_graph)
    assert t["score"] == min(s["score"] for s in t["sets"].values()) and t["graph"]["threshold"] == 0.5
    row = tuning["grid"][0]
    assert grid_value(row, "bcubed_f", "val+train") == row["val+train"]["bcubed_f"]
    old = {"n_faces": 50, "best": {"jaccard": "none", "combine": "product", "threshold": 0.45, "pairwise_f": 0.9,
                                   "bcubed_f": 0.8, "score": 0.85}}  # the earlier --tune: validation alone
    assert tuning_summary(old) == {"graph": {"jaccard": "none", "combine": "product", "threshold": 0.45},
                                   "score": 0.85, "sets": {"val": {"pairwise_f": 0.9, "bcubed_f": 0.8, "score": 0.85,
                                                                   "n_faces": 50}}}
    assert grid_value(old["best"], "pairwise_f") == 0.9
