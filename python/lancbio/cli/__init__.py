"""Command-line experiments of ``python3 -m lancbio``: shared pieces.

Every experiment runs several methods of :data:`lancbio.METHODS` on one problem, each
with the same optimizer-time budget, and evaluates the iterates at checkpoints from the
``Bilevel.run`` callback. The callback runs outside the timed region, so an expensive
evaluation (an exact hyper-gradient, a test accuracy) does not eat into a method's budget.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

__all__ = [
    "MethodRun",
    "checkpoint_times",
    "format_table",
    "limit_threads",
    "method_list",
    "nonnegative_float",
    "positive_float",
    "positive_int",
    "restart_for_threads",
    "run_method",
    "scientific",
]

_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                     "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


# -- argument types ----------------------------------------------------------------------

def method_list(text: str) -> list[str]:
    """A comma-separated list of method names (or ``all``), validated, duplicates dropped."""
    from lancbio import METHODS

    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one method")
    if names == ["all"]:
        return list(METHODS)
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)} (or 'all')")
    return list(dict.fromkeys(names))


def _number(kind, text: str, test, requirement: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be finite")
    if not test(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be {requirement}")
    return value


def positive_float(text: str) -> float:
    return _number(float, text, lambda v: v > 0, "> 0")


def nonnegative_float(text: str) -> float:
    return _number(float, text, lambda v: v >= 0, ">= 0")


def positive_int(text: str) -> int:
    return _number(int, text, lambda v: v >= 1, ">= 1")


# -- environment -------------------------------------------------------------------------

def _threadpoolctl():
    """threadpoolctl's ``threadpool_limits``, or None where it cannot be imported."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits


def _environment_sets(count: int) -> bool:
    return all(os.environ.get(name) == str(count) for name in _THREAD_VARIABLES)


def restart_for_threads(count: int, argv: list[str]) -> None:
    """Makes ``count`` BLAS threads hold for a command-line run where only a new
    interpreter can: numpy is loaded (``import lancbio`` loads it), so the thread
    variables no longer take effect, and threadpoolctl, which changes the running pools,
    is not installed. The process then re-executes itself, the same command, with the
    variables set, and this does not return; otherwise it returns at once. A restart costs
    a fraction of a second; what the thread count changes is measured in README.md
    (Performance) and by the benchmark's section 8.
    """
    if "numpy" not in sys.modules or _environment_sets(count) or _threadpoolctl() is not None:
        return
    environment = dict(os.environ, **{name: str(count) for name in _THREAD_VARIABLES})
    command = [sys.executable, *getattr(sys, "orig_argv", [sys.executable, "-m", "lancbio", *argv])[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, environment)


@contextlib.contextmanager
def limit_threads(count: int):
    """Limits the BLAS/OpenMP thread pools to ``count`` threads inside the ``with`` block
    and yields a description of how; everything is restored on exit, so an in-process
    caller (a notebook, a test) keeps its own settings afterwards.

    The environment variables only take effect before numpy loads its BLAS, which
    ``import lancbio`` has usually done already; threadpoolctl changes the running pools.
    (The command line restarts itself with the variables set when threadpoolctl is
    missing: :func:`restart_for_threads`.)
    """
    inherited = _environment_sets(count)
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    for name in _THREAD_VARIABLES:
        os.environ[name] = str(count)
    limiter = None
    try:
        threadpool_limits = None if "numpy" not in sys.modules else _threadpoolctl()
        if "numpy" not in sys.modules:
            description = f"{count} BLAS thread(s) (environment)"
        elif threadpool_limits is not None:
            limiter = threadpool_limits(limits=count)
            description = f"{count} BLAS thread(s) (threadpoolctl)"
        elif inherited:
            description = f"{count} BLAS thread(s) (environment, set when the process started)"
        else:
            description = (f"BLAS threads not changed: numpy is already loaded and threadpoolctl "
                           f"is not installed (pip install threadpoolctl, or set "
                           f"OPENBLAS_NUM_THREADS={count})")
        yield description
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# -- checkpoints and runs ----------------------------------------------------------------

def checkpoint_times(seconds: float, count: int = 16, first_fraction: float = 0.004) -> list[float]:
    """Optimizer times at which to evaluate: geometric from ``first_fraction * seconds``
    (early progress is fast, so it needs dense samples) merged with a regular grid (so a
    linear time axis is covered evenly), ending exactly at ``seconds``."""
    geometric = [seconds * first_fraction ** (1.0 - i / (count - 1)) for i in range(count)]
    regular = [seconds * (i + 1) / 8 for i in range(8)]
    merged = sorted(set(round(t, 9) for t in geometric + regular))
    merged[-1] = seconds
    return merged


@dataclass
class MethodRun:
    """One method's run: the checkpoints (dicts with ``time``, ``iteration``, ``hvps`` and
    the experiment's metrics, the first one at the common starting point) and totals."""

    method: str
    points: list[dict] = field(default_factory=list)
    iterations: int = 0
    hvps: int = 0
    time: float = 0.0
    diverged_at: int | None = None
    error: str = ""

    @property
    def status(self) -> str:
        return "ok" if self.diverged_at is None else f"diverged at iteration {self.diverged_at}"

    def final(self, name: str) -> float:
        """The metric at the last checkpoint (NaN if never evaluated)."""
        for point in reversed(self.points):
            if name in point:
                return point[name]
        return math.nan

    def series(self, name: str, axis: str = "time") -> tuple[list[float], list[float]]:
        """(axis values, metric values) over the checkpoints, finite values only."""
        xs, ys = [], []
        for point in self.points:
            value = point.get(name, math.nan)
            if math.isfinite(value):
                xs.append(point[axis])
                ys.append(value)
        return xs, ys


class _Progress:
    """Progress lines on stderr, at most one per ``interval`` wall seconds per method."""

    def __init__(self, enabled: bool, interval: float = 1.0):
        self.enabled = enabled
        self.interval = interval
        self._last = -math.inf

    def start(self) -> None:
        self._last = -math.inf

    def __call__(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if force or now - self._last >= self.interval:
            self._last = now
            print(text, file=sys.stderr, flush=True)


def run_method(problem, method: str, x0, y0, options: dict, seconds: float,
               evaluate: Callable, start_metrics: dict, describe: Callable[[dict], str],
               label: str = "", quiet: bool = False, factory: Callable | None = None) -> MethodRun:
    """Runs ``method`` for ``seconds`` of optimizer time from (x0, y0) and evaluates
    ``evaluate(optimizer) -> dict`` at :func:`checkpoint_times`.

    ``start_metrics`` are the metrics at the common starting point, shared by all methods
    so they are computed once. A :class:`lancbio.LancbioError` (non-finite products or
    iterates) ends the run: the method is marked diverged at the failing iteration and the
    last good iterate is evaluated, so one unstable baseline does not abort the comparison.
    ``factory(problem, method, x0=, y0=, **options)`` makes the optimizer (default
    lancbio.Bilevel; another back end's loop with ``run``, ``close`` and what ``evaluate``
    reads), and a FloatingPointError from it counts as divergence too.
    """
    from lancbio import Bilevel, LancbioError

    run = MethodRun(method)
    run.points.append({"time": 0.0, "iteration": 0, "hvps": 0, **start_metrics})
    pending = checkpoint_times(seconds)
    progress = _Progress(not quiet)
    progress.start()
    last = {"iteration": 0, "hvps": 0, "time": 0.0}

    def checkpoint(optimizer, record) -> dict:
        metrics = evaluate(optimizer)
        point = {"time": record["time"], "iteration": record["iteration"], "hvps": record["hvps"], **metrics}
        run.points.append(point)
        progress(f"{label}{method:<9} {record['time']:6.2f}/{seconds:g} s  iteration {record['iteration']:>7}"
                 f"  HVPs {record['hvps']:>8}  {describe(point)}", force=not pending)
        return metrics

    def callback(optimizer, record):
        last.update(iteration=record["iteration"], hvps=record["hvps"], time=record["time"])
        if pending and record["time"] >= pending[0]:
            while pending and record["time"] >= pending[0]:
                pending.pop(0)
            return checkpoint(optimizer, record)
        return None

    optimizer = (factory or Bilevel)(problem, method, x0=x0, y0=y0, **options)
    try:
        optimizer.run(seconds=seconds, callback=callback, progress=False)
    except (LancbioError, FloatingPointError) as error:
        run.diverged_at = last["iteration"] + 1
        run.error = str(error)
        progress(f"{label}{method:<9} diverged at iteration {run.diverged_at}: {error}", force=True)
        if run.points[-1]["iteration"] != last["iteration"]:
            checkpoint(optimizer, last)
    finally:
        optimizer.close()
    run.iterations, run.hvps, run.time = last["iteration"], last["hvps"], last["time"]
    return run


# -- output ------------------------------------------------------------------------------

def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain-text table; the first column is left-aligned, the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells):
        parts = [str(cell).ljust(widths[0]) if i == 0 else str(cell).rjust(widths[i])
                 for i, cell in enumerate(cells)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def scientific(value: float, digits: int = 3) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.{digits}e}"
