"""Section 6's measurement, run in a fresh interpreter by the benchmark (so that the
high-water mark of the resident set belongs to this measurement alone)."""

from __future__ import annotations

import math
import os
import resource

import numpy as np

__all__ = ["probe", "rss_bytes", "peak_rss_bytes", "reset_peak"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Current resident set size (from /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def peak_rss_bytes() -> int:
    """High-water mark of this process's resident set: VmHWM from /proc/self/status
    (ru_maxrss where that is missing; ru_maxrss can also carry the high-water mark of
    the image before exec, VmHWM cannot)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak() -> bool:
    """Resets the high-water mark to the current RSS (Linux >= 4.0: clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def probe(n: int, m_max: int, steps: int, samples: int = 50) -> dict:
    """Creates DynamicLanczos(n, m0=1, m_max) and runs ``steps`` steps with a diagonal
    operator that works in place; returns the RSS baseline, after creation, samples over
    the steps and the peak extra RSS (bytes)."""
    import lancbio

    d = np.linspace(1.0, 10.0, n)
    rng = np.random.default_rng(0)
    b0 = rng.standard_normal(n)
    b1 = rng.standard_normal(n)
    b = np.empty(n)

    def op(v):
        np.multiply(v, d, out=v)  # v is the trampoline's private copy
        return v

    # Load everything once with a tiny estimator, so the baseline includes the library.
    with lancbio.DynamicLanczos(4, m0=2, m_max=2) as warm:
        warm.step(np.eye(4), np.ones(4))
    v = np.zeros(n)
    reset = reset_peak()
    base = rss_bytes()
    est = lancbio.DynamicLanczos(n, m0=1, m_max=m_max)
    after_create = rss_bytes()
    every = max(1, steps // samples)
    out = []
    peak_rss = after_create
    for k in range(1, steps + 1):
        np.multiply(b1, 0.1 * math.sin(k), out=b)
        b += b0
        v = est.step(op, b)
        if k % every == 0 or k == steps:
            r = rss_bytes()
            peak_rss = max(peak_rss, r)
            out.append(dict(step=k, rss=r, hwm=peak_rss_bytes(), period=est.period, dim=est.dim))
    peak = max(peak_rss, peak_rss_bytes())
    est.close()
    del v
    return dict(base=base, after_create=after_create, samples=out, peak_extra=peak - base,
                peak_reset=reset)
