"""The one exception for bad user input, in its own small module: the readers (:mod:`clustering.io`) raise it, and
so does algorithm code that checks what a user gave it (:mod:`clustering.inference`, :mod:`clustering.incremental`,
the model file); entry points print it and exit with status 2 instead of showing a traceback."""
from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad user input. ``str(err)`` is a complete one-line message naming the file and the problem."""
