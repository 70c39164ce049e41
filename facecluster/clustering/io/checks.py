"""Checks of arrays and counts: the layout of a feature matrix (:func:`check_shape`), its rows (NaN/inf, all
zeros, a norm float32 cannot hold: :func:`check_features`, sampled first), K against N (:func:`check_k`) and room
for new cluster ids (:func:`check_id_room`)."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .rows import RowFile, chunks

__all__ = ["check_shape", "check_layout", "check_features", "check_k", "check_id_room", "first_rows", "INT64_MAX"]

INT64_MAX = int(np.iinfo(np.int64).max)


def first_rows(rows: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return shown + (f", ... ({len(rows)} rows)" if len(rows) > limit else "")



def check_layout(shape: tuple, dtype: np.dtype, name: str, dim: int | None, what: str) -> None:
    if len(shape) != 2:
        raise InputError(f"{name}: expected a 2-D N x d array, got shape {tuple(shape)}")
    if not (np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating)):
        raise InputError(f"{name}: expected a real numeric array, got dtype {dtype}")
    if shape[0] == 0 or shape[1] == 0:
        raise InputError(f"{name}: {what} is empty (shape {tuple(shape)})")
    if dim is not None and shape[1] != dim:
        raise InputError(f"{name}: features have dimension {shape[1]}, expected {dim}")


def check_shape(feats: np.ndarray, name: str = "features", dim: int | None = None, *, what: str = "array") -> None:
    """Raise :class:`InputError` unless ``feats`` is a non-empty 2-D numeric ``N x d`` array (``d == dim`` if given)."""
    check_layout(tuple(feats.shape), feats.dtype, name, dim, what)



_ROW_PROBLEMS = ("nonfinite", "zero", "norm")


def _bad_rows(block: np.ndarray) -> dict[str, np.ndarray]:
    """Masks of the rows of ``block`` with NaN/inf, all zeros, or a float32 squared norm that over/underflows."""
    finite = np.isfinite(block).all(axis=1)
    zero = ~np.any(block != 0, axis=1)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        b32 = block.astype(np.float32, copy=False)
        sq = np.einsum("ij,ij->i", b32, b32)
    return {"nonfinite": ~finite, "zero": zero, "norm": finite & ~zero & ~((sq > 0) & np.isfinite(sq))}


_RESCALE = "rescale those rows (a row's scale does not matter: divide each by its largest absolute value)"


def scan(blocks, n: int, name: str, limit: int = 10, sampled: bool = False, wide: bool = False) -> None:
    """Check ``(row ids, block)`` pairs; raise :class:`InputError` for the first problem (in the order of
    ``_ROW_PROBLEMS``). The scan stops after the block that brings ``limit`` bad rows of one kind: the message then
    counts the rows seen so far (``sampled``: the blocks are a sample of the rows). ``wide``: the file holds
    values wider than float32 (read as float32: a finite value beyond float32's range became inf)."""
    found: dict[str, list[np.ndarray]] = {p: [] for p in _ROW_PROBLEMS}
    seen = 0
    for rows, block in blocks:
        seen += len(rows)
        for problem, mask in _bad_rows(block).items():
            if mask.any():
                found[problem].append(rows[mask])
        if any(sum(map(len, f)) >= limit for f in found.values()):
            break
    for problem in _ROW_PROBLEMS:
        if not found[problem]:
            continue
        rows = np.concatenate(found[problem])
        if sampled:
            where = f"{len(rows)} of {seen} rows sampled across the file (rows: {first_rows(rows)})"
        elif seen < n:
            where = f"{len(rows)} of the first {seen} rows (first rows: {first_rows(rows)}; the rest was not read)"
        else:
            where = f"{len(rows)} rows (first rows: {first_rows(rows)})"
        what = {"nonfinite": f"NaN or inf values in {where}", "zero": f"all-zero rows: {where}",
                "norm": f"values too large or too small to normalise in float32 in {where}; {_RESCALE}"}[problem]
        if problem == "nonfinite" and wide:
            what = (f"NaN or inf values, or values beyond float32's range (about 3.4e38), in {where}; if they are "
                    f"finite, {_RESCALE}")
        if problem == "zero" and not sampled and seen == n:
            what = f"{len(rows)} all-zero rows (first rows: {first_rows(rows)})"
        raise InputError(f"{name}: {what}")


def check_features(feats, name: str = "features", *, chunk_rows: int = 262_144, sample: int = 1024,
                   wide: bool | None = None) -> None:
    """Raise :class:`InputError` if any row has NaN/inf values, is all zeros, or has a float32 L2 norm that
    overflows or underflows (values beyond ~1e19 or all below ~1e-19: normalising it would give NaN or zeros; the
    message says to rescale those rows, whose scale the cosine similarity ignores).

    ``sample`` rows spread evenly over a large input are checked first (a sparse file of zeros, or one whose tail
    is missing, fails at once); then the rows are scanned in chunks, up to the chunk that brings ten bad rows.
    ``wide``: the values came from a float64 file (default: told by ``feats``'s dtype, a :class:`RowFile`'s file
    dtype); the message on inf values then says that a finite value beyond float32's range reads as inf."""
    n = feats.shape[0]
    if wide is None:
        dtype = getattr(feats, "file_dtype", getattr(feats, "dtype", None))  # a RowFile's: what its file holds
        wide = getattr(dtype, "itemsize", 4) > 4
    if n > 4 * sample:
        probe = np.unique(np.linspace(0, n - 1, sample).astype(np.int64))
        block = feats.take(probe) if isinstance(feats, RowFile) else np.asarray(feats[probe])
        scan([(probe, block)], n, name, sampled=True, wide=wide)
    scan(chunks(feats, chunk_rows), n, name, wide=wide)


def check_id_room(ids: np.ndarray, n_new: int, name: str) -> None:
    """New cluster ids are numbered from ``max(ids) + 1``: raise :class:`InputError` if ``n_new`` of them would not
    fit in int64."""
    top = int(np.max(ids))
    if top > INT64_MAX - n_new:
        raise InputError(f"{name}: cluster ids up to {top} leave no room for {n_new} new ids in 64-bit integers")



def check_k(k: int, n: int, name: str = "features") -> None:
    """Raise :class:`InputError` unless ``1 <= k < n`` (K neighbours, self included, need more than K faces)."""
    if k < 1:
        raise InputError(f"{name}: K must be at least 1, got {k}")
    if k >= n:
        raise InputError(f"{name}: K = {k} neighbours needs more than K faces, but there are only {n}")
