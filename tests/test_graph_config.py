"""One typed definition of the graph settings (issue 11): :class:`GraphConfig` checks itself, and the evaluation
callback, ``export.py`` and the benchmarks' overrides take their options, types and allowed values from it."""
from __future__ import annotations

import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest

from facecluster.clustering.graph_config import COMBINES, JACCARDS, TRANSFORM_NAMES, GraphConfig, graph_fields, parse_graph_value
from facecluster.clustering.refine import combine_edges, jaccard_weights

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("combine", "max", "unknown graph combine 'max'"),
    ("jaccard", "fuzzy", "unknown graph jaccard 'fuzzy'"),
    ("transform", "tanh", "unknown graph transform 'tanh'"),
    ("k", 0, "graph k must be an integer"),
    ("threshold", float("nan"), "graph threshold must be a finite"),
    ("early_stop", "yes", "graph early_stop must be true or false"),
    ("edge_recall", "high", "graph edge_recall must be a finite"),
    ("num_trials", 0, "graph num_trials"),
])
def test_bad_value_raises_where_the_config_is_made(field: str, value, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GraphConfig(**{field: value})
    with pytest.raises(ValueError, match=message):  # replace() builds a new object: checked too
        replace(GraphConfig(), **{field: value})


def test_allowed_values_are_the_literal_types() -> None:
    kinds = graph_fields()
    assert [f.name for f in fields(GraphConfig)] == list(kinds)
    assert kinds["transform"] == (str, TRANSFORM_NAMES) and "cosine" in TRANSFORM_NAMES
    assert kinds["jaccard"] == (str, JACCARDS) and kinds["combine"] == (str, COMBINES)
    assert kinds["edge_recall"] == (float, None) and kinds["early_stop"] == (bool, None)


def test_model_file_dict_still_loads() -> None:
    """A model file stores ``graph`` as a dict (GraphConfig.to_dict); it must rebuild the same object."""
    old = {"k": 80, "transform": "sigmoid", "jaccard": "none", "combine": "product", "threshold": 0.5,
           "early_stop": False, "edge_recall": None, "seed": 0, "num_trials": 1}
    assert GraphConfig(**old).to_dict() == old


def test_unknown_options_raise_in_every_case() -> None:
    p = np.array([[1.0, 0.5]], np.float32)
    with pytest.raises(ValueError, match="unknown combine 'max'"):
        combine_edges(p, None, "max")  # no pair probability: used to return p silently
    nbrs, sims = np.array([[0, 1], [1, 0]]), np.array([[1.0, 0.5], [1.0, 0.5]], np.float32)
    bad = GraphConfig(jaccard="plain")
    object.__setattr__(bad, "transform", "tanh")  # past the constructor's check: the functions check again
    with pytest.raises(ValueError, match="unknown transform 'tanh'"):
        jaccard_weights(nbrs, sims, None, bad)  # "plain" does not use the transform, still refused
    bad = GraphConfig()
    bad.jaccard = "fuzzy"
    with pytest.raises(ValueError, match="unknown jaccard 'fuzzy'"):
        jaccard_weights(nbrs, sims, None, bad)


def test_parse_graph_value() -> None:
    assert parse_graph_value("jaccard", "none") == "none"  # a text field keeps its text
    assert parse_graph_value("edge_recall", "none") is None
    assert parse_graph_value("edge_recall", "0.9") == 0.9 and parse_graph_value("num_trials", "3") == 3
    assert parse_graph_value("early_stop", "True") is True
    with pytest.raises(ValueError, match="unknown graph setting 'alpha'"):
        parse_graph_value("alpha", "1")
    with pytest.raises(ValueError, match="true or false"):
        parse_graph_value("early_stop", "yes")


def test_quality_overrides_are_checked() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from quality import parse_overrides

    assert parse_overrides("jaccard=none,edge_recall=0.9,early_stop=true") == {
        "jaccard": "none", "edge_recall": 0.9, "early_stop": True}
    with pytest.raises(SystemExit, match="unknown graph combine 'max'"):
        parse_overrides("combine=max")
    with pytest.raises(SystemExit, match="unknown graph setting 'alpha'"):
        parse_overrides("alpha=1")


def test_export_parser_exposes_every_graph_field() -> None:
    from facecluster.commands.export import parse_args

    args = parse_args(["--ckpt", "c.ckpt", "--out", "m.pt", "--transform", "cosine", "--jaccard", "plain",
                       "--combine", "mean", "--threshold", "0.3", "--early-stop", "--edge-recall", "0.9",
                       "--seed", "4", "--num-trials", "3"])
    # every field but k (the checkpoint's datamodule K), with the dataclass's defaults
    assert {name: getattr(args, name) for name in graph_fields() if name != "k"} == {
        "transform": "cosine", "jaccard": "plain", "combine": "mean", "threshold": 0.3, "early_stop": True,
        "edge_recall": 0.9, "seed": 4, "num_trials": 3}
    defaults = parse_args(["--ckpt", "c.ckpt", "--out", "m.pt"])
    assert {name: getattr(defaults, name) for name in graph_fields() if name != "k"} == {
        k: v for k, v in GraphConfig().to_dict().items() if k != "k"}
    assert not hasattr(defaults, "k")
    with pytest.raises(SystemExit):  # choices come from the Literal types
        parse_args(["--ckpt", "c.ckpt", "--out", "m.pt", "--combine", "max"])


def test_export_refuses_a_bad_value_before_reading_the_checkpoint(tmp_path: Path) -> None:
    from facecluster.commands.export import main

    with pytest.raises(SystemExit, match="graph num_trials"):
        main(["--ckpt", str(tmp_path / "absent.ckpt"), "--out", str(tmp_path / "m.pt"), "--num-trials", "0"])


def test_callback_takes_a_graph_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the real LightningCLI: a ``graph:`` block in a YAML config, a nested flag on top, ``k`` linked to
    ``data.k``; a value outside the Literal is refused at parse time."""
    from conftest import TINY_DATA, topk_args

    from facecluster.callbacks import ClusteringEvaluation
    from facecluster.commands.train import cli_main

    monkeypatch.setattr(sys, "argv", ["train.py"])
    config = tmp_path / "evaluation.yaml"
    config.write_text("evaluation:\n  graph: {jaccard: none, threshold: 0.5, edge_recall: 0.9}\n")
    cli = cli_main([*TINY_DATA, *topk_args(), f"--config={config}", "--evaluation.graph.combine=mean",
                    "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}"], run=False)
    callback = next(cb for cb in cli.trainer.callbacks if isinstance(cb, ClusteringEvaluation))
    assert callback.graph == GraphConfig(k=10, jaccard="none", combine="mean", threshold=0.5, edge_recall=0.9)
    with pytest.raises(SystemExit):
        cli_main([*TINY_DATA, *topk_args(), "--evaluation.graph.combine=max"], run=False)
    assert ClusteringEvaluation().graph == GraphConfig()  # built in Python: the defaults
