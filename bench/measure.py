"""Timing helpers, the stream-bandwidth measurement and the machine description."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["CpuMonitor", "load_note", "Stats", "stats", "fmt_time", "fmt_ratio", "stream_rate", "machine_info", "blas_info",
           "single_thread_blas", "rel_diff"]

clock = time.perf_counter


@dataclass(frozen=True)
class Stats:
    """Median, min and max of repeated measurements (seconds, or any unit)."""

    median: float
    min: float
    max: float
    count: int

    def fmt(self, unit="time") -> str:
        f = fmt_time if unit == "time" else (lambda x: f"{x:.3g}")
        if self.count <= 1:
            return f(self.median)
        return f"{f(self.median)} [{f(self.min)}, {f(self.max)}]"


def stats(values) -> Stats:
    values = [float(v) for v in values]
    if not values:
        return Stats(float("nan"), float("nan"), float("nan"), 0)
    return Stats(statistics.median(values), min(values), max(values), len(values))


def fmt_time(seconds: float) -> str:
    """Seconds with an adaptive unit: 12.3 us, 4.56 ms, 1.23 s."""
    if seconds != seconds:
        return "n/a"
    a = abs(seconds)
    if a < 1e-3:
        return f"{seconds * 1e6:.3g} us"
    if a < 1.0:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def fmt_ratio(x: float) -> str:
    if x != x:
        return "n/a"
    return f"{x:.2f}x" if x < 100 else f"{x:.0f}x"


def rel_diff(a, b) -> float:
    """||a - b|| / ||b|| in float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    nb = float(np.linalg.norm(b))
    return float(np.linalg.norm(a - b)) / (nb if nb > 0 else 1.0)


def stream_rate(buffer: np.ndarray, repeats: int = 3) -> tuple[float, float, float]:
    """Streaming rates over ``buffer`` (float64, any size), in bytes/s: (read rate of
    buffer.sum() on one thread, copy rate of np.copyto between its halves on one thread,
    the same copy split between two threads), copies counting the bytes read plus written.
    Best of ``repeats``. numpy releases the GIL while it copies, so the two threads copy
    at once: lancbio runs its large passes on two cores, and its bound must allow for that."""
    half = buffer.size // 2
    src, dst = buffer[:half], buffer[half:2 * half]
    quarter = half // 2
    parts = [(src[:quarter], dst[:quarter]), (src[quarter:], dst[quarter:])]
    best_sum = best_copy = best_copy2 = float("inf")
    for _ in range(repeats):
        t = clock()
        buffer.sum()
        best_sum = min(best_sum, clock() - t)
        t = clock()
        np.copyto(dst, src)
        best_copy = min(best_copy, clock() - t)
        barrier = threading.Barrier(2)

        def second():
            barrier.wait()
            np.copyto(parts[1][1], parts[1][0])

        thread = threading.Thread(target=second)
        thread.start()
        barrier.wait()
        t = clock()
        np.copyto(parts[0][1], parts[0][0])
        thread.join()
        best_copy2 = min(best_copy2, clock() - t)
    return buffer.nbytes / best_sum, 2 * src.nbytes / best_copy, 2 * src.nbytes / best_copy2


def blas_info() -> list[dict]:
    """threadpoolctl's description of the loaded BLAS libraries (empty without it)."""
    try:
        import threadpoolctl
    except ImportError:
        return []
    return threadpoolctl.threadpool_info()


def single_thread_blas():
    """A context manager limiting BLAS to one thread, or None without threadpoolctl."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    return threadpoolctl.threadpool_limits(limits=1, user_api="blas")


def _cpu_model() -> str:
    """Model name, family/model numbers, MHz and the caches of cpu0 (Linux)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return platform.processor() or platform.machine()
    text = fields.get("model name", platform.machine())
    if "cpu family" in fields:
        text += f" (family {fields['cpu family']}, model {fields.get('model', '?')}"
        if "cpu MHz" in fields:
            text += f", {float(fields['cpu MHz']):.0f} MHz"
        text += ")"
    caches = []
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            if entry.startswith("index"):
                def read(name):
                    with open(os.path.join(base, entry, name)) as f:
                        return f.read().strip()
                kind = read("type")
                if kind != "Instruction":
                    caches.append(f"L{read('level')} {read('size')}")
    except OSError:
        pass
    if caches:
        text += "; caches " + ", ".join(caches)
    return text


def _memory_total() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    kib = int(line.split()[1])
                    return f"{kib / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _numpy_blas_config() -> str:
    try:
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - older numpy: no dict mode
        return "unknown"


class CpuMonitor:
    """CPU time used by *other* processes while it runs (from /proc/stat, minus this
    process's own user + system time, its finished children included), in cores on
    average: 0 on a quiet machine, up to the number of cores when others saturate it."""

    def __init__(self):
        self.start()

    @staticmethod
    def _busy() -> float | None:
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal
        return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def start(self) -> None:
        self._busy0, self._own0, self._wall0 = self._busy(), self._own(), clock()

    def others(self) -> float:
        """Average number of cores other processes kept busy since start()."""
        busy = self._busy()
        wall = clock() - self._wall0
        if busy is None or self._busy0 is None or wall <= 0:
            return float("nan")
        return max(0.0, (busy - self._busy0 - (self._own() - self._own0)) / wall)

    def note(self) -> str:
        x = self.others()
        if x != x:
            return "CPU use of other processes unknown"
        text = f"other processes used {x:.2f} cores on average"
        if x > 0.2:
            text += " (timings disturbed; (b) with 2 BLAS threads suffers most)"
        return text


def load_note() -> str:
    """The 1-minute load average, with a warning when other work shares the cores."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return "unknown"
    cores = os.cpu_count() or 1
    note = f"{load:.2f} (1-minute average before the run, {cores} cores)"
    if load > 0.5:
        note += ": the machine was not idle"
    return note


def machine_info() -> list[tuple[str, str]]:
    """(label, value) rows describing the machine and the software measured."""
    import lancbio

    rows = [
        ("CPU", _cpu_model()),
        ("cores (os.cpu_count)", str(os.cpu_count())),
        ("memory", _memory_total()),
        ("python", sys.version.split()[0]),
        ("numpy", np.__version__),
    ]
    try:
        import scipy
        rows.append(("scipy", scipy.__version__))
    except ImportError:
        rows.append(("scipy", "not installed (Thomas solve used)"))
    rows.append(("numpy BLAS (build config)", _numpy_blas_config()))
    pools = blas_info()
    if pools:
        for p in pools:
            rows.append((f"BLAS loaded ({p.get('user_api')})",
                         f"{p.get('internal_api')} {p.get('version')}, kernel {p.get('architecture')}, "
                         f"{p.get('num_threads')} threads, {os.path.basename(p.get('filepath', ''))}"))
    else:
        rows.append(("BLAS loaded", "threadpoolctl not installed (pip install threadpoolctl)"))
    core = os.environ.get("OPENBLAS_CORETYPE")
    l2 = os.environ.get("OPENBLAS_L2_SIZE")
    if core or l2:
        rows.append(("WARNING", f"OPENBLAS_CORETYPE={core} OPENBLAS_L2_SIZE={l2} are set: numpy's OpenBLAS runs "
                                "an older kernel; unset both in the benchmark command for a fair comparison"))
    rows.append(("lancbio", f"{lancbio.__version__}, {lancbio.library_path}"))
    return rows
