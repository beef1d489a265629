"""Timing, percentiles and RSS sampling of a server's process tree (psutil, else /proc)."""

import contextlib
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

try:
    import psutil
except ImportError:  # pragma: no cover - /proc fallback
    psutil = None


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary_ms(samples: list[float]) -> dict:
    """p50, p95 and mean of durations given in seconds, as milliseconds."""
    return {
        "n": len(samples),
        "p50": percentile(samples, 50) * 1000,
        "p95": percentile(samples, 95) * 1000,
        "mean": (statistics.fmean(samples) * 1000) if samples else float("nan"),
    }


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Durations in seconds of ``repeat`` sequential calls."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _children_proc(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = task / "children"
        if children.exists():
            found += [int(c) for c in children.read_text().split()]
    return found


def _tree(pid: int) -> list:
    """A live process and its live descendants (psutil), or [] when it is gone."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    if psutil is not None:
        total = 0
        for proc in _tree(pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            todo += _children_proc(current)
        except OSError:
            pass
    return total


class RssSampler:
    """Samples the RSS of process trees every ``interval`` seconds while active."""

    def __init__(self, pids: list[int], interval: float = 0.02) -> None:
        self.pids = pids
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _rss(self) -> int:
        return sum(tree_rss(pid) for pid in self.pids)

    def __enter__(self) -> "RssSampler":
        self.baseline = self.peak = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def _tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process and its live descendants."""
    total = 0.0
    for proc in _tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def _postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL process (backends of both servers' clients, and the
    WAL writer, checkpointer...): the database's share of a phase."""
    total = 0.0
    for proc in psutil.process_iter(["name", "cpu_times"]):
        if proc.info["name"] == "postgres" and proc.info["cpu_times"] is not None:
            total += proc.info["cpu_times"].user + proc.info["cpu_times"].system
    return total


class CpuMeter:
    """CPU seconds spent during a phase by a server's process tree, by PostgreSQL and by
    this (client) process; all zero without psutil. Processes that exit during the phase
    are not counted."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.server = self.postgres = self.client = 0.0

    def _now(self) -> tuple[float, float, float]:
        if psutil is None:
            return 0.0, 0.0, 0.0
        me = psutil.Process().cpu_times()
        return _tree_cpu(self.server_pid), _postgres_cpu(), me.user + me.system

    def __enter__(self) -> "CpuMeter":
        self._start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._now()
        spent = (b - a for a, b in zip(self._start, end, strict=True))
        self.server, self.postgres, self.client = spent

    def per_item_ms(self, count: int) -> str:
        """'server X, PostgreSQL Y, client Z ms of CPU per item'."""
        if psutil is None or not count:
            return "CPU not measured (no psutil)"
        ms = [1000 * value / count for value in (self.server, self.postgres, self.client)]
        return "CPU per instance: server {:.2f} ms, PostgreSQL {:.2f} ms, client {:.2f} ms".format(
            *ms
        )


def load_average() -> str:
    """The 1/5/15-minute load average, as uptime prints it."""
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return f"{one} {five} {fifteen}"
