"""Reading face embeddings and identity labels, with one-line errors for bad input.

Formats (METHOD.md section 3):

* learn-to-cluster ``.bin``: raw little-endian float32, no header, ``N x d`` row-major (``d`` must be given).
* ``.npy`` and ``.npz`` (the array named ``features``/``feats``/``x``, or the only one).
* labels: ``.meta`` / ``.txt`` one integer per line, or ``.npy`` / ``.npz``.

Every problem raises :class:`InputError` whose message names the file and the problem on one line; entry points
print it and exit non-zero instead of showing a traceback. Hostile or broken input is refused before any large
read:

* **Only regular files** are read or replaced (:func:`check_input_file`, :func:`check_output_path`): a FIFO would
  hang, ``/dev/zero`` would be read without end, and an output onto a device node would replace the node.
* **Formats are told by their content**, not only their name: a zip archive named ``.npy``, a text file named
  ``.npy`` or a ``.npy`` named ``.bin`` get a message saying what they are. ``.npy`` / ``.npz`` headers (shape,
  dtype, byte count) are checked before the data is read, and an ``.npz`` member is inflated chunk by chunk, each
  chunk checked as it comes (a small archive that inflates to gigabytes of zeros stops at its first chunk) and
  only when its declared size fits in the memory available.
* **No memory map.** ``.bin`` and uncompressed ``.npy`` data are not memory-mapped: a mapped file that is
  truncated while being read kills the process with SIGBUS (no message, no clean-up). :class:`RowFile` reads rows
  on demand with ``pread`` instead (still no RAM until rows are read), and a file that shrank or changed size since
  it was opened raises :class:`InputError`.
* **The row checks sample first** (:func:`check_features`): a few rows spread over the whole file are checked
  before the chunked scan, and the scan stops at the first chunk that brings ``limit`` bad rows, so a sparse
  multi-GB file of zeros fails in milliseconds, not after a full scan.
* **Labels are parsed strictly**: integers only (``215.5`` is an error, not 215), integer or integral float arrays
  only, a UTF-8 byte-order mark is skipped, and a bad token is quoted with escapes.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

__all__ = ["InputError", "RowFile", "load_features", "load_labels", "load_cluster_ids", "check_model_file",
           "check_input_file", "check_output_path", "check_shape", "check_features", "check_k", "check_id_room",
           "hash_rows", "file_sha256", "AtomicFiles", "atomic_write"]

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
INT64_MAX = int(np.iinfo(np.int64).max)
_INTEGER = re.compile(r"[+-]?[0-9]+(\.0*)?", re.ASCII)


class InputError(ValueError):
    """Bad user input. ``str(err)`` is a complete one-line message naming the file and the problem."""


def _first(rows: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return shown + (f", ... ({len(rows)} rows)" if len(rows) > limit else "")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


# ------------------------------------------------------------------------------------------------ paths


def check_input_file(path: str | os.PathLike, what: str) -> Path:
    """The one check of every input path: it exists and is a regular file (symbolic links are followed).

    FIFOs, devices (``/dev/zero``, ``/dev/stdin``), sockets and directories are refused at once: reading them
    could hang or never end. Returns ``Path(path)``."""
    if str(path) == "":
        raise InputError(f"'': empty path given for the {what} file")
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: {what} file does not exist") from None
    except OSError as err:
        raise InputError(f"{path}: cannot access the {what} file: {err.strerror}") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: expected a {what} file, found a directory")
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: the {what} file is {_kind(mode)}, not a regular file; give a file")
    return path


def check_output_path(path: str | os.PathLike, what: str = "output") -> None:
    """An output path must be new or a regular file (it is replaced), in an existing folder, with a name the
    folder allows. A device node, FIFO or socket is refused: replacing it with a file would be wrong."""
    if str(path) == "":
        raise InputError(f"'': empty path given for the {what} file")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"{path}: output folder {folder} does not exist")
    name_max = name_limit(folder)
    if len(os.fsencode(os.path.basename(path))) > name_max:
        raise InputError(f"{path}: file name is longer than the {name_max} bytes its folder allows")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:
        raise InputError(f"{path}: cannot use as {what} path: {err.strerror}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise InputError(f"{path}: output path is a directory")
    if mode is not None and not stat.S_ISREG(mode):
        raise InputError(f"{path}: output path is {_kind(mode)}, not a regular file; it would be replaced")


class AtomicFiles:
    """Outputs written all or nothing, every one of the project's (``cluster.py``'s outputs, the model file, the
    datamodule's kNN cache)::

        with AtomicFiles([out, out + ".json"]) as outputs:   # checked, temporary files made: fails before any work
            ...                                              # the work
            outputs.commit({out: write_ids, out + ".json": write_record})

    Entering checks each path (:func:`check_output_path`) and creates its temporary file beside it (same folder,
    so the rename is atomic), so an unwritable folder or a name too long fails at once
    (:class:`InputError`). :meth:`commit` calls each ``writer(binary file)``, gives the files the permissions a
    new file gets (``0o666`` less the umask), then renames them all into place. Leaving the block removes any
    temporary file left: after a failure, no output is touched and nothing partial remains.
    """

    def __init__(self, paths: list[str | os.PathLike]) -> None:
        self.paths = [os.fspath(p) for p in paths]
        self.tmps: dict[str, str] = {}

    def __enter__(self) -> "AtomicFiles":
        try:
            self.reserve()
        except BaseException:
            self.discard()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.discard()

    def reserve(self) -> None:
        for path in self.paths:
            check_output_path(path)
            folder = os.path.dirname(os.path.abspath(path))
            stem = os.fsdecode(os.fsencode(os.path.basename(path))[: max(1, name_limit(folder) - 16)])
            try:
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=".tmp")
            except OSError as err:
                raise InputError(f"{path}: cannot create a file in {folder}: {err.strerror}") from None
            os.close(fd)
            self.tmps[path] = tmp

    def commit(self, writers: dict[str, Callable[[BinaryIO], None]]) -> None:
        """Write every output (``{path: writer}``, one per path) and rename them into place."""
        umask = os.umask(0)
        os.umask(umask)
        path = ""
        try:
            for path, tmp in self.tmps.items():
                with open(tmp, "wb") as fh:
                    writers[path](fh)
                os.chmod(tmp, 0o666 & ~umask)
            for path, tmp in self.tmps.items():
                os.replace(tmp, path)
        except OSError as err:  # name the output, not its hidden temporary file
            raise OSError(err.errno, err.strerror, path) from None

    def discard(self) -> None:
        for tmp in self.tmps.values():
            if os.path.exists(tmp):
                os.remove(tmp)


def atomic_write(path: str | os.PathLike, writer: Callable[[BinaryIO], None]) -> None:
    """Write one file all or nothing: ``writer(binary file)`` fills a temporary file beside ``path``, renamed into
    place when it returns (:class:`AtomicFiles` of one path)."""
    with AtomicFiles([path]) as out:
        out.commit({os.fspath(path): writer})


def name_limit(folder: str) -> int:
    """Longest file name (bytes) that ``folder`` allows (255 where the system does not say)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _head(path: Path, n: int = 8) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


# ------------------------------------------------------------------------------------------------ row files


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
        self._fd = os.open(self.path, os.O_RDONLY)

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
                got = os.preadv(self._fd, [view[pos:]], at + pos)
                if got <= 0:
                    self._check_size()
                    raise InputError(f"{self.path}: could not read rows {start}..{start + count - 1}")
                pos += got
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


def _chunks(feats, chunk_rows: int):
    """``(row ids, float32 block)`` of ``feats`` (array or :class:`RowFile`), ``chunk_rows`` rows at a time."""
    for start in range(0, feats.shape[0], chunk_rows):
        block = np.asarray(feats[start:start + chunk_rows])
        yield np.arange(start, start + block.shape[0]), block


def hash_rows(h, feats, chunk_rows: int = 262_144):
    """Update the hashlib object ``h`` with the rows of ``feats`` as little-endian float32 (the format does not
    matter: the same faces in a ``.npy``, ``.npz`` or ``.bin`` hash the same). Returns ``h``."""
    for _, block in _chunks(feats, chunk_rows):
        h.update(np.ascontiguousarray(block, dtype="<f4"))
    return h


# ------------------------------------------------------------------------------------------------ features


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
    head = _head(path)
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
        _check_layout(shape, dtype, str(path), dim, what="file")
        need, size = offset + int(np.prod(shape)) * dtype.itemsize, path.stat().st_size
        if size != need:
            raise InputError(f"{path}: cannot read as .npy: the header says {shape[0]} x {shape[1]} {dtype}, "
                             f"{need} bytes, the file has {size} ({'truncated' if size < need else 'extra bytes'})")
        if fortran:  # column-major: rows are not contiguous; read it whole (rare: np.save writes C order)
            feats = np.ascontiguousarray(np.load(path, allow_pickle=False), dtype=np.float32)
        else:
            feats = RowFile(path, shape, dtype, offset)
    elif ext == ".npz":
        return _load_npz(path, dim, check, chunk_rows)
    else:
        raise InputError(f"{path}: unknown feature format '{ext}' (expected .bin, .npy or .npz)")
    if check:
        check_features(feats, str(path), chunk_rows=chunk_rows)
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


def _check_layout(shape: tuple, dtype: np.dtype, name: str, dim: int | None, what: str) -> None:
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
    _check_layout(tuple(feats.shape), feats.dtype, name, dim, what)


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


def _npz_key(path: Path, keys: list[str], names: tuple[str, ...]) -> str:
    """The array of an ``.npz`` to read: the first of ``names`` it holds, else its only array; else an
    :class:`InputError` asking for ``names[0]``."""
    key = next((k for k in names if k in keys), keys[0] if len(keys) == 1 else None)
    if key is None:
        raise InputError(f"{path}: .npz holds {keys}; name the array '{names[0]}'")
    return key


def _load_npz(path: Path, dim: int | None, check: bool, chunk_rows: int) -> np.ndarray:
    """The feature array of an ``.npz``: header checked first, then inflated chunk by chunk (checked as it comes)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read as .npz: not a zip archive ({exc})") from None
    with zf:
        key = _npz_key(path, [n[:-4] for n in zf.namelist() if n.endswith(".npy")],
                       ("features", "feats", "x", "embeddings"))
        where = f"{path} (array '{key}')"
        info = zf.getinfo(key + ".npy")
        try:
            with zf.open(info) as fh:
                shape, fortran, dtype = _npy_header(fh, where)
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
            raise InputError(f"{path}: cannot read as .npz: {exc}") from None
        _check_layout(shape, dtype, where, dim, what="array")
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
                    blocks = _chunks(out, chunk_rows)
                else:
                    blocks = _inflate(fh, out, dtype, chunk_rows, where)
                if check:
                    _scan(blocks, n, where)
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


# ------------------------------------------------------------------------------------------------ row checks

_ROW_PROBLEMS = ("nonfinite", "zero", "norm")


def _bad_rows(block: np.ndarray) -> dict[str, np.ndarray]:
    """Masks of the rows of ``block`` with NaN/inf, all zeros, or a float32 squared norm that over/underflows."""
    finite = np.isfinite(block).all(axis=1)
    zero = ~np.any(block != 0, axis=1)
    b32 = block.astype(np.float32, copy=False)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        sq = np.einsum("ij,ij->i", b32, b32)
    return {"nonfinite": ~finite, "zero": zero, "norm": finite & ~zero & ~((sq > 0) & np.isfinite(sq))}


def _scan(blocks, n: int, name: str, limit: int = 10, sampled: bool = False) -> None:
    """Check ``(row ids, block)`` pairs; raise :class:`InputError` for the first problem (in the order of
    ``_ROW_PROBLEMS``). The scan stops after the block that brings ``limit`` bad rows of one kind: the message then
    counts the rows seen so far (``sampled``: the blocks are a sample of the rows)."""
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
            where = f"{len(rows)} of {seen} rows sampled across the file (rows: {_first(rows)})"
        elif seen < n:
            where = f"{len(rows)} of the first {seen} rows (first rows: {_first(rows)}; the rest was not read)"
        else:
            where = f"{len(rows)} rows (first rows: {_first(rows)})"
        what = {"nonfinite": f"NaN or inf values in {where}", "zero": f"all-zero rows: {where}",
                "norm": f"values too large or too small to normalise in float32 in {where}"}[problem]
        if problem == "zero" and not sampled and seen == n:
            what = f"{len(rows)} all-zero rows (first rows: {_first(rows)})"
        raise InputError(f"{name}: {what}")


def check_features(feats, name: str = "features", *, chunk_rows: int = 262_144, sample: int = 1024) -> None:
    """Raise :class:`InputError` if any row has NaN/inf values, is all zeros, or has a float32 L2 norm that
    overflows or underflows (values beyond ~1e19 or all below ~1e-19: normalising it would give NaN or zeros).

    ``sample`` rows spread evenly over a large input are checked first (a sparse file of zeros, or one whose tail
    is missing, fails at once); then the rows are scanned in chunks, up to the chunk that brings ten bad rows."""
    n = feats.shape[0]
    if n > 4 * sample:
        probe = np.unique(np.linspace(0, n - 1, sample).astype(np.int64))
        block = feats.take(probe) if isinstance(feats, RowFile) else np.asarray(feats[probe])
        _scan([(probe, block)], n, name, sampled=True)
    _scan(_chunks(feats, chunk_rows), n, name)


# ------------------------------------------------------------------------------------------------ labels


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
                    labels = z[_npz_key(path, list(z.keys()), ("labels", "y"))]
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


def check_id_room(ids: np.ndarray, n_new: int, name: str) -> None:
    """New cluster ids are numbered from ``max(ids) + 1``: raise :class:`InputError` if ``n_new`` of them would not
    fit in int64."""
    top = int(np.max(ids))
    if top > INT64_MAX - n_new:
        raise InputError(f"{name}: cluster ids up to {top} leave no room for {n_new} new ids in 64-bit integers")


# ------------------------------------------------------------------------------------------------ models


def check_model_file(path: str | os.PathLike) -> None:
    """Cheap checks of a model file before torch reads it: a regular file and a zip archive (``torch.save``'s
    format). A truncated file has lost the archive's directory at its end, so it fails here too."""
    path = check_input_file(path, "model")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a readable model file (not a torch.save archive); truncated or not a file "
                         f"written by export.py")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_k(k: int, n: int, name: str = "features") -> None:
    """Raise :class:`InputError` unless ``1 <= k < n`` (K neighbours, self included, need more than K faces)."""
    if k < 1:
        raise InputError(f"{name}: K must be at least 1, got {k}")
    if k >= n:
        raise InputError(f"{name}: K = {k} neighbours needs more than K faces, but there are only {n}")
