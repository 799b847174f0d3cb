"""One-shot solves of A v = b: :func:`solve` wraps the library's ``lancbio_solve_f64`` /
``lancbio_solve_f32`` (``lancbio_solve_reduced_*`` with ``comm=``), which run the whole
loop (and the final check of the true residual) natively."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from . import _ffi
from ._arrays import reject_masked
from ._ffi import lib
from ._handle import check
from ._options import ESTIMATOR, estimator_options, fill, to_float, to_int
from ._reduction import Reducer
from ._trampoline import ERROR, OPERATOR, escaped, install_capture, make_callback, new_state, remove_capture
from .info import StepInfo
from .operators import as_operator

__all__ = ["solve", "SolveInfo", "METHODS"]

#: The methods :func:`solve` accepts, with the estimator options each one takes.
_METHODS = {
    "lanczos": (_ffi.METHOD_LANCZOS, ("reorthogonalize", "variant", "orthogonality_tol")),
    "cg": (_ffi.METHOD_CG, ()),
    "minres": (_ffi.METHOD_MINRES, ()),
    "gd": (_ffi.METHOD_GD, ("eta",)),
    "neumann": (_ffi.METHOD_NEUMANN, ("eta",)),
}
METHODS = tuple(_METHODS)
_FUNCTIONS = {np.dtype(np.float64): (_ffi.FLOAT64, ctypes.c_double, "lancbio_solve_f64"),
              np.dtype(np.float32): (_ffi.FLOAT32, ctypes.c_float, "lancbio_solve_f32")}
_REDUCED = {"lancbio_solve_f64": "lancbio_solve_reduced_f64", "lancbio_solve_f32": "lancbio_solve_reduced_f32"}


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
        reductions: calls of ``comm.Allreduce`` (0 without ``comm``).
    """

    converged: bool
    residual: float
    products: int
    iterations: int
    method: str
    step_info: StepInfo | None
    reductions: int = 0


def _vector(arr, n: int, dtype: np.dtype, name: str) -> np.ndarray:
    fix = f"numpy.ascontiguousarray({name}, dtype=numpy.{dtype.name})"
    reject_masked(arr, name)
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of dtype float64 or float32, got {type(arr).__name__}; "
                        f"convert it with {fix}")
    if arr.dtype != dtype:
        raise TypeError(f"{name} has dtype {arr.dtype}; this solve runs in {dtype.name}: convert it with {fix}")
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def solve(op, b: np.ndarray, method: str = "lanczos", x0: np.ndarray | None = None, tol: float = 1e-8,
          maxiter: int | None = None, comm=None, **method_options):
    """Solves A v = b for a symmetric A given by products.

    Args:
        op: the operator (see :func:`lancbio.as_operator`).
        b: right-hand side, shape (n,), float64 or float32 (the computation runs in b's
            dtype), finite.
        method: "lanczos" (default), "cg", "minres", "gd" or "neumann".
        x0: initial guess, shape (n,), b's dtype; default 0. Not accepted by "neumann",
            which starts from zero.
        tol: relative tolerance >= 0: converged when ||A v - b|| <= tol ||b||.
        maxiter: budget, >= 1; None for the library's default (10 n): CG/MINRES
            iterations, Lanczos products (stepping stops at the first step that
            reaches it), gradient steps or Neumann terms.
        comm: None on one process; else a communicator (anything with
            ``Allreduce(sendbuf, recvbuf)`` that sums, as mpi4py's does) whose processes
            each hold a slice of b, x0 and v (slices may differ in length; n above is the
            local one) with ``op`` acting on local slices (its own communication inside).
            Collective: every process calls it with the same method, tol, maxiter and
            options. Every norm and inner product is reduced, so every process takes the
            same branches and gets bitwise the same info; maxiter None is 10 N for the
            total N. "minres" does not support it. An operator that raises on one process
            fails the call on every process (that one raises its exception, the others
            :class:`lancbio.errors.CallbackError`); a failing ``Allreduce`` raises its own
            exception. See docs/algorithms.md section 13.
        **method_options: "gd" and "neumann" need ``eta`` (> 0, below
            2 / lambda_max(A)); "lanczos" accepts ``reorthogonalize``, ``variant`` and
            ``orthogonality_tol``.

    Returns:
        (v, info): the solution (new array, b's dtype) and a :class:`SolveInfo`.

    The loop runs in the library (``lancbio_solve_f64``, see include/lancbio.h): Lanczos
    runs the short-recurrence (D-Lanczos) form from x0, with CG's products and a few
    n-vectors of memory, checks the true residual with one product when its estimate
    meets tol, and restarts from the current v if the check fails; the other methods
    run one step of their budget. The answer is the best checked iterate, and the
    residual reported is always that of the returned v.
    """
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    code, accepted = _METHODS[method]
    unexpected = sorted(set(method_options) - set(accepted))
    if unexpected:
        raise TypeError(f"method {method!r} takes no option {', '.join(unexpected)}"
                        + (f"; it accepts {', '.join(accepted)}" if accepted else ""))
    if "eta" in accepted and method_options.get("eta") is None:
        raise TypeError(f"method {method!r} needs eta=<step size > 0, below 2 / lambda_max(A)>")
    reject_masked(b, "b")
    if not isinstance(b, np.ndarray):
        raise TypeError(f"b must be a numpy.ndarray of dtype float64 or float32, got {type(b).__name__}; "
                        "convert it with numpy.ascontiguousarray(b, dtype=numpy.float64)")
    if b.dtype not in _FUNCTIONS:
        raise TypeError(f"b has dtype {b.dtype}; solve runs in float64 or float32: convert it with "
                        "numpy.ascontiguousarray(b, dtype=numpy.float64)")
    if b.ndim != 1 or b.shape[0] < 1:
        raise ValueError(f"b must be 1-D with at least one element, got shape {b.shape}")
    n, dtype = b.shape[0], b.dtype
    precision, ctype, function = _FUNCTIONS[dtype]
    b = np.ascontiguousarray(b)
    if method == "neumann" and x0 is not None:
        raise ValueError("the Neumann series starts from zero: x0 is not supported")
    x = np.zeros(n, dtype=dtype) if x0 is None else _vector(x0, n, dtype, "x0").copy()
    tol = to_float(tol, "tol")
    if maxiter is not None and to_int(maxiter, "maxiter") < 1:
        # 0 is the C call's "library default", which None asks for here.
        raise ValueError(f"maxiter must be an integer >= 1 (or None for the default 10 n), got {maxiter!r}")

    options = estimator_options(code)
    options.precision = precision
    fill(options, ESTIMATOR, method_options)
    state = new_state()
    state[OPERATOR] = as_operator(op, n, dtype)
    callback = make_callback(_ffi.HVP_CALLBACK, (("in", n), ("out", n), None, None), dtype, state,
                             "the operator's result")
    result = _ffi.SolveResultStruct(struct_size=ctypes.sizeof(_ffi.SolveResultStruct))
    last = _ffi.StepInfoStruct(struct_size=ctypes.sizeof(_ffi.StepInfoStruct))
    pointer = ctypes.POINTER(ctype)
    arguments = (ctypes.byref(options), callback, None, b.ctypes.data_as(pointer), x.ctypes.data_as(pointer), n, tol,
                 0 if maxiter is None else maxiter, ctypes.byref(result), ctypes.byref(last))
    reducer = None
    if comm is not None:
        reducer = Reducer(comm)
        function = _REDUCED[function]
        arguments = arguments[:3] + (reducer.callback, None) + arguments[3:]
    hook = install_capture()
    try:
        status = getattr(lib, function)(*arguments)
        error = state[ERROR]
    finally:
        state[ERROR] = state[OPERATOR] = None
        remove_capture(hook)
    if status == _ffi.ERR_CALLBACK:
        if error is None and reducer is not None:
            # A failed Allreduce raises itself; a product failed on another process, the
            # library's message.
            error = reducer.take_error()
            if error is None:
                check(status, lib.lancbio_last_error())
        try:
            raise error if error is not None else escaped("the operator")
        finally:
            error = None  # else the exception's traceback holds this frame, and it the exception
    check(status, lib.lancbio_last_error() if status < 0 else None)
    info = SolveInfo(bool(result.converged), result.residual, result.products, result.iterations, method,
                     StepInfo._from_struct(last), result.reductions)
    return x, info
