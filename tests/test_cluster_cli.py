"""``cluster.py`` as users run it: a subprocess from the repository root.

Every kind of bad input must end with exit status != 0, exactly one non-empty line on stderr naming the file (no
traceback), and nothing written: no OUT, OUT.json or metrics file, no temporary file left in the output folder.
The success paths check the formats, the metrics keys, the provenance sidecar, byte-identical reruns, collections
smaller than K, and the library call ``ClusteringPipeline.load(path)(features)``.

The subprocesses are started together (two at a time) by module fixtures, so that torch's import cost is paid in
parallel; each test then checks one recorded run.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from facecluster.clustering.graph_config import GraphConfig
from facecluster.clustering.io import InputError
from facecluster.clustering.model_file import MODEL_FORMAT
from facecluster.clustering.pipeline import ClusteringPipeline
from facecluster.clustering.preprocess import fit_mean
from facecluster.clustering.pretrained import default_model_path
from facecluster.clustering.synthetic import make_synthetic
from facecluster.models import SDT, SDTConfig, TopKConfig, TopKPredictor

ROOT = Path(__file__).resolve().parents[1]
K, D = 10, 32
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def make_model(path: Path, feats: np.ndarray, graph: GraphConfig | None = None, nets: bool = True) -> Path:
    """A tiny model file: the features' mean, K = 10, untrained 1-layer networks (or none)."""
    torch.manual_seed(0)
    d = feats.shape[1]
    kw = dict(feat_dim=d, k=K, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32)
    ClusteringPipeline(fit_mean(feats), graph or GraphConfig(k=K), TopKPredictor(TopKConfig(**kw)) if nets else None,
                       SDT(SDTConfig(**kw)) if nets else None).save(str(path))
    return path


@dataclass
class Run:
    rc: int | None  # None: killed after the time limit (it hung)
    stdout: str
    stderr: str
    out_dir: Path
    seconds: float


def run_cli(args: list, out_dir: Path, *, prefix: list[str] | None = None, limit_s: float = 120,
            preexec_fn=None) -> Run:
    """``prefix`` (default ``python cluster.py``) + ``args``, from the repository root, killed after ``limit_s``;
    ``preexec_fn`` runs in the child first (``test_hostile_input.py`` caps its memory)."""
    argv = (prefix or [sys.executable, "cluster.py"]) + [str(a) for a in args]
    t = time.perf_counter()
    try:
        p = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=limit_s,
                           preexec_fn=preexec_fn)
        return Run(p.returncode, p.stdout, p.stderr, out_dir, time.perf_counter() - t)
    except subprocess.TimeoutExpired as exc:
        return Run(None, str(exc.stdout or ""), str(exc.stderr or ""), out_dir, time.perf_counter() - t)


def run_all(cases: dict[str, list], base: Path, **kwargs) -> dict[str, Run]:
    """Run every case in its own empty output folder ``base/<name>`` (``{out}`` in an argument is that folder),
    two at a time; ``kwargs`` go to :func:`run_cli`."""
    dirs = {}
    for name in cases:
        dirs[name] = base / name
        dirs[name].mkdir(exist_ok=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run_cli, [str(a).format(out=dirs[name]) for a in args], dirs[name], **kwargs)
                   for name, args in cases.items()}
        return {name: f.result() for name, f in futures.items()}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Inputs, good and bad, in one folder (outputs go elsewhere, so that stray files would be seen)."""
    d = tmp_path_factory.mktemp("inputs")
    x, y = make_synthetic(n_identities=40, dim=D, seed=0)
    model = make_model(d / "model.pt", x)
    np.save(d / "x.npy", x)
    np.savez(d / "x.npz", features=x)
    x.astype("<f4").tofile(d / "x.bin")
    np.save(d / "y.npy", y)
    (d / "y.txt").write_text("".join(f"{v}\n" for v in y))
    (d / "y.meta").write_text("".join(f"{v}\n" for v in y))
    (d / "y_short.meta").write_text("".join(f"{v}\n" for v in y[:-3]))
    (d / "y_text.meta").write_text("alice\nbob\n")
    for n in (1, 2, 5):
        np.save(d / f"x{n}.npy", x[:n])
    # bad features
    bad = x.copy()
    bad[7, 3] = np.nan
    np.save(d / "nan.npy", bad)
    bad = x.copy()
    bad[[4, 9], 0] = np.inf
    np.save(d / "inf.npy", bad)
    bad = x.copy()
    bad[[2, 5]] = 0
    np.save(d / "zero.npy", bad)
    bad = x.copy()
    bad[11] *= 1e30                                                 # finite, but its norm overflows float32
    np.save(d / "huge.npy", bad)
    (d / "empty.bin").write_bytes(b"")
    np.save(d / "empty.npy", np.zeros((0, D), np.float32))
    (d / "odd.bin").write_bytes(x[:10].astype("<f4").tobytes() + b"\x00\x01\x02")
    x[:64].astype("<f4").tofile(d / "x64.bin")                     # 64 x 32 = 128 x 16 floats
    np.save(d / "d16.npy", x[:, :16])
    (d / "garbage.npy").write_bytes(os.urandom(500))
    (d / "x.csv").write_text("1,2,3\n")
    # bad models
    raw = model.read_bytes()
    (d / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    (d / "random.pt").write_bytes(os.urandom(4096))
    torch.save({"mean": torch.zeros(D), "graph": {"k": K}}, d / "dict.pt")
    state = torch.load(model, weights_only=True)
    state["version"] = 999
    torch.save(state, d / "version.pt")
    state = torch.load(model, weights_only=True)
    state["topk"]["config"]["d_model"] = 24                       # weights that do not fit the networks
    torch.save(state, d / "mismatch.pt")
    # incremental inputs: the first 400 faces clustered, the rest new
    np.save(d / "prev.npy", x[:400])
    np.save(d / "new.npy", x[400:])
    np.save(d / "prev_y.npy", y[:400])
    np.save(d / "new_y.npy", y[400:])
    (d / "prev.out").write_text("".join(f"{i % 7}\n" for i in range(400)))
    (d / "prev_short.out").write_text("".join(f"{i % 7}\n" for i in range(399)))
    (d / "prev_text.out").write_text("0\n1\nx\n")
    np.save(d / "prev_d16.npy", x[:400, :16])
    bad = x[:400].copy()
    bad[3, 1] = np.nan
    np.save(d / "prev_nan.npy", bad)
    return {"dir": d, "x": x, "y": y, "model": model}


# ------------------------------------------------------------------------------------------------ bad input

def _error_cases(d: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments, a substring the message must hold besides the file name). ``{out}``: the output folder.
    The file the message must name is the first path in the expected substring's case (see ``NAMES``)."""
    m = ["--model", d / "model.pt"]
    o = ["--out", "{out}/clusters.txt"]
    prev = ["--assign-to", d / "prev.out", "--previous-features", d / "prev.npy"]
    return {
        "missing_features": ([*m, "--features", d / "nope.npy", *o], "does not exist"),
        "bin_size_not_multiple_of_dim": ([*m, "--features", d / "odd.bin", "--dim", D, *o], "not a multiple"),
        "bin_without_dim": ([*m, "--features", d / "x.bin", *o], "--dim"),
        "dim_differs_from_model": ([*m, "--features", d / "x64.bin", "--dim", 16, *o], "differs"),
        "npy_dim_differs_from_model": ([*m, "--features", d / "d16.npy", *o], "dimension 16"),
        "nan_values": ([*m, "--features", d / "nan.npy", *o], "NaN"),
        "inf_values": ([*m, "--features", d / "inf.npy", *o], "inf"),
        "all_zero_rows": ([*m, "--features", d / "zero.npy", *o], "all-zero"),
        "values_too_large": ([*m, "--features", d / "huge.npy", *o], "too large"),
        "empty_bin": ([*m, "--features", d / "empty.bin", "--dim", D, *o], "empty"),
        "empty_npy": ([*m, "--features", d / "empty.npy", *o], "empty"),
        "garbage_npy": ([*m, "--features", d / "garbage.npy", *o], "cannot read"),
        "unknown_feature_format": ([*m, "--features", d / "x.csv", *o], "unknown feature format"),
        "labels_wrong_length": ([*m, "--features", d / "x.npy", "--labels", d / "y_short.meta", *o], "labels for"),
        "labels_not_integers": ([*m, "--features", d / "x.npy", "--labels", d / "y_text.meta", *o], "labels"),
        "missing_labels": ([*m, "--features", d / "x.npy", "--labels", d / "nope.meta", *o], "does not exist"),
        "model_missing": (["--model", d / "nope.pt", "--features", d / "x.npy", *o], "does not exist"),
        "model_truncated": (["--model", d / "truncated.pt", "--features", d / "x.npy", *o], "model file"),
        "model_is_npy": (["--model", d / "x.npy", "--features", d / "x.npy", *o], "model file"),
        "model_random_bytes": (["--model", d / "random.pt", "--features", d / "x.npy", *o], "model file"),
        "model_dict_without_format": (["--model", d / "dict.pt", "--features", d / "x.npy", *o], MODEL_FORMAT),
        "model_other_version": (["--model", d / "version.pt", "--features", d / "x.npy", *o], "version 999"),
        "model_weights_mismatch": (["--model", d / "mismatch.pt", "--features", d / "x.npy", *o], "does not match"),
        "out_folder_missing": ([*m, "--features", d / "x.npy", "--out", "{out}/no/such/dir/c.txt"],
                               "does not exist"),
        "out_is_a_directory": ([*m, "--features", d / "x.npy", "--out", "{out}/sub"], "is a directory"),
        "out_is_the_input": ([*m, "--features", d / "x.npy", "--out", d / "x.npy"], "input"),
        "metrics_without_labels": ([*m, "--features", d / "x.npy", *o, "--metrics-json", "{out}/m.json"],
                                   "needs --labels"),
        "negative_seed": ([*m, "--features", d / "x.npy", *o, "--seed", -1], "--seed"),
        # no --model: the shipped model takes 128-d faces only, and is never an output
        "no_model_other_width": (["--features", d / "x.npy", *o], "make model"),
        "out_is_the_shipped_model": (["--features", d / "x.npy", "--out", default_model_path()], "input"),
        # incremental
        "assign_without_previous_features": ([*m, "--features", d / "new.npy", "--assign-to", d / "prev.out", *o],
                                             "--previous-features"),
        "previous_features_without_assign": ([*m, "--features", d / "new.npy", "--previous-features",
                                              d / "prev.npy", *o], "--assign-to"),
        "previous_out_missing": ([*m, "--features", d / "new.npy", "--assign-to", d / "nope.out",
                                  "--previous-features", d / "prev.npy", *o], "does not exist"),
        "previous_out_wrong_length": ([*m, "--features", d / "new.npy", "--assign-to", d / "prev_short.out",
                                       "--previous-features", d / "prev.npy", *o], "399 cluster ids for 400"),
        "previous_out_not_integers": ([*m, "--features", d / "new.npy", "--assign-to", d / "prev_text.out",
                                       "--previous-features", d / "prev.npy", *o], "integer"),
        "previous_features_other_dim": ([*m, "--features", d / "new.npy", "--assign-to", d / "prev.out",
                                         "--previous-features", d / "prev_d16.npy", *o], "dimension 16"),
        "previous_features_nan": ([*m, "--features", d / "new.npy", "--assign-to", d / "prev.out",
                                   "--previous-features", d / "prev_nan.npy", *o], "NaN"),
        "previous_metrics_without_previous_labels": ([*m, "--features", d / "new.npy", *prev, "--labels",
                                                      d / "new_y.npy", *o, "--metrics-json", "{out}/m.json"],
                                                     "--previous-labels"),
        "previous_labels_wrong_length": ([*m, "--features", d / "new.npy", *prev, "--labels", d / "new_y.npy",
                                          "--previous-labels", d / "y.npy", *o], "labels for 400"),
    }


# the file each message must name (default: the --features argument)
NAMES = {"labels_wrong_length": "y_short.meta", "labels_not_integers": "y_text.meta",
         "missing_labels": "nope.meta", "model_missing": "nope.pt", "model_truncated": "truncated.pt",
         "model_is_npy": "x.npy", "model_random_bytes": "random.pt", "model_dict_without_format": "dict.pt",
         "model_other_version": "version.pt", "model_weights_mismatch": "mismatch.pt",
         "out_folder_missing": "c.txt", "out_is_a_directory": "sub", "out_is_the_input": "x.npy",
         "metrics_without_labels": "m.json", "negative_seed": None, "out_is_the_shipped_model": "dlib128.pt",
         "assign_without_previous_features": "prev.out", "previous_features_without_assign": "prev.npy",
         "previous_out_missing": "nope.out", "previous_out_wrong_length": "prev_short.out",
         "previous_out_not_integers": "prev_text.out", "previous_features_other_dim": "prev_d16.npy",
         "previous_features_nan": "prev_nan.npy", "previous_metrics_without_previous_labels": "m.json",
         "previous_labels_wrong_length": "y.npy"}


@pytest.fixture(scope="module")
def error_runs(data: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp("errors")
    cases = _error_cases(data["dir"])
    (base / "out_is_a_directory").mkdir()
    (base / "out_is_a_directory" / "sub").mkdir()
    digest = hashlib.sha256((data["dir"] / "x.npy").read_bytes()).hexdigest()
    runs = run_all({name: args for name, (args, _) in cases.items()}, base)
    assert hashlib.sha256((data["dir"] / "x.npy").read_bytes()).hexdigest() == digest, "an input was overwritten"
    return runs


@pytest.mark.parametrize("case", list(_error_cases(Path("/"))))
def test_bad_input_one_line_error_and_no_output(case: str, data: dict, error_runs: dict[str, Run]) -> None:
    run = error_runs[case]
    _, expect = _error_cases(data["dir"])[case]
    assert run.rc != 0, f"{case}: exit status 0\n{run.stdout}"
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"{case}: stderr is not one line: {run.stderr!r}"
    msg = lines[0]
    assert msg.startswith("error: ") and expect in msg, f"{case}: {msg!r} lacks {expect!r}"
    name = NAMES.get(case, "default")
    if name == "default":
        args = _error_cases(data["dir"])[case][0]
        name = Path(str(args[args.index("--features") + 1])).name
    if name:
        assert name in msg, f"{case}: {msg!r} does not name {name}"
    left = sorted(p.name for p in run.out_dir.iterdir())
    assert left == (["sub"] if case == "out_is_a_directory" else []), f"{case}: files left behind: {left}"


def test_argparse_errors_exit_nonzero(tmp_path: Path) -> None:
    """A missing required flag is argparse's (usage + message, status 2): still no traceback, no output."""
    run = run_cli(["--model", "m.pt", "--features", "x.npy"], tmp_path)
    assert run.rc == 2 and "Traceback" not in run.stderr and "--out" in run.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not default_model_path().is_file(),
                    reason=f"the shipped model {default_model_path()} is absent (make pretrained writes it)")
def test_no_model_uses_the_shipped_model_for_128d_faces(tmp_path: Path) -> None:
    """Without --model, 128-d faces are clustered by the shipped model, exactly as with --model naming it, and one
    line on stderr says so."""
    x, _ = make_synthetic(n_identities=30, dim=128, seed=3)
    np.save(tmp_path / "x128.npy", x)
    runs = run_all({"default": ["--features", tmp_path / "x128.npy", "--out", "{out}/c.txt"],
                    "explicit": ["--model", default_model_path(), "--features", tmp_path / "x128.npy", "--out",
                                 "{out}/c.txt"]}, tmp_path)
    for name, run in runs.items():
        assert run.rc == 0, f"{name}: {run.stderr}"
    lines = runs["default"].stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("note: no --model given: using the shipped model"), lines
    assert str(default_model_path()) in lines[0] and runs["explicit"].stderr == ""
    assert (tmp_path / "default" / "c.txt").read_bytes() == (tmp_path / "explicit" / "c.txt").read_bytes()
    side = json.loads((tmp_path / "default" / "c.txt.json").read_text())
    assert side["model_sha256"] == hashlib.sha256(default_model_path().read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------ success paths

def _success_cases(d: Path) -> dict[str, list[str]]:
    m = ["--model", d / "model.pt"]
    return {
        "npy": [*m, "--features", d / "x.npy", "--labels", d / "y.npy", "--out", "{out}/c.txt",
                "--metrics-json", "{out}/metrics.json"],
        "npy_again": [*m, "--features", d / "x.npy", "--labels", d / "y.npy", "--out", "{out}/c.txt",
                      "--metrics-json", "{out}/metrics.json"],
        "npz_txt": [*m, "--features", d / "x.npz", "--labels", d / "y.txt", "--out", "{out}/c.txt"],
        "bin_meta": [*m, "--features", d / "x.bin", "--dim", D, "--labels", d / "y.meta", "--out", "{out}/c.txt",
                     "--metrics-json", "{out}/metrics.json"],
        "seed": [*m, "--features", d / "x.npy", "--out", "{out}/c.txt", "--seed", 7],
        "n1": [*m, "--features", d / "x1.npy", "--out", "{out}/c.txt"],
        "n2": [*m, "--features", d / "x2.npy", "--out", "{out}/c.txt"],
    }


@pytest.fixture(scope="module")
def ok_runs(data: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    runs = run_all(_success_cases(data["dir"]), tmp_path_factory.mktemp("ok"))
    for name, run in runs.items():
        assert run.rc == 0, f"{name}: {run.stderr}"
    return runs


def _ids(path: Path, n: int) -> np.ndarray:
    lines = path.read_text().splitlines()
    assert len(lines) == n and all(line.strip().lstrip("-").isdigit() for line in lines)
    return np.array([int(v) for v in lines])


@pytest.mark.parametrize("case", ["npy", "npz_txt", "bin_meta", "seed"])
def test_formats_write_one_id_per_face(case: str, data: dict, ok_runs: dict[str, Run]) -> None:
    run = ok_runs[case]
    ids = _ids(run.out_dir / "c.txt", len(data["x"]))
    assert ids.min() >= 0
    assert f"{len(data['x'])} faces ->" in run.stdout
    left = sorted(p.name for p in run.out_dir.iterdir())
    assert not [f for f in left if f.startswith(".")], f"temporary files left: {left}"


def test_all_formats_agree(ok_runs: dict[str, Run]) -> None:
    """.npy, .npz and .bin hold the same faces: the same clustering."""
    texts = {c: (ok_runs[c].out_dir / "c.txt").read_bytes() for c in ("npy", "npz_txt", "bin_meta")}
    assert len(set(texts.values())) == 1


def test_metrics_json_keys(data: dict, ok_runs: dict[str, Run]) -> None:
    for case in ("npy", "bin_meta"):
        m = json.loads((ok_runs[case].out_dir / "metrics.json").read_text())
        assert set(m["pairwise"]) == {"precision", "recall", "f"} and set(m["bcubed"]) == {"precision", "recall", "f"}
        for v in [*m["pairwise"].values(), *m["bcubed"].values(), m["nmi"]]:
            assert 0.0 <= v <= 1.0
        assert m["n_faces"] == len(data["x"])
        assert m["n_clusters"] == len(np.unique(_ids(ok_runs[case].out_dir / "c.txt", len(data["x"]))))
        assert {"load", "knn", "topk", "sdt", "jaccard", "infomap", "total"} <= set(m["seconds"])
        assert all(isinstance(s, float) and s >= 0 for s in m["seconds"].values())
    assert not (ok_runs["npz_txt"].out_dir / "metrics.json").exists()


def test_same_input_same_bytes(ok_runs: dict[str, Run]) -> None:
    """Reproducible: two runs with the same input, model and seed write byte-identical clusterings."""
    a = (ok_runs["npy"].out_dir / "c.txt").read_bytes()
    b = (ok_runs["npy_again"].out_dir / "c.txt").read_bytes()
    assert a == b


def test_sidecar_records_provenance(data: dict, ok_runs: dict[str, Run]) -> None:
    side = json.loads((ok_runs["npy"].out_dir / "c.txt.json").read_text())
    assert side["model_sha256"] == hashlib.sha256(data["model"].read_bytes()).hexdigest()
    assert {"torch", "faiss", "infomap", "numpy", "python"} <= set(side["versions"])
    assert side["graph"]["k"] == K and side["k"] == K and side["n_faces"] == len(data["x"])
    assert side["seed"] == 0 and side["graph"]["seed"] == 0
    assert "cluster.py" in side["command"][0] and "--features" in side["command"]
    seeded = json.loads((ok_runs["seed"].out_dir / "c.txt.json").read_text())
    assert seeded["seed"] == 7 and seeded["graph"]["seed"] == 7


@pytest.mark.parametrize("n", [1, 2])
def test_fewer_faces_than_k(n: int, ok_runs: dict[str, Run]) -> None:
    run = ok_runs[f"n{n}"]
    ids = _ids(run.out_dir / "c.txt", n)
    assert ids.min() == 0
    assert f"K = {n} neighbours" in run.stderr and "Traceback" not in run.stderr
    assert json.loads((run.out_dir / "c.txt.json").read_text())["k"] == n


# ------------------------------------------------------------------------------------------------ library use

def test_library_three_lines(data: dict, ok_runs: dict[str, Run]) -> None:
    pipe = ClusteringPipeline.load(str(data["model"]))
    labels = pipe(data["x"])
    assert labels.shape == (len(data["x"]),) and labels.dtype == np.int64
    np.testing.assert_array_equal(labels, pipe(data["x"]))
    # the command writes the same ids, in input order
    np.testing.assert_array_equal(labels, _ids(ok_runs["npy"].out_dir / "c.txt", len(data["x"])))
    for n in (1, 2, 5):  # fewer faces than K
        small = pipe(data["x"][:n])
        assert small.shape == (n,) and small.min() == 0
    with pytest.raises(InputError, match="NaN"):
        bad = data["x"][:20].copy()
        bad[3, 0] = np.nan
        pipe(bad)
    with pytest.raises(InputError, match="dimension"):
        pipe(data["x"][:, :16])
    with pytest.raises(InputError, match="empty"):
        pipe(np.zeros((0, D), np.float32))
