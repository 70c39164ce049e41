"""Hostile input (issue 9): special files, doctored model files, mislabelled or bomb-like features, sloppy labels,
bad output paths, a mismatched ``--assign-to``, exact duplicates, Ctrl-C during start-up, ``--device cuda`` on a
CPU machine. Each refused case exits with status 2, one line on stderr (no traceback), nothing left in the output
folder, within seconds; a few cases are now accepted and must give the right result.

The subprocesses run two at a time (as in ``test_cluster_cli.py``) under a 6 GiB address-space limit, so that a
regression to reading ``/dev/zero`` without end fails the test instead of the machine.
"""
from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from facecluster.clustering.graph_config import GraphConfig
from facecluster.clustering.io import InputError, load_features, load_labels
from facecluster.clustering.pipeline import ClusteringPipeline
from facecluster.clustering.preprocess import fit_mean
from facecluster.clustering.synthetic import make_synthetic
from test_cluster_cli import D, ENV, K, Run, make_model, run_all, run_cli

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 60  # per run; every refused case takes a few seconds at most


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


def _run(args: list, out_dir: Path) -> Run:
    """``cluster.py args`` under the memory cap, killed after ``LIMIT_S`` (``rc`` None: it hung)."""
    return run_cli(args, out_dir, limit_s=LIMIT_S, preexec_fn=_limit_memory)


def _run_all(cases: dict[str, list], base: Path) -> dict[str, Run]:
    return run_all(cases, base, limit_s=LIMIT_S, preexec_fn=_limit_memory)


# doctored model files: edit of the state -> a substring of the message
BAD_MODELS = {
    "graph_k0": (lambda s: s["graph"].update(k=0), "graph k must be an integer in 1..1024, got 0"),
    "graph_k_float": (lambda s: s["graph"].update(k=10.5), "graph k"),
    "transform": (lambda s: s["graph"].update(transform="tanh"), "unknown graph transform 'tanh'"),
    "jaccard": (lambda s: s["graph"].update(jaccard="fuzzy"), "unknown graph jaccard 'fuzzy'"),
    "combine": (lambda s: s["graph"].update(combine="max"), "unknown graph combine 'max'"),
    "nan_threshold": (lambda s: s["graph"].update(threshold=float("nan")), "graph threshold must be a finite"),
    "seed": (lambda s: s["graph"].update(seed=-1), "graph seed"),
    "trials": (lambda s: s["graph"].update(num_trials=10**9), "graph num_trials"),
    "graph_unknown": (lambda s: s["graph"].update(alpha=1), "unknown graph setting(s) 'alpha'"),
    "knn_method": (lambda s: s.update(knn={"method": "annoy"}), "unknown kNN method 'annoy'"),
    "knn_nprobe": (lambda s: s.update(knn={"nprobe": 0}), "kNN option nprobe"),
    "knn_device": (lambda s: s.update(knn={"device": "cuda"}), "unknown kNN option 'device'"),
    "nan_mean": (lambda s: s["mean"].__setitem__(3, float("nan")), "mean has NaN"),
    "mean_2d": (lambda s: s.update(mean=s["mean"][None]), "mean must be a non-empty 1-D"),
    "mean_norm": (lambda s: s.update(mean=s["mean"] * 100), "mean has norm"),
    "nan_weights": (lambda s: next(iter(s["sdt"]["state_dict"].values())).fill_(float("nan")),
                    "sdt network weights have NaN"),
    "swapped_networks": (lambda s: s.update(topk=s["sdt"]), "topk network is a 'SDT'"),
    "net_feat_dim": (lambda s: s["topk"]["config"].update(feat_dim=D + 1), "features of dimension"),
    # a network's config is checked by building its dataclass: the slot and the field are named
    "net_unknown_field": (lambda s: s["sdt"]["config"].update(heads=2),
                          "sdt network config: unknown SDTConfig field(s) 'heads'"),
    "net_missing_field": (lambda s: s["topk"]["config"].pop("feat_dim"),
                          "topk network config: TopKConfig field(s) 'feat_dim' missing"),
    "net_bad_value": (lambda s: s["sdt"]["config"].update(d_model=0),
                      "sdt network config: SDTConfig.d_model must be a positive integer, got 0"),
    "net_bad_head": (lambda s: s["topk"]["config"].update(head="ordinal"),
                     "topk network config: TopKConfig.head must be one of 'classification', 'regression', got"),
    "net_window": (lambda s: s["sdt"]["config"].update(window=0), "SDTConfig.window must be a positive integer"),
    "net_k_text": (lambda s: s["sdt"]["config"].update(k="10"), "SDTConfig.k must be a positive integer, got '10'"),
    "net_config_list": (lambda s: s["sdt"].update(config=[1]), "sdt network config and state_dict must be dicts"),
    "net_k": (lambda s: s["graph"].update(k=K + 5), "handles k = 10 neighbours, the graph asks for 15"),
    "extra_field": (lambda s: s.update(hook="x"), "unknown field(s) 'hook'"),
}


def _bad_model(model: Path, path: Path, edit) -> Path:
    state = torch.load(model, weights_only=True)
    edit(state)
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("hostile")
    x, y = make_synthetic(n_identities=40, dim=D, seed=0)
    model = make_model(d / "model.pt", x)
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    # special files
    os.mkfifo(d / "model.fifo")
    os.mkfifo(d / "labels.fifo")
    os.symlink("/dev/zero", d / "zero.meta")
    # mislabelled or bomb-like features
    with open(d / "npz_named.npy", "wb") as fh:  # (np.savez would append .npz to the name)
        np.savez(fh, features=x)
    (d / "text.npy").write_text("0.1 0.2 0.3\n")
    with open(d / "sparse.bin", "wb") as fh:  # a real start, then a hole: a preallocated, half-written download
        fh.write(x[:100].astype("<f4").tobytes())
        fh.truncate(8 << 30)
    # labels
    lines = [f"{v}\n" for v in y]
    (d / "y_bom.meta").write_text("\ufeff" + "".join(lines), encoding="utf-8")
    (d / "y_half.meta").write_text("".join(lines[:2]) + "215.5\n" + "".join(lines[3:]))
    np.save(d / "y_str.npy", y.astype(str))
    (d / "y_latin1.meta").write_bytes("".join(lines[:-1]).encode() + "caf\xe9\n".encode("latin-1"))
    # two labels on line 11, line 31 dropped: the count matches, every label after line 11 is shifted
    (d / "y_two_on_a_line.txt").write_text("".join(lines[:10] + [f"{y[10]} {y[50]}\n"] + lines[11:30] + lines[31:]))
    half = len(y) // 2
    np.save(d / "y_2d.npy", np.stack([y[:half], y[half:2 * half]], axis=1))  # (N/2, 2): flattened, N labels
    np.save(d / "y_float.npy", np.where(np.arange(len(y)) == 7, 3.5, y))
    np.save(d / "y_2p63.npy", np.where(np.arange(len(y)) == 5, 2.0**63, y))  # would wrap to -2**63
    wide = x.astype(np.float64)
    wide[9] *= 1e30  # finite in float32, but its squared norm overflows
    wide[12] *= 1e300  # beyond float32 altogether
    np.save(d / "overflow.npy", wide)
    _bad_model(model, d / "nan_mean.pt", BAD_MODELS["nan_mean"][0])
    # --assign-to: a previous run on the first 400 faces (OUT.json records their fingerprint)
    np.save(d / "prev.npy", x[:400])
    np.save(d / "prev_reordered.npy", x[:400][::-1])
    np.save(d / "new.npy", x[400:])
    np.save(d / "new_y.npy", y[400:])
    np.save(d / "prev_y.npy", y[:400])
    (d / "run").mkdir()
    first = _run(["--model", model, "--features", d / "prev.npy", "--out", d / "run" / "prev.txt"], d)
    assert first.rc == 0, first.stderr
    other = make_model(d / "other.pt", x * 2.0 + 1.0)
    (d / "huge_ids.out").write_text("".join(f"{2**63 - 1 - i % 2}\n" for i in range(400)))
    (d / "beyond_int64.out").write_text("".join(f"{2**64 + i}\n" for i in range(400)))
    return {"dir": d, "x": x, "y": y, "model": model, "other": other}


def _error_cases(d: Path) -> dict[str, tuple[list, str, str | None]]:
    """name -> (arguments, a substring of the message, the file name it must hold or None)."""
    m = ["--model", d / "model.pt"]
    f = ["--features", d / "x.npy"]
    o = ["--out", "{out}/c.txt"]
    prev = ["--assign-to", d / "run" / "prev.txt", "--previous-features", d / "prev.npy", "--features", d / "new.npy"]
    return {
        # special files: refused at once (no hang, no endless read, no device replaced)
        "out_fifo": ([*m, *f, "--out", "{out}/fifo"], "FIFO", "fifo"),
        "out_char_device": ([*m, *f, "--out", "{out}/null"], "character device", "null"),
        "model_fifo": (["--model", d / "model.fifo", *f, *o], "not a regular file", "model.fifo"),
        "labels_fifo": ([*m, *f, "--labels", d / "labels.fifo", *o], "not a regular file", "labels.fifo"),
        "labels_dev_zero": ([*m, *f, "--labels", d / "zero.meta", *o], "character device", "zero.meta"),
        # model files, field by field
        # (every other field: test_model_fields_validated_at_load, in-process)
        "model_nan_mean": (["--model", d / "nan_mean.pt", *f, *o], "mean has NaN", "nan_mean.pt"),
        "device_cuda_without_cuda": ([*m, *f, *o, "--device", "cuda"], "no CUDA device", None),
        # features
        "npz_named_npy": ([*m, "--features", d / "npz_named.npy", *o], "zip archive", "npz_named.npy"),
        "text_named_npy": ([*m, "--features", d / "text.npy", *o], "no .npy header", "text.npy"),
        "sparse_bin": ([*m, "--features", d / "sparse.bin", "--dim", D, *o], "all-zero rows", "sparse.bin"),
        # labels
        "labels_decimal": ([*m, *f, "--labels", d / "y_half.meta", *o], "line 3: '215.5' is not an integer",
                           "y_half.meta"),
        "labels_strings_npy": ([*m, *f, "--labels", d / "y_str.npy", *o], "dtype <U", "y_str.npy"),
        "labels_not_utf8": ([*m, *f, "--labels", d / "y_latin1.meta", *o], "not a UTF-8 text file",
                            "y_latin1.meta"),
        # labels shifted or mangled without a count mismatch (issue 18)
        "labels_two_on_a_line": ([*m, *f, "--labels", d / "y_two_on_a_line.txt", *o],
                                 "line 11: 2 values ", "y_two_on_a_line.txt"),
        "labels_2d_npy": ([*m, *f, "--labels", d / "y_2d.npy", *o], "expected a 1-D array", "y_2d.npy"),
        "labels_float_npy": ([*m, *f, "--labels", d / "y_float.npy", *o], "row 7: 3.5 is not an integer",
                             "y_float.npy"),
        "labels_2p63": ([*m, *f, "--labels", d / "y_2p63.npy", *o], "row 5: ", "y_2p63.npy"),
        "features_overflow": ([*m, "--features", d / "overflow.npy", *o], "rescale", "overflow.npy"),
        # usage errors: one line with a hint, like every other error
        "usage_not_an_int": ([*m, *f, *o, "--dim", "abc"], "argument --dim: invalid int value: 'abc' (", None),
        "usage_no_arguments": ([], "the following arguments are required: --features, --out (", None),
        "usage_value_starting_with_dash": ([*m, "--features", "-f.npy", *o], "--features=-f.npy or ./-f.npy", None),
        # output paths: checked before any work
        "out_empty": ([*m, *f, "--out", ""], "--out: empty path", None),
        "labels_empty": ([*m, *f, "--labels", "", *o], "--labels: empty path", None),
        "out_unwritable_folder": ([*m, *f, "--out", "/proc/c.txt"], "cannot create a file in /proc", "c.txt"),
        "out_name_too_long": ([*m, *f, "--out", "{out}/" + "c" * 300], "longer than", "c" * 300),
        # --assign-to
        "previous_reordered": ([*m, *prev[:2], "--previous-features", d / "prev_reordered.npy", *prev[4:], *o],
                               "fingerprint differs", "prev_reordered.npy"),
        "previous_other_model": (["--model", d / "other.pt", *prev, *o], "another model", "prev.txt"),
        "previous_huge_ids": ([*m, "--assign-to", d / "huge_ids.out", *prev[2:], *o], "no room", "huge_ids.out"),
        "previous_ids_beyond_int64": ([*m, "--assign-to", d / "beyond_int64.out", *prev[2:], *o], "64 bits",
                                      "beyond_int64.out"),
        "labels_without_previous_labels": ([*m, *prev, "--labels", d / "new_y.npy", *o], "--previous-labels",
                                           "new_y.npy"),
    }


@pytest.fixture(scope="module")
def error_runs(data: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp("hostile_errors")
    cases = {name: args for name, (args, _, _) in _error_cases(data["dir"]).items()}
    (base / "out_fifo").mkdir()
    os.mkfifo(base / "out_fifo" / "fifo")
    if os.geteuid() == 0:  # a /dev/null twin: only root may create device nodes
        (base / "out_char_device").mkdir()
        os.mknod(base / "out_char_device" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    else:
        del cases["out_char_device"]
    if not os.path.isdir("/proc"):
        del cases["out_unwritable_folder"]
    if torch.cuda.is_available():
        del cases["device_cuda_without_cuda"]
    return _run_all({**cases, **_ok_cases(data["dir"])}, base)


@pytest.mark.parametrize("case", list(_error_cases(Path("/"))))
def test_refused_at_once_one_line_nothing_written(case: str, data: dict, error_runs: dict[str, Run]) -> None:
    if case not in error_runs:
        pytest.skip({"out_char_device": "needs root (mknod)", "out_unwritable_folder": "needs /proc"}.get(
            case, "this machine has a CUDA device"))
    run = error_runs[case]
    _, expect, name = _error_cases(data["dir"])[case]
    if case == "device_cuda_without_cuda":  # the model file is fine: it must not be blamed
        assert "model file" not in run.stderr, run.stderr
    assert run.rc is not None, f"{case}: still running after {LIMIT_S} s (hangs)"
    assert run.rc == 2 and "Traceback" not in run.stderr, f"{case}: exit {run.rc}: {run.stderr[-2000:]}"
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{case}: {run.stderr!r}"
    assert expect in lines[0] and (name is None or name in lines[0]), f"{case}: {lines[0]!r}"
    assert ".tmp" not in lines[0] and "\ufeff" not in lines[0] and "allow_pickle" not in lines[0], lines[0]
    assert run.seconds < 30, f"{case}: {run.seconds:.0f} s before the error"
    left = {p.name: p.lstat().st_mode for p in run.out_dir.iterdir()}
    special = {"out_fifo": ("fifo", stat.S_ISFIFO), "out_char_device": ("null", stat.S_ISCHR)}
    if case in special:  # still there, and still what it was
        name, is_kind = special[case]
        assert set(left) == {name} and is_kind(left[name]), left
    else:
        assert not left, f"{case}: files left behind: {sorted(left)}"


# ------------------------------------------------------------------------------------------------ now accepted


def _ok_cases(d: Path) -> dict[str, list]:
    """Cases run with the error cases (in the same batch): ``{out}`` is their own output folder."""
    return {
        # a UTF-8 byte-order mark is skipped; an output name of 250 bytes gets a temporary name that fits
        "ok_bom_long_name": ["--model", d / "model.pt", "--features", d / "x.npy", "--labels", d / "y_bom.meta",
                             "--out", "{out}/" + "c" * 250, "--metrics-json", "{out}/m.json"],
        "ok_assign_to": ["--model", d / "model.pt", "--assign-to", d / "run" / "prev.txt", "--previous-features",
                         d / "prev.npy", "--features", d / "new.npy", "--labels", d / "new_y.npy",
                         "--previous-labels", d / "prev_y.npy", "--out", "{out}/all.txt"],
    }


def test_bom_labels_and_long_output_name_accepted(data: dict, error_runs: dict[str, Run]) -> None:
    run = error_runs["ok_bom_long_name"]
    assert run.rc == 0, run.stderr
    assert len((run.out_dir / ("c" * 250)).read_text().splitlines()) == len(data["x"])
    assert (run.out_dir / "m.json").exists() and not [p for p in os.listdir(run.out_dir) if p.startswith(".")]
    np.testing.assert_array_equal(load_labels(data["dir"] / "y_bom.meta"), data["y"])


def test_assign_to_checks_pass_for_the_right_faces_and_model(data: dict, error_runs: dict[str, Run],
                                                             tmp_path: Path) -> None:
    """The fingerprint in OUT.json covers all of OUT's faces: the result of an addition is a valid PREVIOUS_OUT."""
    run = error_runs["ok_assign_to"]
    assert run.rc == 0 and "note" not in run.stderr, run.stderr
    assert len(json.loads((run.out_dir / "all.txt.json").read_text())["features_sha256"]) == 64
    d, x = data["dir"], data["x"]
    np.save(tmp_path / "all.npy", x)
    np.save(tmp_path / "more.npy", x[:7] + 0.5)
    again = _run(["--model", d / "model.pt", "--assign-to", run.out_dir / "all.txt", "--previous-features",
                  tmp_path / "all.npy", "--features", tmp_path / "more.npy", "--out", tmp_path / "more.txt"], tmp_path)
    assert again.rc == 0 and "note" not in again.stderr, again.stderr


@pytest.mark.parametrize("case", [c for c in BAD_MODELS if c != "nan_mean"])
def test_model_fields_validated_at_load(case: str, data: dict, tmp_path: Path) -> None:
    """Every field of a model file is checked at load: one line naming the file, nothing built from a bad one."""
    edit, expect = BAD_MODELS[case]
    path = _bad_model(data["model"], tmp_path / f"{case}.pt", edit)
    with pytest.raises(InputError) as err:
        ClusteringPipeline.load(str(path), device="cpu")
    msg = str(err.value)
    assert msg.startswith(f"{path}: invalid model file: ") and expect in msg and "\n" not in msg, msg


# ------------------------------------------------------------------------------------------------ library


def _subprocess(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=LIMIT_S, preexec_fn=_limit_memory)


def test_bin_truncated_while_read_is_an_error_not_sigbus(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((5000, 64)).astype(np.float32)
    p = tmp_path / "f.bin"
    x.tofile(p)
    r = _subprocess(f"""
        import os
        from facecluster.clustering.io import InputError, load_features
        from facecluster.clustering.preprocess import preprocess
        feats = load_features({str(p)!r}, dim=64)
        os.truncate({str(p)!r}, 4096)             # another process rewrites the file meanwhile
        try:
            preprocess(feats)
        except InputError as err:
            print("InputError:", err)
    """)
    assert r.returncode == 0, f"exit {r.returncode} (SIGBUS is -7): {r.stderr[-1000:]}"
    assert "InputError:" in r.stdout and "changed size" in r.stdout and str(p) in r.stdout


def _zip_bomb(path: Path, n: int, d: int) -> None:
    """An .npz whose float32 member of n x d zeros is stored deflated (a few hundred KB on disk)."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros((0, d), np.float32))
    header["shape"] = (n, d)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("features.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            zeros = bytes(1 << 22)
            for _ in range(n * d * 4 // len(zeros)):
                fh.write(zeros)


def test_npz_bomb_is_not_inflated_before_the_checks(tmp_path: Path) -> None:
    """512 MiB of zeros in a small .npz: refused after its first chunk, without inflating the rest."""
    p = tmp_path / "bomb.npz"
    _zip_bomb(p, 4 << 20, 32)
    assert p.stat().st_size < 4 << 20
    r = _subprocess(f"""
        from facecluster.clustering.io import InputError, load_features
        try:
            load_features({str(p)!r})
        except InputError as err:
            print("InputError:", err)
        # VmHWM, not ru_maxrss: the latter keeps the peak of the (large) pytest process this one was forked from
        hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
        print("peak MiB", int(hwm.split()[1]) // 1024)
    """)
    assert r.returncode == 0, r.stderr[-1000:]
    assert "InputError:" in r.stdout and "all-zero rows" in r.stdout and "not read" in r.stdout, r.stdout
    peak = int(r.stdout.split("peak MiB")[1])
    assert peak < 300, f"peak memory {peak} MiB: the member was inflated"


def test_npz_header_checked_against_memory(tmp_path: Path) -> None:
    """A member whose header claims more rows than memory can hold is refused from its header alone."""
    p = tmp_path / "huge.npz"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((0, 256), np.float32))
    header["shape"] = (1 << 40, 256)
    with zipfile.ZipFile(p, "w") as zf:
        with zf.open("features.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, header)
    with pytest.raises(InputError, match="array header says|GiB of memory"):
        load_features(p)


def test_exact_duplicates_share_a_cluster_with_the_real_networks() -> None:
    """Identical faces always share a cluster, even when the Top-K predictor says k_i = 1 (which cuts the edge
    between two identical faces kept as separate nodes); also when they are added with --assign-to."""
    from facecluster.clustering.incremental import assign_new_faces
    from facecluster.models import SDT, SDTConfig, TopKConfig, TopKPredictor

    x, _ = make_synthetic(n_identities=40, dim=D, seed=3, max_size=30)
    rng = np.random.default_rng(0)
    copies = rng.choice(len(x), 30, replace=False)
    feats = np.concatenate([x, x[copies], x[copies[:10]]])           # 30 faces twice, 10 of them three times
    torch.manual_seed(0)
    kw = dict(feat_dim=D, k=K, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32)
    topk = TopKPredictor(TopKConfig(**kw, head="regression"))
    with torch.no_grad():                                            # a predictor that always says k_i = 1
        topk.out.weight.zero_()
        topk.out.bias.fill_(-20.0)
    pipe = ClusteringPipeline(fit_mean(x), GraphConfig(k=K), topk, SDT(SDTConfig(**kw)), device="cpu")
    labels = pipe(feats)
    n = len(x)
    np.testing.assert_array_equal(labels[n:n + 30], labels[copies])
    np.testing.assert_array_equal(labels[n + 30:], labels[copies[:10]])
    # incremental: a new face identical to an old one takes its id; identical new faces share one
    new = np.concatenate([x[copies[:5]], x[:3] + 1.0, x[:3] + 1.0])
    ids, info = assign_new_faces(pipe, x, labels[:n], new)
    np.testing.assert_array_equal(ids[:5], labels[copies[:5]])
    np.testing.assert_array_equal(ids[5:8], ids[8:])
    assert info["k"] == K


# ------------------------------------------------------------------------------------------------ start-up, device


def test_ctrl_c_during_start_up_is_one_line(data: dict, tmp_path: Path) -> None:
    """Ctrl-C while numpy or torch is being imported (the seconds of start-up): one line, status 130."""
    d = data["dir"]
    argv = ["cluster.py", "--model", str(d / "model.pt"), "--features", str(d / "x.npy"), "--out",
            str(tmp_path / "c.txt")]
    for module in ("numpy", "torch"):
        code = f"""
            import builtins, runpy, sys
            real = builtins.__import__
            def hook(name, *args, **kwargs):
                if name == {module!r}:
                    raise KeyboardInterrupt
                return real(name, *args, **kwargs)
            builtins.__import__ = hook
            sys.argv = {argv!r}
            runpy.run_path("cluster.py", run_name="__main__")
        """
        r = _subprocess(code)
        assert r.returncode == 130 and "Traceback" not in r.stderr, (module, r.returncode, r.stderr[-1500:])
        assert r.stderr.splitlines() == ["error: interrupted; no output written"], r.stderr
        assert not list(tmp_path.iterdir())
