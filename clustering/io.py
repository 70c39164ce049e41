"""Reading face embeddings and identity labels, with one-line errors for bad input.

Formats (METHOD.md section 3):

* learn-to-cluster ``.bin``: raw little-endian float32, no header, ``N x d`` row-major (``d`` must be given);
  memory-mapped, so a 5M x 256 file costs no RAM until rows are touched.
* ``.npy`` (memory-mapped when possible) and ``.npz`` (the array named ``features``/``feats``/``x``, or the only one).
* labels: ``.meta`` / ``.txt`` one integer per line, or ``.npy`` / ``.npz``.

Every problem raises :class:`InputError` whose message names the file and the problem on one line; entry points
print it and exit non-zero instead of showing a traceback.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["InputError", "load_features", "load_labels", "load_cluster_ids", "check_model_file", "check_shape",
           "check_features", "check_k"]


class InputError(ValueError):
    """Bad user input. ``str(err)`` is a complete one-line message naming the file and the problem."""


def _first(rows: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return shown + (f", ... ({len(rows)} rows)" if len(rows) > limit else "")


def _require_file(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{path}: {what} file does not exist")
    if path.is_dir():
        raise InputError(f"{path}: expected a {what} file, found a directory")


def load_features(path: str | os.PathLike, dim: int | None = None, *, check: bool = True,
                  chunk_rows: int = 262_144) -> np.ndarray:
    """Load an ``N x d`` float32 feature matrix.

    Args:
        path: ``.bin`` (needs ``dim``), ``.npy`` or ``.npz`` file.
        dim: feature dimension of a ``.bin`` file; for other formats, if given, it must match.
        check: scan the rows for NaN/inf and all-zero rows (chunked, so memory stays bounded).
        chunk_rows: rows per chunk for the scan.

    Returns:
        ``(N, d)`` float32 array; a read-only memory map for ``.bin`` and uncompressed float32 ``.npy``.

    Raises:
        InputError: missing file, unknown extension, size not a multiple of ``d``, wrong ``dim``, empty input,
            non-finite or all-zero rows (the first row numbers are listed).
    """
    path = Path(path)
    _require_file(path, "features")
    ext = path.suffix.lower()
    if ext == ".bin":
        if dim is None or dim <= 0:
            raise InputError(f"{path}: a .bin feature file needs its dimension (--dim)")
        size = path.stat().st_size
        if size % (4 * dim):
            raise InputError(f"{path}: size {size} bytes is not a multiple of 4 * dim = {4 * dim} "
                             f"(float32 rows of dim {dim}); wrong --dim?")
        n = size // (4 * dim)
        if n == 0:
            raise InputError(f"{path}: file is empty (0 faces)")
        feats = np.memmap(path, dtype="<f4", mode="r", shape=(n, dim))
    elif ext in (".npy", ".npz"):
        try:
            if ext == ".npy":
                feats = np.load(path, mmap_mode="r", allow_pickle=False)
            else:
                with np.load(path, allow_pickle=False) as z:
                    keys = list(z.keys())
                    key = next((k for k in ("features", "feats", "x", "embeddings") if k in keys),
                               keys[0] if len(keys) == 1 else None)
                    if key is None:
                        raise InputError(f"{path}: .npz holds {keys}; name the array 'features'")
                    feats = z[key]
        except InputError:
            raise
        except Exception as exc:  # corrupt or non-numpy file
            raise InputError(f"{path}: cannot read as {ext}: {exc}") from None
        check_shape(feats, str(path), dim, what="file")
        if feats.dtype != np.float32:
            feats = np.asarray(feats, dtype=np.float32)
    else:
        raise InputError(f"{path}: unknown feature format '{ext}' (expected .bin, .npy or .npz)")
    if check:
        check_features(feats, str(path), chunk_rows=chunk_rows)
    return feats


def check_shape(feats: np.ndarray, name: str = "features", dim: int | None = None, *, what: str = "array") -> None:
    """Raise :class:`InputError` unless ``feats`` is a non-empty 2-D numeric ``N x d`` array (``d == dim`` if given)."""
    if feats.ndim != 2:
        raise InputError(f"{name}: expected a 2-D N x d array, got shape {tuple(feats.shape)}")
    if not (np.issubdtype(feats.dtype, np.number) and not np.issubdtype(feats.dtype, np.complexfloating)):
        raise InputError(f"{name}: expected a real numeric array, got dtype {feats.dtype}")
    if feats.shape[0] == 0 or feats.shape[1] == 0:
        raise InputError(f"{name}: {what} is empty (shape {tuple(feats.shape)})")
    if dim is not None and feats.shape[1] != dim:
        raise InputError(f"{name}: features have dimension {feats.shape[1]}, expected {dim}")


def check_features(feats: np.ndarray, name: str = "features", *, chunk_rows: int = 262_144) -> None:
    """Raise :class:`InputError` if any row has NaN/inf values, is all zeros, or has a float32 L2 norm that
    overflows or underflows (values beyond ~1e19 or all below ~1e-19: normalising it would give NaN or zeros).
    Scanned in chunks."""
    bad_finite: list[np.ndarray] = []
    bad_zero: list[np.ndarray] = []
    bad_norm: list[np.ndarray] = []
    for start in range(0, feats.shape[0], chunk_rows):
        block = np.asarray(feats[start:start + chunk_rows])
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            bad_finite.append(np.flatnonzero(~finite) + start)
        zero = ~np.any(block != 0, axis=1)
        if zero.any():
            bad_zero.append(np.flatnonzero(zero) + start)
        b32 = block.astype(np.float32, copy=False)
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            sq = np.einsum("ij,ij->i", b32, b32)
        odd = finite & ~zero & ~((sq > 0) & np.isfinite(sq))
        if odd.any():
            bad_norm.append(np.flatnonzero(odd) + start)
    if bad_finite:
        rows = np.concatenate(bad_finite)
        raise InputError(f"{name}: NaN or inf values in {len(rows)} rows (first rows: {_first(rows)})")
    if bad_zero:
        rows = np.concatenate(bad_zero)
        raise InputError(f"{name}: {len(rows)} all-zero rows (first rows: {_first(rows)})")
    if bad_norm:
        rows = np.concatenate(bad_norm)
        raise InputError(f"{name}: {len(rows)} rows with values too large or too small to normalise in float32 "
                         f"(first rows: {_first(rows)})")


def load_labels(path: str | os.PathLike, n: int | None = None) -> np.ndarray:
    """Load integer identity labels (``.meta``/``.txt`` one per line, ``.npy``, ``.npz``).

    Args:
        path: label file.
        n: expected number of labels (the number of feature rows); checked when given.

    Returns:
        ``(N,)`` int64 array.
    """
    path = Path(path)
    _require_file(path, "labels")
    ext = path.suffix.lower()
    try:
        if ext in (".meta", ".txt", ".labels", ""):
            text = path.read_text().split()
            labels = np.array([int(float(t)) for t in text], dtype=np.int64)
        elif ext == ".npy":
            labels = np.load(path, allow_pickle=False)
        elif ext == ".npz":
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                key = next((k for k in ("labels", "y") if k in keys), keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise InputError(f"{path}: .npz holds {keys}; name the array 'labels'")
                labels = z[key]
        else:
            raise InputError(f"{path}: unknown label format '{ext}' (expected .meta, .txt, .npy or .npz)")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: cannot read labels: {exc}") from None
    labels = np.asarray(labels).reshape(-1)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise InputError(f"{path}: labels must be integers")
    labels = labels.astype(np.int64)
    if n is not None and labels.shape[0] != n:
        raise InputError(f"{path}: {labels.shape[0]} labels for {n} faces (counts must match)")
    return labels


def load_cluster_ids(path: str | os.PathLike, n: int | None = None) -> np.ndarray:
    """Read a clustering written by ``cluster.py``: one integer id per line (``.npy``/``.npz`` also accepted).

    Args:
        path: the file.
        n: expected number of ids (the rows of the features it clusters); checked when given.

    Raises:
        InputError: missing, unreadable, non-integer, empty or of the wrong length.
    """
    path = Path(path)
    _require_file(path, "previous clustering")
    if path.suffix.lower() in (".npy", ".npz"):
        ids = load_labels(path)
    else:
        try:
            ids = np.array([int(t) for t in path.read_text().split()], dtype=np.int64)
        except (ValueError, UnicodeDecodeError):
            raise InputError(f"{path}: not a clustering (expected one integer cluster id per line)") from None
    if ids.shape[0] == 0:
        raise InputError(f"{path}: clustering is empty (0 faces)")
    if n is not None and ids.shape[0] != n:
        raise InputError(f"{path}: {ids.shape[0]} cluster ids for {n} previous faces (counts must match)")
    return ids


def check_model_file(path: str | os.PathLike) -> None:
    """Cheap checks of a model file before torch reads it: it exists and is a zip archive (``torch.save``'s
    format). A truncated file has lost the archive's directory at its end, so it fails here too."""
    import zipfile

    path = Path(path)
    _require_file(path, "model")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a readable model file (not a torch.save archive); truncated or not a file "
                         f"written by export.py")


def check_k(k: int, n: int, name: str = "features") -> None:
    """Raise :class:`InputError` unless ``1 <= k < n`` (K neighbours, self included, need more than K faces)."""
    if k < 1:
        raise InputError(f"{name}: K must be at least 1, got {k}")
    if k >= n:
        raise InputError(f"{name}: K = {k} neighbours needs more than K faces, but there are only {n}")
