"""``python3 -m lancbio demo``: every method on the paper's synthetic problem.

The problem and settings are those of docs/algorithms.md section 6 (theta = lr_y = 1/kappa,
lambda = lr_x = 1, each method's T, Q and decays from :data:`lancbio.METHODS`). Every
method starts from the same (x0, y0) with v0 = 0 and gets the same optimizer-time
budget; at checkpoints outside the timed region the exact hyper-gradient norm
||grad phi(x)|| and the residual ||A v - b|| at the current (x, y) are recorded.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings

from . import (format_table, limit_threads, method_list, nonnegative_float, positive_float,
               positive_int, run_method, scientific)
from .figures import save_figure, synthetic_figure

DESCRIPTION = """\
Runs LancBiO and the methods it is compared with on the synthetic bilevel problem of the
LancBiO paper (section 4.1; docs/algorithms.md section 6) with the paper's settings: inner step
theta = 1/kappa, outer step lambda = 1, and each method's own T, Q and step decays. All
methods share the data, x0, y0 (v0 = 0) and an equal budget of optimizer time; the
evaluation below is outside that budget. At checkpoints (dense early, then regular) it
records the exact ||grad phi(x)|| (y* by Newton, v* by CG, both to 1e-10) and the residual
||A v - b|| at the method's current (x, y, v), shows progress on stderr, prints a table and
writes a four-panel figure (||grad phi|| and residual against time and against HVPs).

Why kappa = 1e3 by default (the paper uses 1e5): with theta = 1/kappa the lower-level
iterate y contracts towards y*(x) by only about 1 - 1/kappa per inner step in the
directions of G's smallest eigenvalues, whatever the hyper-gradient estimator. At
kappa = 1e5 a 5 s budget gives a method at most a few 1e4 inner steps, so the exact
||grad phi|| of every method stalls between about 0.5 and 0.9 (n = 1000), ordered by how
many inner steps the method made rather than by the quality of its v, and the
comparison says little about the estimators. At kappa = 1e3 y catches up within a
fraction of a second and the curves separate according to how well each method
estimates v = A^{-1} b. n = 1000 keeps one method's 5 s budget at thousands of
iterations on 2 cores; the whole default run takes about a minute.
"""

EPILOG = """\
examples:
  python3 -m lancbio demo                                  # the default comparison (~1 min)
  python3 -m lancbio demo --kappa 1e5 --seconds 10         # the paper's conditioning
  python3 -m lancbio demo --methods lancbio,amigo-cg,soba --output cmp.png
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=positive_int, default=1000,
                        help="dimension of x and y (default 1000; building G costs O(n^3), "
                             "each HVP O(n^2))")
    parser.add_argument("--kappa", type=_kappa, default=1e3,
                        help="condition number of G, spectrum linspace(1, kappa, n); also "
                             "sets theta = 1/kappa (default 1e3, see above; paper: 1e5)")
    parser.add_argument("--gamma", type=_gamma, default=0.5,
                        help="amplitude of the sin term, in [0, 1) so that g stays strongly "
                             "convex in y (default 0.5, the paper's)")
    parser.add_argument("--seconds", type=positive_float, default=5.0,
                        help="optimizer-time budget of each method in seconds (default 5)")
    parser.add_argument("--methods", type=method_list, default=None,
                        help="comma-separated methods to run, or 'all' (default all: "
                             "lancbio,subbio,amigo-cg,amigo-gd,soba,stocbio,ttsa,bsa)")
    parser.add_argument("--seed", type=_seed, default=0,
                        help="seed of the problem data; x0 and y0 are drawn with seed + 1 "
                             "(default 0)")
    parser.add_argument("--output", default="lancbio-demo.png",
                        help="path of the PNG figure (default lancbio-demo.png in the "
                             "current directory; skipped without matplotlib)")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="BLAS threads for numpy (default 1: reproducible timing; with "
                             "other processes on a 2-core machine multi-threaded BLAS was "
                             "seen to slow down drastically)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress lines on stderr (the table is still printed)")


def _kappa(text: str) -> float:
    value = positive_float(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _gamma(text: str) -> float:
    value = nonnegative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be < 1 (g is strongly convex in y only then)")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    if parser is None:
        parser = argparse.ArgumentParser(prog="python3 -m lancbio demo")
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Runs the experiment described by parsed ``args``; returns the exit status."""
    with limit_threads(args.threads) as threads:
        return _run(args, threads)


def _run(args: argparse.Namespace, threads: str) -> int:
    import numpy as np
    from lancbio import METHODS
    from lancbio.problems import Synthetic

    methods = args.methods or list(METHODS)
    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    wall_start = time.perf_counter()

    built = time.perf_counter()
    problem = Synthetic(n=args.n, gamma=args.gamma, kappa=args.kappa, seed=args.seed)
    x0, y0 = problem.initial_point(seed=args.seed + 1)
    say(f"synthetic problem n = {args.n}, kappa = {args.kappa:g}, gamma = {args.gamma:g} built in "
        f"{time.perf_counter() - built:.1f} s; {threads}; {args.seconds:g} s per method")

    floor_hits = [0]

    def evaluate(optimizer) -> dict:
        x, y, v = optimizer.x, optimizer.y, optimizer.v
        with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
            warnings.simplefilter("always")
            try:
                grad_phi = float(np.linalg.norm(problem.true_hypergradient(x, y0=y)[0]))
                residual = problem.residual(x, y, v)
            except (ValueError, FloatingPointError, ArithmeticError):
                grad_phi = residual = math.nan
        # The reference y* stops at the rounding floor of G y when 1e-10 is out of reach
        # (large kappa); counted and reported once instead of one warning per checkpoint.
        if any(issubclass(w.category, RuntimeWarning) for w in caught):
            floor_hits[0] += 1
        return {"grad_phi": grad_phi, "residual": residual}

    def describe(point) -> str:
        return f"||grad phi|| {scientific(point['grad_phi'])}  residual {scientific(point['residual'], 2)}"

    start = evaluate(_Start(x0, y0))
    runs = []
    for index, method in enumerate(methods, 1):
        options = {"lr_x": 1.0, "lr_y": 1.0 / args.kappa}
        runs.append(run_method(problem, method, x0, y0, options, args.seconds, evaluate, start,
                               describe, label=f"[{index}/{len(methods)}] ", quiet=args.quiet))

    headers = ["method", "iterations", "HVPs", "time (s)", "||grad phi||", "||Av - b||", "status"]
    rows = [[r.method, r.iterations, r.hvps, f"{r.time:.2f}", scientific(r.final("grad_phi")),
             scientific(r.final("residual")), r.status] for r in runs]
    print(f"synthetic problem: n = {args.n}, kappa = {args.kappa:g}, gamma = {args.gamma:g}, "
          f"theta = 1/kappa, lambda = 1, seed = {args.seed}; {args.seconds:g} s of optimizer time "
          f"per method (evaluation excluded)")
    print(f"start: ||grad phi|| {scientific(start['grad_phi'])}, ||Av - b|| {scientific(start['residual'])}")
    print(format_table(headers, rows))
    if floor_hits[0]:
        print(f"note: at {floor_hits[0]} checkpoint(s) the reference y* stopped at the rounding "
              f"floor of G y above 1e-10; ||grad phi|| there is accurate to about that level")

    title = (f"synthetic problem, n = {args.n}, kappa = {args.kappa:g}, gamma = {args.gamma:g}, "
             f"{args.seconds:g} s per method")
    if save_figure(args.output, lambda plt: synthetic_figure(plt, runs, title)):
        print(f"figure: {args.output}")
    print(f"total run time {time.perf_counter() - wall_start:.1f} s")
    return 0


class _Start:
    """The common starting point, shaped like an optimizer for ``evaluate`` (v0 = 0)."""

    def __init__(self, x0, y0):
        import numpy as np

        self.x, self.y, self.v = x0, y0, np.zeros_like(y0)


def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))
