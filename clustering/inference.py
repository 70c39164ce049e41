"""The two networks run over a kNN graph in batches of centres (METHOD.md section 1, steps 4 and 6):
:func:`predict_k` (Top-K predictor) and :func:`predict_pairs` (the pair classifier: the SDT or a GNN baseline),
each for every centre or for the centres (and leading neighbours) a graph rule needs; :func:`resolve_device`."""
from __future__ import annotations

import inspect

import numpy as np
import torch
from tqdm.auto import tqdm

from .subgraphs import as_tensor, gather_subgraphs

__all__ = ["predict_k", "predict_pairs", "project_faces", "resolve_device"]


def _batches(n: int, batch_size: int, progress: bool, desc: str):
    return tqdm(range(0, n, batch_size), desc=desc, disable=not progress, unit="batch")


@torch.inference_mode()
def project_faces(model: torch.nn.Module, xt: torch.Tensor, batch_size: int = 256,
                  faces: torch.Tensor | None = None) -> torch.Tensor:
    """``model.embed.project`` of every face, ``(N, d)``, on the device of ``xt``, computed in chunks into one
    preallocated table (with ``faces``, of those faces only: the other rows are left uninitialised).

    Part of the networks' token embedding depends on one face only: inference computes it once per face and
    gathers it per (centre, neighbour) pair (see :class:`models.NeighbourEmbedding`)."""
    chunk = 64 * batch_size
    table = xt.new_empty(xt.shape[0], model.embed.d_model)
    if faces is None:
        for i in range(0, xt.shape[0], chunk):
            table[i:i + chunk] = model.embed.project(xt[i:i + chunk])
        return table
    faces = faces.to(xt.device)
    for i in range(0, faces.shape[0], chunk):
        table[faces[i:i + chunk]] = model.embed.project(xt[faces[i:i + chunk]])
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
    """Predicted Top-K size ``k_i`` in 1..K for every face, ``(N,)`` int64 (model in eval mode, batched); with
    ``rows`` (R,), for those centres only, ``(R,)``."""
    model.eval()
    device = torch.device(device)
    xt = as_tensor(x, torch.float32).to(device)
    nb = _ids(nbrs)
    st = as_tensor(sims, torch.float32)
    centres = _rows(rows, nb.shape[0])
    table = _face_table(model, xt, nb, None if rows is None else centres, batch_size)
    out = np.empty(centres.shape[0], dtype=np.int64)
    for start in _batches(centres.shape[0], batch_size, progress, "Top-K"):
        idx = centres[start:start + batch_size]
        feats, s = gather_subgraphs(xt, nb, st, idx)
        proj = table[nb[idx].to(device)]  # (B, K, d): the per-face part of the token embedding
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
    (:func:`clustering.graph.pivot_adjacency` on the whole kNN graph).

    Beyond an SDT's window the value is 1 (no vote), so the Jaccard weight alone decides those edges: zeroing them
    instead cuts identities larger than the window apart (measured on lfw-dlib test, whose largest identity has
    236 faces: pairwise F 0.75 instead of 0.94 with a window of 32)."""
    model.eval()
    device = torch.device(device)
    xt = as_tensor(x, torch.float32).to(device)
    pivot_u = getattr(model, "pivot_u", None)
    if pivot_u:
        from .graph import pivot_adjacency  # PyG: imported only for the GNNs
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
    table = _face_table(model, xt, nb, None if rows is None else centres, batch_size) \
        if hasattr(model, "embed") else None
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
            inputs["adj"] = pivot_adjacency(nb_all, idx, pivot_u).to(device)  # (B, K, K)
        if width is not None and takes_width:
            inputs["width"] = int(width[start:start + batch_size].max())
        logits = model(feats, s, kt[idx].to(device), **inputs)  # (B, W)
        prob = torch.sigmoid(logits.float()).cpu()
        if width is not None:  # each row's pairs past its width: not scored
            prob.masked_fill_(torch.arange(prob.size(1)) >= width[start:start + batch_size, None], 0.0)
        out[idx.numpy(), : prob.size(1)] = prob.numpy()
    return out


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a CUDA device, else ``"cpu"``; a CUDA device torch does not see is
    an :class:`~clustering.io.InputError` (not a model problem)."""
    from .io import InputError

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
