"""Section 10: dynamic Lanczos on vectors sliced across processes (``comm=``), per step:
the local passes, the reductions and the cost model of docs/algorithms.md section 13.

Run as ``mpirun -np P python3 -m bench.scale N M CYCLES`` it is the worker: each rank
holds an uneven slice of n = N values (sizes within +-10% of N / P, so that the ranks
with smaller slices wait for the largest in every reduction), runs
``lancbio.DynamicLanczos(n_local, m0=M, m_max=M, comm=...)`` on a diagonal SPD operator
of its slice (its product communicates nothing) for one warm-up cycle and CYCLES timed
cycles (before them it measures the model's W: the rate at which each rank reads its
basis' worth of values while all do), b_k = b0 + 0.1 sin(k) b1 as section 1 has it, and times every step: the whole
``step`` call, the product, and the real ``Allreduce`` inside the reduction hook (the
communicator is wrapped in a proxy that times it). Then it times ``Allreduce`` alone on
the sizes of the step's calls. On one process it also runs the same steps without
``comm=``, interleaved cycle by cycle, to show what the hook costs there. Rank 0 prints
one JSON line with every rank's figures.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

__all__ = ["section_scale", "run_workers", "missing", "slices", "summarize", "model"]

UNEVEN = 0.1          # slice sizes within +-10% of n / P
VALUE_BYTES = 8       # float64
LATENCY_SECONDS = 0.1  # how long each size's Allreduce-alone loop runs, about
MIN_READ = 2**24       # values read per rank at least in the bandwidth measurement


def slices(n: int, size: int) -> list[int]:
    """Slice bounds [0, ..., n] of ``size`` ranks: rank r holds about
    1 + UNEVEN (2 r / (size - 1) - 1) shares, so the last rank has the largest slice."""
    if size == 1:
        return [0, n]
    weights = [1 + UNEVEN * (2 * r / (size - 1) - 1) for r in range(size)]
    total = sum(weights)
    bounds, acc = [0], 0.0
    for w in weights:
        acc += w
        bounds.append(round(n * acc / total))
    bounds[-1] = n
    return bounds


class _TimedComm:
    """A communicator whose ``Allreduce`` times the real one and records the sizes."""

    def __init__(self, comm, clock):
        self._allreduce = comm.Allreduce
        self._clock = clock
        self.time = 0.0
        self.sizes: list[int] = []

    def Allreduce(self, send, receive):  # noqa: N802 - mpi4py's name
        start = self._clock()
        self._allreduce(send, receive)
        self.time += self._clock() - start
        self.sizes.append(int(send.size))


def _latency(comm, count: int, clock) -> float:
    """Seconds per ``Allreduce`` of ``count`` doubles, alone (median of 5 loops)."""
    import numpy as np

    send, receive = np.zeros(count), np.empty(count)
    comm.Barrier()
    start = clock()
    for _ in range(20):
        comm.Allreduce(send, receive)
    calls = int(comm.bcast(max(20, min(20000, LATENCY_SECONDS / 5 * 20 / max(clock() - start, 1e-9))), root=0))
    samples = []
    for _ in range(5):
        comm.Barrier()
        start = clock()
        for _ in range(calls):
            comm.Allreduce(send, receive)
        samples.append((clock() - start) / calls)
    return sorted(samples)[2]


def _cold_latency(comm, count: int, values: int, clock) -> float:
    """Seconds of one ``Allreduce`` of ``count`` doubles right after the rank has read
    ``values`` doubles (its basis' worth), as each call of a step comes right after a pass
    over the basis: where that does not fit the caches, the call's own code and data have
    left them. Times the rank with the largest slice meets (it waits for none). Median of 7."""
    import numpy as np

    buffer = np.ones(values)
    send, receive = np.zeros(count), np.empty(count)
    samples = []
    for _ in range(7):
        comm.Barrier()
        buffer.sum()
        start = clock()
        comm.Allreduce(send, receive)
        samples.append(clock() - start)
    return sorted(samples)[3]


def _bandwidth(comm, count: int, clock) -> float:
    """Bytes/s the rank with the largest slice reads while every rank reads its own buffer
    of ``count`` doubles (n_local j, the size of its basis) at once with buffer.sum(): on
    two threads for one rank (its large passes run on the library's helper thread too), on
    one for several. The time is from the first rank's start to the last rank's end, on
    the clock all processes of one machine share (time.perf_counter is CLOCK_MONOTONIC on
    Linux): where ranks take turns on the cores, it holds every rank's turn, as a step's
    passes do. A small buffer is read over and over, MIN_READ values in all. Best of 3."""
    import threading

    import numpy as np

    from mpi4py import MPI

    buffer = np.ones(count)
    threads = 2 if comm.Get_size() == 1 and (os.cpu_count() or 1) > 1 else 1
    parts = np.array_split(buffer, threads)
    # So that waking the second thread is not what is timed (a small basis stays in cache
    # from step to step, and so does the buffer).
    repeats = max(1, MIN_READ // count)
    best = float("inf")
    for _ in range(3):
        together = threading.Barrier(threads)

        def read(part):
            together.wait()
            for _ in range(repeats):
                part.sum()

        helpers = [threading.Thread(target=read, args=(part,)) for part in parts[1:]]
        for helper in helpers:
            helper.start()
        comm.Barrier()
        together.wait()
        start = clock()
        for _ in range(repeats):
            parts[0].sum()
        for helper in helpers:
            helper.join()
        spans = comm.allgather((start, clock()))
        best = min(best, max(end for _, end in spans) - min(begin for begin, _ in spans))
    return repeats * comm.allreduce(buffer.nbytes, op=MPI.MAX) / best


def _worker(n_total: int, m: int, cycles: int) -> dict | None:
    import numpy as np
    from mpi4py import MPI

    import lancbio

    from .measure import clock

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    bounds = slices(n_total, size)
    lo, hi = bounds[rank], bounds[rank + 1]
    n = hi - lo
    rng = np.random.default_rng(0)
    # The whole vectors' slices, the same values for every P.
    d = np.linspace(1.0, 10.0, n_total)[lo:hi].copy()
    b0 = rng.standard_normal(n_total)[lo:hi].copy()
    b1 = rng.standard_normal(n_total)[lo:hi].copy()
    b = np.empty(n)
    product_time = [0.0]

    def product(x):
        start = clock()
        np.multiply(x, d, out=x)  # in place: the library allows it and nothing is allocated
        product_time[0] += clock() - start
        return x

    bandwidth = _bandwidth(comm, n * m, clock)
    hook = _TimedComm(comm, clock)
    runs = {"comm": lancbio.DynamicLanczos(n, m0=m, m_max=m, growth=1.0, grow_every=1, comm=hook)}
    if size == 1:
        runs["none"] = lancbio.DynamicLanczos(n, m0=m, m_max=m, growth=1.0, grow_every=1)
    steps = {name: [] for name in runs}
    k = 0
    for cycle in range(1 + cycles):
        for name, est in runs.items():
            for _ in range(m):
                k += 1
                np.add(b0, (0.1 * np.sin(k)) * b1, out=b)
                hook.time, hook.sizes, product_time[0] = 0.0, [], 0.0
                start = clock()
                est.step(product, b)
                total = clock() - start
                info = est.info
                if cycle > 0:
                    steps[name].append(dict(dimension=info.dimension, restarted=info.restarted,
                                            reductions=info.reductions, products=info.products, total=total,
                                            reduce=hook.time, product=product_time[0], sizes=hook.sizes))
        comm.Barrier()
    for est in runs.values():
        est.close()
    # The sizes of the calls of a step at j = m (the same on every rank), the failure count included.
    counts = sorted({c for s in steps["comm"] if s["dimension"] == m for c in s["sizes"]} | {2, 2 * m + 3})
    latency = {str(count): _latency(comm, count, clock) for count in counts}
    cold = _cold_latency(comm, 2 * m + 3, n * m, clock)
    mine = dict(rank=rank, n_local=n, steps=steps, latency=latency, cold=cold, bandwidth=bandwidth)
    everyone = comm.gather(mine, root=0)
    if rank != 0:
        return None
    return dict(processes=size, n=n_total, m=m, cycles=cycles, ranks=everyone,
                mpi=MPI.Get_library_version().splitlines()[0].strip())


def missing() -> list[str]:
    """What the section needs and this machine lacks (mpirun, mpi4py)."""
    return [what for what, present in (("mpirun", shutil.which("mpirun")),
                                       ("mpi4py", importlib.util.find_spec("mpi4py"))) if not present]


def binding(processes: int) -> str:
    """Open MPI's --bind-to for ``processes`` ranks on this machine: one rank per core
    while there are enough (``core``), as a job runs on a cluster; ``none`` for one rank,
    whose large passes run on a helper thread on the other core, as without MPI; and
    ``none`` oversubscribed, where the ranks take turns on the cores."""
    cores = os.cpu_count() or 1
    return "core" if 1 < processes <= cores else "none"


def mpirun_command(processes: int) -> list[str]:
    """The mpirun command line (before the program) for ``processes`` ranks here."""
    command = ["mpirun", "--oversubscribe", "--bind-to", binding(processes), "-np", str(processes)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.insert(1, "--allow-run-as-root")
    return command


def run_workers(processes: int, n: int, m: int, cycles: int, timeout: float = 300) -> dict:
    """One worker run on ``processes`` ranks; returns rank 0's JSON."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.path.join(root, "python"), env.get("PYTHONPATH", ""))
                                        if p)
    # One BLAS thread: the worker calls none, and idle pools must not take cores from the ranks.
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    out = subprocess.run(mpirun_command(processes) + [sys.executable, "-m", "bench.scale", str(n), str(m), str(cycles)],
                         env=env, capture_output=True, text=True, timeout=timeout, cwd=root)
    if out.returncode != 0:
        raise RuntimeError(f"mpirun -np {processes} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarize(run: dict, name: str = "comm") -> dict:
    """The steps at dimension j = m (the last of each cycle), median over cycles, on the
    rank with the largest slice (the one that waits least in the reductions), and the
    mean over the cycles' steps; the smallest slice's reduction time for the imbalance."""
    from .measure import stats

    m = run["m"]
    ranks = sorted(run["ranks"], key=lambda r: r["n_local"])
    largest, smallest = ranks[-1], ranks[0]

    def at_m(rank):
        return [s for s in rank["steps"][name] if s["dimension"] == m and not s["restarted"]]

    top = at_m(largest)
    total = stats([s["total"] for s in top])
    product = stats([s["product"] for s in top])
    reduce = stats([s["reduce"] for s in top])
    local = stats([s["total"] - s["product"] - s["reduce"] for s in top])
    restarts = [s for s in largest["steps"][name] if s["restarted"]]
    every = largest["steps"][name]
    return dict(
        processes=run["processes"], n_local=(smallest["n_local"], largest["n_local"]), samples=len(top),
        total=total, product=product, reduce=reduce, local=local,
        reduce_smallest=stats([s["reduce"] for s in at_m(smallest)]),
        reductions=sorted({s["reductions"] for s in top}),
        restart_reductions=sorted({s["reductions"] for s in restarts}),
        sizes=top[-1]["sizes"] if top else [],
        cycle_mean=sum(s["total"] for s in every) / max(1, len(every)),
        latency={int(k): v for k, v in largest["latency"].items()}, cold=largest["cold"],
        bandwidth=largest["bandwidth"],
    )


def model(n_local: int, j: int, bandwidth: float, latencies: list[float]) -> tuple[float, float]:
    """docs/algorithms.md section 13's cost model of one step without its product, in
    seconds: (2 n_local j values streamed at ``bandwidth`` bytes/s, the sum of the step's
    reduction latencies)."""
    return 2 * n_local * j * VALUE_BYTES / bandwidth, sum(latencies)


def _rate(n_local: int, j: int, seconds: float) -> float:
    """Bytes/s of the model's 2 n_local j values streamed in ``seconds``."""
    return 2 * n_local * j * VALUE_BYTES / seconds


def section_scale(report, cfg, results: dict) -> None:
    from .measure import fmt_ratio, fmt_time, load_note

    n, m, cycles = cfg.scale_case
    processes = cfg.scale_processes
    cores = os.cpu_count() or 1
    report.heading(f"10. Vectors sliced across processes (n = {n:.0e} in all, j = {m})".replace("e+0", "e"))
    absent = missing()
    if absent:
        report.add(f"{' and '.join(absent)} not found (Open MPI and `pip install ./python[mpi]`): section skipped.")
        return
    oversubscribed = [p for p in processes if p > cores]
    report.add(f"`mpirun -np P python3 -m bench.scale {n} {m} {cycles}` (bench/scale.py) for P = "
               f"{', '.join(map(str, processes))} on this machine's {cores} cores, "
               + "; ".join(f"P = {p}: --bind-to {binding(p)}" for p in processes)
               + (f" (P = {', '.join(map(str, oversubscribed))} oversubscribed: the ranks take turns on the "
                  "cores, and a rank in a reduction waits for ranks that are not running)" if oversubscribed else "")
               + ". Each rank holds an uneven slice (within +-10% of n / P, the last rank the largest) and runs "
               f"`lancbio.DynamicLanczos(n_local, m0={m}, m_max={m}, comm=...)` on a diagonal SPD operator of "
               "its slice (no communication in the product), b_k = b0 + 0.1 sin(k) b1, one warm-up cycle and "
               f"{cycles} timed; the communicator is wrapped in a proxy whose Allreduce times the real one. The "
               f"rows are the step at dimension j = {m} (the last of each cycle), median [min, max] over the "
               "cycles, on the rank with the largest slice (the one that waits least); \"local passes\" is "
               "the step less its product and its Allreduce calls (the library's passes over the slice, the "
               "projected solve, the Python wrapper); \"alone\" is Allreduce of the step's sizes in a loop "
               "after the steps. On one process the same steps also run without comm=, cycle by cycle in "
               f"turn. Load average before: {load_note()}.")
    report.add("")
    runs = {p: run_workers(p, n, m, cycles) for p in processes}
    rows, checks = [], []
    scale = results.setdefault("scale", {})
    for p, run in runs.items():
        s = summarize(run)
        # Every call of a step comes right after a pass over the slice: the cold figure.
        local, reduce = model(s["n_local"][1], m, s["bandwidth"], [s["cold"]] * len(s["sizes"]))
        ratio = (s["total"].median - s["product"].median) / (local + reduce)
        calls = max(1, len(s["sizes"]))
        checks.append((p, ratio, s, local))
        lo, hi = s["n_local"]
        rows.append(["1 (comm=)" if p == 1 else str(p), f"{hi:,}" if lo == hi else f"{lo:,}..{hi:,}",
                     s["total"].fmt(), s["product"].fmt(), s["local"].fmt(), s["reduce"].fmt(),
                     fmt_time(s["reduce"].median / calls), fmt_time(s["reduce_smallest"].median),
                     "/".join(map(str, s["reductions"])) + " (" + "/".join(map(str, s["restart_reductions"]))
                     + " at a restart)", "+".join(map(str, s["sizes"])),
                     f"{fmt_time(s['latency'][min(s['sizes'])])} / {fmt_time(s['latency'][2 * m + 3])}", fmt_time(s["cold"]),
                     f"{s['bandwidth'] / 1e9:.1f}", f"{_rate(hi, m, s['local'].median) / 1e9:.1f}",
                     f"{fmt_time(local)} + {fmt_time(reduce)}", fmt_ratio(ratio)])
        if "none" in run["ranks"][0]["steps"]:
            base = summarize(run, "none")
            rows.append(["1 (no comm)", f"{hi:,}", base["total"].fmt(), base["product"].fmt(), base["local"].fmt(),
                         "", "", "", "0", "", "", "", "", f"{_rate(hi, m, base['local'].median) / 1e9:.1f}", fmt_time(local),
                         fmt_ratio((base["total"].median - base["product"].median) / local)])
            scale["none"] = base
        scale[p] = dict(summary=s, model=(local, reduce), ratio=ratio)
    report.table(["P", "n_local", f"step at j = {m}", "product", "local passes", "Allreduce in the step",
                  "per call", "same, smallest slice", "reductions per step", "values per reduction",
                  f"Allreduce alone (the step's smallest / {2 * m + 3} values)", "same, after a pass", "W per rank GB/s",
                  "passes' rate GB/s",
                  "model: passes + reductions",
                  "measured / model"], rows)
    report.add("Model (docs/algorithms.md section 13): 2 n_local j values of 8 bytes streamed at W, the rate "
               "at which the largest slice's rank reads a buffer of n_local j values while every rank reads its "
               "own (buffer.sum(); on two threads for one rank, whose passes use the library's helper thread, on "
               "one for several; from the first rank's start to the last rank's end), plus for each of the step's "
               f"calls the time of one Allreduce of {2 * m + 3} values right after the rank has read n_local j "
               "values (each call of a step comes right after a pass over the basis, which evicts the call's "
               "code and data from the caches when it does not fit them: \"after a pass\"); \"measured\" is the step less its product; \"passes' rate\" "
               "is 2 n_local j 8 bytes over the local passes' time. "
               "The values per reduction include the count of failed products the library adds to each call. "
               "The smallest slice's Allreduce time includes its wait for the largest slice.")
    report.add("")
    report.add("Measured / model: " + ", ".join(f"P = {p}: {fmt_ratio(r)}" for p, r, _, _ in checks)
               + ". Allreduce's share of the step: "
               + ", ".join(f"P = {p}: {100 * s['reduce'].median / s['total'].median:.2f}%" for p, _, s, _ in checks)
               + "; its time in the step over its time alone: "
               + ", ".join(f"P = {p}: {fmt_ratio(s['reduce'].median / sum(s['latency'][c] for c in s['sizes']))}"
                           for p, _, s, _ in checks)
               + "; over its time after a pass: "
               + ", ".join(f"P = {p}: {fmt_ratio(s['reduce'].median / (s['cold'] * len(s['sizes'])))}"
                           for p, _, s, _ in checks)
               + f". Mean step over a whole cycle (j = 1..{m}, the restart included): "
               + ", ".join(f"P = {p}: {fmt_time(s['cycle_mean'])}" for p, _, s, _ in checks) + ". MPI: "
               + runs[processes[0]]["mpi"] + ". No target: the issue asks for the measurement and the "
               "model's check; docs/algorithms.md section 13 extrapolates it.")
    report.add("")


if __name__ == "__main__":
    result = _worker(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
    if result is not None:
        print(json.dumps(result), flush=True)
