"""The estimators of v = A^{-1} b, one class per method, each owning one native handle.

Every estimator is stateful and warm-started: one ``step(op, b)`` per outer iteration of
a bilevel method, where ``op`` gives products v -> A v with the current symmetric A
(n x n) and b is the current right-hand side. docs/algorithms.md sections 3-5 give the
mathematics; the algorithms run in the native library, this module only converts,
calls and checks.

Arrays: b and v0 must be 1-D numpy arrays of length n, C-contiguous, of exactly the
estimator's dtype (numpy.float64 or numpy.float32). They are passed to the library
without a copy; anything else raises TypeError or ValueError rather than being
converted (a silent conversion would change the precision or copy on every step).
Products returned by the operator (or passed to ``resume``) may have any real floating
or integer dtype and are cast to the estimator's dtype.

Options: a keyword left at None takes the library's default, and the library checks
every value's range (a rejected one raises InvalidArgumentError with the library's
message); include/lancbio.h documents both, at lancbio_estimator_options_t.

Errors: every failure raises a :mod:`lancbio.errors` exception (or the operator's own
exception) and leaves the estimator exactly as it was before the call.

Copies: ``pickle``, ``copy.copy`` and ``copy.deepcopy`` give an independent estimator (its
own native handle) whose next steps are bitwise the original's, through the library's
checkpoints (docs/algorithms.md section 12); between steps only (InvalidStateError during
a reverse-communication step). Unpickling damaged bytes raises InvalidCheckpointError.
"""

from __future__ import annotations

import ctypes

import numpy as np

from . import _checkpoint, _ffi, _options
from ._ffi import lib
from ._handle import Handle
from ._trampoline import RUNNING, make_callback, new_state, result_error
from .errors import InvalidStateError
from .info import StepInfo
from .operators import as_operator

__all__ = ["DynamicLanczos", "SubBiO", "CG", "MINRES", "GD", "Neumann", "RandomNeumann"]

_PRECISIONS = {
    np.dtype(np.float64): (_ffi.FLOAT64, ctypes.c_double, "_f64"),
    np.dtype(np.float32): (_ffi.FLOAT32, ctypes.c_float, "_f32"),
}
# begin/resume without argtypes, per precision suffix (see _ffi.undeclared).
_RC_FUNCTIONS = {
    suffix: (_ffi.undeclared("lancbio_estimator_begin" + suffix),
             _ffi.undeclared("lancbio_estimator_resume" + suffix))
    for _, _, suffix in _PRECISIONS.values()
}
_NEED_PRODUCT = _ffi.NEED_PRODUCT
_ndarray = np.ndarray
_byref = ctypes.byref
_memoryview = memoryview


def _precision(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in _PRECISIONS:
        raise TypeError(f"dtype must be numpy.float64 or numpy.float32, got {dtype!r}")
    return dt


class _Estimator(Handle):
    """Common machinery; use one of the concrete classes."""

    _destroy_function = lib.lancbio_estimator_destroy
    _last_error_function = lib.lancbio_estimator_last_error

    _method = 0

    def __init__(self, n, options: dict, v0, dtype):
        """``options``: {keyword of _options.ESTIMATOR: value, or None for the library's default}."""
        self._prepare(_options.to_int(n, "n"), _precision(dtype))
        self._v0 = None if v0 is None else self._vector(v0, "v0").copy()

        struct = _options.estimator_options(self._method)
        struct.precision = _PRECISIONS[self._dtype][0]
        _options.fill(struct, _options.ESTIMATOR, options)
        # The options in force, the library's defaults included (for repr and messages).
        self._settings = _options.read(struct, _options.ESTIMATOR, options)
        self._create(lib.lancbio_estimator_create, self._n, ctypes.byref(struct),
                     context=f"{type(self).__name__}({self._describe()}) was rejected")
        self._attach()
        if self._v0 is not None:
            self._set_v(self._v0)

    def _prepare(self, n: int, dtype: np.dtype) -> None:
        """What the handle's creation needs: the functions of the precision and the info."""
        self._n = n
        self._dtype = dtype
        precision, ctype, suffix = _PRECISIONS[self._dtype]
        self._pointer = ctypes.POINTER(ctype)
        self._step_fn = getattr(lib, "lancbio_estimator_step" + suffix)
        self._begin_fn = getattr(lib, "lancbio_estimator_begin" + suffix)
        self._resume_fn = getattr(lib, "lancbio_estimator_resume" + suffix)
        self._get_v_fn = getattr(lib, "lancbio_estimator_get_v" + suffix)
        self._set_v_fn = getattr(lib, "lancbio_estimator_set_v" + suffix)
        self._begin_rc, self._resume_rc = _RC_FUNCTIONS[suffix]
        # The fast path of begin/resume: an exact ndarray of this dtype and shape that is
        # C-contiguous and aligned needs no other check, and byref(ctype.from_buffer(...))
        # is its address at a fifth of the cost of arr.ctypes (see _argument).
        self._shape = (self._n,)
        self._from_buffer = ctype.from_buffer
        self._n_arg = ctypes.c_int64(self._n)
        self._info = None
        # "struct": _info_struct holds the last step's info, converted on first access;
        # "library": fetch it from the library first (reverse communication). Converting on
        # every step would cost more than a small step itself.
        self._info_pending = None
        self._info_struct = _ffi.StepInfoStruct(struct_size=ctypes.sizeof(_ffi.StepInfoStruct))

    def _attach(self) -> None:
        """The buffers and the product callback, once the handle exists (the library has
        then accepted n: an n it rejects must not fail here first, allocating)."""
        # One request buffer for reverse communication, handed out as a read-only view.
        self._request = np.empty(self._n, dtype=self._dtype)
        self._request_view = self._request.view()
        self._request_view.flags.writeable = False
        self._request_arg = ctypes.c_void_p(self._request.ctypes.data)
        # [operator of the running step, its exception, running]
        self._slot = new_state()
        self._callback = make_callback(_ffi.HVP_CALLBACK, (("in", self._n), ("out", self._n), None, None),
                                       self._dtype, self._slot, "the operator's result")

    # -- helpers ------------------------------------------------------------------
    def _describe(self) -> str:
        parts = [f"n={self._n}"] + [f"{k}={v!r}" for k, v in self._settings.items()]
        return ", ".join(parts + [f"dtype={self._dtype.name}"])

    def _live(self):
        handle = self._handle
        if handle is None or self._slot[RUNNING]:  # one test on the fast path: _live runs every step
            super()._live()  # raises if closed
            raise InvalidStateError(
                f"{type(self).__name__} was used while its step() is running (from inside its own "
                "operator, or from another thread); an estimator is not re-entrant", -8)
        return handle

    def _vector(self, arr, name: str) -> np.ndarray:
        n, dt = self._n, self._dtype
        fix = f"numpy.ascontiguousarray({name}, dtype=numpy.{dt.name})"
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray of shape ({n},) and dtype {dt.name}, "
                            f"got {type(arr).__name__}; convert it with {fix}")
        if arr.dtype != dt:
            raise TypeError(f"{name} has dtype {arr.dtype} but this estimator is {dt.name}; convert it with "
                            f"{fix} (no conversion is done implicitly), or create the estimator with "
                            f"dtype=numpy.{arr.dtype.name if arr.dtype in _PRECISIONS else 'float32'}")
        if arr.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},), got shape {arr.shape}")
        if not (arr.flags.c_contiguous and arr.flags.aligned):
            raise ValueError(f"{name} must be C-contiguous and aligned (a strided view or slice is not); "
                             f"pass {fix}")
        return arr

    def _product(self, product) -> np.ndarray:
        problem = result_error(product, self._n, "the product")
        if problem is not None:
            raise problem
        # Aligned too: the library reads it through a typed pointer (a misaligned one is copied).
        return np.require(product, dtype=self._dtype, requirements="CAE")

    def _as_ptr(self, arr: np.ndarray):
        return arr.ctypes.data_as(self._pointer)

    def _argument(self, arr: np.ndarray):
        """The pointer argument of the undeclared begin/resume functions for a checked
        array (the right dtype and length, C-contiguous and aligned)."""
        # Writability is read from a memoryview, not arr.flags: numpy warns on that flag for
        # a broadcast view, which claims to be writeable but exports a read-only buffer.
        view = _memoryview(arr)
        if view.readonly:
            # ctypes.from_buffer refuses read-only buffers.
            return ctypes.c_void_p(arr.__array_interface__["data"][0])
        return _byref(self._from_buffer(view))

    def _set_v(self, v: np.ndarray) -> None:
        self._call(self._set_v_fn, self._as_ptr(v), self._n)

    def _ensure_info(self) -> None:
        pending, self._info_pending = self._info_pending, None
        if pending == "library":
            self._call(lib.lancbio_estimator_info, ctypes.byref(self._info_struct))
        if pending is not None:
            self._info = StepInfo._from_struct(self._info_struct)

    # -- stepping -------------------------------------------------------------------
    def step(self, op, b: np.ndarray) -> np.ndarray:
        """One step: computes the new estimate of A^{-1} b, commits it and returns it.

        Args:
            op: the product v -> A v with the current A (see :func:`lancbio.as_operator`:
                a callable, an object with ``.matvec``, a 2-D array or a scipy.sparse
                matrix). A callable receives a private array of shape (n,) and the
                estimator's dtype (a copy of the library's vector, which it may modify or
                return; if it keeps a reference, the array is left to it), and must return
                an array-like of shape (n,) with a real floating or integer dtype (cast to
                the estimator's dtype).
            b: right-hand side, shape (n,), the estimator's dtype, C-contiguous, finite;
                read in place while the step runs: nothing (the operator, another thread)
                may change it until step returns.

        Returns:
            The committed estimate v, a new array of shape (n,) and the estimator's dtype.

        Raises:
            the operator's own exception (original type and traceback), ValueError or
            TypeError for an unusable operator result, :mod:`lancbio.errors` exceptions
            (e.g. NonFiniteProductError for a NaN product). The estimator is then
            unchanged.
        """
        handle = self._live()
        b = self._vector(b, "b")
        apply = as_operator(op, self._n, self._dtype)
        v = np.empty(self._n, dtype=self._dtype)
        slot = self._slot
        slot[0], slot[1], slot[2] = apply, None, True
        try:
            status = self._step_fn(handle, self._callback, None, self._as_ptr(b), self._as_ptr(v),
                                   self._n, ctypes.byref(self._info_struct))
        finally:
            error = slot[1]
            slot[0], slot[1], slot[2] = None, None, False
        if status < 0:
            if status == _ffi.ERR_CALLBACK and error is not None:
                raise error
            self._check(status)
        self._info_pending = "struct"
        return v

    def begin(self, b: np.ndarray):
        """Starts a reverse-communication step, for hosts that compute products themselves.

        Args:
            b: right-hand side, as for :meth:`step`.

        Returns:
            The vector x (shape (n,), the estimator's dtype) whose product A x must be
            passed to :meth:`resume`, or None if the step finished without any product
            (then ``v`` and ``info`` are updated). x is a read-only view of the
            estimator's request buffer, valid until the next call: copy it to keep it
            (reusing one buffer keeps a round trip allocation-free).
        """
        handle = self._handle
        if handle is None or self._slot[RUNNING]:
            self._live()
        b_arg = self._in_place(b)
        if b_arg is None:
            b_arg = self._argument(self._vector(b, "b"))
        return self._request_or_done(self._begin_rc(handle, b_arg, self._request_arg, self._n_arg), handle)

    def resume(self, product):
        """Continues a reverse-communication step with ``product`` = A x for the last x.

        Args:
            product: array-like of shape (n,), real floating or integer dtype (cast to
                the estimator's dtype). A ValueError/TypeError about its shape or dtype
                leaves the step in progress (call resume again, or cancel).

        Returns:
            The next vector x to multiply (the same read-only view as :meth:`begin`
            returns, refilled), or None when the step is complete (then ``v`` and
            ``info`` hold its result). On a library error the step is abandoned and
            the estimator is as before :meth:`begin`.
        """
        handle = self._handle
        if handle is None or self._slot[RUNNING]:
            self._live()
        if product is self._request_view:
            product_arg = self._request_arg
        else:
            product_arg = self._in_place(product)
            if product_arg is None:
                product_arg = self._argument(self._product(product))
        return self._request_or_done(self._resume_rc(handle, product_arg, self._request_arg, self._n_arg), handle)

    def _in_place(self, a):
        """The ctypes argument passing ``a`` itself, when it is already a C-contiguous,
        aligned array of this estimator's dtype and shape; None otherwise (convert it)."""
        if (type(a) is _ndarray and a.dtype is self._dtype and a.shape == self._shape
                and a.flags.c_contiguous and a.flags.aligned):
            view = _memoryview(a)
            return self._argument(a) if view.readonly else _byref(self._from_buffer(view))
        return None

    def _request_or_done(self, status, handle):
        """begin/resume's result for a library status: the request view, or None when the
        step is complete (errors raise)."""
        if status == _NEED_PRODUCT:
            return self._request_view
        if status < 0:
            self._check(status)
        self._info_pending = "library"
        return None

    def cancel(self) -> None:
        """Abandons a reverse-communication step in progress (no effect if none)."""
        self._call(lib.lancbio_estimator_cancel)

    def reset(self) -> None:
        """Back to the state after creation: v = v0 (or 0), counters and schedules restarted."""
        self._call(lib.lancbio_estimator_reset)
        self._info = None
        self._info_pending = None
        if self._v0 is not None:
            self._set_v(self._v0)

    # -- properties -----------------------------------------------------------------
    @property
    def n(self) -> int:
        """Dimension of A (n x n), b and v."""
        return self._n

    @property
    def dtype(self) -> np.dtype:
        """numpy.float64 or numpy.float32: the dtype of b, v and the native storage."""
        return self._dtype

    @property
    def v(self) -> np.ndarray:
        """A copy of the committed estimate, shape (n,), the estimator's dtype."""
        out = np.empty(self._n, dtype=self._dtype)
        self._call(self._get_v_fn, self._as_ptr(out), self._n)
        return out

    @property
    def info(self) -> StepInfo | None:
        """Diagnostics of the last completed step; None before any step or after reset."""
        self._ensure_info()
        return self._info

    @property
    def hvp_count(self) -> int:
        """Operator products used since creation or the last reset."""
        info = self.info
        return info.total_products if info is not None else 0

    @property
    def dim(self) -> int:
        """Subspace dimension after the last step (Lanczos j, SubBiO 1 or 2; else 0)."""
        info = self.info
        return info.dimension if info is not None else 0

    @property
    def period(self) -> int:
        """Lanczos restart period m in force at the last step (else 0)."""
        info = self.info
        return info.period if info is not None else 0

    @property
    def restarts(self) -> int:
        """Lanczos restarts since creation or reset, as of the last step (else 0)."""
        info = self.info
        return info.restarts if info is not None else 0

    # -- lifetime -------------------------------------------------------------------
    def close(self) -> None:
        """Destroys the native handle. Idempotent; later calls other than close raise
        InvalidHandleError."""
        if self._handle is not None and self._slot[RUNNING]:
            raise InvalidStateError(f"{type(self).__name__}.close() was called from inside its own operator", -8)
        super().close()
        # The C side can no longer call the trampoline: release it and its views.
        self._callback = None

    def __repr__(self) -> str:
        state = "closed" if self._handle is None else f"hvp_count={self.hvp_count}"
        return f"<lancbio.{type(self).__name__}({self._describe()}) {state}>"

    # -- copies and pickles ---------------------------------------------------------------
    # Each goes through a checkpoint of the native state (lancbio_estimator_save): a copy
    # is an independent estimator whose next steps are bitwise the original's. A shallow
    # copy sharing the handle would let either step the other, so copy.copy clones too.
    def _python_state(self) -> dict:
        return {"n": self._n, "dtype": self._dtype.str, "settings": dict(self._settings), "v0": self._v0,
                "has_info": self.info is not None}

    def _restore(self, data, state: dict) -> None:
        """Initialises this new, uncreated object from a checkpoint and its Python state."""
        self._prepare(_options.to_int(state["n"], "n"), _precision(state["dtype"]))
        self._settings = dict(state["settings"])
        self._v0 = None if state["v0"] is None else self._vector(np.array(state["v0"], dtype=self._dtype), "v0")
        _checkpoint.restore(self, lib.lancbio_estimator_restore, data,
                            context=f"{type(self).__name__} could not be restored from its checkpoint")
        self._attach()
        n, method, precision = ctypes.c_int64(), ctypes.c_int32(), ctypes.c_int32()
        self._call(lib.lancbio_estimator_properties, ctypes.byref(n), ctypes.byref(method), ctypes.byref(precision))
        if (n.value, method.value, precision.value) != (self._n, self._method, _PRECISIONS[self._dtype][0]):
            self.close()
            raise ValueError(f"the checkpoint holds another estimator (n={n.value}, method {method.value}, precision "
                             f"{precision.value}) than this {type(self).__name__}(n={self._n}, dtype={self._dtype.name})")
        self._info_pending = "library" if state["has_info"] else None

    def __reduce_ex__(self, protocol):
        return _unpickle, (type(self), _checkpoint.save(self, lib.lancbio_estimator_save), self._python_state())

    def __copy__(self):
        return _unpickle(type(self), _checkpoint.save(self, lib.lancbio_estimator_save), self._python_state())

    def __deepcopy__(self, memo):
        copy = _unpickle(type(self), _checkpoint.save(self, lib.lancbio_estimator_save), self._python_state())
        memo[id(self)] = copy
        return copy


def _unpickle(cls, data, state):
    """An estimator of class ``cls`` from a checkpoint and its Python state (what pickles
    of estimators call)."""
    if not (isinstance(cls, type) and issubclass(cls, _Estimator)):
        raise TypeError(f"{cls!r} is not a lancbio estimator class")
    estimator = cls.__new__(cls)
    estimator._restore(data, state)
    return estimator


class DynamicLanczos(_Estimator):
    """LancBiO's dynamic Lanczos estimator (docs/algorithms.md section 3).

    One Lanczos step per ``step`` with the current operator, plus one product at each
    restart: 1 + 1/m products per step on average. Every option left at None takes the
    library's default (include/lancbio.h, lancbio_estimator_options_t).

    Args:
        n: dimension.
        m0: initial restart period (at most m_max).
        m_max: largest period; the basis holds m_max + 1 vectors of length n.
        growth: period growth factor: m <- min(ceil(m * growth), m_max) ...
        grow_every: ... every this many steps.
        variant: "residual" (the paper's, anchored at the last estimate) or "plain"
            (no anchor, q_1 = b / ||b||).
        reorthogonalize: full re-orthogonalisation of each new basis vector.
        orthogonality_tol: restart a cycle early when the newest basis vector has lost
            orthogonality (max_i |q_i . q_{j+1}| above this; math.inf disables the check).
            A drifting operator erodes orthogonality; long cycles on a badly
            non-orthogonal basis can make the estimate diverge.
        exact_residual: report ||A v - b|| of every step's estimate (``info.residual_kind``
            "exact") at the cost of one more product per step, instead of the estimate
            beta_j |e_j^T s|, which is exact only while the operator and b stay fixed
            (docs/algorithms.md section 3.6; without it ``info.residual_uncertain`` flags
            estimates that are likely too optimistic).
        v0: initial estimate (shape (n,), the estimator's dtype), re-applied by reset;
            default 0.
        dtype: numpy.float64 or numpy.float32.
    """

    _method = _ffi.METHOD_LANCZOS

    def __init__(self, n, m0=None, m_max=None, growth=None, grow_every=None, variant=None,
                 reorthogonalize=None, orthogonality_tol=None, exact_residual=None, v0=None, dtype=np.float64):
        super().__init__(n, dict(m0=m0, m_max=m_max, growth=growth, grow_every=grow_every, variant=variant,
                                 reorthogonalize=reorthogonalize, orthogonality_tol=orthogonality_tol,
                                 exact_residual=exact_residual), v0, dtype)


class SubBiO(_Estimator):
    """SubBiO: Galerkin solve on span{b, v - theta0 A v}, 3 products per step
    (docs/algorithms.md section 4).

    Args:
        n: dimension.
        theta0: > 0, in units of 1 / eigenvalue of A (the paper uses 1 / kappa).
        v0: initial estimate, re-applied by reset; default 0.
        dtype: numpy.float64 or numpy.float32.
    """

    _method = _ffi.METHOD_SUBBIO

    def __init__(self, n, theta0, v0=None, dtype=np.float64):
        super().__init__(n, dict(theta0=theta0), v0, dtype)


class CG(_Estimator):
    """Conjugate gradients warm-started from the last estimate (AmIGO-CG).

    Each step runs at most ``maxiter`` iterations (maxiter + 1 products) and stops early
    when ||A v - b|| <= tol ||b||. Non-positive curvature ends the step with the last
    iterate and outcome "indefinite" (use MINRES for indefinite A).

    Args:
        n: dimension.
        maxiter: iterations per step (the paper's Q).
        tol: relative tolerance; library default (0: always run maxiter iterations).
        v0: initial estimate, re-applied by reset; default 0.
        dtype: numpy.float64 or numpy.float32.
    """

    _method = _ffi.METHOD_CG

    def __init__(self, n, maxiter, tol=None, v0=None, dtype=np.float64):
        super().__init__(n, dict(maxiter=maxiter, tol=tol), v0, dtype)


class MINRES(_Estimator):
    """MINRES warm-started from the last estimate, for symmetric indefinite A.

    Args:
        n: dimension.
        maxiter: iterations per step (at most maxiter + 1 products).
        tol: relative tolerance on ||A v - b|| / ||b||; library default (0).
        v0: initial estimate, re-applied by reset; default 0.
        dtype: numpy.float64 or numpy.float32.
    """

    _method = _ffi.METHOD_MINRES

    def __init__(self, n, maxiter, tol=None, v0=None, dtype=np.float64):
        super().__init__(n, dict(maxiter=maxiter, tol=tol), v0, dtype)


class GD(_Estimator):
    """Gradient steps v <- v - eta (A v - b), ``steps`` per step from the last estimate
    (AmIGO-GD; SOBA is steps=1). One product per gradient step.

    Args:
        n: dimension.
        eta: step size > 0, below 2 / lambda_max(A) to converge (units 1 / eigenvalue).
        steps: gradient steps per step (default 1, SOBA's; None: the library's, AmIGO-GD's Q).
        v0: initial estimate, re-applied by reset; default 0.
        dtype: numpy.float64 or numpy.float32.
    """

    _method = _ffi.METHOD_GD

    def __init__(self, n, eta, steps=1, v0=None, dtype=np.float64):
        super().__init__(n, dict(eta=eta, steps=steps), v0, dtype)


class Neumann(_Estimator):
    """Truncated Neumann series from zero, v = eta sum_{i=0..terms} (I - eta A)^i b
    (stocBiO); ``terms`` products per step, no warm start.

    Args:
        n: dimension.
        eta: step size > 0, below 2 / lambda_max(A) to converge.
        terms: number of products.
        dtype: numpy.float64 or numpy.float32.
    """

    _method = _ffi.METHOD_NEUMANN

    def __init__(self, n, eta, terms, dtype=np.float64):
        super().__init__(n, dict(eta=eta, terms=terms), None, dtype)


class RandomNeumann(_Estimator):
    """Random truncation then gradient steps (TTSA / BSA): with p uniform in
    {0 .. max_terms - 1}, v = eta (I - eta A)^p b, then max_terms gradient steps
    v <- v - eta (A v - b); p + max_terms products per step.

    Args:
        n: dimension.
        eta: step size > 0, below 2 / lambda_max(A) to converge.
        max_terms: the truncation bound and the number of gradient steps.
        seed: seed of the truncation generator, 0 <= seed < 2**64 (reset reseeds);
            library default.
        dtype: numpy.float64 or numpy.float32.
    """

    _method = _ffi.METHOD_RANDOM_NEUMANN

    def __init__(self, n, eta, max_terms, seed=None, dtype=np.float64):
        super().__init__(n, dict(eta=eta, max_terms=max_terms, seed=seed), None, dtype)
