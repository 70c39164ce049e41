"""Thread counts: products whose result does not depend on them, and setters that restore what they change.

What the labels depend on (README, "The same input, model and seed give identical labels"):

* **torch's matrix products** (the networks) go to MKL on x86 CPUs, and MKL splits a product's work by the number
  of threads: the split changes the float rounding (a ``Linear(128, 1)`` over 4,099 rows differs in the last bits
  between 1, 2 and 3 threads, and so did the SDT's pair probabilities). :func:`reproducible_products` asks MKL for
  results that do not depend on the thread count (its "strict conditional numerical reproducibility",
  ``MKL_CBWR=AUTO,STRICT``); ``cluster.py`` calls it first thing. MKL reads the setting at its first product, so a
  library caller sets ``MKL_CBWR=AUTO,STRICT`` in the environment (or calls this before any torch product).
* faiss's exact search (OpenBLAS products, OpenMP over queries), the Jaccard (torch scatter sums on the CPU) and
  Infomap (one thread) gave the same bits for 1 to 4 threads in every run measured (``tests/test_promises.py``);
  faiss documents no such guarantee.

The setters: torch's intra-op thread count is process-wide and faiss's OpenMP count is the calling thread's;
:func:`torch_threads` and :func:`faiss_threads` set them for a block and restore the previous value after it, so a
library call with ``threads=`` leaves the caller's settings as they were. (torch's count stays process-wide while
the block runs: two threads of one process that both pass ``threads=`` share it.)
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator

__all__ = ["reproducible_products", "torch_threads", "faiss_threads", "MKL_CBWR"]

MKL_CBWR = "AUTO,STRICT"


def reproducible_products() -> None:
    """Ask MKL for matrix products whose result does not depend on the thread count (``MKL_CBWR=AUTO,STRICT``:
    the best code path for this CPU, the same bits for any number of threads), unless the environment already
    says otherwise. Effective only before MKL's first product in this process."""
    os.environ.setdefault("MKL_CBWR", MKL_CBWR)


def torch_threads(threads: int | None):
    """Context manager: ``torch.set_num_threads(threads)`` for the block, the previous count restored after it
    (``None``: no change)."""
    import torch

    return _for_the_block(torch.get_num_threads, torch.set_num_threads, threads)


def faiss_threads(threads: int | None):
    """Context manager: ``faiss.omp_set_num_threads(threads)`` for the block (the calling thread's OpenMP
    setting), the previous count restored after it (``None``: no change)."""
    import faiss

    return _for_the_block(faiss.omp_get_max_threads, faiss.omp_set_num_threads, threads)


@contextmanager
def _for_the_block(get: Callable[[], int], set_: Callable[[int], None], threads: int | None) -> Iterator[None]:
    before = get()
    if threads and threads != before:
        set_(threads)
    try:
        yield
    finally:
        if threads and threads != before:
            set_(before)
