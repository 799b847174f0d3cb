"""The sections of the benchmark (see the package docstring; section 8 is in blas_threads.py, 9 in
torch_speed.py, 10 in scale.py)."""

from __future__ import annotations

import ctypes
import gc
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np

import lancbio
from lancbio import _ffi

from .blas_threads import section_blas_threads
from .measure import CpuMonitor, clock, fmt_ratio, fmt_time, rel_diff, single_thread_blas, stats, stream_rate
from .reference import CarefulLanczos, ReferenceBilevel, ResearchLanczos
from .scale import section_scale
from .torch_speed import section_torch

AGREE = 1e-8  # relative agreement required between implementations of the same mathematics


@dataclass
class Config:
    """Sizes of one run (full or --quick)."""

    quick: bool
    repeats: int
    # 1. LancBiO step
    step_sizes: list = field(default_factory=list)   # n values
    step_dims: list = field(default_factory=list)    # j values
    # 2. CG / MINRES
    krylov_sizes: list = field(default_factory=list)
    krylov_iterations: int = 50
    # 3. callback overhead
    callback_products: int = 20000
    # 4. synthetic end to end: [(n, iterations)]
    synthetic: list = field(default_factory=list)
    # 4b. the outer loop's own cost at m0 = m_max = 20: [(problem, n, iterations)]
    own_cost: list = field(default_factory=list)
    # 5. float32 vs float64
    precision_n: int = 10**6
    precision_j: int = 40
    # 6. memory
    memory_n: int = 10**5
    memory_m_max: int = 80
    memory_steps: int = 10**4
    # 7. one-shot solves: 2-D Laplacian sides (n = side^2)
    solve_sides: list = field(default_factory=list)
    # 8. BLAS threads, the user's case: (n, iterations)
    blas_case: tuple = (1000, 300)
    # 10. vectors sliced across processes: (n in all, m0 = m_max, timed cycles), process counts
    scale_case: tuple = (10**6, 40, 5)
    scale_processes: tuple = (1, 2, 4)

    @classmethod
    def make(cls, quick: bool, repeats: int | None):
        if quick:
            return cls(quick=True, repeats=repeats or 3, step_sizes=[10**3, 10**4], step_dims=[10, 40],
                       krylov_sizes=[10**4], krylov_iterations=20, callback_products=3000,
                       synthetic=[(150, 40)], own_cost=[("synthetic", 150, 40), ("cheap", 1000, 100),
                                                          ("cheap", 64000, 20)],
                       precision_n=10**5, precision_j=10,
                       memory_n=10**4, memory_m_max=20, memory_steps=500, solve_sides=[40],
                       blas_case=(150, 40), scale_case=(2 * 10**4, 10, 2), scale_processes=(1, 2))
        return cls(quick=False, repeats=repeats or 5, step_sizes=[10**3, 10**4, 10**5, 10**6],
                   step_dims=[10, 40, 80], krylov_sizes=[10**4, 10**5, 10**6], krylov_iterations=50,
                   callback_products=20000, synthetic=[(1000, 500), (5000, 40)],
                   own_cost=[("synthetic", 1000, 400), ("synthetic", 4000, 60), ("cheap", 1000, 2000),
                             ("cheap", 4000, 1000), ("cheap", 64000, 200), ("cheap", 10**6, 30)],
                   precision_n=10**6, precision_j=40, memory_n=10**5, memory_m_max=80, memory_steps=10**4,
                   solve_sides=[100, 316])


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _n_label(n: int) -> str:
    e = int(round(math.log10(n)))
    return f"1e{e}" if 10**e == n else str(n)


# ---------------------------------------------------------------------------------------
# Section 1 (and 5): one LancBiO step at dimension exactly j, the product excluded.
# ---------------------------------------------------------------------------------------

class _Impl:
    """Common driver interface: begin(b) / resume(product) -> request or None, v, product()."""

    name = "?"
    single_thread = False
    # numpy implementations call BLAS, whose worker threads (OpenBLAS's) keep spinning for
    # about 0.1 s after each call; lancbio's large passes run on two cores, and a spinning
    # BLAS worker on the second core would be timed as lancbio's cost.
    uses_blas = True

    def product(self, request, d):
        return request * d

    def dimension(self) -> int:
        raise NotImplementedError


class _LancbioAPI(_Impl):
    """lancbio.DynamicLanczos through its public reverse-communication API."""

    uses_blas = False

    def __init__(self, n, j, dtype=np.float64, name="lancbio"):
        self.name = name
        self.est = lancbio.DynamicLanczos(n, m0=j, m_max=j, growth=1.0, grow_every=1, dtype=dtype)
        self.begin = self.est.begin
        self.resume = self.est.resume

    @property
    def v(self):
        return self.est.v

    def dimension(self):
        return self.est.dim

    def close(self):
        self.est.close()


def _raw_functions(dtype):
    """The library's declared begin/resume functions for ``dtype`` and a function giving
    an array's pointer argument, for timing the C calls without the wrapper."""
    suffix, ctype = ("_f64", ctypes.c_double) if np.dtype(dtype) == np.float64 else ("_f32", ctypes.c_float)
    pointer = ctypes.POINTER(ctype)
    return (getattr(_ffi.lib, "lancbio_estimator_begin" + suffix), getattr(_ffi.lib, "lancbio_estimator_resume" + suffix),
            lambda a: a.ctypes.data_as(pointer))


class _LancbioRaw(_Impl):
    """The same library calls through ctypes with preallocated buffers (no wrapper checks,
    no per-call allocation): shows what the Python wrapper costs."""

    uses_blas = False

    def __init__(self, n, j, dtype=np.float64):
        self.name = "lancbio raw ctypes"
        self.est = lancbio.DynamicLanczos(n, m0=j, m_max=j, growth=1.0, grow_every=1, dtype=dtype)
        self._handle = self.est._handle
        self._n = n
        self._begin_fn, self._resume_fn, self._as_ptr = _raw_functions(dtype)
        self._request = np.empty(n, dtype=dtype)
        self._request_p = self._as_ptr(self._request)
        self._product = np.empty(n, dtype=dtype)
        self._product_p = self._as_ptr(self._product)
        self._pointers = {}

    def product(self, request, d):
        np.multiply(request, d, out=self._product)
        return self._product

    def begin(self, b):
        p = self._pointers.get(id(b))
        if p is None or p[0] is not b:
            p = self._pointers[id(b)] = (b, self._as_ptr(b))
        status = self._begin_fn(self._handle, p[1], self._request_p, self._n)
        if status < 0:
            self.est._check(status)
        return self._request if status == _ffi.NEED_PRODUCT else None

    def resume(self, product):
        status = self._resume_fn(self._handle, self._product_p, self._request_p, self._n)
        if status < 0:
            self.est._check(status)
        return self._request if status == _ffi.NEED_PRODUCT else None

    @property
    def v(self):
        return self.est.v

    def dimension(self):
        info = _ffi.StepInfoStruct(struct_size=ctypes.sizeof(_ffi.StepInfoStruct))
        self.est._check(_ffi.lib.lancbio_estimator_info(self._handle, ctypes.byref(info)))
        return info.dimension

    def close(self):
        self.est.close()


class _Research(_Impl):
    def __init__(self, n, j):
        self.name = "(a) research numpy"
        self.ref = ResearchLanczos(n, m0=j, m_max=j, growth=1.0, grow_every=1)
        self.begin, self.resume = self.ref.begin, self.ref.resume

    @property
    def v(self):
        return self.ref.v

    def dimension(self):
        return len(self.ref.alphas)

    def close(self):
        self.ref = None


class _Careful(_Impl):
    def __init__(self, n, j, dtype=np.float64, single_thread=False, name=None):
        self.single_thread = single_thread
        self.name = name or ("(b) careful numpy, 1 BLAS thread" if single_thread else "(b) careful numpy")
        self.ref = CarefulLanczos(n, m0=j, m_max=j, growth=1.0, grow_every=1, dtype=dtype)
        self.begin, self.resume = self.ref.begin, self.ref.resume

    @property
    def v(self):
        return self.ref.v

    def dimension(self):
        return self.ref.j

    def close(self):
        self.ref = None


class _RightHandSides:
    """b_k = b0 + 0.1 sin(k) b1, written into one reused buffer outside the timed region:
    every implementation sees the same sequence, and the residual at a restart never
    vanishes (so every cycle really builds j basis vectors)."""

    def __init__(self, n, dtype, rng):
        self.b0 = rng.standard_normal(n).astype(dtype)
        self.b1 = rng.standard_normal(n).astype(dtype)
        self.buffer = np.empty(n, dtype=dtype)

    def fill(self, k):
        np.multiply(self.b1, 0.1 * math.sin(k), out=self.buffer)
        self.buffer += self.b0
        return self.buffer


def _cycle(impl, j, d, rhs, counter):
    """Runs one full cycle (j steps: a restart, then up to dimension j); returns the
    library/step time of the last step (dimension exactly j), products excluded."""
    elapsed = 0.0
    for _ in range(j):
        counter[impl.name] = k = counter.get(impl.name, 0) + 1
        b = rhs.fill(k)
        elapsed = 0.0
        t = clock()
        request = impl.begin(b)
        elapsed += clock() - t
        while request is not None:
            product = impl.product(request, d)
            t = clock()
            request = impl.resume(product)
            elapsed += clock() - t
    return elapsed


BLAS_SETTLE = 0.15  # seconds: longer than OpenBLAS's workers spin after a call
HELPER_SETTLE = 0.002  # seconds: longer than lancbio's helper thread polls after a pass
_blas_busy = [False]


def _busy_wait(seconds: float) -> None:
    settled = clock() + seconds
    while clock() < settled:
        pass


def _run_cycle(impl, j, d, rhs, counter):
    # Untimed: let the other side's threads go idle before switching sides, so that
    # neither competes with the other's second thread: OpenBLAS's workers spin after each
    # call, and lancbio's helper thread polls for a while after each pass. Busy-waiting
    # rather than sleeping keeps this core at its working clock (after a sleep, the first
    # microseconds of a short cycle would run slower).
    if impl.uses_blas != _blas_busy[0]:
        _busy_wait(HELPER_SETTLE if impl.uses_blas else BLAS_SETTLE)
    _blas_busy[0] = impl.uses_blas
    if impl.single_thread:
        limiter = single_thread_blas()
        if limiter is not None:
            with limiter:
                return _cycle(impl, j, d, rhs, counter)
    return _cycle(impl, j, d, rhs, counter)


def measure_steps(impls, n, j, dtype, repeats, stream_buffer=None, seed=0):
    """Times the j-th step of ``repeats`` cycles per implementation, interleaved round by
    round (one cycle of each per round, the order rotating) with one stream measurement
    per round. Returns (times {name: [s]}, bound times [s], rates, agreement, dimensions
    {name: [dimension after each cycle]}, which must all be j)."""
    rng = np.random.default_rng(seed)
    d = np.linspace(1.0, 10.0, n).astype(dtype)
    rhs = _RightHandSides(n, dtype, rng)
    counter: dict = {}
    times = {impl.name: [] for impl in impls}
    bounds, read_rates, copy_rates, copy2_rates = [], [], [], []
    # Warm-up cycle: page faults of fresh buffers, BLAS thread start-up, caches.
    for impl in impls:
        _run_cycle(impl, j, d, rhs, counter)
    dims = {impl.name: [impl.dimension()] for impl in impls}
    for r in range(repeats):
        if stream_buffer is not None:
            # Untimed: lancbio's helper thread must not share a core with the two-thread copy.
            _busy_wait(HELPER_SETTLE)
            read, copy, copy2 = stream_rate(stream_buffer)
            read_rates.append(read)
            copy_rates.append(copy)
            copy2_rates.append(copy2)
            bounds.append(2 * n * j * np.dtype(dtype).itemsize / max(read, copy, copy2))
        order = impls[r % len(impls):] + impls[:r % len(impls)]
        for impl in order:
            times[impl.name].append(_run_cycle(impl, j, d, rhs, counter))
            dims[impl.name].append(impl.dimension())
    reference = impls[-1].v if impls else None
    agreement = {impl.name: rel_diff(impl.v, reference) for impl in impls}
    return times, bounds, (read_rates, copy_rates, copy2_rates), agreement, dims


def measure_interleaved(groups, n, j, repeats, seed=0):
    """``measure_steps`` for implementations of several dtypes at once ({dtype: impls}):
    one cycle of every implementation of every dtype per round, the order rotating, so a
    change in the machine's speed during the run affects all precisions alike. Every
    dtype gets the same operator and right-hand sides, rounded to it. Returns (times
    {name: [s]}, agreement {name: relative difference from the last impl of its dtype})."""
    setups = {}
    for dtype in groups:
        rng = np.random.default_rng(seed)
        setups[dtype] = (np.linspace(1.0, 10.0, n).astype(dtype), _RightHandSides(n, dtype, rng), {})
    pairs = [(impl, dtype) for dtype, impls in groups.items() for impl in impls]
    for impl, dtype in pairs:  # warm-up
        _run_cycle(impl, j, *setups[dtype])
    times = {impl.name: [] for impl, _ in pairs}
    for r in range(repeats):
        for impl, dtype in pairs[r % len(pairs):] + pairs[:r % len(pairs)]:
            times[impl.name].append(_run_cycle(impl, j, *setups[dtype]))
    agreement = {impl.name: rel_diff(impl.v, groups[dtype][-1].v) for impl, dtype in pairs}
    return times, agreement


def _cycles(repeats: int, n: int) -> int:
    """Timed cycles per implementation: more where cycles are cheap (n <= 1e5, where the
    basis is about the size of the L3 cache and a noisy neighbour moves single cycles by
    2x), fewer (but at least 3) at n >= 1e6, where one cycle at j = 80 streams ~50 GB."""
    if n <= 10**5:
        return 4 * repeats
    return max(3, repeats - 2)


def section_steps(report, cfg: Config, results: dict) -> None:
    report.heading("1. LancBiO step excluding the HVP")
    report.add("Time of the j-th step of a restart cycle (m0 = m_max = j: the step at dimension exactly j), "
               "the product A q computed outside the timed region: for lancbio only the library calls "
               "`est.begin(b)` + `est.resume(Aq)` are timed (Python API: argument checks, result arrays; "
               "\"raw ctypes\" calls the same C functions with preallocated buffers). Operator diag(linspace(1, 10, n)), "
               "b_k = b0 + 0.1 sin(k) b1. One warm-up cycle, then "
               "cycles per implementation interleaved round by round (4x --repeats at n <= 1e5, "
               f"max(3, repeats - 2) at 1e6; --repeats = {cfg.repeats}); median [min, max]. "
               "(c) is the time to read 2 n j 8 bytes (Q^T r and Q s) at the streaming rate measured in the "
               "same round on a buffer of the basis' size (the best of numpy sum and copyto on one thread and "
               "copyto split between two threads: lancbio runs large passes on both cores; a copy's rate counts "
               "the bytes read and written, as STREAM does). The rate varies from round to round, so a step "
               "can come out above 100% of (c); and where the basis is about the size of the L3 cache "
               "(n = 1e5, j = 40) the measuring buffer fits in it while a step's working set does not. "
               "Before a lancbio "
               "cycle that follows a numpy one the bench busy-waits 0.15 s, untimed, so that BLAS worker threads, "
               "which spin for about 0.1 s after each call, do not occupy the second core lancbio uses; "
               "before a numpy cycle that follows a lancbio one, and before each stream measurement, it busy-waits "
               "2 ms, so that lancbio's helper "
               "thread, which polls for 0.25 ms after each pass, has gone to sleep. "
               "Agreement: ||v - v_(b)|| / ||v_(b)|| after all cycles (restarts included). lancbio runs with its "
               "defaults, which add an orthogonality check (Q^T q_(j+1), fused into the Q^T r pass: compute, "
               "not memory traffic) that (a) and (b) do not make; it restarts a cycle early only when "
               "orthogonality is lost, which would show below as a cycle ending short of dimension j.")
    report.add("")
    # The floor under every row: the two library calls of a step at a size where the
    # step's own work is negligible.
    floor_impls = [_LancbioAPI(FLOOR_N, 10), _LancbioRaw(FLOOR_N, 10)]
    floor_times = measure_steps(floor_impls, FLOOR_N, 10, np.float64, 50)[0]
    for impl in floor_impls:
        impl.close()
    fixed = stats(floor_times["lancbio"])
    results["step_fixed"] = fixed.median
    report.add(f"Fixed cost of a step through Python, measured the same way at n = {FLOOR_N}, j = 10, where "
               f"the passes over vectors cost next to nothing (two ctypes calls, argument checks, the "
               f"projected system of dimension 10): {fixed.fmt()} (raw ctypes "
               f"{stats(floor_times['lancbio raw ctypes']).fmt()}).")
    report.add("")
    have_limiter = single_thread_blas() is not None
    rows, ratio_rows = [], []
    for n in cfg.step_sizes:
        for j in cfg.step_dims:
            _progress(f"section 1: n = {n}, j = {j}")
            impls = [_LancbioAPI(n, j), _LancbioRaw(n, j), _Research(n, j)]
            if have_limiter:
                impls.append(_Careful(n, j, single_thread=True))
            impls.append(_Careful(n, j))
            stream_buffer = np.ones(n * j)
            cycles = _cycles(cfg.repeats, n)
            started = clock()
            monitor = CpuMonitor()
            times, bounds, rates, agreement, dims = measure_steps(impls, n, j, np.float64, cycles,
                                                                  stream_buffer)
            others = monitor.others()
            _progress(f"section 1: n = {n}, j = {j} took {clock() - started:.1f} s")
            for impl in impls:
                impl.close()
            del impls, stream_buffer
            gc.collect()
            st = {k: stats(v) for k, v in times.items()}
            bound = stats(bounds)
            lanc = st["lancbio"].median
            key = (n, j)
            careful1 = st["(b) careful numpy, 1 BLAS thread"].median if have_limiter else float("nan")
            results.setdefault("steps", {})[key] = dict(
                lancbio=lanc, raw=st["lancbio raw ctypes"].median, research=st["(a) research numpy"].median,
                careful=st["(b) careful numpy"].median, careful1=careful1,
                careful_best=min(st["(b) careful numpy"].median, careful1) if have_limiter
                else st["(b) careful numpy"].median, others=others,
                bound=bound.median, agreement=max(agreement.values()), dims=dims,
                read=stats(rates[0]).median, copy=stats(rates[1]).median, copy2=stats(rates[2]).median)
            r = results["steps"][key]
            dim_ok = all(x == j for v in dims.values() for x in v)
            rows.append([_n_label(n), j, cycles, st["lancbio"].fmt(), st["lancbio raw ctypes"].fmt(),
                         st["(a) research numpy"].fmt(), st["(b) careful numpy"].fmt(),
                         st["(b) careful numpy, 1 BLAS thread"].fmt() if have_limiter else "n/a",
                         bound.fmt(), f"{r['read'] / 1e9:.1f} / {r['copy'] / 1e9:.1f} / {r['copy2'] / 1e9:.1f}"])
            ratio_rows.append([_n_label(n), j, fmt_ratio(r["research"] / lanc), fmt_ratio(r["careful"] / lanc),
                               fmt_ratio(r["careful1"] / lanc), fmt_ratio(r["careful"] / r["raw"]),
                               f"{100 * r['bound'] / lanc:.0f}%", f"{100 * r['bound'] / r['raw']:.0f}%",
                               fmt_ratio(r["research"] / r["bound"]), fmt_ratio(r["careful"] / r["bound"]),
                               f"{r['agreement']:.1e} {'ok' if r['agreement'] < AGREE else 'DIFFERENT'}"
                               + ("" if dim_ok else " (a cycle ended below dimension j)"), f"{others:.2f}"])
    report.table(["n", "j", "cycles", "lancbio", "lancbio raw ctypes", "(a) research numpy", "(b) careful numpy",
                  "(b) 1 BLAS thread", "(c) bound", "stream GB/s read/copy/copy 2 threads"], rows)
    report.add("Ratios of medians (> 1: lancbio faster); \"% of bound\" = (c) / lancbio time; (a)/(c) and "
               "(b)/(c) are the largest speed-ups over (a) and (b) that an implementation running at the "
               "bound (c) could show; \"others' CPU\" = cores kept busy by other processes during the row "
               "(0 on an idle machine).")
    report.add("")
    report.table(["n", "j", "(a)/lancbio", "(b)/lancbio", "(b 1 thread)/lancbio", "(b)/raw", "% of bound",
                  "raw % of bound", "(a)/(c)", "(b)/(c)", "agreement (max over impls)",
                  "others' CPU (cores)"], ratio_rows)
    _step_targets(report, results.get("steps", {}), results["step_fixed"])


# The least traffic of any implementation besides the 2 j basis passes: read the product,
# q_j, q_(j-1), b, w, vbar and write q_(j+1), v: 8 n-vectors.
UNAVOIDABLE_VECTORS = 8
FLOOR_N = 16
# At n <= 1e4 a step is a few tens of microseconds, where a careful numpy step already runs
# within 3x of the attainable time, so the target there is a share of that time instead.
ATTAINABLE_SHARE = 0.7


def _attainable(s, j, fixed) -> float:
    """The least time of a step through Python on this machine: the bound (c) for the 2 j
    basis passes, the unavoidable n-vectors at the same rate, and the fixed cost."""
    return s["bound"] * (2 * j + UNAVOIDABLE_VECTORS) / (2 * j) + fixed


def _step_targets(report, steps, fixed) -> None:
    report.add("Targets (lancbio = the Python API, begin + resume; (b) = the faster of its 2-thread and "
               "1-thread runs at each size, the stronger reference; \"attainable\" = the least time of a "
               f"step through Python here: the bound (c), plus the {UNAVOIDABLE_VECTORS} n-vectors any step "
               "must also read or write at the same rate, plus the fixed cost above):")
    report.add("")
    key = (10**5, 40)
    if key in steps:
        s = steps[key]
        ratio = s["research"] / s["lancbio"]
        attainable = _attainable(s, 40, fixed)
        ceiling = s["research"] / attainable
        note = ""
        if ceiling < 5:
            note = (f"(a) takes {ceiling:.2f}x the attainable time, and lancbio runs at "
                    f"{100 * attainable / s['lancbio']:.0f}% of it")
            if s["lancbio"] > attainable:
                note = "out of reach in this run by the measured bound: " + note
            else:
                note += ", faster than this estimate: the rate behind (c) varies from round to round"
        report.target("step >= 5x faster than (a) at n = 1e5, j = 40", f"{ratio:.2f}x", ratio >= 5, note)
    else:
        report.target("step >= 5x faster than (a) at n = 1e5, j = 40", "not measured", None)
    if steps:
        worst = min(steps, key=lambda k: steps[k]["careful_best"] / steps[k]["lancbio"])
        ratio = steps[worst]["careful_best"] / steps[worst]["lancbio"]
        wins = sum(1 for v in steps.values() if v["careful_best"] >= v["lancbio"])
        report.target("never slower than (b) at any measured size",
                      f"worst (b)/lancbio = {ratio:.2f}x at n = {_n_label(worst[0])}, j = {worst[1]}; lancbio "
                      f"at least as fast at {wins} of {len(steps)} sizes", ratio >= 1)
        small = {k: v for k, v in steps.items() if k[0] <= 10**4}
        if small:
            share = {k: _attainable(v, k[1], fixed) / v["lancbio"] for k, v in small.items()}
            worst = min(share, key=share.get)
            report.target(f"step >= {100 * ATTAINABLE_SHARE:.0f}% of the attainable time at every n <= 1e4",
                          f"worst {100 * share[worst]:.0f}% at n = {_n_label(worst[0])}, j = {worst[1]} "
                          f"(lancbio {fmt_time(small[worst]['lancbio'])}, attainable "
                          f"{fmt_time(_attainable(small[worst], worst[1], fixed))}); "
                          + ", ".join(f"{_n_label(k[0])}/{k[1]}: {100 * share[k]:.0f}%" for k in sorted(share)),
                          share[worst] >= ATTAINABLE_SHARE)
    else:
        report.target("never slower than (b) at any measured size", "not measured", None)
        report.target(f"step >= {100 * ATTAINABLE_SHARE:.0f}% of the attainable time at every n <= 1e4",
                      "not measured", None)
    key = (10**6, 40)
    if key in steps:
        s = steps[key]
        frac = s["bound"] / s["lancbio"]
        ideal = s["bound"] / _attainable(s, 40, fixed)
        report.target("step >= 70% of the bandwidth bound (c) at n = 1e6, j = 40",
                      f"{100 * frac:.0f}% (raw ctypes {100 * s['bound'] / s['raw']:.0f}%; an implementation "
                      f"that also streams the {UNAVOIDABLE_VECTORS} unavoidable n-vectors at the same rate "
                      f"reaches at most {100 * ideal:.0f}%)", frac >= 0.7)
    else:
        report.target("step >= 70% of the bandwidth bound (c) at n = 1e6, j = 40", "not measured", None)


# ---------------------------------------------------------------------------------------
# Section 2: CG and MINRES against scipy.
# ---------------------------------------------------------------------------------------

def _krylov_lancbio(cls, n, iterations, d, b, x0):
    est = cls(n, maxiter=iterations, tol=0.0, v0=x0)
    t_lib = 0.0
    t = clock()
    request = est.begin(b)
    t_lib += clock() - t
    products = 0
    while request is not None:
        product = request * d
        products += 1
        t = clock()
        request = est.resume(product)
        t_lib += clock() - t
    v = est.v
    # est.step, operator included (for the "with operator" column).
    est.reset()
    op = d.__mul__
    t = clock()
    est.step(op, b)
    t_callback = clock() - t
    est.close()
    return t_lib, t_callback, products, v


def _krylov_scipy(fn, n, iterations, d, b, x0):
    from scipy.sparse.linalg import LinearOperator

    spent = [0.0, 0]

    def matvec(x):
        t = clock()
        y = d * x.reshape(-1)
        spent[0] += clock() - t
        spent[1] += 1
        return y

    A = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    t = clock()
    x, _ = fn(A, b, x0=x0.copy(), rtol=0.0, maxiter=iterations) if fn.__name__ == "minres" else \
        fn(A, b, x0=x0.copy(), rtol=0.0, atol=0.0, maxiter=iterations)
    total = clock() - t
    return total - spent[0], total, spent[1], x


def section_krylov(report, cfg: Config, results: dict) -> None:
    report.heading("2. CG and MINRES against scipy.sparse.linalg")
    try:
        from scipy.sparse.linalg import cg, minres
    except ImportError:
        report.add("scipy is not installed: section skipped.")
        return
    K = cfg.krylov_iterations
    report.add(f"{K} iterations from the same x0 on A = diag(linspace(1, 100, n)) (tol 0: no early stop). "
               "Time per iteration excluding the operator: lancbio through reverse communication (only "
               "begin/resume timed); scipy with a LinearOperator whose matvec time is measured and "
               "subtracted (scipy's own LinearOperator dispatch stays in its time). \"with operator\": "
               "lancbio `est.step(callback)` against scipy's total, the product d*x included. "
               f"{cfg.repeats} runs, median [min, max]; agreement ||x_lancbio - x_scipy|| / ||x_scipy||.")
    report.add("")
    rows = []
    for n in cfg.krylov_sizes:
        rng = np.random.default_rng(1)
        d = np.linspace(1.0, 100.0, n)
        b = rng.standard_normal(n)
        x0 = 0.1 * rng.standard_normal(n)
        for label, cls, fn in (("CG", lancbio.CG, cg), ("MINRES", lancbio.MINRES, minres)):
            _progress(f"section 2: {label}, n = {n}")
            lib, lib_cb, sci, sci_tot = [], [], [], []
            agreement = 0.0
            counts = None
            for r in range(cfg.repeats + 1):
                t_lib, t_cb, p_lib, v = _krylov_lancbio(cls, n, K, d, b, x0)
                t_sci, t_sci_total, p_sci, x = _krylov_scipy(fn, n, K, d, b, x0)
                if r == 0:  # warm-up run
                    agreement = rel_diff(v, x)
                    counts = (p_lib, p_sci)
                    continue
                lib.append(t_lib / K)
                lib_cb.append(t_cb / K)
                sci.append(t_sci / K)
                sci_tot.append(t_sci_total / K)
            sl, ss, slc, sst = stats(lib), stats(sci), stats(lib_cb), stats(sci_tot)
            results.setdefault("krylov", {})[(label, n)] = dict(lancbio=sl.median, scipy=ss.median,
                                                                agreement=agreement)
            rows.append([label, _n_label(n), sl.fmt(), ss.fmt(), fmt_ratio(ss.median / sl.median),
                         slc.fmt(), sst.fmt(), fmt_ratio(sst.median / slc.median),
                         f"{counts[0]} / {counts[1]}",
                         f"{agreement:.1e} {'ok' if agreement < AGREE else 'DIFFERENT'}"])
    report.table(["method", "n", "lancbio / iter", "scipy / iter", "scipy/lancbio", "lancbio incl. op",
                  "scipy incl. op", "ratio incl. op", "products lancbio / scipy", "agreement"], rows)


# ---------------------------------------------------------------------------------------
# Section 3: callback overhead.
# ---------------------------------------------------------------------------------------

def section_callback(report, cfg: Config, results: dict) -> None:
    report.heading("3. Python callback overhead per HVP")
    S = cfg.callback_products
    n = 4
    b = np.ones(n)

    def op(v):
        return v

    def fresh(v):
        return v * 1.0

    report.add(f"n = {n}, A = I, lancbio.GD with steps = {S} per call, so one `step` makes {S} products "
               "(reverse communication driven by the wrapper, each product a call of the operator and one "
               "resume), with two operators: one that returns its argument (an in-place operator) and one "
               "that returns a new array (`v * 1.0`). Per-HVP time = step time / "
               f"{S}; overhead = that minus the operator's own cost (the same function called in a Python "
               "loop); the native GD work per product (a few ns at n = 4) is left in the overhead. Reverse "
               "communication: one `est.resume(product)` call per product (Python API), and the same C call "
               f"through raw ctypes with preallocated buffers. {cfg.repeats} runs, median [min, max].")
    report.add("")
    operators = {"in place": op, "new array": fresh}
    per_hvp = {name: [] for name in operators}
    op_cost = {name: [] for name in operators}
    rt_api, rt_raw = [], []
    est = lancbio.GD(n, eta=0.1, steps=S)
    for function in operators.values():
        est.step(function, b)  # warm-up
    for _ in range(cfg.repeats):
        for name, function in operators.items():
            t = clock()
            est.step(function, b)
            per_hvp[name].append((clock() - t) / S)
            x = np.ones(n)
            t = clock()
            for _ in range(S):
                function(x)
            op_cost[name].append((clock() - t) / S)
        # reverse communication, Python API
        request = est.begin(b)
        count = 0
        t = clock()
        while request is not None:
            request = est.resume(request)
            count += 1
        rt_api.append((clock() - t) / count)
        # raw ctypes
        request = np.empty(n)
        begin_fn, resume_fn, as_ptr = _raw_functions(b.dtype)
        rp = as_ptr(request)
        bp = as_ptr(b)
        handle = est._handle
        status = begin_fn(handle, bp, rp, n)
        count = 0
        t = clock()
        while status == _ffi.NEED_PRODUCT:
            status = resume_fn(handle, rp, rp, n)
            count += 1
        rt_raw.append((clock() - t) / count)
        est._check(status)
    est.close()
    s_hvp = {name: stats(v) for name, v in per_hvp.items()}
    s_op = {name: stats(v) for name, v in op_cost.items()}
    s_api, s_raw = stats(rt_api), stats(rt_raw)
    overhead = {name: s_hvp[name].median - s_op[name].median for name in operators}
    results["callback"] = dict(per_hvp=s_hvp["in place"].median, overhead=overhead["in place"], roundtrip=s_api.median,
                               raw=s_raw.median)
    rows = []
    for name in operators:
        rows += [[f"per HVP through the callback (GD step / products), operator {name}", s_hvp[name].fmt()],
                 [f"operator's own cost (called in a Python loop), {name}", s_op[name].fmt()],
                 [f"callback overhead per HVP (difference of medians), {name}", fmt_time(overhead[name])]]
    rows += [["reverse-communication round trip, Python API (est.resume)", s_api.fmt()],
             ["reverse-communication round trip, raw ctypes", s_raw.fmt()]]
    report.table(["measure", "time"], rows)
    # The measure is the operator that returns its argument; a new array per product
    # adds numpy's allocation and the pointer extraction of a foreign array (reported).
    report.target("Python callback overhead < 1 us per HVP (an operator returning its argument)",
                  f"{overhead['in place'] * 1e6:.2f} us ({overhead['new array'] * 1e6:.2f} us with an operator "
                  "returning a new array)", overhead["in place"] < 1e-6)


# ---------------------------------------------------------------------------------------
# Section 4: the synthetic problem end to end.
# ---------------------------------------------------------------------------------------

class _TimedProblem:
    """Forwards the five derivatives to the problem and accumulates their time."""

    def __init__(self, problem):
        self.p = problem
        self.dx, self.dy = problem.dx, problem.dy
        self.time = 0.0

    def grad_y_g(self, x, y):
        t = clock(); r = self.p.grad_y_g(x, y); self.time += clock() - t; return r  # noqa: E702

    def grad_x_f(self, x, y):
        t = clock(); r = self.p.grad_x_f(x, y); self.time += clock() - t; return r  # noqa: E702

    def grad_y_f(self, x, y):
        t = clock(); r = self.p.grad_y_f(x, y); self.time += clock() - t; return r  # noqa: E702

    def hvp_yy_g(self, x, y, v):
        t = clock(); r = self.p.hvp_yy_g(x, y, v); self.time += clock() - t; return r  # noqa: E702

    def jvp_xy_g(self, x, y, v):
        t = clock(); r = self.p.jvp_xy_g(x, y, v); self.time += clock() - t; return r  # noqa: E702


class _CheapProblem:
    """Issue 14's problem whose functions cost next to nothing, so that an outer loop's own
    cost shows: grad_y_g returns y * 1.0, hvp_yy_g returns 2 v (A = 2 I), and the other
    three return constant vectors (distinct ones, so that the hyper-gradient is not zero).
    The constants are the problem's own arrays, as a problem that caches its results
    returns them: an outer loop must not write into them."""

    def __init__(self, n):
        self.dx = self.dy = n
        self._grad_x_f, self._grad_y_f, self._jvp = np.full(n, 1.0), np.full(n, 0.5), np.full(n, 0.25)

    def grad_y_g(self, x, y):
        return y * 1.0

    def grad_x_f(self, x, y):
        return self._grad_x_f

    def grad_y_f(self, x, y):
        return self._grad_y_f

    def hvp_yy_g(self, x, y, v):
        return 2 * v

    def jvp_xy_g(self, x, y, v):
        return self._jvp


def _own_costs(problem, x0, y0, iterations, lr_x, lr_y, m):
    """lancbio.Bilevel and ReferenceBilevel at m0 = m_max = m, interleaved in chunks over
    the same timed problem: per implementation the per-iteration times in total and
    outside the problem's five functions (lists), then the relative difference of the
    final x and the early (orthogonality) restarts of each."""
    timed = _TimedProblem(problem)
    bil = lancbio.Bilevel(timed, "lancbio", x0=x0, y0=y0, lr_x=lr_x, lr_y=lr_y, m0=m, m_max=m)
    ref = ReferenceBilevel(timed, x0, y0, lr_x=lr_x, lr_y=lr_y, m0=m, m_max=m)
    total = {"lancbio": [], "numpy": []}
    outside = {"lancbio": [], "numpy": []}
    chunk = max(1, min(20, iterations // 5))
    warm = min(5, iterations // 4)
    done = lost = 0
    while done < iterations:
        steps = min(chunk, iterations - done)
        for name, fn in (("lancbio", bil.step), ("numpy", ref.step)):
            for k in range(steps):
                p0 = timed.time
                t = clock()
                info = fn()
                dt = clock() - t
                if name == "lancbio":
                    lost += info.estimator.orthogonality_restart
                if done + k >= warm:
                    total[name].append(dt)
                    outside[name].append(dt - (timed.time - p0))
        done += steps
    agreement = rel_diff(bil.x, ref.x)
    bil.close()
    return total, outside, agreement, (lost, ref.est.orthogonality_restarts)


def section_own_cost(report, cfg: Config, results: dict) -> None:
    """Section 4b: issue 14's measure of the outer loop's own cost."""
    from lancbio.problems import Synthetic

    m = 20
    report.heading(f"4b. The outer loop's own cost (m0 = m_max = {m})", level=3)
    report.add(f"lancbio.Bilevel(method=\"lancbio\", m0 = m_max = {m}) against the numpy loop "
               "(`bench.reference.ReferenceBilevel`), interleaved in chunks over the same timed problem; own "
               "cost = time per outer iteration minus the time inside the problem's five functions "
               "(the timing proxy's own calls are outside for both). Median over iterations after a few of "
               "warm-up [min, max]. Synthetic: as above (lr_x = 1, lr_y = 1e-5). Cheap: grad_y_g returns "
               "y * 1.0, hvp_yy_g 2 v, the rest constant vectors (lr_x = 0.1, lr_y = 1e-3). The synthetic "
               "problem runs at n = 1e3 and 4e3 only: its G is a dense n x n matrix (8 n^2 bytes: 32.8 GB at "
               "n = 6.4e4, 8 TB at 1e6, and 4 n^3 flops to build), so n = 6.4e4 and 1e6 use the cheap "
               "problem only.")
    report.add("")
    rows, ratios = [], {"synthetic": [], "cheap": []}
    for kind, n, K in cfg.own_cost:
        _progress(f"section 4b: {kind}, n = {n}, {K} iterations each")
        if kind == "synthetic":
            problem = Synthetic(n, kappa=1e5, seed=0)
            x0, y0 = problem.initial_point(1)
            lr_x, lr_y = 1.0, 1e-5
        else:
            problem = _CheapProblem(n)
            x0, y0 = np.ones(n), np.ones(n)
            lr_x, lr_y = 0.1, 1e-3
        total, own, agreement, lost = _own_costs(problem, x0, y0, K, lr_x, lr_y, m)
        del problem
        gc.collect()
        sl, sn = stats(own["lancbio"]), stats(own["numpy"])
        tl, tn = stats(total["lancbio"]), stats(total["numpy"])
        ratio = sl.median / sn.median
        ratios[kind].append((n, ratio))
        results.setdefault("own_cost", {})[f"{kind} {n}"] = dict(lancbio=sl.median, numpy=sn.median, ratio=ratio,
                                                               total=tl.median, numpy_total=tn.median)
        rows.append([kind, _n_label(n), K, sl.fmt(), sn.fmt(), fmt_ratio(ratio), fmt_time(tl.median),
                     fmt_time(tn.median), f"{agreement:.1e} {'ok' if agreement < AGREE else 'DIFFERENT'}",
                     f"{lost[0]} / {lost[1]}"])
    report.table(["problem", "n", "iterations", "lancbio own / iter", "numpy own / iter", "lancbio / numpy",
                  "lancbio total / iter", "numpy total / iter", "agreement x",
                  "orthogonality restarts lancbio / numpy"], rows)
    report.add("The synthetic problem's iterates agree only while the orthogonality safeguard fires at the "
               "same iterations in both (decided by rounding; see above). Its functions stream G (8 n^2 bytes) "
               "and so leave the caches cold: lancbio's copies of x, y and v then take the misses that, in the "
               "numpy loop, the functions take when they first read the arrays they are handed (counted "
               "inside), so the totals are the fairer comparison there.")
    report.add("")

    def worded(pairs):
        return ", ".join(f"n = {_n_label(n)}: {r:.2f}x" for n, r in pairs) or "not run"

    synthetic, cheap = ratios["synthetic"], ratios["cheap"]
    report.target("outer loop's own cost <= the numpy loop's on the synthetic problem (n = 1e3, 4e3)",
                  f"lancbio / numpy {worded(synthetic)}", all(r <= 1 for _, r in synthetic) if synthetic else None)
    report.target("outer loop's own cost <= 1/1.5 of the numpy loop's on the cheap problem "
                  "(n = 1e3, 4e3, 6.4e4, 1e6)",
                  f"lancbio / numpy {worded(cheap)} (target <= 0.67x)",
                  all(r <= 1 / 1.5 for _, r in cheap) if cheap else None)


ANCHOR_OUTSIDE_1000 = 0.68e-3   # ANCHORS.md: research code, n = 1000, outside the problem's functions
ANCHOR_TOTAL = {1000: 3.20e-3, 5000: 66e-3, 10000: 263e-3}


def section_synthetic(report, cfg: Config, results: dict) -> None:
    from lancbio.problems import Synthetic

    report.heading("4. Synthetic problem end to end (LancBiO outer loop)")
    report.add("lancbio.problems.Synthetic(n, kappa = 1e5, seed = 0), x0, y0 = initial_point(1), lr_x = 1, "
               "lr_y = 1e-5, T = 5, m0 = 1, growth 1.1 every 20, m_max = 80: lancbio.Bilevel(method=\"lancbio\") "
               "against the numpy outer loop `bench.reference.ReferenceBilevel` (careful numpy "
               "Lanczos (b)). Both call the same problem object through a timing proxy; \"outside\" = "
               "iteration time minus the time spent inside the problem's five functions. Iterations are "
               "run in interleaved chunks; median over iterations [min, max] (the step cost grows with j). "
               "Agreement: ||x_lancbio - x_numpy|| / ||x_numpy|| after all iterations. Both use the library's "
               "default orthogonality safeguard (restart a cycle early when max_i |q_i . q_(j+1)| > 1e-2); "
               "when it fires is decided by rounding errors, so the iterates can only agree while it fires "
               "at the same iterations (the last column counts the early restarts).")
    report.add("")
    rows = []
    for n, K in cfg.synthetic:
        _progress(f"section 4: building Synthetic({n})")
        t = clock()
        problem = Synthetic(n, kappa=1e5, seed=0)
        build = clock() - t
        x0, y0 = problem.initial_point(1)
        timed = _TimedProblem(problem)
        bil = lancbio.Bilevel(timed, "lancbio", x0=x0, y0=y0, lr_x=1.0, lr_y=1e-5)
        ref = ReferenceBilevel(timed, x0, y0, lr_x=1.0, lr_y=1e-5)
        total = {"lancbio": [], "numpy": []}
        outside = {"lancbio": [], "numpy": []}
        chunk = max(1, min(50, K // 4))
        done = 0
        _progress(f"section 4: n = {n}, {K} iterations each (built in {build:.1f} s)")
        lost = 0
        while done < K:
            steps = min(chunk, K - done)
            for name, fn in (("lancbio", bil.step), ("numpy", ref.step)):
                for _ in range(steps):
                    p0 = timed.time
                    t = clock()
                    info = fn()
                    dt = clock() - t
                    total[name].append(dt)
                    outside[name].append(dt - (timed.time - p0))
                    if name == "lancbio":
                        lost += bool(getattr(info.estimator, "orthogonality_restart", False))
            done += steps
        agreement = rel_diff(bil.x, ref.x)
        ref_lost = ref.est.orthogonality_restarts
        bil.close()
        del problem, timed, bil, ref
        gc.collect()
        st = {k: stats(v) for k, v in total.items()}
        so = {k: stats(v) for k, v in outside.items()}
        results.setdefault("synthetic", {})[n] = dict(total=st["lancbio"].median, outside=so["lancbio"].median,
                                                      numpy_total=st["numpy"].median,
                                                      numpy_outside=so["numpy"].median, agreement=agreement)
        anchor_total = ANCHOR_TOTAL.get(n)
        rows.append([n, K, st["lancbio"].fmt(), st["numpy"].fmt(), fmt_ratio(st["numpy"].median / st["lancbio"].median),
                     so["lancbio"].fmt(), so["numpy"].fmt(), fmt_ratio(so["numpy"].median / so["lancbio"].median),
                     fmt_time(anchor_total) if anchor_total else "-",
                     f"{agreement:.1e} {'ok' if agreement < AGREE else 'DIFFERENT'}",
                     f"{lost} / {ref_lost}"])
    report.table(["n", "iterations", "lancbio / iter", "numpy / iter", "numpy/lancbio", "lancbio outside",
                  "numpy outside", "outside numpy/lancbio", "research code / iter (ANCHORS)", "agreement x",
                  "orthogonality restarts lancbio / numpy"], rows)
    if 1000 in results.get("synthetic", {}):
        s = results["synthetic"][1000]
        report.add(f"Outside the problem's functions at n = 1000: research code 0.68 ms (ANCHORS.md) / lancbio "
                   f"{fmt_time(s['outside'])} = **{ANCHOR_OUTSIDE_1000 / s['outside']:.1f}x** "
                   f"(numpy reference: {ANCHOR_OUTSIDE_1000 / s['numpy_outside']:.1f}x). The research-code "
                   "figures come from another run on other random data (ANCHORS.md): ratios, not a side-by-side.")
        report.add("")
    section_own_cost(report, cfg, results)


# ---------------------------------------------------------------------------------------
# Section 5: float32 against float64.
# ---------------------------------------------------------------------------------------

def section_precision(report, cfg: Config, results: dict) -> None:
    n, j = cfg.precision_n, cfg.precision_j
    report.heading(f"5. Float32 against Float64 (n = {_n_label(n)}, j = {j})")
    report.add("The step of section 1 (lancbio Python API) in both precisions, same right-hand sides "
               "(rounded to float32), one cycle of each precision and implementation per round (interleaved, "
               "the order rotating); the careful numpy reference (b) in both precisions (with 2 "
               f"and 1 BLAS threads) for comparison. {2 * cfg.repeats} cycles, median [min, max]. Agreement of the float32 v with the "
               "float64 v is reported, not required (float32 rounding).")
    report.add("")
    _progress(f"section 5: n = {n}, j = {j}")
    one = single_thread_blas() is not None
    impls64 = [_LancbioAPI(n, j, np.float64, name="lancbio f64")]
    impls32 = [_LancbioAPI(n, j, np.float32, name="lancbio f32")]
    if one:
        impls64.append(_Careful(n, j, np.float64, single_thread=True, name="(b1) f64"))
        impls32.append(_Careful(n, j, np.float32, single_thread=True, name="(b1) f32"))
    impls64.append(_Careful(n, j, np.float64, name="(b) f64"))
    impls32.append(_Careful(n, j, np.float32, name="(b) f32"))
    # Twice --repeats: the memory system of this machine kind has slow spells of a few
    # seconds, which a median of five cycles does not always ride out.
    times, agreement = measure_interleaved({np.float64: impls64, np.float32: impls32}, n, j, 2 * cfg.repeats)
    a64 = {impl.name: agreement[impl.name] for impl in impls64}
    a32 = {impl.name: agreement[impl.name] for impl in impls32}
    v64, v32 = impls64[0].v, impls32[0].v
    for impl in impls64 + impls32:
        impl.close()
    gc.collect()
    s = {k: stats(v) for k, v in times.items()}
    ratio = s["lancbio f64"].median / s["lancbio f32"].median
    ratio_b = s["(b) f64"].median / s["(b) f32"].median
    results["precision"] = dict(ratio=ratio, ratio_numpy=ratio_b)
    rows = [["lancbio", s["lancbio f64"].fmt(), s["lancbio f32"].fmt(), fmt_ratio(ratio)],
            ["(b) careful numpy", s["(b) f64"].fmt(), s["(b) f32"].fmt(), fmt_ratio(ratio_b)]]
    if one:
        rows.append(["(b) careful numpy, 1 BLAS thread", s["(b1) f64"].fmt(), s["(b1) f32"].fmt(),
                     fmt_ratio(s["(b1) f64"].median / s["(b1) f32"].median)])
    report.table(["implementation", "float64", "float32", "f64 / f32"], rows)
    report.add(f"lancbio float32 v against float64 v: {rel_diff(v32, v64):.1e} relative; within a precision "
               f"lancbio agrees with (b) to {a64['lancbio f64']:.1e} (f64) and {a32['lancbio f32']:.1e} (f32).")
    report.add("")
    report.target(f"float32 >= 1.6x faster than float64 at n = {_n_label(n)}, j = {j}", f"{ratio:.2f}x",
                  ratio >= 1.6 if (n, j) == (10**6, 40) else None,
                  "" if (n, j) == (10**6, 40) else "quick sizes: not the target's size")


# ---------------------------------------------------------------------------------------
# Section 6: memory.
# ---------------------------------------------------------------------------------------

def section_memory(report, cfg: Config, results: dict) -> None:
    n, m_max, steps = cfg.memory_n, cfg.memory_m_max, cfg.memory_steps
    report.heading(f"6. Peak memory (n = {_n_label(n)}, m_max = {m_max}, {steps} steps)")
    report.add("Measured in a fresh subprocess (so earlier sections do not inflate the high-water mark): "
               "resident set from /proc/self/statm, peak from VmHWM (/proc/self/status, reset to the baseline "
               "with clear_refs; ru_maxrss would carry the pre-exec image), baseline after imports and the data; "
               "then DynamicLanczos(n, m0 = 1, m_max, growth 1.1 every 20) and `steps` calls of "
               "`est.step(op, b)` with an in-place diagonal operator (the operator allocates nothing). "
               "Basis size = (m_max + 1) n 8 bytes.")
    report.add("")
    _progress(f"section 6: memory, n = {n}, m_max = {m_max}, {steps} steps (subprocess)")
    env = dict(os.environ)
    # The subprocess imports this package and the lancbio this process runs.
    paths = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
             os.path.dirname(os.path.dirname(os.path.abspath(lancbio.__file__)))]
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    code = ("import sys, json; from bench.memory_probe import probe; "
            f"print(json.dumps(probe({n}, {m_max}, {steps})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        report.add(f"memory probe failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        report.target("peak memory within basis + 10 n-vectors", "probe failed", False)
        report.target("memory flat over the steps", "probe failed", False)
        return
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    vec = n * 8
    basis = (m_max + 1) * vec
    limit = basis + 10 * vec
    peak = m["peak_extra"]
    created = m["after_create"] - m["base"]
    samples = m["samples"]
    # Flatness: from the first sample where the period has reached m_max to the end.
    full = [s for s in samples if s["period"] >= m_max] or samples
    drift = full[-1]["rss"] - full[0]["rss"]
    peak_drift = full[-1]["hwm"] - full[0]["hwm"]
    results["memory"] = dict(peak=peak, basis=basis, created=created, drift=drift)
    report.table(["quantity", "bytes", "/ basis", "n-vectors"], [
        ["basis (m_max + 1) n 8", f"{basis:,}", "1.000", f"{basis / vec:.1f}"],
        ["RSS growth at creation", f"{created:,}", f"{created / basis:.3f}", f"{created / vec:.1f}"],
        [f"peak extra RSS over {steps} steps", f"{peak:,}", f"{peak / basis:.3f}", f"{peak / vec:.1f}"],
        ["limit: basis + 10 n-vectors", f"{limit:,}", f"{limit / basis:.3f}", f"{limit / vec:.1f}"],
        [f"RSS change from step {full[0]['step']} (period = m_max) to {full[-1]['step']}", f"{drift:,}",
         f"{drift / basis:.4f}", f"{drift / vec:.2f}"],
        ["peak RSS (VmHWM) change over the same steps", f"{peak_drift:,}", f"{peak_drift / basis:.4f}",
         f"{peak_drift / vec:.2f}"],
    ])
    report.add("RSS samples (step: extra MB): " + ", ".join(
        f"{s['step']}: {(s['rss'] - m['base']) / 1e6:.1f}" for s in samples[:: max(1, len(samples) // 10)]))
    if not m.get("peak_reset", False):
        report.add("(The peak could not be reset at the baseline: it may include import-time memory.)")
    report.add(f"At creation the library allocates m_max + 1 + 6 n-vectors (the basis, the anchor and its "
               f"product, and 4 workspace vectors) as zero pages, which take memory only once written "
               f"(measured at creation: {created / vec:.1f}). `step` reads b in place and writes the basis, the "
               f"anchor, its product, the estimate, the next estimate and the product buffer: basis + 5 "
               f"n-vectors; the Python wrapper adds the copy of q handed to the operator and the new v returned "
               f"while the previous v is still referenced (basis + {(peak - basis) / vec:.1f} measured).")
    report.add("")
    report.target("peak memory within basis + 10 n-vectors",
                  f"peak extra {peak / 1e6:.1f} MB = basis + {(peak - basis) / vec:.1f} n-vectors "
                  f"(limit {limit / 1e6:.1f} MB)", peak <= limit)
    flat = drift <= vec and peak_drift <= vec
    report.target(f"memory flat over {steps} steps",
                  f"RSS {drift / 1e3:+.0f} kB, peak RSS {peak_drift / 1e3:+.0f} kB between steps "
                  f"{full[0]['step']} and {full[-1]['step']} (one n-vector = {vec / 1e3:.0f} kB)", flat)


# ---------------------------------------------------------------------------------------
# Section 7: one-shot solves of fixed SPD systems.
# ---------------------------------------------------------------------------------------

def _laplacian(side: int, shift: float):
    """The 5-point 2-D Laplacian on a side x side grid plus shift I (scipy.sparse CSR)."""
    import scipy.sparse as sparse

    t = sparse.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(side, side))
    eye = sparse.identity(side)
    return (sparse.kron(t, eye) + sparse.kron(eye, t) + shift * sparse.identity(side * side)).tocsr()


def section_solve(report, cfg: Config, results: dict) -> None:
    report.heading("7. One-shot solves: Lanczos against CG")
    try:
        import scipy.sparse.linalg  # noqa: F401
    except ImportError:
        report.add("scipy is not installed: section skipped.")
        return
    report.add("`lancbio.solve` to tol 1e-8 (true residual) on 2-D Laplacians, and the same plus 1e-2 I and "
               "1e-4 I (condition about 1e3 to 1e6), from x0 = 0: method \"lanczos\" (short recurrence, no "
               "basis) against \"cg\", the same operator callback for both. "
               f"{cfg.repeats} runs, median time [min, max].")
    report.add("")
    rows, worst_products, worst_time = [], 0.0, 0.0
    for side in cfg.solve_sides:
        for shift in (0.0, 1e-2, 1e-4):
            a = _laplacian(side, shift)
            n = a.shape[0]
            b = np.random.default_rng(7).standard_normal(n)
            _progress(f"section 7: n = {n}, shift {shift:g}")
            times = {"lanczos": [], "cg": []}
            infos = {}
            for r in range(cfg.repeats + 1):
                for method in ("lanczos", "cg"):
                    t = clock()
                    _, info = lancbio.solve(a, b, method=method, tol=1e-8, maxiter=50 * n)
                    elapsed = clock() - t
                    if r > 0:
                        times[method].append(elapsed)
                    infos[method] = info
            sl, sc = stats(times["lanczos"]), stats(times["cg"])
            products = infos["lanczos"].products / infos["cg"].products
            ratio = sl.median / sc.median
            worst_products, worst_time = max(worst_products, products), max(worst_time, ratio)
            converged = infos["lanczos"].converged and infos["cg"].converged
            rows.append([_n_label(n) if side != 316 else "1e5", f"{shift:g}",
                         f"{infos['lanczos'].products} / {infos['cg'].products}", f"{products:.3f}",
                         sl.fmt(), sc.fmt(), f"{ratio:.2f}", "ok" if converged else "NOT CONVERGED"])
    report.table(["n", "shift", "products lanczos / cg", "ratio", "lanczos", "cg", "time ratio", "converged"], rows)
    results["solve"] = dict(products=worst_products, time=worst_time)
    report.target("one-shot lanczos within 1.2x of CG's products", f"worst ratio {worst_products:.3f}",
                  worst_products <= 1.2)
    report.target("one-shot lanczos within 1.2x of CG's time", f"worst median ratio {worst_time:.2f}",
                  worst_time <= 1.2)


SECTIONS = {
    1: section_steps,
    2: section_krylov,
    3: section_callback,
    4: section_synthetic,
    5: section_precision,
    6: section_memory,
    7: section_solve,
    8: section_blas_threads,
    9: section_torch,
    10: section_scale,
}
