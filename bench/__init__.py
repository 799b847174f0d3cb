"""The benchmark: lancbio against numpy references, side by side in one run.

Not part of the installed package: run it from the repository with ``make bench``, or
``PYTHONPATH=python python3 -m bench [options]`` from the repository root after ``make lib``
(``make bench BENCH_ARGS=--quick`` passes options).

Sections (``--sections 1,2,...``):

1. One LancBiO step excluding the HVP at n in {1e3..1e6}, j in {10, 40, 80}, against
   (a) numpy written like research code, (b) careful numpy, (c) the bandwidth bound from
   a stream measurement taken in the same run.
2. CG and MINRES against scipy.sparse.linalg.cg / minres at equal iteration counts.
3. The Python callback overhead per HVP and the reverse-communication round trip.
4. The synthetic problem end to end: lancbio.Bilevel against a numpy outer loop.
   4b. The outer loop's own cost (time outside the problem's functions) at m0 = m_max = 20, on
       the synthetic problem and on a cheap one whose functions cost next to nothing.
5. Float32 against Float64 at a memory-bound size.
6. Peak memory against the basis size, and whether it stays flat over 10^4 steps.
7. One-shot solves: Lanczos (short recurrence) against CG on fixed SPD systems.
8. The user's case of BLAS threads: the synthetic problem's Bilevel iterations with numpy's
   default threading against one BLAS thread, in subprocesses (bench/blas_threads.py).
9. lancbio.torch.HyperGradient against a plain-PyTorch LancBiO estimator
   (bench/torch_reference.py) on the hyper-cleaning model (linear, n = 7,850, 5,000
   samples): time inside autograd and the estimator's own, per outer iteration
   (bench/torch_speed.py; skipped without torch, except under CI=true).
10. Vectors sliced across processes: dynamic Lanczos with ``comm=`` under mpirun on 1, 2
    and 4 processes at n = 1e6 in all, per step the local passes, the time in Allreduce and
    the reductions, against the cost model of docs/algorithms.md section 13
    (bench/scale.py; skipped without mpirun or mpi4py).

Every comparison checks that the implementations compute the same numbers (relative
agreement ~1e-8) and reports medians with [min, max]; the targets of the performance
issue are printed as PASS / FAIL / SKIP with the measured number. Options: ``--quick``
(small sizes, for tests), ``--sections``, ``--repeats``, ``--output FILE`` (Markdown).

For a fair comparison with numpy, run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset
in that command only (``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE make bench``); the
machine header says which BLAS kernel numpy actually runs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

__all__ = ["main", "run"]

# The sections' numbers (bench/sections.py's SECTIONS has their functions; the options
# are parsed before it is imported, which imports the library).
SECTION_NUMBERS = tuple(range(1, 11))
SECTION_RANGE = f"{SECTION_NUMBERS[0]}..{SECTION_NUMBERS[-1]}"


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python3 -m bench",
                                     description="lancbio performance against numpy/scipy references.")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test, < 20 s)")
    parser.add_argument("--sections", default=",".join(map(str, SECTION_NUMBERS)),
                        help="comma-separated sections to run (default: all of "
                             + ",".join(map(str, SECTION_NUMBERS)) + ")")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repetitions per measurement (default 5, quick 3)")
    parser.add_argument("--output", metavar="FILE", help="also write the report as Markdown to FILE")
    args = parser.parse_args(argv)
    try:
        sections = sorted({int(s) for s in args.sections.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sections must be a comma-separated list of {SECTION_RANGE}, got {args.sections!r}")
    bad = [s for s in sections if s not in SECTION_NUMBERS]
    if bad or not sections:
        parser.error(f"--sections must list numbers from {SECTION_RANGE}, got {args.sections!r}")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be >= 1")
    args.sections = sections
    return args


def run(argv=None, echo: bool = True):
    """Runs the benchmark; returns the :class:`~bench.report.Report`."""
    from .measure import CpuMonitor, load_note, machine_info
    from .report import Report
    from .sections import SECTIONS, Config

    args = _parse(list(sys.argv[1:] if argv is None else argv))
    cfg = Config.make(args.quick, args.repeats)
    report = Report(echo=echo)
    started = time.perf_counter()
    report.add("# lancbio benchmark" + (" (--quick)" if cfg.quick else ""))
    report.add("")
    report.add("Command: `" + " ".join(["python3 -m bench"] + [shlex.quote(a) for a in
                                                                     (argv if argv is not None else sys.argv[1:])])
               + "`; started " + time.strftime("%Y-%m-%d %H:%M:%S") + ".")
    report.heading("Machine")
    report.table(["", ""], machine_info() + [("load average at start", load_note())])
    results: dict = {}
    whole = CpuMonitor()
    for number in args.sections:
        t = time.perf_counter()
        monitor = CpuMonitor()
        SECTIONS[number](report, cfg, results)
        report.add(f"(section {number}: {time.perf_counter() - t:.0f} s; {monitor.note()})")
    report.heading("Targets")
    if report.targets:
        report.table(["target", "verdict", "measured"],
                     [[t.name, t.verdict, t.measured + (f" ({t.note})" if t.note else "")] for t in report.targets])
    else:
        report.add("No target belongs to the sections run.")
    report.add(f"Total time: {time.perf_counter() - started:.0f} s; during the run {whole.note()}.")
    report.results = results
    if args.output:
        with open(args.output, "w") as f:
            f.write(report.markdown())
    return report


def main(argv=None) -> int:
    """Entry point of ``python3 -m bench``; returns the exit status (0)."""
    run(argv)
    return 0
