"""Bilevel optimizers: the outer loop of docs/algorithms.md section 2 around one estimator.

``Bilevel(problem, method, ...)`` owns one native ``lancbio_bilevel_t``. The problem is any
object with the methods ``grad_y_g(x, y)``, ``grad_x_f(x, y)``, ``grad_y_f(x, y)``,
``hvp_yy_g(x, y, v)`` and ``jvp_xy_g(x, y, v)`` (float64 numpy arrays in and out), and
optionally ``f(x, y)`` and ``g(x, y)`` for reporting.

``pickle``, ``copy.copy`` and ``copy.deepcopy`` of a Bilevel give an independent optimizer
(its own handle, x and y) whose next iterations are bitwise the original's: the library's
checkpoint (docs/algorithms.md section 12) plus the Python-side state. The problem is
shared by ``copy.copy``, copied by ``copy.deepcopy`` and pickled with the optimizer (a
problem that cannot be pickled makes ``pickle`` raise TypeError).

One thread at a time per optimizer (another thread's call while one runs raises
InvalidStateError). An exception from the problem, an asynchronous one (KeyboardInterrupt)
included, leaves x, y and the optimizer as before the step, or as after it if the library
had already committed the step when it arrived; never in between (the library refuses
a callback that returned without writing its output, which is how one interrupted on
entry looks to it).
"""

from __future__ import annotations

import copy
import ctypes
from dataclasses import dataclass

import numpy as np

from . import _checkpoint, _ffi, _options
from ._arrays import reject_masked
from ._ffi import lib
from ._handle import Handle, get_ident
from ._reduction import Reducer, Sliced, refuse_copy
from ._trampoline import ERROR, escaped, install_capture, make_callback, new_state, remove_capture
from .history import History, record_run
from .errors import InvalidStateError
from .info import StepInfo

__all__ = ["Bilevel", "BilevelInfo", "History", "METHODS"]

_LANCZOS = ("m0", "m_max", "growth", "grow_every", "variant", "reorthogonalize", "orthogonality_tol",
            "exact_residual")

# Each method: its estimator, the estimator options it accepts (besides the outer loop's
# lr_x, lr_y, inner_steps and schedules), and the paper's settings where they differ from
# the library's defaults, which are LancBiO's and AmIGO's (docs/algorithms.md section 6). v_steps
# is Q: the estimator's max_iterations for CG, its steps otherwise. eta and theta0 default
# to lr_y, as in the research code.
METHODS = {
    "lancbio": dict(estimator=_ffi.METHOD_LANCZOS, options=_LANCZOS),
    "subbio": dict(estimator=_ffi.METHOD_SUBBIO, options=("theta0",)),
    "amigo-cg": dict(estimator=_ffi.METHOD_CG, options=("v_steps",)),
    "amigo-gd": dict(estimator=_ffi.METHOD_GD, options=("v_steps", "eta")),
    "soba": dict(estimator=_ffi.METHOD_GD, options=("v_steps", "eta"), inner_steps=1, v_steps=1),
    "stocbio": dict(estimator=_ffi.METHOD_NEUMANN, options=("v_steps", "eta"), inner_steps=10),
    "ttsa": dict(estimator=_ffi.METHOD_RANDOM_NEUMANN, options=("v_steps", "eta", "seed"), inner_steps=1,
                 lr_x_decay=0.4, lr_x_min=0.01),
    "bsa": dict(estimator=_ffi.METHOD_RANDOM_NEUMANN, options=("v_steps", "eta", "seed"), inner_steps=10,
                lr_x_decay=0.5, lr_x_min=0.01),
}

_REQUIRED = ("grad_y_g", "grad_x_f", "grad_y_f", "hvp_yy_g", "jvp_xy_g")


@dataclass(frozen=True)
class BilevelInfo:
    """Diagnostics of one outer iteration (mirrors lancbio_bilevel_info_t).

    ``hypergradient_norm`` is ||grad_x f - J v||, the norm of the estimate the x step used;
    ``estimator`` is the StepInfo of the v computed in this iteration; ``curvature``, with
    ``lr_y="auto"``, the estimate of lambda_max(grad^2_yy g) after it (0 otherwise).
    """

    iteration: int
    products: int
    total_products: int
    gradient_evaluations: int
    cross_products: int
    hypergradient_norm: float
    lr_x: float
    lr_y: float
    estimator: StepInfo
    curvature: float = 0.0


def _vector(arr, length: int, name: str) -> np.ndarray:
    """A private float64 copy of a 1-D real array-like of the given length, checked finite.

    Being a copy, it shares no memory with ``arr`` nor with any other argument: x0 and y0
    may be the same array (or views of one), and the optimizer's own x and y are still
    separate buffers."""
    reject_masked(arr, name)
    raw = np.asarray(arr)
    if not (np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.integer)):
        raise TypeError(f"{name} must be a real numeric array, got dtype {raw.dtype}")
    a = np.array(raw, dtype=np.float64, copy=True)
    if a.ndim != 1 or a.shape[0] != length:
        raise ValueError(f"{name} must be a 1-D array of length {length}, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinity")
    return np.ascontiguousarray(a)


class Bilevel(Sliced, Handle):
    """A bilevel optimizer: ``step()`` performs one outer iteration on its own x and y.

    Parameters
    ----------
    problem : object
        Provides ``grad_y_g(x, y)`` (dy), ``grad_x_f(x, y)`` (dx), ``grad_y_f(x, y)`` (dy),
        ``hvp_yy_g(x, y, v)`` (dy) and ``jvp_xy_g(x, y, v)`` (dx); and ``dx``, ``dy``
        attributes or x0/y0 to infer them. Arrays passed to it are private copies.
    method : str
        One of ``METHODS``: "lancbio", "subbio", "amigo-cg", "amigo-gd", "soba", "stocbio",
        "ttsa", "bsa".
    x0, y0 : array-like, optional
        Starting point (float64 copies are kept). Default: ``problem.initial_point(seed)``
        when the problem has it, else required.
    v0 : array-like, optional
        Warm start of v (dy). Default zero.
    lr_x, lr_y : float
        lambda (x step) and theta (inner y step), required. ``lr_y="auto"`` (methods
        "lancbio" and "subbio", the latter with ``theta0`` given) sets theta from the
        estimator's curvature instead: theta = 1 / lambda, lambda the largest Ritz value
        seen since reset (``curvature``), raised when an inner step makes ||grad_y g||
        grow (the step is retaken with the halved theta); the first iteration makes no
        inner step, and lr_y's decay and floor are ignored (docs/algorithms.md section 2).
    inner_steps : int
        T, inner steps on y per iteration.
    lr_x_decay, lr_x_min, lr_y_decay, lr_y_min : float
        lambda_k = max(lr_x_min, lr_x / k^lr_x_decay); likewise theta_k.
    v_steps : int
        Q for amigo-cg, amigo-gd, soba, stocbio, ttsa, bsa.
    eta : float
        Step of the v iterations (gd, Neumann); default lr_y, as the research code.
    m0, m_max, growth, grow_every, variant, reorthogonalize, orthogonality_tol, exact_residual
        LancBiO's restart schedule, safeguards and residual (see ``DynamicLanczos``).
    comm : communicator, optional
        Slices y across processes (an mpi4py communicator, or anything with
        ``Allreduce``), x replicated: y0, v0, ``y`` and what the problem's y-side methods
        (grad_y_g, grad_y_f, hvp_yy_g) take and return are this process's slice, x and
        grad_x_f's and jvp_xy_g's results have dx values, the latter two this process's
        contributions (summed across processes by the library, once per iteration). The
        methods do their own communication; every process must call ``step`` alike. A
        method that raises or returns NaN on one process fails the iteration on every
        process (that one raises its own exception, the others CallbackError), each
        optimizer unchanged. Not with ``lr_y="auto"`` or "subbio". docs/algorithms.md
        section 13.
    theta0 : float
        SubBiO's subspace step; default lr_y.
    seed : int
        TTSA/BSA's truncation generator; also the seed of ``problem.initial_point``.

    Every option not given takes the paper's value for the method where ``METHODS`` sets
    one, else the library's default (include/lancbio.h documents the defaults and the
    valid ranges; the library checks them, and a rejected value raises
    InvalidArgumentError with its message). ``settings`` shows the values in force.
    """

    _destroy_function = lib.lancbio_bilevel_destroy
    _last_error_function = lib.lancbio_bilevel_last_error
    _kind = "optimizer"
    _checking_problem = False  # set while __reduce_ex__ checks that the problem pickles

    def __init__(self, problem, method: str = "lancbio", x0=None, y0=None, v0=None, comm=None, **options):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
        missing = [name for name in _REQUIRED if not callable(getattr(problem, name, None))]
        if missing:
            raise TypeError(f"the problem lacks the methods {', '.join(missing)}")
        spec = METHODS[method]
        allowed = set(_options.OUTER) | set(spec["options"])
        unknown = sorted(set(options) - allowed - {"seed"})
        if unknown:
            raise TypeError(f"options {unknown} do not apply to method {method!r}; it accepts {sorted(allowed)}")
        lr_y = options.get("lr_y")
        auto = isinstance(lr_y, str)
        if auto and lr_y != "auto":
            raise ValueError(f"lr_y must be a step size > 0 or 'auto', got {lr_y!r}")
        for required in ("lr_x", "lr_y"):
            if options.get(required) is None:
                either = " or 'auto'" if required == "lr_y" else ""
                raise ValueError(f"{required} is required (a step size > 0{either})")
        if auto:
            options = dict(options, lr_y=None)  # the library's lr_y (0), ignored with lr_y_auto

        self._problem = problem
        self._method = method
        if x0 is None or y0 is None:
            if not hasattr(problem, "initial_point"):
                raise ValueError("x0 and y0 are required (the problem has no initial_point)")
            px, py = problem.initial_point(options.get("seed", 0))
            x0 = px if x0 is None else x0
            y0 = py if y0 is None else y0
        dx = int(getattr(problem, "dx", np.size(x0)))
        dy = int(getattr(problem, "dy", np.size(y0)))
        self._x = _vector(x0, dx, "x0")
        self._y = _vector(y0, dy, "y0")
        self._dx, self._dy = dx, dy

        outer = _options.bilevel_options()
        _options.fill(outer, _options.OUTER, {name: options.get(name, spec.get(name)) for name in _options.OUTER})
        outer.lr_y_auto = int(auto)
        self._settings = _options.read(outer, _options.OUTER, _options.OUTER)
        if auto:
            self._settings["lr_y"] = "auto"
        # The estimator's keywords: v_steps by its name in the estimator's table.
        q = "maxiter" if spec["estimator"] == _ffi.METHOD_CG else "steps"
        inner_names = {name: q if name == "v_steps" else name for name in spec["options"]}
        values = {name: options.get(name, spec.get(name)) for name in spec["options"]}
        for name in ("eta", "theta0"):
            if name in values and values[name] is None:
                if auto and spec["estimator"] == _ffi.METHOD_SUBBIO:
                    raise ValueError(f"{name} is required with lr_y='auto' (its default is lr_y)")
                values[name] = outer.lr_y
        inner = _options.estimator_options(spec["estimator"])
        _options.fill(inner, _options.ESTIMATOR, {inner_names[name]: value for name, value in values.items()})
        estimator_settings = _options.read(inner, _options.ESTIMATOR, inner_names.values())
        self._settings.update((name, estimator_settings[inner_names[name]]) for name in spec["options"])

        described = ", ".join(f"{name}={value!r}" for name, value in self._settings.items())
        self._create(lib.lancbio_bilevel_create, dx, dy, ctypes.byref(outer), ctypes.byref(inner),
                     context=f"invalid options for method {method!r} ({described})")
        self._attach()
        if comm is not None:
            # Collective, like every later step (include/lancbio.h, lancbio_bilevel_set_reduction).
            self._reducer = Reducer(comm)
            self._call(lib.lancbio_bilevel_set_reduction, self._reducer.callback, None, what="set_reduction")
        # The last step's info, and whether it may be out of date (fetch it from the library).
        self._info = None
        self._info_stale = False
        self._v0 = None if v0 is None else _vector(v0, dy, "v0")
        if self._v0 is not None:
            self._call(lib.lancbio_bilevel_set_v_f64, self._v0.ctypes.data_as(_ffi.F64P), dy, what="__init__()")

    def _attach(self) -> None:
        """The problem's callbacks, once the handle exists."""
        # The exception of a failed callback, re-raised by step() after C returns.
        self._state = new_state()
        self._callbacks = self._make_callbacks()
        self._problem_struct = _ffi.ProblemStruct(
            ctypes.sizeof(_ffi.ProblemStruct), None, *self._callbacks)
        # The pointers step() passes, made once: x and y are this object's for its whole
        # life (reset writes them in place), and a pointer made per step
        # (ndarray.ctypes.data_as) cost 3.6 us and left a reference cycle for the
        # collector each time. The info structures are overwritten by each step, one
        # thread at a time. (No byref kept: the collector cannot see through one, so a
        # problem that refers back to this optimizer would never be collected.)
        self._x_pointer = self._x.ctypes.data_as(_ffi.F64P)
        self._y_pointer = self._y.ctypes.data_as(_ffi.F64P)
        self._raw_info = _ffi.BilevelInfoStruct()
        self._raw_info.struct_size = ctypes.sizeof(self._raw_info)
        self._raw_estimator_info = _ffi.StepInfoStruct()
        self._raw_estimator_info.struct_size = ctypes.sizeof(self._raw_estimator_info)

    # -- callbacks ---------------------------------------------------------------------
    def _make_callbacks(self):
        """The five C callbacks, in the order of lancbio_problem_f64_t. Each passes private
        copies of x, y (and v) to the problem's method and writes its checked result."""
        dx, dy = self._dx, self._dy
        gradient = (("in", dx), None, ("in", dy), None)
        product = gradient + (("in", dy),)
        layouts = {"grad_y_g": gradient + (("out", dy), None), "grad_x_f": gradient + (("out", dx), None),
                   "grad_y_f": gradient + (("out", dy), None), "hvp_yy_g": product + (("out", dy), None),
                   "jvp_xy_g": product + (("out", dx), None)}
        return tuple(
            make_callback(_ffi.GRADIENT_CALLBACK if name.startswith("grad") else _ffi.PRODUCT_CALLBACK,
                          layouts[name], np.float64, self._state, f"the result of problem.{name}",
                          function=getattr(self._problem, name))
            for name in _REQUIRED)

    # -- calls -------------------------------------------------------------------------
    def step(self) -> BilevelInfo:
        """One outer iteration. Updates x, y and v; on any error (including an exception
        raised by the problem, which is re-raised as is) nothing changes."""
        token = [get_ident()]
        guard = self._guard
        try:
            owner = guard.setdefault(0, token)
            if owner is not token:
                self._refuse(owner, "step()")
            handle = self._live()
            byref = ctypes.byref
            raw, estimator = self._raw_info, self._raw_estimator_info
            state = self._state
            state[ERROR] = None
            # Until this step's info is known, whatever happens (an interrupt may come
            # right after the library committed).
            self._info_stale = True
            hook = install_capture()
            try:
                status = lib.lancbio_bilevel_step_f64(handle, byref(self._problem_struct), self._x_pointer, self._dx,
                                                      self._y_pointer, self._dy, byref(raw))
                error = state[ERROR]
            finally:
                state[ERROR] = None
                remove_capture(hook)
            if status < 0:
                if status == _ffi.ERR_CALLBACK and error is None and self._reducer is not None:
                    # Another process's failure (the library's message says so), or the
                    # all-reduce's own exception (which _check raises).
                    self._check(status)
                if status == _ffi.ERR_CALLBACK:
                    try:
                        raise error if error is not None else escaped("a callback of the problem")
                    finally:
                        error = None  # else the exception's traceback holds this frame, and it the exception
                self._check(status)
            # The handle again: a callback may have closed the optimizer (the step still ran).
            self._check(lib.lancbio_bilevel_estimator_info(self._handle, byref(estimator)))
            self._info = _info(raw, estimator)
            self._info_stale = False
            return self._info
        finally:
            try:
                if guard[0] is token:
                    del guard[0]
            except KeyError:
                pass

    def run(self, iterations: int | None = None, seconds: float | None = None, callback=None,
            progress: bool = True, progress_every: float = 2.0, label: str | None = None) -> History:
        """Steps until ``iterations`` more iterations or ``seconds`` of optimizer time have
        passed (at least one of them is required), recording a History.

        ``callback(optimizer, record)`` runs after each iteration, outside the timed
        region; it may return a dict of extra fields for the record (e.g. the true
        hyper-gradient norm), or False to stop. ``progress`` prints a line to stderr about
        every ``progress_every`` seconds. If a step raises, the exception propagates and the
        optimizer stays as after the last completed iteration; the history so far is
        attached to the exception as ``error.history``.
        """
        self._live()
        totals = {"gradient_evaluations": 0, "cross_products": 0}

        def step() -> dict:
            info = self.step()
            totals["gradient_evaluations"] += info.gradient_evaluations
            totals["cross_products"] += info.cross_products
            return {
                "iteration": info.iteration, "hvps": info.total_products,
                "gradient_evaluations": totals["gradient_evaluations"], "cross_products": totals["cross_products"],
                "hypergradient_norm": info.hypergradient_norm, "residual": info.estimator.residual,
                "residual_kind": info.estimator.residual_kind, "lr_x": info.lr_x, "lr_y": info.lr_y,
            }

        return record_run(self, step, iterations, seconds, callback, progress, progress_every, label or self._method)

    def reset(self, x0=None, y0=None) -> None:
        """Back to the state after creation: v = v0 (zero if none was given), counters
        zero; x and y move to x0 and y0 when given (otherwise they stay where they are).
        Arguments are checked first: a failed reset changes nothing."""
        x = None if x0 is None else _vector(x0, self._dx, "x0")
        y = None if y0 is None else _vector(y0, self._dy, "y0")
        token = [None]
        guard = self._guard
        try:
            owner = guard.setdefault(0, token)
            if owner is not token:
                self._refuse(owner, "reset()")
            handle = self._live()
            self._check(lib.lancbio_bilevel_reset(handle))
            if self._v0 is not None:
                self._check(lib.lancbio_bilevel_set_v_f64(handle, self._v0.ctypes.data_as(_ffi.F64P), self._dy))
            if x is not None:
                self._x[:] = x
            if y is not None:
                self._y[:] = y
            self._info = None
            self._info_stale = False
        finally:
            try:
                if guard[0] is token:
                    del guard[0]
            except KeyError:
                pass

    # -- read-only state ----------------------------------------------------------------
    def _copy_of(self, vector: np.ndarray, what: str) -> np.ndarray:
        # Under the guard: another thread's step writes x and y in place when it commits.
        token = [None]
        guard = self._guard
        try:
            owner = guard.setdefault(0, token)
            if owner is not token:
                self._refuse(owner, what)
            self._live()
            return vector.copy()
        finally:
            try:
                if guard[0] is token:
                    del guard[0]
            except KeyError:
                pass

    @property
    def x(self) -> np.ndarray:
        """Copy of the current x (dx,)."""
        return self._copy_of(self._x, "x")

    @property
    def y(self) -> np.ndarray:
        """Copy of the current y (dy,)."""
        return self._copy_of(self._y, "y")

    @property
    def v(self) -> np.ndarray:
        """Copy of the current v (dy,), the estimate of (grad^2_yy g)^{-1} grad_y f."""
        out = np.empty(self._dy)
        self._call(lib.lancbio_bilevel_get_v_f64, out.ctypes.data_as(_ffi.F64P), self._dy, what="v")
        return out

    @property
    def hypergradient(self) -> np.ndarray:
        """Copy of the last hyper-gradient estimate grad_x f - J v (dx,)."""
        out = np.empty(self._dx)
        self._call(lib.lancbio_bilevel_get_hypergradient_f64, out.ctypes.data_as(_ffi.F64P), self._dx,
                   what="hypergradient")
        return out

    @property
    def info(self) -> BilevelInfo | None:
        """Diagnostics of the last iteration (None before the first, and after reset)."""
        if self._info_stale:
            # A step failed or was interrupted: the library knows whether it committed.
            raw = _ffi.BilevelInfoStruct()
            raw.struct_size = ctypes.sizeof(raw)
            estimator = _ffi.StepInfoStruct()
            estimator.struct_size = ctypes.sizeof(estimator)
            self._call(lib.lancbio_bilevel_info, ctypes.byref(raw), what="info")
            self._call(lib.lancbio_bilevel_estimator_info, ctypes.byref(estimator), what="info")
            info = None if raw.iteration == 0 else _info(raw, estimator)
            if self._guard:  # read from inside a running step's callback: not its outcome yet
                return info
            self._info = info
            self._info_stale = False
        return self._info

    @property
    def method(self) -> str:
        return self._method

    @property
    def curvature(self) -> float | None:
        """With ``lr_y="auto"``: the estimate of lambda_max(grad^2_yy g) behind theta (None
        before the first iteration); otherwise None."""
        info = self.info
        if self._settings["lr_y"] != "auto" or info is None or info.curvature == 0:
            return None
        return info.curvature

    @property
    def settings(self) -> dict:
        """The options in force, defaults filled in."""
        return dict(self._settings)

    def __repr__(self) -> str:
        if self.closed:
            state = "closed"
        else:
            try:
                info = self.info
                state = f"iteration {info.iteration if info else 0}"
            except InvalidStateError:  # another thread is using it
                state = "in use"
        return f"Bilevel(method={self._method!r}, dx={self._dx}, dy={self._dy}, {state})"

    # -- copies and pickles ---------------------------------------------------------------
    # Through a checkpoint of the native state (lancbio_bilevel_save), plus what Python
    # holds: the problem, x, y, v0, the settings and the last info. A copy is an
    # independent optimizer (its own handle, x and y) whose next iterations are bitwise
    # the original's; copy.copy shares the problem object, copy.deepcopy copies it, and a
    # pickle holds it as pickle does (a problem that cannot be pickled is a TypeError).
    def _python_state(self, problem) -> dict:
        return {"problem": problem, "method": self._method, "x": self.x, "y": self.y, "v0": self._v0,
                "settings": dict(self._settings), "info": self.info}

    def _restore(self, data, state: dict) -> None:
        """Initialises this new, uncreated object from a checkpoint and its Python state."""
        problem = state["problem"]
        missing = [name for name in _REQUIRED if not callable(getattr(problem, name, None))]
        if missing:
            raise TypeError(f"the problem lacks the methods {', '.join(missing)}")
        self._problem = problem
        self._method = state["method"]
        self._x = np.array(state["x"], dtype=np.float64, copy=True)
        self._y = np.array(state["y"], dtype=np.float64, copy=True)
        self._dx, self._dy = self._x.shape[0], self._y.shape[0]
        self._v0 = None if state["v0"] is None else _vector(state["v0"], self._dy, "v0")
        self._settings = dict(state["settings"])
        self._info = state["info"]
        self._info_stale = False
        _checkpoint.restore(self, lib.lancbio_bilevel_restore, data,
                            context="Bilevel could not be restored from its checkpoint")
        # The dimensions the library restored must be Python's: each getter checks its count.
        self._call(lib.lancbio_bilevel_get_v_f64, np.empty(self._dy).ctypes.data_as(_ffi.F64P), self._dy,
                   what="_restore()")
        self._call(lib.lancbio_bilevel_get_hypergradient_f64, np.empty(self._dx).ctypes.data_as(_ffi.F64P), self._dx,
                   what="_restore()")
        self._attach()


    def __reduce_ex__(self, protocol):
        refuse_copy(self)
        data = _checkpoint.save(self, lib.lancbio_bilevel_save)
        # A problem that refers back to this optimizer comes here again from the check.
        if not self._checking_problem:
            self._checking_problem = True
            try:
                _checkpoint.check_picklable(self._problem, protocol, "this Bilevel's problem")
            finally:
                self._checking_problem = False
        return _unpickle, (type(self), data, self._python_state(self._problem))

    def __copy__(self):
        refuse_copy(self)
        return _unpickle(type(self), _checkpoint.save(self, lib.lancbio_bilevel_save), self._python_state(self._problem))

    def __deepcopy__(self, memo):
        refuse_copy(self)
        data = _checkpoint.save(self, lib.lancbio_bilevel_save)
        optimizer = type(self).__new__(type(self))
        memo[id(self)] = optimizer  # a problem that refers back to this optimizer gets the copy
        state = copy.deepcopy(self._python_state(self._problem), memo)
        optimizer._restore(data, state)
        return optimizer


def _unpickle(cls, data, state):
    """A Bilevel of class ``cls`` from a checkpoint and its Python state (what pickles of a
    Bilevel call)."""
    if not (isinstance(cls, type) and issubclass(cls, Bilevel)):
        raise TypeError(f"{cls!r} is not lancbio.Bilevel")
    optimizer = cls.__new__(cls)
    optimizer._restore(data, state)
    return optimizer


def _info(raw, estimator) -> BilevelInfo:
    """The BilevelInfo of a lancbio_bilevel_info_t and its estimator's lancbio_step_info_t."""
    return BilevelInfo(
        iteration=raw.iteration, products=raw.products, total_products=raw.total_products,
        gradient_evaluations=raw.gradient_evaluations, cross_products=raw.cross_products,
        hypergradient_norm=raw.hypergradient_norm, lr_x=raw.lr_x, lr_y=raw.lr_y,
        estimator=StepInfo._from_struct(estimator), curvature=raw.curvature)
