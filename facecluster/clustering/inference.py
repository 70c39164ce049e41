"""The two networks run over a kNN graph in batches of centres (METHOD.md section 1, steps 4 and 6):
:func:`predict_k` (Top-K predictor) and :func:`predict_pairs` (the pair classifier: the SDT or a GNN baseline),
each for every centre or for the centres (and leading neighbours) a graph rule needs; :func:`resolve_device`."""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from .subgraphs import as_tensor, gather_subgraphs

__all__ = ["evaluating", "predict_k", "predict_pairs", "project_faces", "resolve_device", "ROW_BLOCK"]


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model`` in eval mode (no dropout) for the block, and afterwards every submodule's ``training`` flag as it
    was: a network passed in (the live training model of the evaluation callback) is left as it came."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


# Batches never cross a multiple of ROW_BLOCK row ids, and the per-face table is computed in chunks aligned on row
# ids: a process that scores whole row blocks (a rank of a distributed run, clustering.distributed) forms exactly
# the batches, of exactly the shapes, that one process scoring everything forms, so its scores are bit for bit the
# same (a float GEMM's rounding may depend on its shape: one row alone and the same row among 256 can differ).
ROW_BLOCK = 65_536


def _plan(centres: torch.Tensor, key: torch.Tensor | None, batch_size: int, progress: bool, desc: str,
          row_block: int = ROW_BLOCK):
    """``(order, batches)``: the centres sorted by (row block, ``key``) (stable) and cut into ``(start, stop)``
    slices of ``order`` of at most ``batch_size`` that never cross a row block (``row_block`` rows)."""
    block = torch.div(centres, row_block, rounding_mode="floor")
    order = torch.argsort(block if key is None else block * 4096 + key, stable=True)  # key (k, width) < 4096
    b = block[order]
    cut = (torch.nonzero(b[1:] != b[:-1])[:, 0] + 1).tolist()
    slices = [(s, min(s + batch_size, stop)) for first, stop in zip([0, *cut], [*cut, len(order)])
              for s in range(first, stop, batch_size)]
    return order, tqdm(slices, desc=desc, disable=not progress, unit="batch")


@torch.inference_mode()
def project_faces(model: torch.nn.Module, xt: torch.Tensor, batch_size: int = 256,
                  faces: torch.Tensor | None = None) -> torch.Tensor:
    """``model.embed.project`` of every face, ``(N, d)``, on the device of ``xt``, into one preallocated table, in
    chunks of ``64 batch_size`` rows aligned on row ids (with ``faces``: only the chunks that hold one of them; the
    other rows are left uninitialised). A row is computed in the same chunk whichever faces are asked for, so its
    value never depends on them.

    Part of the networks' token embedding depends on one face only: inference computes it once per face and
    gathers it per (centre, neighbour) pair (see :class:`models.NeighbourEmbedding`)."""
    chunk = 64 * batch_size
    table = xt.new_empty(xt.shape[0], model.embed.d_model)
    starts = (range(0, xt.shape[0], chunk) if faces is None
              else (torch.unique(torch.div(faces, chunk, rounding_mode="floor")) * chunk).tolist())
    for i in starts:
        table[i:i + chunk] = model.embed.project(xt[i:i + chunk])
    return table


def _face_table(model: torch.nn.Module, xt: torch.Tensor, nb: torch.Tensor, rows: torch.Tensor | None,
                batch_size: int) -> torch.Tensor:
    """:func:`project_faces` of the faces the centres ``rows`` (all when None) see (found with an ``(N,)`` mask,
    row chunk by row chunk: no copy of their neighbour lists)."""
    if rows is None or 2 * rows.shape[0] >= nb.shape[0]:
        return project_faces(model, xt, batch_size)
    seen = torch.zeros(nb.shape[0], dtype=torch.bool)
    for i in range(0, rows.shape[0], 65_536):
        seen[nb[rows[i:i + 65_536]].reshape(-1)] = True
    return project_faces(model, xt, batch_size, faces=torch.nonzero(seen)[:, 0])


def _ids(nbrs: np.ndarray | torch.Tensor) -> torch.Tensor:
    """The neighbour ids as a tensor of their own integer dtype (int32 or int64), without a copy: batches index
    with them directly (an int64 copy of ``(N, K)`` ids is 640 MB at 1M faces)."""
    if isinstance(nbrs, torch.Tensor):
        return nbrs
    nbrs = np.ascontiguousarray(nbrs)
    return torch.from_numpy(nbrs if nbrs.dtype in (np.int32, np.int64) else nbrs.astype(np.int64))


def _gather_buffer(xt: torch.Tensor, batch_size: int, k: int) -> torch.Tensor:
    """One batch's neighbour features, ``(batch_size K, d)``, reused by every batch
    (:func:`~clustering.subgraphs.gather_rows`: no fresh 10 MB per batch)."""
    return xt.new_empty(batch_size * k, xt.shape[1])


def _per_face(model: torch.nn.Module) -> bool:
    """Whether the network's token embedding has a per-face term to precompute (feature tokens; not relational
    tokens, not the GNNs)."""
    return getattr(getattr(model, "embed", None), "per_face", False)


def _rows(rows: np.ndarray | None, n: int) -> torch.Tensor:
    if rows is None:
        return torch.arange(n)
    rows = as_tensor(rows, torch.int64)
    if rows.dim() != 1 or (len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= n)):
        raise ValueError(f"rows must be 1-D ids in 0..{n - 1}")
    return rows


@torch.inference_mode()
def predict_k(model: torch.nn.Module, x: np.ndarray | torch.Tensor, nbrs: np.ndarray, sims: np.ndarray, *,
              rows: np.ndarray | None = None, batch_size: int = 256, device: str | torch.device = "cpu",
              progress: bool = False, row_block: int = ROW_BLOCK) -> np.ndarray:
    """Predicted Top-K size ``k_i`` in 1..K for every face, ``(N,)`` int64 (model run in eval mode, batched, and
    left in its mode: :func:`evaluating`); with
    ``rows`` (R,), for those centres only, ``(R,)``."""
    with evaluating(model):
        return _predict_k(model, x, nbrs, sims, rows, batch_size, torch.device(device), progress, row_block)


def _predict_k(model: torch.nn.Module, x: np.ndarray | torch.Tensor, nbrs: np.ndarray, sims: np.ndarray,
               rows: np.ndarray | None, batch_size: int, device: torch.device, progress: bool,
               row_block: int) -> np.ndarray:
    xt = as_tensor(x, torch.float32).to(device)
    nb = _ids(nbrs)
    st = as_tensor(sims, torch.float32)
    centres = _rows(rows, nb.shape[0])
    table = _face_table(model, xt, nb, None if rows is None else centres, batch_size) if _per_face(model) else None
    out = np.empty(centres.shape[0], dtype=np.int64)
    order, batches = _plan(centres, None, batch_size, progress, "Top-K", row_block)
    buf = _gather_buffer(xt, batch_size, nb.shape[1])
    for start, stop in batches:
        pos = order[start:stop]
        idx = centres[pos]
        feats, s = gather_subgraphs(xt, nb, st, idx, buf)
        proj = None if table is None else table[nb[idx].to(device)]  # (B, K, d): the per-face token term
        out[pos.numpy()] = model.predict_k(feats, s, proj=proj).cpu().numpy()
    return out


@torch.inference_mode()
def predict_pairs(model: torch.nn.Module, x: np.ndarray | torch.Tensor, nbrs: np.ndarray, sims: np.ndarray,
                  k: np.ndarray, *, rows: np.ndarray | None = None, widths: np.ndarray | None = None,
                  span: tuple[int, int] | None = None, batch_size: int = 256, device: str | torch.device = "cpu",
                  progress: bool = False, row_block: int = ROW_BLOCK) -> np.ndarray:
    """Pair-classifier (SDT or GNN) probability that ``(i, nbrs[i, s])`` share an identity, ``(N, K)`` float32
    (model in eval mode); with ``span = (lo, hi)``, of rows ``lo:hi`` only, ``(hi - lo, K)`` (``rows`` must lie
    there: a rank of a distributed run). ``k`` (N,): the predicted Top-K sizes the SDT reads. ``rows`` (R,): score those centres
    only; ``widths`` (R,) (or (N,) without ``rows``): of each, its first ``widths`` neighbours only (an SDT then
    skips the other tokens in its last block); the pairs not scored get 0 (:func:`pairs_to_score` says which pairs
    a graph rule needs). A network with a token ``embed`` gets its per-face part precomputed (``proj``); one with a
    ``pivot_u`` (the GNN baselines) gets each batch's pivot-subgraph links ``adj``
    (:func:`models.pivot.pivot_adjacency` on the whole kNN graph; ``u`` capped at K - 1 on fewer faces than u).

    Beyond an SDT's window the value is 1 (no vote), so the Jaccard weight alone decides those edges: zeroing them
    instead cuts identities larger than the window apart (measured on lfw-dlib test, whose largest identity has
    236 faces: pairwise F 0.75 instead of 0.94 with a window of 32). The model is run in eval mode and left in
    the mode it came in (:func:`evaluating`)."""
    with evaluating(model):
        return _predict_pairs(model, x, nbrs, sims, k, rows, widths, span, batch_size, torch.device(device), progress,
                              row_block)


def _predict_pairs(model: torch.nn.Module, x: np.ndarray | torch.Tensor, nbrs: np.ndarray, sims: np.ndarray,
                   k: np.ndarray, rows: np.ndarray | None, widths: np.ndarray | None,
                   span: tuple[int, int] | None, batch_size: int, device: torch.device, progress: bool,
                   row_block: int) -> np.ndarray:
    xt = as_tensor(x, torch.float32).to(device)
    pivot_u = getattr(model, "pivot_u", None)
    window = getattr(model, "window", None)  # an SDT with a window scores (and needs) the first W neighbours only
    nb_all = _ids(nbrs)
    nb = nb_all[:, :window]
    st = as_tensor(sims, torch.float32)[:, :window]
    kt = as_tensor(k, torch.int64)
    centres = _rows(rows, nb.shape[0])
    width = None
    if widths is not None:
        width = as_tensor(widths, torch.int64).clamp(1, nb.shape[1])
        if width.shape != centres.shape:
            raise ValueError(f"widths must have shape {tuple(centres.shape)}, got {tuple(width.shape)}")
    lo, hi = span or (0, nb.shape[0])
    if len(centres) and (int(centres.min()) < lo or int(centres.max()) >= hi):
        raise ValueError(f"rows must lie in the span {lo}..{hi - 1}")
    table = _face_table(model, xt, nb, None if rows is None else centres, batch_size) if _per_face(model) else None
    out = np.ones((hi - lo, nbrs.shape[1]), dtype=np.float32)  # 1 beyond the window: no SDT vote
    if rows is not None or widths is not None:
        out[:, : nb.shape[1]] = 0.0  # pairs not scored
    # centres in order of k, so that each batch's Top-k attention mask needs only a small partial top-k (dense
    # attention: in order of width, so that each batch's last block computes few tokens), within each row block
    key = width if width is not None and not getattr(model, "use_topk_mask", True) else kt[centres]
    order, batches = _plan(centres, key, batch_size, progress, "SDT", row_block)
    centres = centres[order]
    width = None if width is None else width[order]
    takes_width = "width" in inspect.signature(model.forward).parameters
    buf = _gather_buffer(xt, batch_size, nb.shape[1])
    for start, stop in batches:
        idx = centres[start:stop]
        feats, s = gather_subgraphs(xt, nb, st, idx, buf)
        inputs = {}
        if table is not None:
            inputs["proj"] = table[nb[idx].to(device)]  # (B, K, d): the per-face part of the token embedding
        if pivot_u:
            inputs["adj"] = _pivot_links(nb_all, idx, pivot_u).to(device)  # (B, K, K)
        if width is not None and takes_width:
            inputs["width"] = int(width[start:stop].max())
        logits = model(feats, s, kt[idx].to(device), **inputs)  # (B, W)
        prob = torch.sigmoid(logits.float()).cpu()
        if width is not None:  # each row's pairs past its width: not scored
            prob.masked_fill_(torch.arange(prob.size(1)) >= width[start:stop, None], 0.0)
        out[idx.numpy() - lo, : prob.size(1)] = prob.numpy()
    return out


def _pivot_links(nbrs: torch.Tensor, idx: torch.Tensor, u: int) -> torch.Tensor:
    """:func:`models.pivot.pivot_adjacency` with ``u`` capped at K - 1: a collection of K <= u faces (K is capped
    at their number) links each node to all its K - 1 others; with K = 1 there is no link."""
    from facecluster.models.pivot import pivot_adjacency

    u = min(u, nbrs.shape[1] - 1)
    if u < 1:
        return torch.zeros(len(idx), nbrs.shape[1], nbrs.shape[1], dtype=torch.bool, device=nbrs.device)
    return pivot_adjacency(nbrs, idx, u)


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a CUDA device, else ``"cpu"``; a CUDA device torch does not see is
    an :class:`~clustering.errors.InputError` (not a model problem)."""
    from .errors import InputError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"device {device!r}: not a torch device (auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r}: torch sees no CUDA device (CPU-only torch build, or no GPU or "
                             f"driver); use the CPU (--device cpu or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device
