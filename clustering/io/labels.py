"""Identity labels and cluster ids: ``.meta`` / ``.txt`` (one integer per line), ``.npy``, ``.npz``
(:func:`load_labels`, :func:`load_cluster_ids`). Parsed strictly: integers only (``215.5`` is an error, not 215),
integer or integral float arrays only, a UTF-8 byte-order mark is skipped, and a bad token is quoted with
escapes."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from .checks import INT64_MAX
from .files import check_input_file, npz_key

__all__ = ["load_labels", "load_cluster_ids"]

_INTEGER = re.compile(r"[+-]?[0-9]+(\.0*)?", re.ASCII)


def _int_tokens(path: Path, what: str) -> np.ndarray:
    """Whitespace-separated integers of a text file (a UTF-8 byte-order mark is skipped), ``(N,)`` int64.
    ``3.0`` is read as 3; anything else (``215.5``, ``bob``, ``1_000``, beyond int64) is an error naming its line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: cannot read {what}: not a UTF-8 text file (expected one integer per line)") \
            from None
    values = []
    for number, line in enumerate(text.splitlines(), 1):
        for token in line.split():
            if not _INTEGER.fullmatch(token):
                raise InputError(f"{path}: cannot read {what}: line {number}: {ascii(token)[:40]} is not an integer")
            value = int(token.split(".")[0])
            if not -INT64_MAX - 1 <= value <= INT64_MAX:
                raise InputError(f"{path}: cannot read {what}: line {number}: {token[:40]} does not fit in 64 bits")
            values.append(value)
    return np.array(values, dtype=np.int64)


def _int_array(values: np.ndarray, path: Path, what: str) -> np.ndarray:
    """An array of integer ids as int64: integer dtypes within int64, or integral finite floats; else an error."""
    values = np.asarray(values).reshape(-1)
    if values.dtype == bool or not (np.issubdtype(values.dtype, np.integer) or
                                    np.issubdtype(values.dtype, np.floating)):
        raise InputError(f"{path}: {what} must be integers, got an array of dtype {values.dtype}")
    if values.size and np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise InputError(f"{path}: {what} must be integers")
    if values.size and (values.max() > INT64_MAX or values.min() < -INT64_MAX - 1):
        raise InputError(f"{path}: {what} must fit in 64-bit integers")
    return values.astype(np.int64)


def load_labels(path: str | os.PathLike, n: int | None = None, *, what: str = "labels") -> np.ndarray:
    """Load integer identity labels (``.meta``/``.txt`` one per line, ``.npy``, ``.npz``).

    Args:
        path: label file.
        n: expected number of labels (the number of feature rows); checked when given.
        what: what the integers are, for messages.

    Returns:
        ``(N,)`` int64 array.
    """
    path = check_input_file(path, what)
    ext = path.suffix.lower()
    if ext in (".meta", ".txt", ".labels", ""):
        labels = _int_tokens(path, what)
    elif ext in (".npy", ".npz"):
        try:
            if ext == ".npy":
                labels = np.load(path, allow_pickle=False)
            else:
                with np.load(path, allow_pickle=False) as z:
                    labels = z[npz_key(path, list(z.keys()), ("labels", "y"))]
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{path}: cannot read {what}: {' '.join(str(exc).split())[:160]}") from None
        labels = _int_array(labels, path, what)
    else:
        raise InputError(f"{path}: unknown label format '{ext}' (expected .meta, .txt, .npy or .npz)")
    if n is not None and labels.shape[0] != n:
        raise InputError(f"{path}: {labels.shape[0]} {what} for {n} faces (counts must match)")
    return labels


def load_cluster_ids(path: str | os.PathLike, n: int | None = None) -> np.ndarray:
    """Read a clustering written by ``cluster.py``: one integer id per line (``.npy``/``.npz`` also accepted).

    Args:
        path: the file.
        n: expected number of ids (the rows of the features it clusters); checked when given.

    Raises:
        InputError: missing, unreadable, non-integer, empty or of the wrong length.
    """
    path = check_input_file(path, "previous clustering")
    if path.suffix.lower() in (".npy", ".npz"):
        ids = load_labels(path, what="cluster ids")
    else:
        try:
            ids = _int_tokens(path, "cluster ids")
        except InputError as err:
            raise InputError(f"{err}; not a clustering (expected one integer cluster id per line)") from None
    if ids.shape[0] == 0:
        raise InputError(f"{path}: clustering is empty (0 faces)")
    if n is not None and ids.shape[0] != n:
        raise InputError(f"{path}: {ids.shape[0]} cluster ids for {n} previous faces (counts must match)")
    return ids
