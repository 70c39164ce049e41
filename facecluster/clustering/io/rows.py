"""Raw ``(N, d)`` row files read on demand (:class:`RowFile`), rows in chunks, and the fingerprint of rows.

No memory map: a mapped file that is truncated while being read kills the process with SIGBUS (no message, no
clean-up). :class:`RowFile` reads rows with ``preadv`` instead (``pread``, or a seek and a read, where the platform
has no ``preadv``; still no RAM until rows are read), and a file that shrank or changed size since it was opened
raises :class:`~clustering.errors.InputError`."""
from __future__ import annotations

import os

import numpy as np

from ..errors import InputError

__all__ = ["RowFile", "chunks", "hash_rows"]


class RowFile:
    """A read-only ``(N, d)`` matrix stored raw in a file (a ``.bin``, or a C-order ``.npy`` after its header),
    read on demand with ``pread``: slicing rows (``f[a:b]``, ``f[i]``, ``f[rows]``) returns float32 arrays,
    ``np.asarray(f)`` reads everything.

    It replaces ``np.memmap``, which costs no RAM either but turns a file truncated while it is being read into a
    SIGBUS that kills the process without a message. Here the file stays open (the same file is read even if its
    path is replaced), its size is checked before each read and a short read raises :class:`InputError`.
    """

    ndim = 2
    dtype = np.dtype(np.float32)  # what reads return

    def __init__(self, path: str | os.PathLike, shape: tuple[int, int], file_dtype: np.dtype | str = "<f4",
                 offset: int = 0) -> None:
        self.path = str(path)
        self.shape = (int(shape[0]), int(shape[1]))
        self.file_dtype = np.dtype(file_dtype)
        self.offset = int(offset)
        self.row_bytes = self.shape[1] * self.file_dtype.itemsize
        self.size = self.offset + self.shape[0] * self.row_bytes
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)
            self._fd = None

    def __reduce__(self):
        return RowFile, (self.path, self.shape, self.file_dtype, self.offset)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"RowFile({self.path!r}, shape={self.shape}, dtype={self.file_dtype})"

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a new ``(stop - start, d)`` float32 array."""
        count = max(0, min(stop, self.shape[0]) - start)
        buf = np.empty(count * self.row_bytes, dtype=np.uint8)
        if count:
            self._check_size()
            view, pos, at = memoryview(buf), 0, self.offset + start * self.row_bytes
            while pos < len(buf):
                got = _pread_into(self._fd, view[pos:], at + pos)
                if got <= 0:
                    self._check_size()
                    raise InputError(f"{self.path}: could not read rows {start}..{start + count - 1}")
                pos += got
        with np.errstate(over="ignore"):  # a float64 value beyond float32 becomes inf, which the checks report
            return buf.view(self.file_dtype).reshape(count, self.shape[1]).astype(np.float32, copy=False)

    def _check_size(self) -> None:
        size = os.fstat(self._fd).st_size
        if size != self.size:
            raise InputError(f"{self.path}: the file changed size while being read ({self.size} bytes when opened, "
                             f"{size} now); was it overwritten during the run?")

    def take(self, index: np.ndarray, chunk_rows: int = 262_144, gap: int = 64) -> np.ndarray:
        """Rows at ``index`` (any order, repeats allowed). Runs of indices closer than ``gap`` rows are read as one
        span (in chunks), so a few rows spread over a huge file cost a few small reads, not a scan."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        index = np.where(index < 0, index + self.shape[0], index).astype(np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.shape[0]):
            raise IndexError(f"row index out of range for {self.shape[0]} rows")
        out = np.empty((index.shape[0], self.shape[1]), dtype=np.float32)
        order = np.argsort(index, kind="stable")
        srt = index[order]
        for run in np.split(np.arange(len(srt)), np.flatnonzero(np.diff(srt) > gap) + 1):
            if not run.size:
                continue
            lo, hi = int(srt[run[0]]), int(srt[run[-1]]) + 1
            for start in range(lo, hi, chunk_rows):
                sel = run[(srt[run] >= start) & (srt[run] < start + chunk_rows)]
                out[order[sel]] = self.rows(start, min(hi, start + chunk_rows))[srt[sel] - start]
        return out

    def __getitem__(self, key):
        rows, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if isinstance(rows, (int, np.integer)):
            i = int(rows) + (self.shape[0] if rows < 0 else 0)
            if not 0 <= i < self.shape[0]:
                raise IndexError(f"row {int(rows)} out of range for {self.shape[0]} rows")
            return self.rows(i, i + 1)[0][rest] if rest else self.rows(i, i + 1)[0]
        elif isinstance(rows, slice) and rows.step in (None, 1):
            start, stop, _ = rows.indices(self.shape[0])
            out = self.rows(start, max(start, stop))
        elif isinstance(rows, slice):
            out = self.take(np.arange(self.shape[0])[rows])
        else:
            out = self.take(rows)
        return out[(slice(None), *rest)] if rest else out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.take(np.arange(self.shape[0]))
        return out if dtype is None else out.astype(dtype, copy=False)


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Read into ``view`` from byte ``offset`` of ``fd``: ``os.preadv`` (no copy), else ``os.pread`` (macOS before
    11 has no ``preadv``), else a seek and a read (Windows has neither). Returns the bytes read (0 at the end)."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    if hasattr(os, "pread"):
        data = os.pread(fd, len(view), offset)
    else:
        os.lseek(fd, offset, os.SEEK_SET)
        data = os.read(fd, len(view))
    view[:len(data)] = data
    return len(data)


def chunks(feats, chunk_rows: int):
    """``(row ids, float32 block)`` of ``feats`` (array or :class:`RowFile`), ``chunk_rows`` rows at a time."""
    for start in range(0, feats.shape[0], chunk_rows):
        block = np.asarray(feats[start:start + chunk_rows])
        yield np.arange(start, start + block.shape[0]), block


def hash_rows(h, feats, chunk_rows: int = 262_144):
    """Update the hashlib object ``h`` with the rows of ``feats`` as little-endian float32 (the format does not
    matter: the same faces in a ``.npy``, ``.npz`` or ``.bin`` hash the same). Returns ``h``."""
    for _, block in chunks(feats, chunk_rows):
        h.update(np.ascontiguousarray(block, dtype="<f4"))
    return h

