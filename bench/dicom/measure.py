"""Timing and memory helpers of the bench."""

import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Timed:
    seconds: float
    peak_bytes: int


def timed(fn: Callable[[], object], *, memory: bool = False) -> Timed:
    """Run once; wall time, and with ``memory`` the peak of Python allocations (tracemalloc
    slows Python down several times, so rates are measured without it)."""
    if memory:
        tracemalloc.start()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    peak = 0
    if memory:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return Timed(seconds, peak)


def _status_kb(field: str) -> int:
    for row in open("/proc/self/status").read().splitlines():  # noqa: SIM115 (tiny file)
        if row.startswith(field + ":"):
            return int(row.split()[1])
    return 0


def timed_rss(fn: Callable[[], object]) -> Timed:
    """Run once; wall time and the growth of the process's peak resident memory (Linux).

    Writing 5 to clear_refs resets the peak (VmHWM) to the current RSS first.
    """
    with open("/proc/self/clear_refs", "w") as fp:
        fp.write("5")
    before = _status_kb("VmRSS")
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    return Timed(seconds, (_status_kb("VmHWM") - before) * 1024)


def latencies(fn: Callable[[int], object], *, repeat: int) -> list[float]:
    out = []
    for n in range(repeat):
        start = time.perf_counter()
        fn(n)
        out.append((time.perf_counter() - start) * 1000)
    return out


def p50_p95(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def peak_rss() -> int:
    """This process's peak resident set in bytes (VmHWM): unlike ru_maxrss, not the parent's
    before the exec, which may have built the input."""
    return _status_kb("VmHWM") * 1024


def once_then_traced(fn: Callable[[], object]) -> dict:
    """Run ``fn`` once for its wall time and the growth of the peak resident set over what
    the process held before (``base``), then again under tracemalloc for Python's own peak;
    ``result`` is the first run's."""
    before = peak_rss()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    after = peak_rss()
    tracemalloc.start()
    fn()
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "seconds": seconds,
        "rss": after - before,
        "base": before,
        "traced": traced,
        "result": result,
    }


def django_ready(*, var_dir: Path, root: Path) -> None:
    """Django set up as production runs it (DEBUG off, a throwaway secret), its var folder
    beside the bench's input, the project at ``root`` importable."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="anim_gateway.settings", SECRET_KEY="bench-only-secret"
    )
    os.environ.setdefault("VAR_DIR", str(var_dir))
    sys.path.insert(0, str(root))
    import django

    django.setup()
