"""Input and output paths: the one check of every input file (:func:`check_input_file`), of every output path
(:func:`check_output_path`), the longest name a folder allows, what a file starts with, the model file's cheap
checks and a file's SHA-256. Only regular files are read or replaced: a FIFO would hang, ``/dev/zero`` would be
read without end, and an output onto a device node would replace the node."""
from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from pathlib import Path

from ..errors import InputError

__all__ = ["check_input_file", "check_output_path", "check_model_file", "file_sha256", "name_limit", "file_head",
           "npz_key", "NPY_MAGIC", "ZIP_MAGICS"]

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"




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


def name_limit(folder: str) -> int:
    """Longest file name (bytes) that ``folder`` allows (255 where the system does not say, or has no
    ``os.pathconf``: Windows)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def file_head(path: Path, n: int = 8) -> bytes:
    """The first ``n`` bytes of a file (its magic number)."""
    with open(path, "rb") as fh:
        return fh.read(n)



def npz_key(path: Path, keys: list[str], names: tuple[str, ...]) -> str:
    """The array of an ``.npz`` to read: the first of ``names`` it holds, else its only array; else an
    :class:`InputError` asking for ``names[0]``."""
    key = next((k for k in names if k in keys), keys[0] if len(keys) == 1 else None)
    if key is None:
        raise InputError(f"{path}: .npz holds {keys}; name the array '{names[0]}'")
    return key



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

