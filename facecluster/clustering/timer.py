"""Per-stage wall-clock time of a pipeline run, and optionally each stage's peak resident memory."""
from __future__ import annotations

import time
from contextlib import contextmanager

__all__ = ["Timer", "peak_rss_mb"]


def _hwm_mb() -> float | None:
    """The process's peak resident set size so far (``VmHWM``), in MB; ``None`` where /proc is absent."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    """Set the peak resident set size to the current one (Linux >= 4.0: ``5`` written to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far in MB (``VmHWM``; ``ru_maxrss`` where /proc is absent). A
    :class:`Timer` with ``memory=True`` resets the kernel's peak at each stage: use its :meth:`Timer.peak_mb`."""
    mb = _hwm_mb()
    if mb is None:
        import resource
        import sys

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        mb = rss / 2**20 if sys.platform == "darwin" else rss / 1024
    return mb


class Timer:
    """Collects per-stage wall-clock seconds: ``with timer("knn"): ...``; ``timer.seconds`` is a dict. A stage
    entered again adds up. ``timer.cpu_seconds``: the process's CPU time in each stage (all its threads), which
    other jobs sharing the cores inflate far less than the wall time.

    With ``memory=True`` also each stage's peak resident memory, ``timer.peak_mb[stage]`` (MB, the largest over
    the stage's runs): the kernel's high-water mark (``VmHWM``) is reset to the current resident size when a stage
    starts and read when it ends, so the peak is the stage's own, not the process's so far (it includes what the
    process holds from earlier stages). Nested stages fold their peaks into the stages around them;
    :meth:`peak_mb` is the process's peak since it started. Where the mark cannot be reset (not Linux),
    ``resets`` is False and a stage's peak is the process's peak up to its end (an upper bound)."""

    def __init__(self, memory: bool = False) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self.memory = memory
        self.peak: dict[str, float] = {}
        self.resets = True
        self._open: list[str] = []
        self._overall = 0.0

    def _fold(self) -> None:
        """Credit the high-water mark since the last reset to every open stage and to the process's peak."""
        mb = peak_rss_mb() or 0.0
        for stage in self._open:
            self.peak[stage] = max(self.peak.get(stage, 0.0), mb)
        self._overall = max(self._overall, mb)

    def peak_mb(self) -> float:
        """Peak resident memory of the process since it started, in MB."""
        self._fold()
        return self._overall

    @contextmanager
    def __call__(self, stage: str):
        if self.memory:
            self._fold()
            self.resets = _reset_hwm() and self.resets
            self._open.append(stage)
        start, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
            self.cpu_seconds[stage] = self.cpu_seconds.get(stage, 0.0) + time.process_time() - cpu
            if self.memory:
                self._fold()
                self._open.remove(stage)
