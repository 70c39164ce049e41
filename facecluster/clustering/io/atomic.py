"""Outputs written all or nothing (:class:`AtomicFiles`, :func:`atomic_write`)."""
from __future__ import annotations

import errno
import os
import shutil
import signal
import threading
from contextlib import contextmanager
from typing import BinaryIO, Callable, Iterator

from ..errors import InputError
from .files import check_output_path, name_limit

__all__ = ["AtomicFiles", "atomic_write"]

# a temporary file: created, never opened by an existing name; O_EXCL: never one that is already there
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class AtomicFiles:
    """Outputs written all or nothing, every one of the project's (``cluster.py``'s outputs, the model file, the
    datamodule's kNN cache)::

        with AtomicFiles([out, out + ".json"]) as outputs:   # checked, temporary files made: fails before any work
            ...                                              # the work
            outputs.commit({out: write_ids, out + ".json": write_record})

    Entering checks each path (:func:`check_output_path`) and creates its temporary file beside it (same folder,
    so the rename is atomic), so an unwritable folder or a name too long fails at once (:class:`InputError`). The
    temporary files are created with mode ``0o666``, which the kernel reduces by the umask: the outputs get the
    permissions of any new file, and the process-wide umask is never changed (setting it, even to read it back,
    would change the files other threads create meanwhile). Leaving the block removes any temporary file left.

    :meth:`commit` calls each ``writer(binary file)`` and ``fsync``\\ s the file, then renames the files into place
    in the order of ``paths`` (give the record that describes the others last: ``cluster.py`` renames OUT.json
    after OUT and the metrics) and ``fsync``\\ s their folders. What holds:

    * **An error or a signal leaves every output as it was.** Each existing output is kept (a hard link, or a copy
      where the file system has none) until all renames are done; a failure between two renames (an ``OSError``,
      Ctrl-C, SIGTERM turned into an exception) puts back those already renamed (new outputs are removed), then
      the exception propagates. SIGINT and SIGTERM are held while the renames run (in the main thread, where
      Python handles signals; ``signal.pthread_sigmask`` where the platform has it): one that arrives then lets
      them finish, undoes them like any failure, and is raised (its handler run) once they are undone.
    * **After a power loss** an output holds the old content or the whole new content, never a part: each file is
      on disk before its rename and each rename is on disk (its folder ``fsync``\\ ed) before :meth:`commit`
      returns.
    * Only the death of the process in the microseconds between two renames (SIGKILL, a power loss) can leave
      some outputs new and others old, with the kept copies of the old ones as hidden ``.bak`` files beside them.
      A record renamed last and holding the SHA-256 of the files before it tells such a pair apart
      (``cluster.py``'s ``out_sha256``, checked by ``--assign-to``).
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
            try:
                self.tmps[path] = _new_file(path, ".tmp")
            except OSError as err:
                raise InputError(f"{path}: cannot create a file in {folder}: {err.strerror}") from None

    def commit(self, writers: dict[str, Callable[[BinaryIO], None]]) -> None:
        """Write every output (``{path: writer}``, one per path), ``fsync`` it, and rename them all into place
        (all or nothing, see the class)."""
        path = ""
        kept: list[tuple[str, str | None]] = []  # (output, its old content kept aside, None if it was new)
        try:
            for path, tmp in self.tmps.items():
                with open(tmp, "wb") as fh:
                    writers[path](fh)
                    fh.flush()
                    os.fsync(fh.fileno())
            try:
                with _signals_held() as pending:  # a SIGINT / SIGTERM now is raised on leaving the block
                    for path, tmp in self.tmps.items():
                        kept.append((path, _keep(path)))
                        os.replace(tmp, path)
                    _fsync_folders(self.paths)
                    if pending():  # undone below; the signal's handler runs on leaving (Ctrl-C: KeyboardInterrupt)
                        raise InterruptedError(errno.EINTR, "a signal arrived during the renames; outputs restored")
            except BaseException:
                with _signals_held():
                    _restore(kept)
                raise
            with _signals_held():
                for _, old in kept:
                    if old is not None:
                        os.remove(old)
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


def _new_file(path: str, suffix: str, link_from: str | None = None) -> str:
    """A new hidden file beside ``path``, ``.<name>.<random>.<suffix>`` (the name cut to what the folder allows):
    created empty with mode ``0o666`` less the umask, or, with ``link_from``, as a hard link to that file."""
    folder = os.path.dirname(os.path.abspath(path))
    stem = os.fsdecode(os.fsencode(os.path.basename(path))[: max(1, name_limit(folder) - 16)])
    for _ in range(100):
        name = os.path.join(folder, f".{stem}.{os.urandom(4).hex()}{suffix}")
        try:
            if link_from is None:
                os.close(os.open(name, _NEW_FILE, 0o666))
            else:
                os.link(link_from, name)
            return name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _keep(path: str) -> str | None:
    """Keep an existing output's content aside until the commit is over: a hard link (the same file, kept
    whole), or a copy where the file system has no hard links. ``None`` for an output that does not exist."""
    if not os.path.lexists(path):
        return None
    try:
        return _new_file(path, ".bak", link_from=path)
    except OSError:
        old = _new_file(path, ".bak")
        shutil.copy2(path, old)
        return old


def _restore(kept: list[tuple[str, str | None]]) -> None:
    """Put the kept outputs back (and remove the outputs that were new), last renamed first."""
    for path, old in reversed(kept):
        if old is not None:
            os.replace(old, path)
        elif os.path.lexists(path):
            os.remove(path)
    _fsync_folders([path for path, _ in kept])


def _fsync_folders(paths: list[str]) -> None:
    """``fsync`` the folders of ``paths``: their renames reach the disk. Skipped where a folder cannot be opened
    (Windows) or synced (some network file systems)."""
    for folder in dict.fromkeys(os.path.dirname(os.path.abspath(p)) for p in paths):
        try:
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


@contextmanager
def _signals_held() -> Iterator[Callable[[], bool]]:
    """SIGINT and SIGTERM held during the block, delivered (their handlers run) on leaving it; yields ``pending()``:
    whether one of them arrived meanwhile (and is not ignored). Nothing is held outside the main thread (Python
    runs handlers there only) or where the platform has no ``pthread_sigmask``.

    Two holds, because blocking covers only the main thread: a signal sent to the process goes to any thread that
    does not block it (torch, OpenMP and gloo start threads), whose C handler then has the main thread run the
    Python handler at its next instruction. So the signals are blocked in this thread *and* their Python handlers
    are replaced by one that records them; on leaving, the handlers are put back, the mask restored (a blocked
    signal is then delivered) and a recorded one raised again (``signal.raise_signal``)."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    held = {signal.SIGINT, signal.SIGTERM}
    caught: list[int] = []

    def pending() -> bool:
        return bool(caught) or any(signal.getsignal(s) is not signal.SIG_IGN for s in signal.sigpending() & held)

    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    handlers = {}
    try:
        for s in held:
            handler = signal.getsignal(s)
            if handler not in (signal.SIG_IGN, None):  # None: a handler not set from Python, left alone
                handlers[s] = handler
                signal.signal(s, lambda signum, frame: caught.append(signum))
        yield pending
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        for s in dict.fromkeys(caught):
            signal.raise_signal(s)
