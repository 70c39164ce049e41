"""The README's promises under every condition (issue 18), one section per promise:

1. the same input, model and seed give byte-identical labels, whatever the thread counts;
2. outputs all or nothing (OUT, OUT.json, the metrics), fsynced, no process-wide umask toggle, thread-count setters
   that restore what they change;
3. a model or checkpoint file from elsewhere runs no code;
4. the training graph cache is keyed by content and the faiss version; a resumed run never mixes the checkpoint's
   mean with a new fit;
5. a pipeline leaves the networks it is given as they were (mode, device);
6. GNN models whose K is not above their pivot size, labels of 2**63 as floats, platforms without ``os.preadv`` /
   ``os.pathconf``;
7. (the command-line cases are in ``test_hostile_input.py``) SIGTERM ends like Ctrl-C.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from facecluster.clustering.graph_config import GraphConfig
from facecluster.clustering.io import AtomicFiles, InputError, atomic_write, load_features, load_labels
from facecluster.clustering.pipeline import ClusteringPipeline
from facecluster.clustering.preprocess import fit_mean
from facecluster.clustering.synthetic import make_synthetic
from facecluster.models import SDT, SDTConfig, TopKConfig, TopKPredictor
from test_cluster_cli import D, ENV, K, make_model

ROOT = Path(__file__).resolve().parents[1]


def _cli(args: list, threads: int = 1, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python cluster.py args`` with every thread count (torch, MKL, OpenMP, OpenBLAS) set to ``threads``."""
    env = {**ENV, **{v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    return subprocess.run([sys.executable, "cluster.py", *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """~2,300 faces of 300 identities (enough rows for the parallel paths of faiss, MKL and the Jaccard), a tiny
    model, and a first clustering of the first 400 faces with its record."""
    d = tmp_path_factory.mktemp("promises")
    x, y = make_synthetic(n_identities=300, dim=D, seed=1)
    np.save(d / "x.npy", x)
    np.save(d / "prev.npy", x[:400])
    np.save(d / "new.npy", x[400:500])
    model = make_model(d / "model.pt", x)
    (d / "run").mkdir()
    first = _cli(["--model", model, "--features", d / "prev.npy", "--out", d / "run" / "prev.txt"])
    assert first.returncode == 0, first.stderr
    return {"dir": d, "x": x, "y": y, "model": model}


# ------------------------------------------------------------------------------------------------ 1. identical labels


def test_labels_byte_identical_across_thread_counts(data: dict, tmp_path: Path) -> None:
    """The default path (exact flat kNN, the networks, the Top-K Jaccard, Infomap) with 1, 2 and 3 threads for
    torch, MKL, faiss's OpenMP and OpenBLAS: the same bytes in OUT."""
    outs = {t: tmp_path / f"t{t}.txt" for t in (1, 2, 3)}
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(zip(outs, pool.map(lambda t: _cli(["--model", data["model"], "--features", data["dir"] / "x.npy",
                                                        "--out", outs[t]], threads=t), outs)))
    for t, run in runs.items():
        assert run.returncode == 0, (t, run.stderr)
    assert outs[1].read_bytes() == outs[2].read_bytes() == outs[3].read_bytes()


def test_cluster_py_makes_the_networks_thread_count_independent(data: dict, tmp_path: Path) -> None:
    """MKL (torch's matrix products on x86 CPUs) splits a product's work by the number of threads, and the split
    changes the float rounding (a Linear(128, 1) over 4,099 rows differs in the last bits between 1 and 3 threads).
    ``cluster.py`` asks MKL for thread-count independent results (``MKL_CBWR=AUTO,STRICT``) before torch's first
    product: after its run, the products, the network outputs and the labels are the same bits for 1 and 3 threads."""
    r = _python(f"""
        from facecluster.commands import cluster
        assert cluster.main(["--model", {str(data["model"])!r}, "--features", {str(data["dir"] / "new.npy")!r},
                             "--out", {str(tmp_path / "c.txt")!r}]) == 0
        import numpy as np, torch
        from facecluster.clustering.pipeline import ClusteringPipeline
        torch.manual_seed(0)
        lin, a = torch.nn.Linear(128, 1), torch.randn(4099, 128)
        pipe = ClusteringPipeline.load({str(data["model"])!r}, device="cpu")
        x, nbrs, sims = pipe.graph_inputs(np.load({str(data["dir"] / "x.npy")!r}))
        seen = {{"linear": set(), "networks": set(), "labels": set()}}
        for t in (1, 3):
            torch.set_num_threads(t)
            with torch.no_grad():
                seen["linear"].add(lin(a).numpy().tobytes())
            k, pair_prob = pipe.predict(x, nbrs, sims)
            seen["networks"].add(k.tobytes() + pair_prob.tobytes())
            seen["labels"].add(pipe.run_graph(x, nbrs, sims).tobytes())
        print({{name: len(v) for name, v in seen.items()}})
    """)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines()[-1] == "{'linear': 1, 'networks': 1, 'labels': 1}", r.stdout


@pytest.mark.parametrize("method", ["ivf", "hnsw"])
def test_ivf_and_hnsw_measured_identical_across_thread_counts(method: str) -> None:
    """What the README says was measured for the approximate indexes (faiss promises nothing there): the same
    neighbours for 1, 2 and 3 faiss threads. If this fails, the README's sentence must change, not the code."""
    import faiss

    from facecluster.clustering.knn import knn_search
    from facecluster.clustering.preprocess import preprocess

    x, _ = make_synthetic(n_identities=400, dim=D, seed=2)
    x = preprocess(x, fit_mean(x))
    before = faiss.omp_get_max_threads()
    results = {knn_search(x, 20, method=method, device="cpu", nlist=32, threads=t)[0].tobytes() for t in (1, 2, 3)}
    assert faiss.omp_get_max_threads() == before
    assert len(results) == 1


@pytest.mark.gpu
def test_gpu_runs_give_identical_labels(data: dict, tmp_path: Path) -> None:
    """On a GPU: two runs of the same input give the same bytes (CPU and GPU may differ: other float rounding)."""
    outs = [tmp_path / f"g{i}.txt" for i in range(2)]
    for out in outs:
        run = _cli(["--model", data["model"], "--features", data["dir"] / "x.npy", "--out", out, "--device", "cuda"])
        assert run.returncode == 0, run.stderr
    assert outs[0].read_bytes() == outs[1].read_bytes()


# ------------------------------------------------------------------------------------------------ 2. all or nothing


def _three(folder: Path) -> list[Path]:
    """Three outputs: two that exist (old content) and one new."""
    paths = [folder / "a.txt", folder / "b.txt", folder / "c.txt"]
    paths[0].write_text("old a\n")
    paths[2].write_text("old c\n")
    return paths


def _contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


@pytest.fixture
def ctrl_c() -> None:
    """Ctrl-C raises KeyboardInterrupt in this process, as in an interactive one: a shell starts a background job
    (``make test &``) with SIGINT ignored, which Python then leaves ignored."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def _default_sigint() -> None:
    """A child's SIGINT at its default, whatever this process inherited (see :func:`ctrl_c`)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("failure", ["oserror", "interrupt", "sigint"])
def test_a_failure_between_renames_restores_every_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         failure: str, ctrl_c: None) -> None:
    """The second of three renames fails (a full disk; an exception such as KeyboardInterrupt at that moment; a
    real SIGINT to the main thread then): the first output is put back, nothing is left half-replaced, no
    temporary or kept file remains, and the error propagates."""
    paths = _three(tmp_path)
    before = _contents(tmp_path)
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append(os.fspath(dst))
        if os.fspath(dst) == os.fspath(paths[1]) and calls.count(os.fspath(dst)) == 1:
            if failure == "oserror":
                raise OSError(28, "No space left on device")
            if failure == "interrupt":
                raise KeyboardInterrupt
            # to this (the main) thread: os.kill would let the kernel pick any thread of the process, and when
            # other threads run (torch's, gloo's after tests/test_distributed.py) the handler may run only after
            # the commit has returned: a test of timing, not of AtomicFiles
            signal.raise_signal(signal.SIGINT)
        return real_replace(src, dst)

    with AtomicFiles(paths) as out:
        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(OSError if failure == "oserror" else KeyboardInterrupt):
            out.commit({os.fspath(p): (lambda fh, p=p: fh.write(f"new {p.name}\n".encode())) for p in paths})
    assert calls[:2] == [os.fspath(paths[0]), os.fspath(paths[1])]
    assert _contents(tmp_path) == before


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill (POSIX)")
def test_a_signal_that_another_thread_receives_is_held_too(ctrl_c: None) -> None:
    """A SIGINT to the process may land on any thread that does not block it (blocking covers the main thread
    only): its Python handler then runs in the main thread. Inside the commit's hold it is recorded, not raised,
    and it is raised on leaving the hold."""
    import threading

    from facecluster.clustering.io.atomic import _signals_held

    ready, done = threading.Event(), threading.Event()
    other = threading.Thread(target=lambda: (ready.set(), done.wait(10)))
    other.start()
    ready.wait(5)
    try:
        with pytest.raises(KeyboardInterrupt):
            with _signals_held() as pending:
                signal.pthread_kill(other.ident, signal.SIGINT)  # to the other thread, which does not block it
                deadline = time.monotonic() + 5
                while not pending() and time.monotonic() < deadline:
                    time.sleep(0.001)  # the main thread runs the Python handler here: recorded, not raised
                assert pending()
                reached_end = True
        assert reached_end
    finally:
        done.set()
        other.join()


def test_outputs_fsynced_before_the_rename_and_the_folder_after(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to name a file descriptor")
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", os.fspath(a))), real_replace(a, b))[1])
    paths = _three(tmp_path)
    with AtomicFiles(paths) as out:
        out.commit({os.fspath(p): (lambda fh: fh.write(b"x\n")) for p in paths})
    renamed = [path for kind, path in events if kind == "replace"]
    assert len(renamed) == 3
    for tmp in renamed:
        synced = events.index(("fsync", tmp))
        assert synced < events.index(("replace", tmp)), events
    last = max(i for i, (kind, _) in enumerate(events) if kind == "replace")
    assert ("fsync", str(tmp_path)) in events[last:], events
    assert _contents(tmp_path) == {"a.txt": "x\n", "b.txt": "x\n", "c.txt": "x\n"}


def test_no_process_wide_umask_toggle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``os.umask`` is process-wide: setting it (even to read it back) changes the files other threads create
    meanwhile. The outputs still get the permissions of a new file (0o666 less the umask)."""
    umask = os.umask(0o022)
    os.umask(umask)

    def no_umask(mask):
        raise AssertionError("os.umask called: the process-wide umask was changed")

    monkeypatch.setattr(os, "umask", no_umask)
    atomic_write(tmp_path / "f.txt", lambda fh: fh.write(b"x\n"))
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_thread_count_setters_restore_what_they_change() -> None:
    """The ``threads`` options of the Jaccard and the kNN set torch's and faiss's thread counts for the call
    only."""
    import faiss

    from facecluster.clustering.edges import intersections
    from facecluster.clustering.knn import knn_search

    x = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    torch_before, faiss_before = torch.get_num_threads(), faiss.omp_get_max_threads()
    nbrs, sims = knn_search(x, 5, method="flat", device="cpu", threads=faiss_before + 1)
    assert faiss.omp_get_max_threads() == faiss_before
    intersections(nbrs, np.ones_like(sims), threads=torch_before + 1)
    assert torch.get_num_threads() == torch_before


def test_record_holds_outs_sha256_and_assign_to_refuses_an_out_of_step_pair(data: dict, tmp_path: Path) -> None:
    """OUT.json is renamed last and records OUT's SHA-256: an OUT that is not the one its record describes (a
    crash between the renames, or an edit) is refused by ``--assign-to``."""
    d = data["dir"]
    prev = d / "run" / "prev.txt"
    record = json.loads((d / "run" / "prev.txt.json").read_text())
    assert record["out_sha256"] == hashlib.sha256(prev.read_bytes()).hexdigest()
    changed = tmp_path / "prev.txt"
    changed.write_text("".join(f"{i % 3}\n" for i in range(400)))
    (tmp_path / "prev.txt.json").write_text(json.dumps(record))
    run = _cli(["--model", data["model"], "--assign-to", changed, "--previous-features", d / "prev.npy",
                "--features", d / "new.npy", "--out", tmp_path / "all.txt"])
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines() == [run.stderr.strip()] and "prev.txt" in run.stderr, run.stderr
    assert "not the file" in run.stderr and not (tmp_path / "all.txt").exists()


# ------------------------------------------------------------------------------------------------ 3. no code runs


class _WritesAFile:
    """Unpickled (with ``weights_only=False``), this opens ``path`` for writing: the file appears."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _crafted_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {}, "hyper_parameters": {"_class_path": "lightning_modules.SDTModule",
                                                       "model": _WritesAFile(marker)}}, path)
    return path


def test_crafted_checkpoint_runs_no_code_in_export(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from facecluster.commands import export

    marker = tmp_path / "pwned"
    ckpt = _crafted_checkpoint(tmp_path / "evil.ckpt", marker)
    try:
        rc = export.main(["--ckpt", str(ckpt), "--out", str(tmp_path / "model.pt")])
    except SystemExit as exc:  # an error, as export.py reports it
        rc = exc.code
    except Exception as exc:  # noqa: BLE001  (the file must not have been written, whatever the error)
        rc = f"{type(exc).__name__}: {exc}"
    assert not marker.exists(), "unpickling the checkpoint ran code (it wrote a file)"
    err = capsys.readouterr().err
    assert rc == 2, rc
    assert err.splitlines() == [err.strip()] and err.startswith(f"error: {ckpt}: ") and "never loaded" in err, err
    assert not (tmp_path / "model.pt").exists()


def test_crafted_checkpoint_runs_no_code_in_load_topk(tmp_path: Path) -> None:
    from facecluster.lightning_modules import load_topk

    marker = tmp_path / "pwned"
    ckpt = _crafted_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(InputError) as err:
        load_topk(str(ckpt))
    assert not marker.exists(), "unpickling the checkpoint ran code (it wrote a file)"
    assert "\n" not in str(err.value) and str(err.value).startswith(f"{ckpt}: "), err.value


def test_crafted_model_file_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"format": "facecluster-model", "version": 1, "meta": _WritesAFile(marker)}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="not a readable model file"):
        ClusteringPipeline.load(str(tmp_path / "evil.pt"), device="cpu")
    assert not marker.exists()


def test_crafted_checkpoint_runs_no_code_on_resume(tiny_fit, tmp_path: Path, cli_env) -> None:
    """``train.py fit --ckpt_path FILE`` reads the checkpoint with ``weights_only=True`` too."""
    from conftest import topk_args

    from facecluster.commands.train import cli_main

    marker = tmp_path / "pwned"
    ckpt = _crafted_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(Exception, match="Weights only load failed|weights_only"):
        cli_main(tiny_fit(*topk_args(), f"--ckpt_path={ckpt}"))
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ 4. cache and mean


def _datamodule(tmp_path: Path, **kw):
    from facecluster.datamodules import FaceGraphDataModule

    return FaceGraphDataModule(source="files", features=str(tmp_path / "f.npy"), labels=str(tmp_path / "y.npy"),
                               k=5, val_fraction=0.25, cache_dir=str(tmp_path / "cache"), **kw)


def test_graph_cache_is_keyed_by_content(tmp_path: Path) -> None:
    """A different file of the same size and modification time (``cp -p``, a re-download) is another key."""
    x, y = make_synthetic(n_identities=30, dim=8, seed=0)
    np.save(tmp_path / "f.npy", x)
    np.save(tmp_path / "y.npy", y)
    st = os.stat(tmp_path / "f.npy")
    first = _datamodule(tmp_path).cache_path()
    np.save(tmp_path / "f.npy", x[::-1].copy())  # same shape, same size: other faces in other rows
    os.utime(tmp_path / "f.npy", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(tmp_path / "f.npy").st_size == st.st_size
    assert _datamodule(tmp_path).cache_path() != first


def test_graph_cache_is_keyed_by_the_faiss_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss

    x, y = make_synthetic(n_identities=30, dim=8, seed=0)
    np.save(tmp_path / "f.npy", x)
    np.save(tmp_path / "y.npy", y)
    first = _datamodule(tmp_path).cache_path()
    monkeypatch.setattr(faiss, "__version__", "0.0.1")
    assert _datamodule(tmp_path).cache_path() != first


@pytest.mark.parametrize("order", ["setup_first", "checkpoint_first"])
def test_resume_refuses_a_checkpoint_mean_other_than_the_fit(tmp_path: Path, order: str) -> None:
    """Lightning restores the datamodule's state after ``setup`` (a resumed fit) or before it: either way a
    checkpoint's mean that is not the one fitted on these features (the data changed since) is refused, never
    silently mixed with graphs built on the new fit; the same mean is accepted."""
    x, y = make_synthetic(n_identities=30, dim=8, seed=0)
    np.save(tmp_path / "f.npy", x)
    np.save(tmp_path / "y.npy", y)
    dm = _datamodule(tmp_path)
    dm.setup("fit")
    fitted = dm.mean.copy()
    same = _datamodule(tmp_path)
    same.load_state_dict({"mean": torch.from_numpy(fitted.copy())})
    same.setup("fit")
    np.testing.assert_array_equal(same.mean, fitted)
    other = {"mean": torch.from_numpy(fitted + np.float32(1e-3))}
    dm = _datamodule(tmp_path)
    with pytest.raises(InputError, match="mean"):
        if order == "setup_first":
            dm.setup("fit")
            dm.load_state_dict(other)
        else:
            dm.load_state_dict(other)
            dm.setup("fit")


# ------------------------------------------------------------------------------------------------ 5. no side effects


def test_pipeline_leaves_the_networks_as_given() -> None:
    """The evaluation callback passes the live training networks: building a pipeline and clustering with it
    leaves every submodule's mode, and every parameter's device and identity, as they were."""
    x, _ = make_synthetic(n_identities=40, dim=D, seed=3)
    kw = dict(feat_dim=D, k=K, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32)
    topk, sdt = TopKPredictor(TopKConfig(**kw)), SDT(SDTConfig(**kw))
    topk.train()
    sdt.train()
    sdt.blocks[0].eval()  # a mixed state must come back as it was, not as all-train
    modes = {name: m.training for net in (topk, sdt) for name, m in net.named_modules(prefix=str(id(net)))}
    params = [(p, p.device) for net in (topk, sdt) for p in net.parameters()]
    pipe = ClusteringPipeline(fit_mean(x), GraphConfig(k=K), topk, sdt, device="cpu")
    pipe(x)
    pipe.predict(*pipe.graph_inputs(x))
    assert {name: m.training for net in (topk, sdt) for name, m in net.named_modules(prefix=str(id(net)))} == modes
    assert all(p.device == dev for p, dev in params)
    assert pipe.topk is topk and pipe.sdt is sdt  # shared on the same device: no copy


@pytest.mark.gpu
def test_pipeline_copies_networks_from_another_device() -> None:
    x, _ = make_synthetic(n_identities=40, dim=D, seed=3)
    kw = dict(feat_dim=D, k=K, d_model=16, num_layers=1, num_heads=2, dim_feedforward=32)
    sdt = SDT(SDTConfig(**kw)).cuda().train()
    pipe = ClusteringPipeline(fit_mean(x), GraphConfig(k=K), None, sdt, device="cpu")
    pipe(x)
    assert sdt.training and next(sdt.parameters()).is_cuda and pipe.sdt is not sdt


# ------------------------------------------------------------------------------------------------ 6. edge cases


def _gnn_model(path: Path, x: np.ndarray, k: int, pivot_u: int) -> Path:
    from facecluster.models import LGCN, LGCNConfig

    torch.manual_seed(0)
    ClusteringPipeline(fit_mean(x), GraphConfig(k=k, jaccard="none", combine="sdt"), None,
                       LGCN(LGCNConfig(feat_dim=x.shape[1], k=k, hidden=16, num_layers=1, pivot_u=pivot_u))
                       ).save(str(path))
    return path


def test_gnn_pivot_size_must_be_below_k() -> None:
    from facecluster.models import LGCNConfig, PivotGATConfig

    for config in (LGCNConfig, PivotGATConfig):
        with pytest.raises(ValueError, match=rf"^{config.__name__}.pivot_u must be below k = 10"):
            config(feat_dim=8, k=10, pivot_u=10)


def test_gnn_on_fewer_faces_than_its_pivot_size(data: dict, tmp_path: Path) -> None:
    """A GNN model with pivot_u = 4 on a collection of 4 (K becomes 4: a node has 3 other neighbours) and of 1
    face: clustered (the links then join every pair), not an unexpected ValueError."""
    x = data["x"]
    model = _gnn_model(tmp_path / "gnn.pt", x, k=10, pivot_u=4)
    for n in (4, 1):
        np.save(tmp_path / f"x{n}.npy", x[:n])
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(zip((4, 1), pool.map(lambda n: _cli(["--model", model, "--features", tmp_path / f"x{n}.npy",
                                                          "--out", tmp_path / f"c{n}.txt"]), (4, 1))))
    for n, run in runs.items():
        assert run.returncode == 0 and "unexpected" not in run.stderr, (n, run.stderr)
        assert len((tmp_path / f"c{n}.txt").read_text().splitlines()) == n


def test_float_label_of_2_63_is_refused_naming_its_row(tmp_path: Path) -> None:
    """2**63 as a float is one above int64's largest value: cast, it would wrap to -2**63."""
    y = np.arange(10, dtype=np.float64)
    y[6] = 2.0**63
    np.save(tmp_path / "y.npy", y)
    with pytest.raises(InputError, match=r"row 6: .* does not fit in 64-bit integers"):
        load_labels(tmp_path / "y.npy")
    y[6] = -(2.0**63)  # int64's smallest value, exactly
    np.save(tmp_path / "y.npy", y)
    assert load_labels(tmp_path / "y.npy")[6] == np.iinfo(np.int64).min


def test_no_preadv_no_pread_no_pathconf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Platforms without ``os.preadv`` (macOS before 11), ``os.pread`` or ``os.pathconf`` (Windows): rows are still
    read, outputs still written."""
    x = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    x.tofile(tmp_path / "x.bin")
    np.save(tmp_path / "x.npy", x)
    monkeypatch.delattr(os, "preadv", raising=False)
    monkeypatch.delattr(os, "pathconf", raising=False)
    np.testing.assert_array_equal(np.asarray(load_features(tmp_path / "x.bin", dim=16)), x)
    monkeypatch.delattr(os, "pread", raising=False)
    feats = load_features(tmp_path / "x.npy")
    np.testing.assert_array_equal(feats[[5, 250, 7]], x[[5, 250, 7]])
    atomic_write(tmp_path / "out.txt", lambda fh: fh.write(b"ok\n"))
    assert (tmp_path / "out.txt").read_text() == "ok\n"


def test_float64_values_beyond_float32_are_one_line_without_warnings(data: dict, tmp_path: Path) -> None:
    """A float64 ``.npy`` / Fortran-order ``.npy`` / ``.npz`` with a value beyond float32 (read as inf): one line,
    with the advice to rescale, and no numpy RuntimeWarning on stderr (run with Python's warnings shown)."""
    x = np.random.default_rng(0).standard_normal((50, D))
    x[12] *= 1e300
    np.save(tmp_path / "c.npy", x)
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    np.savez(tmp_path / "z.npz", features=x)
    env = {key: value for key, value in ENV.items() if key != "PYTHONWARNINGS"}
    for name in ("c.npy", "f.npy", "z.npz"):
        r = subprocess.run([sys.executable, "cluster.py", "--model", str(data["model"]), "--features",
                            str(tmp_path / name), "--out", str(tmp_path / "out.txt")], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
        lines = r.stderr.splitlines()
        assert r.returncode == 2 and len(lines) == 1, (name, r.stderr)
        assert "beyond float32's range" in lines[0] and "rescale" in lines[0], lines[0]


# ------------------------------------------------------------------------------------------------ 7. signals


@pytest.mark.parametrize(("sig", "rc", "message"),
                         [(signal.SIGTERM, 143, "error: terminated (SIGTERM); no output written"),
                          (signal.SIGINT, 130, "error: interrupted; no output written")], ids=["sigterm", "sigint"])
def test_signal_during_a_run_is_one_line_and_leaves_nothing(data: dict, tmp_path: Path, sig: int, rc: int,
                                                            message: str) -> None:
    """The signal arrives once the outputs' temporary files exist (the run is under way): one line, the exit
    status of the signal (128 + 15 for SIGTERM, 130 for Ctrl-C), the temporary files removed."""
    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.Popen([sys.executable, "cluster.py", "--model", str(data["model"]), "--features",
                          str(data["dir"] / "x.npy"), "--out", str(out / "c.txt")], cwd=ROOT, env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    deadline = time.monotonic() + 60
    while not list(out.iterdir()) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.02)
    assert list(out.iterdir()), "the run never reserved its outputs"
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == rc, (p.returncode, stderr[-2000:])
    assert stderr.splitlines() == [message], stderr
    assert not list(out.iterdir()), f"left behind: {sorted(q.name for q in out.iterdir())}"
