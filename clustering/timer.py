"""Per-stage wall-clock time of a pipeline run."""
from __future__ import annotations

import time
from contextlib import contextmanager

__all__ = ["Timer"]


class Timer:
    """Collects per-stage wall-clock seconds: ``with timer("knn"): ...``; ``timer.seconds`` is a dict."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
