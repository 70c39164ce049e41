"""k-nearest-neighbour graph by cosine similarity with faiss (METHOD.md step 2).

``knn_search`` returns ``nbrs`` (N x K) and ``sims`` (N x K float32) sorted by similarity, **self first**; the ids
are int32 while N < 2^31 (half the memory of int64: 320 MB instead of 640 MB at 1M faces, K = 80), int64 beyond.
``knn_query`` (with ``knn_index``) does the same for some query rows against all rows, as incremental clustering
needs. Inputs must already be L2-normalised (:func:`clustering.preprocess.preprocess`), so inner product = cosine.

The options are one frozen dataclass, :class:`KnnConfig` (a model file stores it as a dict; older files, with
fewer keys, still load). Index choice (``method``):

* ``"flat"``: exact ``IndexFlatIP``; ``"auto"`` picks it up to ``flat_max`` faces (300K on a CPU, ``gpu_flat_max``
  = 3M on a GPU).
* ``"ivf"``: ``IndexIVFFlat`` (inner product) with ``nlist ~ 4 sqrt(N)`` lists trained on a sample (seeded: the same
  index run after run), searched with ``nprobe`` lists.
* ``"ivfsq"``: the same lists with 8-bit scalar-quantised vectors (a quarter of the index memory); ``"auto"`` picks
  it above ``flat_max``: at 976K faces it finds what IVF finds with a third less search time (README,
  "Approximate kNN", the measurements that chose it).
* ``"ivfpq"``: the same lists with product-quantised vectors (``pq_m`` bytes per face: 256-d faces in 32 bytes
  instead of 1 KB); ``"auto"`` picks it above ``pq_min`` faces, where the vectors of a flat-coded index would no
  longer fit beside the rest.
* ``"hnsw"``: ``IndexHNSWFlat`` (inner product), ``M = hnsw_m``, ``efSearch = max(2K, ef_search)``; CPU only. Its
  graph is built by several threads in an order they race for, so two runs may differ (IVF does not).

A quantised index (``ivfsq``, ``ivfpq``) returns approximate similarities: each query's ``refine * K`` candidates
are re-scored with the exact cosine (from ``x``, which the networks need anyway) and the best K kept, so every
returned similarity is exact and the list sorted by it.

An approximate graph of every face (:func:`knn_search` with any index but ``flat``) is then improved by
``expand`` rounds of **neighbour expansion** (:func:`expand_neighbours`, NN-descent steps, Dong et al. 2011):
each face's list is merged with its reverse neighbours (the faces whose search found it) and with its
``expand_width`` nearest neighbours' own ``expand_width`` nearest, re-scored by exact cosine; after the first
round the ``research`` share of faces whose nearest neighbour is the least similar is searched again exactly
(:func:`research_weakest`). An IVF index fails noisy faces of small identities: their mates sit in lists their
query did not probe. At 976K faces (IVF-SQ8, nprobe 64) this brings the faces whose nearest neighbour is of
another identity from 15.5% to 7.4%, the exact graph's share, for ~470 s on 2 cores (README, "Approximate kNN").

Device (:func:`faiss_gpus`): on the CPU for ``device="cpu"``; otherwise on the GPUs this faiss build has and sees:
the process's own CUDA device (``"cuda:N"``, else torch's current device, else ``LOCAL_RANK``: each DDP rank its
own GPU), or, with ``device="auto"`` / ``"cuda"`` in a process that owns no particular GPU (no ``LOCAL_RANK``) and
more than one GPU in sight, **all of them**: the index is split in shards, one per GPU (``faiss.IndexShards``,
what ``faiss.index_cpu_to_all_gpus(..., shard=True)`` builds), each query answered by every shard and the
results merged by faiss. A CUDA ``device`` with a CPU-only faiss (pip's ``faiss-cpu`` next to CUDA torch) falls
back to the CPU with a warning on the ``clustering.knn`` logger (``cluster.py`` prints it as a note).

Memory: queries run in chunks of ``chunk`` rows and each chunk's rows are put self first as they come, so the
search adds only the outputs (``N K`` ids and similarities) and ``O(chunk K)`` to the index; the index holds its
own copy of the vectors (``N d`` floats for flat, IVF and HNSW; a quarter for ``ivfsq``; ``pq_m`` bytes per face
for ``ivfpq``). A progress bar shows on long runs.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace

import faiss
import numpy as np
from tqdm.auto import tqdm

from .knn_config import KNN_METHODS, QUANTISED, KnnConfig, check_knn_options
from .threads import faiss_threads

__all__ = ["KnnConfig", "KnnIndex", "knn_search", "knn_index", "knn_query", "expand_neighbours", "research_weakest",
           "put_self_first", "faiss_gpu", "faiss_gpus",
           "check_knn_options", "resolve_method", "id_dtype", "KNN_METHODS", "QUANTISED"]

log = logging.getLogger(__name__)

_GPU_METHODS = ("flat", "ivf", "ivfsq", "ivfpq")  # what faiss runs on a GPU (no HNSW)


@dataclass(frozen=True)
class KnnIndex:
    """A built faiss index (:func:`knn_index`) with what :func:`knn_query` needs to know of it: the method it is
    (``"auto"`` resolved), how many candidates per neighbour to fetch (``refine`` > 1 only for a quantised index,
    whose candidates are re-scored exactly), the faiss thread count of its searches and the neighbour expansion a
    search of every face gets (rounds, width, the share re-searched exactly: none for ``flat``, whose lists are
    exact)."""

    index: object
    method: str
    refine: int = 1
    threads: int | None = None  # faiss OpenMP threads of its searches (None: faiss's own)
    expand: int = 0
    expand_width: int = 10
    research: float = 0.0


def id_dtype(n: int) -> np.dtype:
    """The dtype of neighbour ids among ``n`` faces: int32 while it can hold them, else int64."""
    return np.dtype(np.int32) if n < 2**31 else np.dtype(np.int64)


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


def _num_gpus() -> int:
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") and hasattr(faiss, "StandardGpuResources") else 0


def faiss_gpus(device: str = "auto") -> list[int]:
    """The GPUs faiss should use (empty: the CPU).

    ``device``: ``"cpu"`` (CPU), ``"auto"`` (the GPUs this faiss build sees, silently the CPU without any),
    ``"cuda"`` / ``"gpu"`` (the same, with a warning when it falls back to the CPU), ``"cuda:N"`` (GPU N only),
    ``"all"`` (every GPU faiss sees, whatever the process owns: a distributed run's rank 0). A
    process that owns one GPU (``LOCAL_RANK`` set: a rank of ``torchrun``) uses that one only; otherwise
    ``"auto"`` / ``"cuda"`` take every GPU faiss sees, the index sharded over them."""
    if device == "cpu":
        return []
    n_gpu = _num_gpus()
    if device == "all":
        return list(range(n_gpu))
    if device == "auto" and n_gpu == 0:
        return []
    if n_gpu == 0:
        log.warning("the kNN runs on the CPU: this faiss build has no GPU support (faiss-cpu); install faiss-gpu "
                    "(environment.yml) for a GPU kNN")
        return []
    if ":" not in device and "LOCAL_RANK" not in os.environ:
        return list(range(n_gpu))
    gpu = _cuda_index(device if device != "gpu" else "cuda")
    if gpu >= n_gpu:
        log.warning("the kNN runs on the CPU: CUDA device %d asked for, but faiss sees %d GPU(s)", gpu, n_gpu)
        return []
    return [gpu]


def faiss_gpu(device: str = "auto") -> int | None:
    """The first GPU of :func:`faiss_gpus`, or ``None`` for the CPU."""
    gpus = faiss_gpus(device)
    return gpus[0] if gpus else None


def _to_gpus(index, gpus: list[int]):
    """Copy a CPU index to the GPUs ``gpus``: one GPU, or sharded over several (``faiss.IndexShards`` of per-GPU
    indexes, built by ``index_cpu_to_gpus_list`` with ``shard=True``: the vectors added afterwards are split
    between the shards, each query searched on all and the results merged). The GPU resources stay alive with
    the index (``referenced_objects``, the one attribute faiss >= 1.15 lets Python add to an index)."""
    if len(gpus) == 1:
        res = faiss.StandardGpuResources()
        out = faiss.index_cpu_to_gpu(res, gpus[0], index)
        out.referenced_objects = [*getattr(out, "referenced_objects", []), res]
        return out
    co = faiss.GpuMultipleClonerOptions()
    co.shard = True
    co.common_ivf_quantizer = True
    return faiss.index_cpu_to_gpus_list(index, co=co, gpus=gpus)


def resolve_method(cfg: KnnConfig, n: int, on_gpu: bool) -> str:
    """The index ``cfg.method`` means for ``n`` faces: ``"auto"`` is flat up to ``flat_max`` (``gpu_flat_max`` on
    a GPU), IVF-PQ from ``pq_min`` on, IVF-SQ8 in between; HNSW has no GPU version (IVF instead)."""
    method = cfg.method
    if method == "auto":
        method = ("flat" if n <= (cfg.gpu_flat_max if on_gpu else cfg.flat_max)
                  else "ivfpq" if n >= cfg.pq_min else "ivfsq")
    if on_gpu and method not in _GPU_METHODS:
        log.warning("faiss has no GPU %s index: IVF on the GPU instead", method)
        method = "ivf"
    return method


def _build_index(x: np.ndarray, method: str, cfg: KnnConfig, k: int, gpus: list[int]):
    n, d = x.shape
    if method == "flat":
        index = faiss.IndexFlatIP(d)
        if gpus:
            index = _to_gpus(index, gpus)
    elif method in ("ivf", "ivfsq", "ivfpq"):
        nlist = cfg.nlist or int(max(1, min(n // 39, 4 * np.sqrt(n))))
        quantizer = faiss.IndexFlatIP(d)
        if method == "ivf":
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        elif method == "ivfsq":
            index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit,
                                                  faiss.METRIC_INNER_PRODUCT)
        else:
            if d % cfg.pq_m:
                raise ValueError(f"kNN pq_m = {cfg.pq_m} must divide the feature dimension {d}")
            index = faiss.IndexIVFPQ(quantizer, d, nlist, cfg.pq_m, 8, faiss.METRIC_INNER_PRODUCT)
        n_train = min(n, max(64 * nlist, 50_000))
        sample = np.sort(np.random.default_rng(cfg.seed).choice(n, size=n_train, replace=False)) \
            if n_train < n else slice(None)
        index.train(np.ascontiguousarray(x[sample], dtype=np.float32))
        if gpus:
            index = _to_gpus(index, gpus)  # trained on the CPU, the lists filled on the GPU(s)
        space = faiss.GpuParameterSpace() if gpus else faiss.ParameterSpace()  # reaches every shard
        space.set_index_parameter(index, "nprobe", min(cfg.nprobe, nlist))
    elif method == "hnsw":
        index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = max(2 * k, cfg.ef_search)
    else:
        raise ValueError(f"unknown kNN method {method!r} ({', '.join(KNN_METHODS)})")
    add_chunk = 262_144
    for start in range(0, n, add_chunk):
        index.add(np.ascontiguousarray(x[start:start + add_chunk], dtype=np.float32))
    return index


def put_self_first(nbrs: np.ndarray, sims: np.ndarray, row_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reorder each row so that the query itself is at column 0 (vectorised).

    Rows where the index did not return the query (approximate search, or exact ties with duplicates) get it
    inserted first and lose their last neighbour. The self similarity is set to 1. Slots the index left empty
    (``-1``) point to the query itself with similarity -1, so they carry no weight downstream. ``row_ids``: the
    query's own id per row (default ``0..M-1``); the ids keep ``nbrs``'s dtype.
    """
    n, k = nbrs.shape
    ids = (np.arange(n) if row_ids is None else np.asarray(row_ids)).astype(nbrs.dtype)
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


def _config(config: KnnConfig | dict | None, overrides: dict) -> KnnConfig:
    cfg = KnnConfig.from_dict(config)
    return replace(cfg, **overrides) if overrides else cfg


def knn_search(x: np.ndarray, k: int, config: KnnConfig | dict | None = None, *, device: str = "auto",
               chunk: int = 65_536, progress: bool | None = None, **overrides) -> tuple[np.ndarray, np.ndarray]:
    """K nearest neighbours of every row of ``x`` among the rows of ``x`` (self included, first).

    Args:
        x: ``(N, d)`` float32, L2-normalised rows.
        k: neighbours per face, self included (``k <= N``).
        config: a :class:`KnnConfig` (or its dict); ``overrides`` replace its fields (``method="flat"``).
        device: ``"auto"`` (the GPU(s) faiss sees), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (:func:`faiss_gpus`).
        chunk: query rows per faiss call.
        progress: show a progress bar (default: when N > 200K).

    Returns:
        ``nbrs (N, k)`` (int32 below 2^31 faces, :func:`id_dtype`) and ``sims (N, k) float32``, each row sorted by
        decreasing similarity, self first.
    """
    return knn_query(x, None, k, chunk=chunk, progress=progress, config=_config(config, overrides), device=device)


def knn_index(x: np.ndarray, k: int, config: KnnConfig | dict | None = None, *, device: str = "auto",
              **overrides):
    """The index over the rows of ``x`` that :func:`knn_search` builds (arguments as there), as a
    :class:`KnnIndex`, to query several times with :func:`knn_query`. ``"auto"`` picks by the index size N."""
    cfg = _config(config, overrides)
    x = np.ascontiguousarray(x, dtype=np.float32)
    gpus = faiss_gpus(device)
    method = resolve_method(cfg, x.shape[0], bool(gpus))
    where = "CPU" if not gpus else f"GPU {gpus[0]}" if len(gpus) == 1 else f"{len(gpus)} GPUs (sharded)"
    log.info("kNN: %s index, N=%d, K=%d, %s", method, x.shape[0], k, where)
    with faiss_threads(cfg.threads):  # for this call only: the caller's count is restored after it
        built = _build_index(x, method, cfg, k, gpus)
    return KnnIndex(built, method, cfg.refine if method in QUANTISED else 1, cfg.threads,
                    0 if method == "flat" else cfg.expand, cfg.expand_width, cfg.research)


def _exact_rescore(x: np.ndarray, query: np.ndarray, ids: np.ndarray, k: int, block: int = 512
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of each query's candidate ``ids`` (M, C) by exact inner product: ``(ids, sims)`` sorted by
    decreasing similarity; empty slots (``-1``) stay last. Blocks of ``block`` queries (``block C d`` floats
    gathered at a time: 40 MB for 160 candidates of 256-d faces)."""
    import torch

    from .subgraphs import gather_rows

    xt = torch.from_numpy(x)
    m, c = ids.shape
    out_i = np.empty((m, k), dtype=ids.dtype)
    out_s = np.empty((m, k), dtype=np.float32)
    buf = xt.new_empty(min(block, m) * c, xt.shape[1])
    for start in range(0, m, block):
        cand = torch.from_numpy(ids[start:start + block])
        q = torch.from_numpy(query[start:start + block])
        s = torch.bmm(gather_rows(xt, cand.clamp(min=0), buf), q[:, :, None])[:, :, 0]  # (B, C) exact cosines
        s = s.masked_fill(cand < 0, -float("inf"))
        top_s, top = torch.sort(s, dim=1, descending=True, stable=True)
        out_i[start:start + len(cand)] = torch.gather(cand, 1, top[:, :k]).numpy()
        out_s[start:start + len(cand)] = top_s[:, :k].numpy()
    out_s[out_i < 0] = -1.0
    return out_i, out_s


def knn_query(x: np.ndarray, query: np.ndarray | None, k: int, *, query_ids: np.ndarray | None = None,
              index=None, chunk: int = 65_536, progress: bool | None = None, config: KnnConfig | dict | None = None,
              device: str = "auto", **overrides) -> tuple[np.ndarray, np.ndarray]:
    """K nearest neighbours of some rows among all rows of ``x``, each query's own row first.

    Used by incremental clustering, where new faces (and the old faces they reach) are queried against old + new.

    Args:
        x: ``(N, d)`` float32, L2-normalised rows: what is searched.
        query: ``(M, d)`` L2-normalised query rows, or ``None`` to query every row of ``x`` (:func:`knn_search`).
        k: neighbours per query, self included (``k <= N``).
        query_ids: ``(M,)`` row of ``x`` that each query is (put first in its own list, similarity 1); default
            ``0..M-1``.
        index: a :class:`KnnIndex` from :func:`knn_index` over ``x``, to reuse; built here from ``config`` / ``overrides`` /
            ``device`` when ``None``.
        chunk: query rows per faiss call; each chunk is put self first as it comes (no ``(M, K)`` temporaries).
        progress: show a progress bar (default: when M > 200K).

    Returns:
        ``nbrs (M, k)`` ids into ``x`` (:func:`id_dtype` of N) and ``sims (M, k) float32``, sorted by decreasing
        similarity.
    """
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k = {k} must be in 1..N = {n}")
    if index is None:
        index = knn_index(x, k, config, device=device, **overrides)
    fetch = min(n, index.refine * k)
    m = n if query is None else query.shape[0]
    if query_ids is not None and len(query_ids) != m:
        raise ValueError(f"{len(query_ids)} query ids for {m} queries")
    dtype = id_dtype(n)
    nbrs = np.empty((m, k), dtype=dtype)
    sims = np.empty((m, k), dtype=np.float32)
    show = progress if progress is not None else m > 200_000
    desc = f"kNN ({index.method})"
    with faiss_threads(index.threads):  # the index's thread count, for this call only
        for start in tqdm(range(0, m, chunk), desc=desc, disable=not show, unit="chunk"):
            q = np.ascontiguousarray((x if query is None else query)[start:start + chunk], dtype=np.float32)
            s, i = index.index.search(q, fetch)
            if index.method in QUANTISED:  # approximate similarities: re-scored exactly, the best k kept
                i, s = _exact_rescore(x, q, i, k)
            ids = (np.arange(start, start + len(q)) if query_ids is None
                   else np.asarray(query_ids[start:start + len(q)]))
            i, s = put_self_first(i.astype(dtype, copy=False), s, ids)
            nbrs[start:start + len(q)] = i
            sims[start:start + len(q)] = s
    if query is None and query_ids is None and index.expand:  # the graph of every face: its lists to follow
        expand_neighbours(x, nbrs, sims, rounds=index.expand, width=index.expand_width, research=index.research,
                          progress=show, threads=index.threads)
    return nbrs, sims


def _reverse_neighbours(nbrs: np.ndarray, sims: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """For each face i, the (at most ``width``) faces j that hold i among their ``width`` nearest, most similar
    first: ``(ids, sims)`` of shape ``(N, width)``, empty slots holding i itself with similarity -1. The
    similarity is symmetric, so each comes from j's own list. Vectorised: one sort of ``N width`` edges."""
    n = nbrs.shape[0]
    tgt = nbrs[:, 1:width + 1].ravel()
    src = np.repeat(np.arange(n, dtype=nbrs.dtype), width)
    sim = sims[:, 1:width + 1].ravel()
    order = np.lexsort((-sim, tgt))                                   # by target, the most similar first
    tgt, src, sim = tgt[order], src[order], sim[order]
    rank = np.arange(len(tgt)) - np.searchsorted(tgt, tgt, side="left")
    keep = (rank < width) & (src != tgt)
    ids = np.repeat(np.arange(n, dtype=nbrs.dtype)[:, None], width, axis=1)
    out = np.full((n, width), -1.0, dtype=np.float32)
    ids[tgt[keep], rank[keep]] = src[keep]
    out[tgt[keep], rank[keep]] = sim[keep]
    return ids, out


def research_weakest(x: np.ndarray, nbrs: np.ndarray, sims: np.ndarray, share: float, *, chunk: int = 8192,
                     threads: int | None = None) -> np.ndarray:
    """Search again exactly, **in place**, the ``share`` of faces whose nearest neighbour (column 1) is the least
    similar, their lists replaced by the exact ones (brute force against ``x`` without copying it:
    ``faiss.knn``, ``chunk`` queries at a time). Returns the rows searched."""
    n, k = nbrs.shape
    m = int(round(share * n))
    if m == 0:
        return np.empty(0, dtype=np.int64)
    rows = np.sort(np.argpartition(sims[:, 1], m - 1)[:m]) if m < n else np.arange(n)
    x = np.ascontiguousarray(x, dtype=np.float32)
    with faiss_threads(threads):
        for start in range(0, m, chunk):
            ids = rows[start:start + chunk]
            s, i = faiss.knn(x[ids], x, k, metric=faiss.METRIC_INNER_PRODUCT)
            i, s = put_self_first(i.astype(nbrs.dtype, copy=False), s.astype(np.float32, copy=False), ids)
            nbrs[ids], sims[ids] = i, s
    return rows


def expand_neighbours(x: np.ndarray, nbrs: np.ndarray, sims: np.ndarray, *, rounds: int = 2, width: int = 10,
                      research: float = 0.0, block: int = 2048, progress: bool = False, threads: int | None = None,
                      first_round: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Improve an approximate kNN graph **in place** by neighbour expansion (NN-descent steps), vectorised.

    In each round, every face's candidates are its K current neighbours, its **reverse** neighbours (up to
    ``width`` faces that hold it among their ``width`` nearest: their search found it where its own missed them,
    the usual loss of an IVF index for a face whose identity-mates sit in lists it did not probe) and the
    ``width`` nearest neighbours (self excluded) of each of its ``width`` nearest neighbours (``width^2`` more).
    Lists are read as they stand: blocks of ``block`` faces in a fixed order, so a later block reads the earlier
    blocks' improved lists and the result is the same run after run. New candidates are scored by exact inner
    product (rows of ``x``, L2-normalised; the reverse ones carry theirs), repeats dropped, the K best kept, sorted,
    self first with similarity 1. A list can only gain: each kept neighbour is at least as similar as the one it
    replaces. Memory: the reverse lists (``N width`` ids and similarities) and ``block width^2 d`` floats gathered
    at a time (210 MB for 256-d faces).

    Args:
        x: ``(N, d)`` float32, L2-normalised rows.
        nbrs, sims: ``(N, K)`` graph of every face (:func:`knn_search`'s layout: self first, sorted), overwritten.
        rounds: expansion rounds (0: nothing done).
        width: neighbours followed per face and per neighbour (at most K - 1).
        research: after the first round (so with ``rounds >= 2``), this share of faces is searched again exactly
            (:func:`research_weakest`: those whose nearest neighbour is the least similar, the faces an IVF index
            failed); the later rounds give what they found to their mates through the reverse lists.
        threads: faiss threads of that exact search (None: faiss's own).
        first_round: the number of rounds already run on these lists (a caller running the rounds one at a time,
            to measure each, passes ``rounds=1, first_round=r``: the re-search then comes where it would).

    Returns:
        ``(nbrs, sims)``, the same arrays.
    """
    import torch

    from .subgraphs import gather_rows

    n, k = nbrs.shape
    w = min(width, k - 1)
    if rounds <= 0 or w <= 0 or n <= k:
        return nbrs, sims
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    buf = xt.new_empty(min(block, n) * w * w, xt.shape[1])
    for r in range(first_round, first_round + rounds):
        if r == 1 and research > 0:
            research_weakest(x, nbrs, sims, research, threads=threads)
        rev_i, rev_s = _reverse_neighbours(nbrs, sims, w)
        for start in tqdm(range(0, n, block), desc=f"kNN expansion {r + 1}/{first_round + rounds}",
                          disable=not progress, unit="block"):
            stop = min(n, start + block)
            new = torch.from_numpy(nbrs[nbrs[start:stop, 1:w + 1], 1:w + 1].astype(np.int64)).flatten(1)
            cand = torch.cat([torch.from_numpy(nbrs[start:stop].astype(np.int64)),
                              torch.from_numpy(rev_i[start:stop].astype(np.int64)), new], dim=1)
            score = torch.bmm(gather_rows(xt, new, buf), xt[start:stop, :, None])[:, :, 0]   # exact cosines
            score = torch.cat([torch.from_numpy(sims[start:stop]), torch.from_numpy(rev_s[start:stop]), score], 1)
            score[:, 0] = float("inf")                                                      # self stays first
            ids, order = torch.sort(cand, dim=1, stable=True)       # a repeated id: its first column is kept
            repeat = torch.zeros_like(ids, dtype=torch.bool)
            repeat[:, 1:] = ids[:, 1:] == ids[:, :-1]
            score.scatter_(1, order, torch.where(repeat, -float("inf"), torch.gather(score, 1, order)))
            top, pick = torch.sort(score, dim=1, descending=True, stable=True)
            top, pick = top[:, :k], pick[:, :k]
            best = torch.gather(cand, 1, pick)
            empty = torch.isinf(top) & (top < 0)                    # fewer than K distinct candidates: a slot
            best = torch.where(empty, best[:, :1], best)            # left empty, as put_self_first writes one
            top = torch.where(empty, torch.tensor(-1.0), top)
            top[:, 0] = 1.0
            nbrs[start:stop] = best.numpy().astype(nbrs.dtype, copy=False)
            sims[start:stop] = top.numpy()
    return nbrs, sims
