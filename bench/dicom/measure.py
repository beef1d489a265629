"""Timing and memory helpers of the bench."""

import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Timed:
    seconds: float
    peak_bytes: int


def timed(fn: Callable[[], object]) -> Timed:
    """Run once; wall time and the peak of Python allocations during the run."""
    tracemalloc.start()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return Timed(seconds, peak)


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
