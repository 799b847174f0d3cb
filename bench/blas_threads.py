"""Section 8: the user's case of numpy's default BLAS threading against one BLAS thread.

A user who installs numpy and lancbio into a fresh virtualenv runs with OpenBLAS's default
threading (one thread per core) and no threadpoolctl limit. The benchmark cannot make a
fresh virtualenv (no network), so it runs the same thing in subprocesses of its own
interpreter: the environment without any *_NUM_THREADS variable and nothing imported that
changes the pools (this file's child code imports numpy, lancbio and bench.reference only),
against OPENBLAS_NUM_THREADS=1 (and the other pools' variables) set before numpy loads.

Run as ``python3 -m bench.blas_threads N ITERATIONS`` it is the child: it builds the
synthetic problem as the demo does (kappa = 1e3, lr_x = 1, lr_y = 1/kappa), runs
``lancbio.Bilevel`` and the numpy outer loop (``bench.reference.ReferenceBilevel``, whose
careful numpy Lanczos calls BLAS too) on it in interleaved chunks, both through a timing
proxy of the problem's five functions, and prints one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
KAPPA = 1e3


def _child(n: int, iterations: int) -> dict:
    import lancbio
    from lancbio.problems import Synthetic

    from .measure import clock
    from .reference import ReferenceBilevel
    from .sections import _TimedProblem

    problem = Synthetic(n, kappa=KAPPA, seed=0)
    x0, y0 = problem.initial_point(1)
    timed = _TimedProblem(problem)
    runs = {"lancbio": lancbio.Bilevel(timed, "lancbio", x0=x0, y0=y0, lr_x=1.0, lr_y=1.0 / KAPPA).step,
            "numpy": ReferenceBilevel(timed, x0, y0, lr_x=1.0, lr_y=1.0 / KAPPA).step}
    for step in runs.values():   # warm-up: page faults, BLAS threads started
        for _ in range(3):
            step()
    total = dict.fromkeys(runs, 0.0)
    inside = dict.fromkeys(runs, 0.0)
    chunk = max(1, iterations // 6)
    done = 0
    while done < iterations:
        steps = min(chunk, iterations - done)
        for name, step in runs.items():
            p0 = timed.time
            t = clock()
            for _ in range(steps):
                step()
            total[name] += clock() - t
            inside[name] += timed.time - p0
        done += steps
    return {"total": total, "inside": inside, "threads": len(os.listdir(f"/proc/{os.getpid()}/task"))
            if os.path.isdir("/proc") else None}


def run_case(n: int, iterations: int, one_thread: bool, timeout: float = 600) -> dict:
    """One child run; ``one_thread`` sets the thread variables to 1, else removes them."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    if one_thread:
        env.update({name: "1" for name in THREAD_VARIABLES})
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    out = subprocess.run([sys.executable, "-m", "bench.blas_threads", str(n), str(iterations)], env=env,
                         capture_output=True, text=True, timeout=timeout, check=True, cwd=root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def section_blas_threads(report, cfg, results: dict) -> None:
    from .measure import fmt_ratio, fmt_time, load_note, stats

    n, iterations = cfg.blas_case
    rounds = 1 if cfg.quick else 3
    report.heading(f"8. BLAS threads: the user's case (synthetic n = {n}, {iterations} iterations)")
    report.add(f"The synthetic problem as `make demo` runs it (kappa = {KAPPA:g}, lr_x = 1, lr_y = 1/kappa), "
               f"{iterations} `lancbio.Bilevel` iterations and as many of the numpy outer loop "
               "(`bench.reference.ReferenceBilevel`) in interleaved chunks, in a subprocess with numpy's "
               "default BLAS threading (no *_NUM_THREADS variable, no threadpoolctl limit: what a fresh "
               "virtualenv with `pip install numpy lancbio` gets; a fresh virtualenv cannot be made here "
               "without network, and the bench's own interpreter with those variables removed runs the "
               "same numpy) against one with OPENBLAS_NUM_THREADS=1 (and the other pools' variables). "
               f"{rounds} subprocesses of each, alternating; median [min, max] of the totals. \"inside\" is "
               "the time in the problem's five functions (numpy, G y products by BLAS), \"outside\" the "
               "rest: for lancbio its own work, the library and the Python callbacks. The lancbio share of "
               "the slowdown is the growth of its outside time over the growth of its total. "
               f"Load average before: {load_note()}.")
    report.add("")
    cases = {"default": [], "one": []}
    for _ in range(rounds):
        for name in cases:
            cases[name].append(run_case(n, iterations, one_thread=name == "one"))
    rows = []
    medians = {}
    for name, label in (("default", "numpy default threading"), ("one", "OPENBLAS_NUM_THREADS=1")):
        runs = cases[name]
        lt = stats([r["total"]["lancbio"] for r in runs])
        lo = stats([r["total"]["lancbio"] - r["inside"]["lancbio"] for r in runs])
        nt = stats([r["total"]["numpy"] for r in runs])
        no = stats([r["total"]["numpy"] - r["inside"]["numpy"] for r in runs])
        medians[name] = (lt.median, lo.median, nt.median, no.median)
        rows.append([label, lt.fmt(), lo.fmt(), nt.fmt(), no.fmt(), str(runs[-1]["threads"])])
    report.table(["BLAS threads", f"lancbio, {iterations} iterations", "lancbio outside the functions",
                  "numpy loop", "numpy loop outside the functions", "threads in the process"], rows)
    (lt_d, lo_d, nt_d, no_d), (lt_1, lo_1, nt_1, no_1) = medians["default"], medians["one"]
    share = (lo_d - lo_1) / (lt_d - lt_1) if lt_d > lt_1 else float("nan")
    results["blas_threads"] = dict(lancbio_ratio=lt_d / lt_1, numpy_ratio=nt_d / nt_1, lancbio_share=share)
    report.add("")
    report.add(f"Default threading / one thread: lancbio **{fmt_ratio(lt_d / lt_1)}**, numpy loop "
               f"{fmt_ratio(nt_d / nt_1)}. lancbio's own time outside the functions went from {fmt_time(lo_1)} "
               f"to {fmt_time(lo_d)}: "
               + (f"{100 * share:.0f}% of lancbio's slowdown; the rest was spent inside the problem's "
                  "functions (numpy and its BLAS)." if share == share else "no slowdown to divide.")
               + (" The one-thread process ran no thread but its main one: lancbio's helper thread, "
                  "created only for passes large enough to split, did not exist."
                  if cases["one"][-1]["threads"] == 1 else "")
               + " No target: the issue asks for the measurement; README's Performance section says what "
               "to set.")
    report.add("")


if __name__ == "__main__":
    print(json.dumps(_child(int(sys.argv[1]), int(sys.argv[2]))))
