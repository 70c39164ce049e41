"""Outputs written all or nothing (:class:`AtomicFiles`, :func:`atomic_write`)."""
from __future__ import annotations

import os
import tempfile
from typing import BinaryIO, Callable

from ..errors import InputError
from .files import check_output_path, name_limit

__all__ = ["AtomicFiles", "atomic_write"]


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

