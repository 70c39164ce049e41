"""k-nearest-neighbour graph by cosine similarity with faiss (METHOD.md step 2).

``knn_search`` returns ``nbrs`` (N x K int64) and ``sims`` (N x K float32) sorted by similarity, **self first**;
``knn_query`` (with ``knn_index``) does the same for some query rows against all rows, as incremental clustering needs.
Inputs must already be L2-normalised (:func:`clustering.preprocess.preprocess`), so inner product = cosine.

Index choice (``method``):

* ``"flat"``: exact ``IndexFlatIP``; the default (``"auto"``) up to ``flat_max`` faces.
* ``"ivf"``: ``IndexIVFFlat`` (inner product) with ``nlist ~ 4 sqrt(N)`` lists trained on a sample, searched with
  ``nprobe`` lists; ``"auto"`` picks it above ``flat_max``.
* ``"hnsw"``: ``IndexHNSWFlat`` (inner product), ``M = 32``, ``efSearch = max(2K, ef_search)``.

Device (:func:`faiss_gpu`): on the CPU for ``device="cpu"``; otherwise on a GPU when this faiss build has GPU
support and sees one, on the process's own CUDA device (``"cuda:N"``, else torch's current device, else
``LOCAL_RANK``: each DDP rank uses its own GPU); on the CPU otherwise. A CUDA ``device`` with a CPU-only faiss
(pip's ``faiss-cpu`` next to CUDA torch) falls back to the CPU with a warning on the ``clustering.knn`` logger
(``cluster.py`` prints it as a note). On a GPU, ``"auto"`` searches exactly up to ``gpu_flat_max`` faces (3M: a
GPU does brute force ~100x faster than the CPU whose limit is ``flat_max`` = 300K, so the same time buys ~10x the
faces; to be confirmed on a GPU by ``scripts/gpu_check.sh``). Queries run in chunks of ``chunk`` rows, so memory
beyond the index stays ``O(chunk * K)``; a progress bar shows on long runs.

Model files store these options (``KNN_OPTIONS``); :func:`check_knn_options` validates them.
"""
from __future__ import annotations

import logging
import os

import faiss
import numpy as np
from tqdm.auto import tqdm

from .threads import faiss_threads

__all__ = ["knn_search", "knn_index", "knn_query", "put_self_first", "faiss_gpu", "check_knn_options",
           "KNN_METHODS", "KNN_OPTIONS"]

log = logging.getLogger(__name__)


KNN_METHODS = ("auto", "flat", "ivf", "hnsw")
# the options a model file may store (knn_index's keywords, but not the device: that is a runtime choice)
KNN_OPTIONS = {"method": str, "flat_max": int, "gpu_flat_max": int, "nlist": int, "nprobe": int, "hnsw_m": int,
               "ef_search": int, "seed": int, "threads": int}


def check_knn_options(options: dict) -> None:
    """Raise ``ValueError`` (naming the option) unless ``options`` holds only known kNN options with valid values:
    ``method`` one of ``KNN_METHODS``, ``seed`` >= 0, the others positive integers (``nlist``/``threads``: or None)."""
    if not isinstance(options, dict):
        raise ValueError(f"kNN options must be a dict, got {type(options).__name__}")
    for key, value in options.items():
        if key not in KNN_OPTIONS:
            raise ValueError(f"unknown kNN option {key!r} (known: {', '.join(KNN_OPTIONS)})")
        if key == "method":
            if value not in KNN_METHODS:
                raise ValueError(f"unknown kNN method {value!r} ({', '.join(KNN_METHODS)})")
        elif value is None and key in ("nlist", "threads"):
            continue
        elif not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "seed" else 1):
            raise ValueError(f"kNN option {key} must be an integer >= {0 if key == 'seed' else 1}, got {value!r}")


def _cuda_index(device: str) -> int:
    """The process's own CUDA device: ``cuda:N`` -> N; else torch's current device; else ``LOCAL_RANK``; else 0."""
    if ":" in device:
        return int(device.split(":", 1)[1])
    try:
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.current_device())
    except ImportError:
        pass
    return int(os.environ.get("LOCAL_RANK", 0))


def faiss_gpu(device: str = "auto") -> int | None:
    """The GPU faiss should use, or ``None`` for the CPU.

    ``device``: ``"cpu"`` (CPU), ``"auto"`` (a GPU when this faiss build sees one, silently the CPU otherwise),
    ``"cuda"`` / ``"cuda:N"`` / ``"gpu"`` (the process's CUDA device; with a CPU-only faiss build or a device faiss
    does not see, the CPU with a warning)."""
    if device == "cpu":
        return None
    n_gpu = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") and hasattr(faiss, "StandardGpuResources") else 0
    if device == "auto" and n_gpu == 0:
        return None
    if n_gpu == 0:
        log.warning("the kNN runs on the CPU: this faiss build has no GPU support (faiss-cpu); install faiss-gpu "
                    "(environment.yml) for a GPU kNN")
        return None
    gpu = _cuda_index(device if device != "gpu" else "cuda")
    if gpu >= n_gpu:
        log.warning("the kNN runs on the CPU: CUDA device %d asked for, but faiss sees %d GPU(s)", gpu, n_gpu)
        return None
    return gpu


def _to_gpu(index, gpu: int):
    """Copy a CPU index to GPU ``gpu``, its resources kept alive by the returned index (in ``referenced_objects``,
    the one attribute faiss >= 1.15 lets Python add to an index: any other name raises AttributeError)."""
    res = faiss.StandardGpuResources()
    index = faiss.index_cpu_to_gpu(res, gpu, index)
    index.referenced_objects = [*getattr(index, "referenced_objects", []), res]
    return index


def _build_index(x: np.ndarray, method: str, nlist: int | None, nprobe: int, hnsw_m: int, ef_search: int,
                 k: int, gpu: int | None, seed: int):
    n, d = x.shape
    if method == "flat":
        index = faiss.IndexFlatIP(d)
        if gpu is not None:
            index = _to_gpu(index, gpu)
    elif method == "ivf":
        nlist = nlist or int(max(1, min(n // 39, 4 * np.sqrt(n))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        if gpu is not None:
            index = _to_gpu(index, gpu)  # trained on the GPU too
        n_train = min(n, max(64 * nlist, 50_000))
        sample = np.random.default_rng(seed).choice(n, size=n_train, replace=False) if n_train < n else slice(None)
        index.train(np.ascontiguousarray(x[sample]))
        index.nprobe = min(nprobe, nlist)  # an attribute of both the CPU and the GPU IVF index
    elif method == "hnsw":  # CPU only: faiss has no GPU HNSW
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = max(2 * k, ef_search)
    else:
        raise ValueError(f"unknown kNN method {method!r} (flat, ivf, hnsw or auto)")
    add_chunk = 1_000_000
    for start in range(0, n, add_chunk):
        index.add(np.ascontiguousarray(x[start:start + add_chunk]))
    return index


def put_self_first(nbrs: np.ndarray, sims: np.ndarray, row_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reorder each row so that the query itself is at column 0 (vectorised).

    Rows where the index did not return the query (approximate search, or exact ties with duplicates) get it
    inserted first and lose their last neighbour. The self similarity is set to 1. Slots the index left empty
    (``-1``) point to the query itself with similarity -1, so they carry no weight downstream.
    """
    n, k = nbrs.shape
    ids = np.arange(n, dtype=np.int64) if row_ids is None else row_ids.astype(np.int64)
    empty = nbrs < 0
    if empty.any():
        nbrs = np.where(empty, ids[:, None], nbrs)
        sims = np.where(empty, np.float32(-1.0), sims)
    is_self = (nbrs == ids[:, None]) & ~empty
    first = np.argmax(is_self, axis=1)
    has = is_self.any(axis=1)
    if np.all(has & (first == 0)):
        out_s = sims.copy()
        out_s[:, 0] = 1.0
        return nbrs, out_s
    # rank key: self -> -1, other columns keep their order; a row without self loses its last column
    key = np.broadcast_to(np.arange(k), (n, k)).copy()
    key[is_self] = -1
    # duplicates of self beyond the first are pushed to the end with sim -1
    dup = is_self.copy()
    dup[np.arange(n), first] = False
    key[dup] = k + 1
    rows_missing = ~has
    key[rows_missing, k - 1] = -1
    order = np.argsort(key, axis=1, kind="stable")
    nbrs = np.take_along_axis(nbrs, order, axis=1)
    sims = np.take_along_axis(sims, order, axis=1).copy()
    nbrs[:, 0] = ids
    sims[:, 0] = 1.0
    dup_sorted = np.take_along_axis(dup, order, axis=1)
    sims[dup_sorted] = -1.0
    return nbrs, sims


def knn_search(x: np.ndarray, k: int, *, method: str = "auto", device: str = "auto", flat_max: int = 300_000,
               gpu_flat_max: int = 3_000_000, nlist: int | None = None, nprobe: int = 64, hnsw_m: int = 32,
               ef_search: int = 128, chunk: int = 65_536, progress: bool | None = None, seed: int = 0,
               threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """K nearest neighbours of every row of ``x`` among the rows of ``x`` (self included, first).

    Args:
        x: ``(N, d)`` float32, L2-normalised rows.
        k: neighbours per face, self included (``k <= N``).
        method: ``"auto"`` (flat up to ``flat_max`` faces, IVF above), ``"flat"``, ``"ivf"`` or ``"hnsw"``.
        device: ``"auto"`` (GPU if faiss sees one), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (see :func:`faiss_gpu`).
        flat_max: largest N searched exactly by ``"auto"`` on the CPU.
        gpu_flat_max: the same on a GPU.
        nlist, nprobe: IVF lists (default ``4 sqrt(N)``) and lists probed per query.
        hnsw_m, ef_search: HNSW graph degree and search breadth.
        chunk: query rows per faiss call.
        progress: show a progress bar (default: when N > 200K).
        seed: seed of the IVF training sample.
        threads: faiss OpenMP threads for this call (default: faiss's own; restored after it).

    Returns:
        ``nbrs (N, k) int64`` and ``sims (N, k) float32``, each row sorted by decreasing similarity, self first.
    """
    return knn_query(x, None, k, chunk=chunk, progress=progress, method=method, device=device, flat_max=flat_max,
                     gpu_flat_max=gpu_flat_max, nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m, ef_search=ef_search,
                     seed=seed, threads=threads)


def knn_index(x: np.ndarray, k: int, *, method: str = "auto", device: str = "auto", flat_max: int = 300_000,
              gpu_flat_max: int = 3_000_000, nlist: int | None = None, nprobe: int = 64, hnsw_m: int = 32,
              ef_search: int = 128, seed: int = 0, threads: int | None = None):
    """The faiss index over the rows of ``x`` that :func:`knn_search` builds (arguments as there), to query several
    times with :func:`knn_query`. ``"auto"`` picks by the index size N."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    gpu = faiss_gpu(device)
    if method == "auto":
        method = "flat" if x.shape[0] <= (flat_max if gpu is None else gpu_flat_max) else "ivf"
    log.info("kNN: %s index, N=%d, K=%d, %s", method, x.shape[0], k, "CPU" if gpu is None else f"GPU {gpu}")
    with faiss_threads(threads):  # for this call only: the caller's count is restored after it
        return _build_index(x, method, nlist, nprobe, hnsw_m, ef_search, k, gpu, seed)


def knn_query(x: np.ndarray, query: np.ndarray | None, k: int, *, query_ids: np.ndarray | None = None,
              index=None, chunk: int = 65_536, progress: bool | None = None,
              **index_kw) -> tuple[np.ndarray, np.ndarray]:
    """K nearest neighbours of some rows among all rows of ``x``, each query's own row first.

    Used by incremental clustering, where new faces (and the old faces they reach) are queried against old + new.

    Args:
        x: ``(N, d)`` float32, L2-normalised rows: what is searched.
        query: ``(M, d)`` L2-normalised query rows, or ``None`` to query every row of ``x`` (:func:`knn_search`).
        k: neighbours per query, self included (``k <= N``).
        query_ids: ``(M,)`` row of ``x`` that each query is (put first in its own list, similarity 1); default
            ``0..M-1``.
        index: an index from :func:`knn_index` over ``x``, to reuse; built here from ``index_kw`` when ``None``.
        chunk: query rows per faiss call.
        progress: show a progress bar (default: when M > 200K).
        index_kw: :func:`knn_index` options (method, device, nprobe, seed, ...).

    Returns:
        ``nbrs (M, k) int64`` ids into ``x`` and ``sims (M, k) float32``, sorted by decreasing similarity.
    """
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k = {k} must be in 1..N = {n}")
    if index is None:
        index = knn_index(x, k, **index_kw)
    query = np.ascontiguousarray(x if query is None else query, dtype=np.float32)
    m = query.shape[0]
    if query_ids is not None and len(query_ids) != m:
        raise ValueError(f"{len(query_ids)} query ids for {m} queries")
    nbrs = np.empty((m, k), dtype=np.int64)
    sims = np.empty((m, k), dtype=np.float32)
    show = progress if progress is not None else m > 200_000
    desc = f"kNN ({type(index).__name__})"
    with faiss_threads(index_kw.get("threads")):
        for start in tqdm(range(0, m, chunk), desc=desc, disable=not show, unit="chunk"):
            s, i = index.search(query[start:start + chunk], k)
            sims[start:start + len(s)] = s
            nbrs[start:start + len(i)] = i
    return put_self_first(nbrs, sims, None if query_ids is None else np.asarray(query_ids, dtype=np.int64))
