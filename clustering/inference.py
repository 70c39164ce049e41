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

__all__ = ["evaluating", "predict_k", "predict_pairs", "project_faces", "resolve_device"]


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


def _batches(n: int, batch_size: int, progress: bool, desc: str):
    return tqdm(range(0, n, batch_size), desc=desc, disable=not progress, unit="batch")


@torch.inference_mode()
def project_faces(model: torch.nn.Module, xt: torch.Tensor, batch_size: int = 256,
                  faces: torch.Tensor | None = None) -> torch.Tensor:
    """``model.embed.project`` of every face, ``(N, d)``, on the device of ``xt``, computed in chunks (with
    ``faces``, of those faces only: the other rows are left uninitialised).

    Part of the networks' token embedding depends on one face only: inference computes it once per face and
    gathers it per (centre, neighbour) pair (see :class:`models.NeighbourEmbedding`)."""
    chunk = 64 * batch_size
    if faces is None:
        return torch.cat([model.embed.project(xt[i:i + chunk]) for i in range(0, xt.shape[0], chunk)])
    table = xt.new_empty(xt.shape[0], model.embed.d_model)
    faces = faces.to(xt.device)
    for i in range(0, faces.shape[0], chunk):
        table[faces[i:i + chunk]] = model.embed.project(xt[faces[i:i + chunk]])
    return table


def _face_table(model: torch.nn.Module, xt: torch.Tensor, nb: torch.Tensor, rows: torch.Tensor | None,
                batch_size: int) -> torch.Tensor:
    """:func:`project_faces` of the faces the centres ``rows`` (all when None) see."""
    if rows is None or 2 * rows.shape[0] >= nb.shape[0]:
        return project_faces(model, xt, batch_size)
    return project_faces(model, xt, batch_size, faces=torch.unique(nb[rows]))


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
              progress: bool = False) -> np.ndarray:
    """Predicted Top-K size ``k_i`` in 1..K for every face, ``(N,)`` int64 (model run in eval mode, batched, and
    left in its mode: :func:`evaluating`); with
    ``rows`` (R,), for those centres only, ``(R,)``."""
    with evaluating(model):
        return _predict_k(model, x, nbrs, sims, rows, batch_size, torch.device(device), progress)


def _predict_k(model: torch.nn.Module, x: np.ndarray | torch.Tensor, nbrs: np.ndarray, sims: np.ndarray,
               rows: np.ndarray | None, batch_size: int, device: torch.device, progress: bool) -> np.ndarray:
    xt = as_tensor(x, torch.float32).to(device)
    nb = as_tensor(nbrs, torch.int64)
    st = as_tensor(sims, torch.float32)
    centres = _rows(rows, nb.shape[0])
    table = _face_table(model, xt, nb, None if rows is None else centres, batch_size) if _per_face(model) else None
    out = np.empty(centres.shape[0], dtype=np.int64)
    for start in _batches(centres.shape[0], batch_size, progress, "Top-K"):
        idx = centres[start:start + batch_size]
        feats, s = gather_subgraphs(xt, nb, st, idx)
        proj = None if table is None else table[nb[idx].to(device)]  # (B, K, d): the per-face token term
        out[start:start + len(idx)] = model.predict_k(feats, s, proj=proj).cpu().numpy()
    return out


@torch.inference_mode()
def predict_pairs(model: torch.nn.Module, x: np.ndarray | torch.Tensor, nbrs: np.ndarray, sims: np.ndarray,
                  k: np.ndarray, *, rows: np.ndarray | None = None, widths: np.ndarray | None = None,
                  batch_size: int = 256, device: str | torch.device = "cpu", progress: bool = False) -> np.ndarray:
    """Pair-classifier (SDT or GNN) probability that ``(i, nbrs[i, s])`` share an identity, ``(N, K)`` float32
    (model in eval mode). ``k`` (N,): the predicted Top-K sizes the SDT reads. ``rows`` (R,): score those centres
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
        return _predict_pairs(model, x, nbrs, sims, k, rows, widths, batch_size, torch.device(device), progress)


def _predict_pairs(model: torch.nn.Module, x: np.ndarray | torch.Tensor, nbrs: np.ndarray, sims: np.ndarray,
                   k: np.ndarray, rows: np.ndarray | None, widths: np.ndarray | None, batch_size: int,
                   device: torch.device, progress: bool) -> np.ndarray:
    xt = as_tensor(x, torch.float32).to(device)
    pivot_u = getattr(model, "pivot_u", None)
    window = getattr(model, "window", None)  # an SDT with a window scores (and needs) the first W neighbours only
    nb_all = as_tensor(nbrs, torch.int64)
    nb = nb_all[:, :window]
    st = as_tensor(sims, torch.float32)[:, :window]
    kt = as_tensor(k, torch.int64)
    centres = _rows(rows, nb.shape[0])
    width = None
    if widths is not None:
        width = as_tensor(widths, torch.int64).clamp(1, nb.shape[1])
        if width.shape != centres.shape:
            raise ValueError(f"widths must have shape {tuple(centres.shape)}, got {tuple(width.shape)}")
    table = _face_table(model, xt, nb, None if rows is None else centres, batch_size) if _per_face(model) else None
    out = np.ones(nbrs.shape, dtype=np.float32)  # 1 beyond the window: no SDT vote, the Jaccard weight decides
    if rows is not None or widths is not None:
        out[:, : nb.shape[1]] = 0.0  # pairs not scored
    # centres in order of k, so that each batch's Top-k attention mask needs only a small partial top-k (dense
    # attention: in order of width, so that each batch's last block computes few tokens)
    key = width if width is not None and not getattr(model, "use_topk_mask", True) else kt[centres]
    order = torch.argsort(key, stable=True)
    centres = centres[order]
    width = None if width is None else width[order]
    takes_width = "width" in inspect.signature(model.forward).parameters
    for start in _batches(centres.shape[0], batch_size, progress, "SDT"):
        idx = centres[start:start + batch_size]
        feats, s = gather_subgraphs(xt, nb, st, idx)
        inputs = {}
        if table is not None:
            inputs["proj"] = table[nb[idx].to(device)]  # (B, K, d): the per-face part of the token embedding
        if pivot_u:
            inputs["adj"] = _pivot_links(nb_all, idx, pivot_u).to(device)  # (B, K, K)
        if width is not None and takes_width:
            inputs["width"] = int(width[start:start + batch_size].max())
        logits = model(feats, s, kt[idx].to(device), **inputs)  # (B, W)
        prob = torch.sigmoid(logits.float()).cpu()
        if width is not None:  # each row's pairs past its width: not scored
            prob.masked_fill_(torch.arange(prob.size(1)) >= width[start:start + batch_size, None], 0.0)
        out[idx.numpy(), : prob.size(1)] = prob.numpy()
    return out


def _pivot_links(nbrs: torch.Tensor, idx: torch.Tensor, u: int) -> torch.Tensor:
    """:func:`models.pivot.pivot_adjacency` with ``u`` capped at K - 1: a collection of K <= u faces (K is capped
    at their number) links each node to all its K - 1 others; with K = 1 there is no link."""
    from models.pivot import pivot_adjacency

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
