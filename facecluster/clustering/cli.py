"""What the command-line front ends (``cluster.py``, ``cluster.py photos``) share: one-line messages and the mapping
of errors to exit statuses (2 bad input, 3 out of memory, 1 anything else; the traceback only on request)."""
from __future__ import annotations

import sys
from typing import Any, Callable

__all__ = ["one_line", "run_reporting_errors"]


def one_line(text: Any) -> str:
    """``text`` with every run of white space (newlines included) as one space: a message fit for one line."""
    return " ".join(str(text).split())


def run_reporting_errors(run: Callable[[], Any], *, traceback: bool, out_of_memory: str,
                         where: Callable[[BaseException], str],
                         environment: tuple[type[BaseException], ...] = (OSError,)) -> tuple[int, Any]:
    """``(0, run())``, or the exit status after one line on stderr: 2 for an
    :class:`~clustering.io.InputError`, 3 for ``MemoryError`` (``out_of_memory``: the message), 1 for an error
    of the ``environment`` (a file system's, named by ``where(err)``) or any other (a bug: its type and message).
    With ``traceback`` the last two raise instead. ``KeyboardInterrupt`` propagates."""
    from .io import InputError

    try:
        return 0, run()
    except InputError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2, None
    except MemoryError:
        print(f"error: {out_of_memory}", file=sys.stderr)
        return 3, None
    except KeyboardInterrupt:
        raise
    except environment as err:
        if traceback:
            raise
        print(f"error: {where(err)}: {one_line(getattr(err, 'strerror', None) or err)}", file=sys.stderr)
        return 1, None
    except Exception as err:  # a bug, not bad input: still one line, the traceback on request
        if traceback:
            raise
        print(f"error: unexpected {type(err).__name__}: {one_line(err)} (rerun with --traceback for details)",
              file=sys.stderr)
        return 1, None
