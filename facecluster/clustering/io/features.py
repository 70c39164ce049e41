"""Feature matrices: ``.bin`` (raw float32, ``--dim``), ``.npy`` and ``.npz`` (:func:`load_features`).

Formats are told by their content, not only their name: a zip archive named ``.npy``, a text file named ``.npy`` or
a ``.npy`` named ``.bin`` get a message saying what they are. ``.npy`` / ``.npz`` headers (shape, dtype, byte count)
are checked before the data is read, and an ``.npz`` member is inflated chunk by chunk, each chunk checked as it
comes (a small archive that inflates to gigabytes of zeros stops at its first chunk) and only when its declared
size fits in the memory available."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError
from .checks import check_features, check_layout, scan
from .files import NPY_MAGIC, ZIP_MAGICS, check_input_file, file_head, npz_key
from .rows import RowFile, chunks

__all__ = ["load_features"]


def load_features(path: str | os.PathLike, dim: int | None = None, *, check: bool = True,
                  chunk_rows: int = 262_144):
    """Load an ``N x d`` feature matrix.

    Args:
        path: ``.bin`` (needs ``dim``), ``.npy`` or ``.npz`` file.
        dim: feature dimension of a ``.bin`` file; for other formats, if given, it must match.
        check: check the rows for NaN/inf, all-zero rows and norms float32 cannot hold (:func:`check_features`).
        chunk_rows: rows per chunk for the checks.

    Returns:
        ``(N, d)`` float32 rows: a :class:`RowFile` (nothing read yet beyond the checks) for ``.bin`` and C-order
        ``.npy``, an in-memory array for ``.npz`` and Fortran-order ``.npy``.

    Raises:
        InputError: missing or non-regular file, unknown or mislabelled format, bad header, size not matching the
            header (or not a multiple of ``d``), wrong ``dim``, empty input, bad rows (the first ones listed), an
            ``.npz`` member larger than the memory available.
    """
    path = check_input_file(path, "features")
    ext = path.suffix.lower()
    head = file_head(path)
    if ext == ".bin":
        if head.startswith(NPY_MAGIC) or head.startswith(ZIP_MAGICS):
            real = ".npy" if head.startswith(NPY_MAGIC) else ".npz"
            raise InputError(f"{path}: is a {real} file, not a raw .bin; rename it to {real}")
        if dim is None or dim <= 0:
            raise InputError(f"{path}: a .bin feature file needs its dimension (--dim)")
        size = path.stat().st_size
        if size % (4 * dim):
            raise InputError(f"{path}: size {size} bytes is not a multiple of 4 * dim = {4 * dim} "
                             f"(float32 rows of dim {dim}); wrong --dim?")
        n = size // (4 * dim)
        if n == 0:
            raise InputError(f"{path}: file is empty (0 faces)")
        feats = RowFile(path, (n, dim), "<f4", 0)
    elif ext == ".npy":
        if head.startswith(ZIP_MAGICS):
            raise InputError(f"{path}: is a zip archive (an .npz file?), not a .npy file; rename it to .npz")
        with open(path, "rb") as fh:
            shape, fortran, dtype = _npy_header(fh, path)
            offset = fh.tell()
        check_layout(shape, dtype, str(path), dim, what="file")
        need, size = offset + int(np.prod(shape)) * dtype.itemsize, path.stat().st_size
        if size != need:
            raise InputError(f"{path}: cannot read as .npy: the header says {shape[0]} x {shape[1]} {dtype}, "
                             f"{need} bytes, the file has {size} ({'truncated' if size < need else 'extra bytes'})")
        if fortran:  # column-major: rows are not contiguous; read it whole (rare: np.save writes C order)
            with np.errstate(over="ignore"):  # beyond float32: inf, reported by the checks
                feats = np.ascontiguousarray(np.load(path, allow_pickle=False), dtype=np.float32)
        else:
            feats = RowFile(path, shape, dtype, offset)
    elif ext == ".npz":
        with np.errstate(over="ignore"):  # float64 values beyond float32 become inf, reported by the checks
            return _load_npz(path, dim, check, chunk_rows)
    else:
        raise InputError(f"{path}: unknown feature format '{ext}' (expected .bin, .npy or .npz)")
    if check:
        check_features(feats, str(path), chunk_rows=chunk_rows, wide=ext == ".npy" and dtype.itemsize > 4)
    return feats


def _npy_header(fh, where) -> tuple[tuple, bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` from a ``.npy`` stream positioned at its start; the stream is left at
    the data. Pickled (object) arrays are refused: they are never loaded."""
    head = fh.read(len(NPY_MAGIC) + 2)
    if not head.startswith(NPY_MAGIC) or len(head) < len(NPY_MAGIC) + 2:
        raise InputError(f"{where}: cannot read as .npy: not a NumPy .npy file (no .npy header)")
    try:
        reader = np.lib.format.read_array_header_1_0 if head[-2] == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(fh)
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        raise InputError(f"{where}: cannot read as .npy: bad header ({' '.join(str(exc).split())[:120]})") from None
    if dtype.hasobject:
        raise InputError(f"{where}: cannot read as .npy: it holds Python objects (pickled data), which are never "
                         f"loaded")
    return tuple(int(s) for s in shape), bool(fortran), dtype



def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), ``None`` where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None



def _load_npz(path: Path, dim: int | None, check: bool, chunk_rows: int) -> np.ndarray:
    """The feature array of an ``.npz``: header checked first, then inflated chunk by chunk (checked as it comes)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read as .npz: not a zip archive ({exc})") from None
    with zf:
        key = npz_key(path, [n[:-4] for n in zf.namelist() if n.endswith(".npy")],
                       ("features", "feats", "x", "embeddings"))
        where = f"{path} (array '{key}')"
        info = zf.getinfo(key + ".npy")
        try:
            with zf.open(info) as fh:
                shape, fortran, dtype = _npy_header(fh, where)
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
            raise InputError(f"{path}: cannot read as .npz: {exc}") from None
        check_layout(shape, dtype, where, dim, what="array")
        n, d = shape
        data_bytes = n * d * dtype.itemsize
        header_bytes = info.file_size - data_bytes
        if header_bytes <= 0 or header_bytes > 1 << 16:
            raise InputError(f"{where}: cannot read as .npz: the array header says {n} x {d} {dtype} "
                             f"({data_bytes} bytes), the archive member holds {info.file_size}")
        avail = _available_memory()
        if avail is not None and n * d * 4 > avail:
            raise InputError(f"{where}: {n} x {d} float32 needs {n * d * 4 / 2**30:.1f} GiB of memory once "
                             f"inflated, only {avail / 2**30:.1f} GiB are available")
        out = np.empty((n, d), dtype=np.float32)
        try:
            with zf.open(info) as fh:
                fh.read(header_bytes)
                if fortran:  # columns first: inflate it whole (np.save writes C order; rare)
                    raw = _read_exact(fh, data_bytes, where)
                    out[:] = np.frombuffer(raw, dtype=dtype).reshape((n, d), order="F")
                    blocks = chunks(out, chunk_rows)
                else:
                    blocks = _inflate(fh, out, dtype, chunk_rows, where)
                if check:
                    scan(blocks, n, where, wide=dtype.itemsize > 4)
                else:
                    for _ in blocks:
                        pass
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
            raise InputError(f"{path}: cannot read as .npz: {exc}") from None
    return out


def _read_exact(fh, nbytes: int, where: str) -> bytes:
    raw = fh.read(nbytes)
    if len(raw) != nbytes:
        raise InputError(f"{where}: cannot read as .npz: the array data ends early (truncated archive)")
    return raw


def _inflate(fh, out: np.ndarray, dtype: np.dtype, chunk_rows: int, where: str):
    """Read C-order rows of ``dtype`` from the stream into ``out`` chunk by chunk, yielding each as it lands."""
    n, d = out.shape
    for start in range(0, n, chunk_rows):
        stop = min(n, start + chunk_rows)
        out[start:stop] = np.frombuffer(_read_exact(fh, (stop - start) * d * dtype.itemsize, where),
                                        dtype=dtype).reshape(-1, d)
        yield np.arange(start, stop), out[start:stop]

