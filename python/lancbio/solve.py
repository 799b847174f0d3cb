"""One-shot solves of A v = b with the library's estimators."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .estimators import CG, GD, MINRES, DynamicLanczos, Neumann
from .info import StepInfo
from .operators import as_operator

__all__ = ["solve", "SolveInfo", "METHODS"]

#: The methods :func:`solve` accepts.
METHODS = ("lanczos", "cg", "minres", "gd", "neumann")


@dataclass(frozen=True)
class SolveInfo:
    """How a :func:`solve` went.

    Attributes:
        converged: whether the true residual ||A v - b|| <= tol ||b||.
        residual: the true residual ||A v - b|| (units of b), from one extra product.
        products: operator products used, the final residual check included.
        iterations: Lanczos steps (lanczos), CG/MINRES iterations, gradient steps (gd)
            or series terms (neumann).
        method: the method name.
        step_info: the last estimator step's :class:`StepInfo`.
    """

    converged: bool
    residual: float
    products: int
    iterations: int
    method: str
    step_info: StepInfo | None


def _residual(apply, v: np.ndarray, b: np.ndarray) -> float:
    r = np.asarray(apply(v.copy()), dtype=np.float64) - b
    return float(np.linalg.norm(r))


def solve(op, b: np.ndarray, method: str = "lanczos", x0: np.ndarray | None = None, tol: float = 1e-8,
          maxiter: int | None = None, **method_options):
    """Solves A v = b for a symmetric A given by products.

    Args:
        op: the operator (see :func:`lancbio.as_operator`).
        b: right-hand side, shape (n,), float64 or float32 (the computation runs in b's
            dtype), C-contiguous, finite.
        method: "lanczos" (default), "cg", "minres", "gd" or "neumann".
        x0: initial guess, shape (n,), b's dtype; default 0. Not accepted by "neumann",
            which starts from zero.
        tol: relative tolerance >= 0: converged when ||A v - b|| <= tol ||b||.
        maxiter: budget, >= 1, default 10 n: CG/MINRES iterations, Lanczos products
            (stepping stops at the first step that reaches it), gradient steps or
            Neumann terms.
        **method_options: "gd" and "neumann" need ``eta`` (> 0, below
            2 / lambda_max(A)); "lanczos" accepts ``reorthogonalize`` and ``variant``.

    Returns:
        (v, info): the solution (new array, b's dtype) and a :class:`SolveInfo`.

    Lanczos runs DynamicLanczos with a fixed period m = min(maxiter, n, 4096) from x0,
    stepping until its residual estimate is <= tol ||b||; the true residual is then
    checked with one product, and stepping continues if the check fails.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    if not isinstance(b, np.ndarray):
        raise TypeError(f"b must be a numpy.ndarray of dtype float64 or float32, got {type(b).__name__}; "
                        "convert it with numpy.ascontiguousarray(b, dtype=numpy.float64)")
    if b.dtype not in (np.float64, np.float32):
        raise TypeError(f"b has dtype {b.dtype}; solve runs in float64 or float32: convert it with "
                        "numpy.ascontiguousarray(b, dtype=numpy.float64)")
    if b.ndim != 1 or b.shape[0] < 1:
        raise ValueError(f"b must be 1-D with at least one element, got shape {b.shape}")
    n = b.shape[0]
    tol = float(tol)
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be finite and >= 0, got {tol}")
    if maxiter is None:
        maxiter = 10 * n
    if isinstance(maxiter, bool) or not isinstance(maxiter, (int, np.integer)) or maxiter < 1:
        raise ValueError(f"maxiter must be an integer >= 1, got {maxiter!r}")
    maxiter = int(maxiter)
    apply = as_operator(op, n, b.dtype)
    b_norm = float(np.linalg.norm(b.astype(np.float64)))
    threshold = tol * b_norm

    def needs_eta():
        if "eta" not in method_options:
            raise TypeError(f"method {method!r} needs eta=<step size > 0, below 2 / lambda_max(A)>")

    if method == "lanczos":
        m = min(maxiter, n, 4096)
        with DynamicLanczos(n, m0=m, m_max=m, growth=1.0, v0=x0, dtype=b.dtype, **method_options) as est:
            extra = 0  # residual checks
            steps = 0
            residual = math.inf
            converged = False
            while True:
                v = est.step(apply, b)
                steps += 1
                info = est.info
                if info.residual <= threshold or info.breakdown or info.zero_residual:
                    residual = _residual(apply, v, b)
                    extra += 1
                    if residual <= threshold:
                        converged = True
                        break
                if info.total_products + extra >= maxiter:
                    break
            if not converged and not math.isfinite(residual):
                residual = _residual(apply, v, b)
                extra += 1
            return v, SolveInfo(converged, residual, info.total_products + extra, steps, method, info)

    if method in ("cg", "minres"):
        cls = CG if method == "cg" else MINRES
        est = cls(n, maxiter=maxiter, tol=tol, v0=x0, dtype=b.dtype, **method_options)
    elif method == "gd":
        needs_eta()
        est = GD(n, steps=maxiter, v0=x0, dtype=b.dtype, **method_options)
    else:
        needs_eta()
        if x0 is not None:
            raise ValueError("the Neumann series starts from zero: x0 is not supported")
        est = Neumann(n, terms=maxiter, dtype=b.dtype, **method_options)
    with est:
        v = est.step(apply, b)
        info = est.info
    residual = _residual(apply, v, b)
    return v, SolveInfo(residual <= threshold, residual, info.total_products + 1, info.iterations, method, info)
