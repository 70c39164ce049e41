"""Identity labels and cluster ids: ``.meta`` / ``.txt`` (one integer per line), ``.npy``, ``.npz``
(:func:`load_labels`, :func:`load_cluster_ids`). Parsed strictly: integers only (``215.5`` is an error, not 215),
one per line (a line with two is an error), 1-D integer or integral float arrays only, every value within int64, a
UTF-8 byte-order mark is skipped, and a bad token is quoted with escapes; the line or row is named."""
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
    """The integers of a text file, one per line (blank lines skipped; a UTF-8 byte-order mark is skipped),
    ``(N,)`` int64. ``3.0`` is read as 3; anything else (``215.5``, ``bob``, ``1_000``, beyond int64) and a line
    with two values (which, with a line lost elsewhere, would keep the count and shift every label between) are
    errors naming the line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: cannot read {what}: not a UTF-8 text file (expected one integer per line)") \
            from None
    values = []
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if len(tokens) > 1:
            raise InputError(f"{path}: cannot read {what}: line {number}: {len(tokens)} values "
                             f"({ascii(line.strip())[:40]}); expected one integer per line")
        for token in tokens:
            if not _INTEGER.fullmatch(token):
                raise InputError(f"{path}: cannot read {what}: line {number}: {ascii(token)[:40]} is not an integer")
            value = int(token.split(".")[0])
            if not -INT64_MAX - 1 <= value <= INT64_MAX:
                raise InputError(f"{path}: cannot read {what}: line {number}: {token[:40]} does not fit in 64 bits")
            values.append(value)
    return np.array(values, dtype=np.int64)


def _int_array(values: np.ndarray, path: Path, what: str) -> np.ndarray:
    """A 1-D array of integer ids as int64: an integer dtype, or integral finite floats, every value within int64
    (a float of 2**63 would wrap to -2**63); else an error naming the first bad row. A 2-D array is refused, not
    flattened (an ``(N/2, 2)`` array flattened has the count of N faces)."""
    values = np.asarray(values)
    if values.ndim != 1:
        raise InputError(f"{path}: {what}: expected a 1-D array (one value per face), got shape {values.shape}")
    if values.dtype == bool or not (np.issubdtype(values.dtype, np.integer) or
                                    np.issubdtype(values.dtype, np.floating)):
        raise InputError(f"{path}: {what} must be integers, got an array of dtype {values.dtype}")
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            row = int(np.argmax(bad))
            raise InputError(f"{path}: {what} must be integers: row {row}: {float(values[row])!r} is not an integer")
        big = (values >= 2.0**63) | (values < -(2.0**63))
    else:
        big = values > INT64_MAX if values.dtype.kind == "u" else np.zeros(values.shape, dtype=bool)
    if big.any():
        row = int(np.argmax(big))
        value = values[row].item()  # a Python int or float, printed as such
        raise InputError(f"{path}: {what}: row {row}: {value!r} does not fit in 64-bit integers")
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
