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

Threads and interrupts: an estimator serves one thread at a time (a call from another
thread while one runs raises InvalidStateError and changes nothing; give each thread its
own estimator). ``step`` runs as reverse communication (begin, then one resume per
product, from Python), so an exception raised anywhere, an asynchronous one included
(KeyboardInterrupt), is an ordinary exception of ``step``: the step is cancelled and the
estimator is as before it, unless the library had already committed the step when the
exception arrived (then it is as after it, never in between).
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np

from . import _checkpoint, _ffi, _options
from ._arrays import reject_masked
from ._ffi import lib
from ._handle import Handle, get_ident
from ._trampoline import SOLE_REFERENCE_COUNT, result_error
from .errors import InvalidStateError
from .info import StepInfo
from ._reduction import Reducer, Sliced, refuse_copy
from .operators import as_operator

__all__ = ["DynamicLanczos", "SubBiO", "CG", "MINRES", "GD", "Neumann", "RandomNeumann"]

_PRECISIONS = {
    np.dtype(np.float64): (_ffi.FLOAT64, ctypes.c_double, "_f64"),
    np.dtype(np.float32): (_ffi.FLOAT32, ctypes.c_float, "_f32"),
}
# begin/resume/get_v without argtypes, per precision suffix (see _ffi.undeclared).
_RC_FUNCTIONS = {
    suffix: (_ffi.undeclared("lancbio_estimator_begin" + suffix),
             _ffi.undeclared("lancbio_estimator_resume" + suffix),
             _ffi.undeclared("lancbio_estimator_get_v" + suffix))
    for _, _, suffix in _PRECISIONS.values()
}
_NEED_PRODUCT = _ffi.NEED_PRODUCT
_cancel = lib.lancbio_estimator_cancel
_ndarray = np.ndarray
_empty = np.empty
_byref = ctypes.byref
_memoryview = memoryview
_getrefcount = sys.getrefcount
# The reference count of a request buffer held by step()'s local and its pointer argument only.
_HELD_BY_ARGUMENT = SOLE_REFERENCE_COUNT + 1
_ZERO_INFO = bytes(ctypes.sizeof(_ffi.StepInfoStruct) - 8)


def _precision(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in _PRECISIONS:
        raise TypeError(f"dtype must be numpy.float64 or numpy.float32, got {dtype!r}")
    return dt


class _Estimator(Sliced, Handle):
    """Common machinery; use one of the concrete classes."""

    _destroy_function = lib.lancbio_estimator_destroy
    _last_error_function = lib.lancbio_estimator_last_error
    _kind = "estimator"

    _method = 0

    def __init__(self, n, options: dict, v0, dtype, comm=None):
        """``options``: {keyword of _options.ESTIMATOR: value, or None for the library's default};
        ``comm``: a communicator whose processes each hold a slice of the vectors (n local)."""
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
        if comm is not None:
            # Collective, like every later call on the handle (include/lancbio.h,
            # lancbio_estimator_set_reduction).
            self._reducer = Reducer(comm)
            self._call(lib.lancbio_estimator_set_reduction, self._reducer.callback, None, what="set_reduction")
        if self._v0 is not None:
            self._set_v(self._v0)

    def _prepare(self, n: int, dtype: np.dtype) -> None:
        """What the handle's creation needs: the functions of the precision and the info."""
        self._n = n
        self._dtype = dtype
        precision, ctype, suffix = _PRECISIONS[self._dtype]
        self._get_v_fn = getattr(lib, "lancbio_estimator_get_v" + suffix)
        self._set_v_fn = getattr(lib, "lancbio_estimator_set_v" + suffix)
        self._begin_rc, self._resume_rc, self._get_v_rc = _RC_FUNCTIONS[suffix]
        # The fast path of begin/resume: an exact ndarray of this dtype and shape that is
        # C-contiguous and aligned needs no other check, and byref(ctype.from_buffer(...))
        # is its address at a fifth of the cost of arr.ctypes (see _argument).
        self._shape = (self._n,)
        self._from_buffer = ctype.from_buffer
        self._n_arg = ctypes.c_int64(self._n)
        self._info = None
        # Whether _info is stale: the library's info is fetched and converted on first
        # access after a step (doing it on every step would cost more than a small step).
        self._info_pending = False
        # Whether a step is known to have completed since creation or reset (its info may
        # be all zero, as a Neumann step of no terms).
        self._stepped = False
        self._info_struct = _ffi.StepInfoStruct(struct_size=ctypes.sizeof(_ffi.StepInfoStruct))
        # step()'s request buffer and its pointer argument, kept from step to step while
        # the operator does not keep it (see step).
        self._spare = None

    def _attach(self) -> None:
        """The buffers, once the handle exists (the library has then accepted n: an n it
        rejects must not fail here first, allocating)."""
        # One request buffer for begin/resume, handed out as a read-only view.
        self._request = np.empty(self._n, dtype=self._dtype)
        self._request_view = self._request.view()
        self._request_view.flags.writeable = False
        self._request_arg = ctypes.c_void_p(self._request.ctypes.data)

    # -- helpers ------------------------------------------------------------------
    def _describe(self) -> str:
        parts = [f"n={self._n}"] + [f"{k}={v!r}" for k, v in self._settings.items()]
        return ", ".join(parts + [f"dtype={self._dtype.name}"])

    def _reentered(self, what: str) -> None:
        # Only the operator of a running step (or a signal handler) can call back in this
        # thread. Reading the diagnostics is harmless: between products no library call
        # runs.
        if what != "info":
            raise InvalidStateError(
                f"{type(self).__name__}.{what} was called from inside its own operator (a step is running); "
                "an estimator is not re-entrant", -8)

    def _vector(self, arr, name: str) -> np.ndarray:
        n, dt = self._n, self._dtype
        fix = f"numpy.ascontiguousarray({name}, dtype=numpy.{dt.name})"
        reject_masked(arr, name)
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

    def _product(self, product, what: str = "the product") -> np.ndarray:
        problem = result_error(product, self._n, what)
        if problem is not None:
            raise problem
        # Aligned too: the library reads it through a typed pointer (a misaligned one is copied).
        return np.require(product, dtype=self._dtype, requirements="CAE")

    def _own_buffer(self) -> tuple:
        """A new vector of the estimator's dtype and its pointer argument, which holds one
        reference to it (so the vector alone has SOLE_REFERENCE_COUNT + 1)."""
        x = _empty(self._n, dtype=self._dtype)
        return x, _byref(self._from_buffer(x))

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

    @property
    def comm(self):
        """The communicator of ``comm=`` (None on one process)."""
        return None if self._reducer is None else self._reducer.comm

    def _set_v(self, v: np.ndarray) -> None:
        self._call(self._set_v_fn, self._from_buffer(v), self._n, what="set_v")

    def _ensure_info(self) -> None:
        if self._info_pending:
            struct = self._info_struct
            self._call(lib.lancbio_estimator_info, ctypes.byref(struct), what="info")
            self._info_pending = False
            # The library's info is all zero (but struct_size) before the first step and
            # after reset; a step that completed unseen (an interrupt came after its
            # commit) shows in any non-zero field.
            stepped = self._stepped or ctypes.string_at(ctypes.addressof(struct) + 8, len(_ZERO_INFO)) != _ZERO_INFO
            self._info = StepInfo._from_struct(struct) if stepped else None

    # -- stepping -------------------------------------------------------------------
    def step(self, op, b: np.ndarray) -> np.ndarray:
        """One step: computes the new estimate of A^{-1} b, commits it and returns it.

        Args:
            op: the product v -> A v with the current A (see :func:`lancbio.as_operator`:
                a callable, an object with ``.matvec``, a 2-D array or a scipy.sparse
                matrix). A callable receives a private array of shape (n,) and the
                estimator's dtype (which it may modify or return; if it keeps a reference,
                the array is left to it), and must return an array-like of shape (n,) with
                a real floating or integer dtype (cast to the estimator's dtype).
            b: right-hand side, shape (n,), the estimator's dtype, C-contiguous, finite
                (copied when the step begins).

        Returns:
            The committed estimate v, a new array of shape (n,) and the estimator's dtype.

        Raises:
            the operator's own exception (original type and traceback), ValueError or
            TypeError for an unusable operator result, :mod:`lancbio.errors` exceptions
            (e.g. NonFiniteProductError for a NaN product). The estimator is then
            unchanged. An asynchronous exception (KeyboardInterrupt) propagates the same
            way; if it arrives after the library committed the step, the estimator holds
            the new step (``hvp_count`` and ``info`` say which), never part of one.
        """
        # Reverse communication driven from here rather than the library's callback step:
        # a callback interrupted on entry (an asynchronous exception raised before its first
        # statement) cannot report its failure through ctypes, but an exception here is an
        # ordinary one, and cancel() restores the state. It is also cheaper at small n.
        token = [get_ident()]
        guard = self._guard
        try:
            owner = guard.setdefault(0, token)
            if owner is not token:
                self._refuse(owner, "step()")
            handle = self._handle
            if handle is None:
                self._live()  # raises
            b_arg = self._in_place(b)
            if b_arg is None:
                b_arg = self._argument(self._vector(b, "b"))
            apply = as_operator(op, self._n, self._dtype)
            n_arg, resume, shape, dtype, from_buffer = self._n_arg, self._resume_rc, self._shape, self._dtype, \
                self._from_buffer
            spare, self._spare = self._spare, None
            x, x_arg = spare if spare is not None else self._own_buffer()
            spare = None
            status = None
            try:
                status = self._begin_rc(handle, b_arg, x_arg, n_arg)
                b_arg = None
                while status == _NEED_PRODUCT:
                    product = apply(x)
                    product_arg = None
                    if product is x:
                        # An in-place operator: the library reads the product before it writes
                        # the next request, so the two may share the buffer.
                        product_arg = x_arg
                    elif (type(product) is _ndarray and product.dtype is dtype and product.shape == shape
                            and product.flags.aligned):
                        try:
                            product_arg = _byref(from_buffer(product))
                        except TypeError:  # read-only or not contiguous: the general path
                            pass
                    if product_arg is None:
                        product_arg = self._argument(self._product(product, "the operator's result"))
                    # x is the next request's buffer unless the operator kept it (or a view of
                    # it), or changed its shape, dtype or writeability: then it is the
                    # operator's, and the library must not write into it.
                    product = None
                    if not (_getrefcount(x) == _HELD_BY_ARGUMENT and x.flags.writeable and x.dtype is dtype
                            and x.shape == shape):
                        x, x_arg = self._own_buffer()
                    status = resume(handle, product_arg, x_arg, n_arg)
                    product_arg = None
                if status < 0:
                    self._check(status)
                self._stepped = True
                v = _empty(self._n, dtype=dtype)
                self._check(self._get_v_rc(handle, _byref(self._from_buffer(v)), n_arg))
            except BaseException:
                # status None: interrupted right after begin returned, whatever it returned.
                if status == _NEED_PRODUCT and self._reducer is not None:
                    # The other processes wait in the step's next reduction: a NaN product
                    # makes every process's step fail there (NonFiniteProductError), each
                    # estimator unchanged; this one raises its own exception.
                    _fail_collectively(handle, resume, self._n, dtype, n_arg)
                    status = -1
                if status is None or status == _NEED_PRODUCT:
                    _cancel(handle)
                raise
            finally:
                # Even on failure: an interrupt may have come after the library committed.
                self._info_pending = True
            if _getrefcount(x) == _HELD_BY_ARGUMENT:
                self._spare = x, x_arg
            return v
        finally:
            try:
                if guard[0] is token:
                    del guard[0]
            except KeyError:
                pass

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
        token = [None]
        guard = self._guard
        try:
            owner = guard.setdefault(0, token)
            if owner is not token:
                self._refuse(owner, "begin()")
            handle = self._handle
            if handle is None:
                self._live()  # raises
            b_arg = self._in_place(b)
            if b_arg is None:
                b_arg = self._argument(self._vector(b, "b"))
            return self._request_or_done(self._begin_rc(handle, b_arg, self._request_arg, self._n_arg))
        finally:
            try:
                if guard[0] is token:
                    del guard[0]
            except KeyError:
                pass

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
        token = [None]
        guard = self._guard
        try:
            owner = guard.setdefault(0, token)
            if owner is not token:
                self._refuse(owner, "resume()")
            handle = self._handle
            if handle is None:
                self._live()  # raises
            if product is self._request_view:
                product_arg = self._request_arg
            else:
                product_arg = self._in_place(product)
                if product_arg is None:
                    product_arg = self._argument(self._product(product))
            return self._request_or_done(self._resume_rc(handle, product_arg, self._request_arg, self._n_arg))
        finally:
            try:
                if guard[0] is token:
                    del guard[0]
            except KeyError:
                pass

    def _in_place(self, a):
        """The ctypes argument passing ``a`` itself, when it is already a C-contiguous,
        aligned array of this estimator's dtype and shape; None otherwise (convert it)."""
        if type(a) is _ndarray and a.dtype is self._dtype and a.shape == self._shape and a.flags.aligned:
            try:
                return _byref(self._from_buffer(a))
            except TypeError:  # a read-only buffer (passed by address), or not contiguous
                return self._argument(a) if a.flags.c_contiguous else None
        return None

    def _request_or_done(self, status):
        """begin/resume's result for a library status: the request view, or None when the
        step is complete (errors raise). Called under the guard."""
        if status == _NEED_PRODUCT:
            return self._request_view
        if status < 0:
            self._check(status)
        self._stepped = self._info_pending = True
        return None

    def cancel(self) -> None:
        """Abandons a reverse-communication step in progress (no effect if none)."""
        self._call(_cancel, what="cancel()")

    def reset(self) -> None:
        """Back to the state after creation: v = v0 (or 0), counters and schedules restarted."""
        token = [None]
        guard = self._guard
        try:
            owner = guard.setdefault(0, token)
            if owner is not token:
                self._refuse(owner, "reset()")
            self._check(lib.lancbio_estimator_reset(self._live()))
            self._info = None
            self._info_pending = self._stepped = False
            if self._v0 is not None:
                self._check(self._set_v_fn(self._handle, self._from_buffer(self._v0), self._n))
        finally:
            try:
                if guard[0] is token:
                    del guard[0]
            except KeyError:
                pass

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
        return self.read_v(_empty(self._n, dtype=self._dtype))

    def read_v(self, out: np.ndarray) -> np.ndarray:
        """Writes the committed estimate into ``out`` and returns it: ``v`` without an
        allocation, for hosts that keep their own buffer (lancbio.torch shares one with a
        tensor).

        Args:
            out: a writable numpy array of shape (n,) and exactly the estimator's dtype,
                C-contiguous and aligned (TypeError or ValueError otherwise, and ``out`` is
                left as it was).
        """
        out = self._vector(out, "out")
        if not out.flags.writeable:
            raise ValueError("out must be writable")
        self._call(self._get_v_fn, self._from_buffer(out), self._n, what="read_v()")
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

    def __repr__(self) -> str:
        if self._handle is None:
            state = "closed"
        else:
            try:
                state = f"hvp_count={self.hvp_count}"
            except InvalidStateError:  # another thread is using it
                state = "in use"
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
        self._call(lib.lancbio_estimator_properties, ctypes.byref(n), ctypes.byref(method), ctypes.byref(precision),
                   what="_restore()")
        if (n.value, method.value, precision.value) != (self._n, self._method, _PRECISIONS[self._dtype][0]):
            self.close()
            raise ValueError(f"the checkpoint holds another estimator (n={n.value}, method {method.value}, precision "
                             f"{precision.value}) than this {type(self).__name__}(n={self._n}, dtype={self._dtype.name})")
        self._info_pending = True
        self._stepped = bool(state["has_info"])

    def __reduce_ex__(self, protocol):
        refuse_copy(self)
        return _unpickle, (type(self), _checkpoint.save(self, lib.lancbio_estimator_save), self._python_state())

    def __copy__(self):
        refuse_copy(self)
        return _unpickle(type(self), _checkpoint.save(self, lib.lancbio_estimator_save), self._python_state())

    def __deepcopy__(self, memo):
        refuse_copy(self)
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


def _fail_collectively(handle, resume, n: int, dtype, n_arg) -> None:
    """Resumes a step with NaN products until it fails (at its next reduction)."""
    nan = np.full(n, np.nan, dtype=dtype)
    request = np.empty(n, dtype=dtype)
    nan_arg = ctypes.c_void_p(nan.ctypes.data)
    request_arg = ctypes.c_void_p(request.ctypes.data)
    while resume(handle, nan_arg, request_arg, n_arg) == _NEED_PRODUCT:
        pass



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
        comm: a communicator (mpi4py's, or anything with ``Allreduce``) whose processes
            each hold a slice of every vector: n, b, v0, the operator's argument and
            result and the estimate are this process's slice (lengths may differ). Every
            process makes the same calls and holds the same scalars (``info``) bitwise
            (docs/algorithms.md section 13). Default None: one process.
    """

    _method = _ffi.METHOD_LANCZOS

    def __init__(self, n, m0=None, m_max=None, growth=None, grow_every=None, variant=None,
                 reorthogonalize=None, orthogonality_tol=None, exact_residual=None, v0=None, dtype=np.float64,
                 comm=None):
        super().__init__(n, dict(m0=m0, m_max=m_max, growth=growth, grow_every=grow_every, variant=variant,
                                 reorthogonalize=reorthogonalize, orthogonality_tol=orthogonality_tol,
                                 exact_residual=exact_residual), v0, dtype, comm)


class SubBiO(_Estimator):
    """SubBiO: Galerkin solve on span{b, v - theta0 A v}, 3 products per step
    (docs/algorithms.md section 4).

    Args:
        n: dimension.
        theta0: > 0, in units of 1 / eigenvalue of A (the paper uses 1 / kappa).
        v0: initial estimate, re-applied by reset; default 0.
        dtype: numpy.float64 or numpy.float32.
        comm: a communicator (mpi4py's, or anything with ``Allreduce``) whose processes
            each hold a slice of every vector: n, b, v0, the operator's argument and
            result and the estimate are this process's slice (lengths may differ). Every
            process makes the same calls and holds the same scalars (``info``) bitwise
            (docs/algorithms.md section 13). Default None: one process.
    """

    _method = _ffi.METHOD_SUBBIO

    def __init__(self, n, theta0, v0=None, dtype=np.float64, comm=None):
        super().__init__(n, dict(theta0=theta0), v0, dtype, comm)


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
        comm: a communicator (mpi4py's, or anything with ``Allreduce``) whose processes
            each hold a slice of every vector: n, b, v0, the operator's argument and
            result and the estimate are this process's slice (lengths may differ). Every
            process makes the same calls and holds the same scalars (``info``) bitwise
            (docs/algorithms.md section 13). Default None: one process.
    """

    _method = _ffi.METHOD_CG

    def __init__(self, n, maxiter, tol=None, v0=None, dtype=np.float64, comm=None):
        super().__init__(n, dict(maxiter=maxiter, tol=tol), v0, dtype, comm)


class MINRES(_Estimator):
    """MINRES warm-started from the last estimate, for symmetric indefinite A.

    Args:
        n: dimension.
        maxiter: iterations per step (at most maxiter + 1 products).
        tol: relative tolerance on ||A v - b|| / ||b||; library default (0).
        v0: initial estimate, re-applied by reset; default 0.
        dtype: numpy.float64 or numpy.float32.
        comm: a communicator (mpi4py's, or anything with ``Allreduce``) whose processes
            each hold a slice of every vector: n, b, v0, the operator's argument and
            result and the estimate are this process's slice (lengths may differ). Every
            process makes the same calls and holds the same scalars (``info``) bitwise
            (docs/algorithms.md section 13). Default None: one process.
    """

    _method = _ffi.METHOD_MINRES

    def __init__(self, n, maxiter, tol=None, v0=None, dtype=np.float64, comm=None):
        super().__init__(n, dict(maxiter=maxiter, tol=tol), v0, dtype, comm)


class GD(_Estimator):
    """Gradient steps v <- v - eta (A v - b), ``steps`` per step from the last estimate
    (AmIGO-GD; SOBA is steps=1). One product per gradient step.

    Args:
        n: dimension.
        eta: step size > 0, below 2 / lambda_max(A) to converge (units 1 / eigenvalue).
        steps: gradient steps per step (default 1, SOBA's; None: the library's, AmIGO-GD's Q).
        v0: initial estimate, re-applied by reset; default 0.
        dtype: numpy.float64 or numpy.float32.
        comm: a communicator (mpi4py's, or anything with ``Allreduce``) whose processes
            each hold a slice of every vector: n, b, v0, the operator's argument and
            result and the estimate are this process's slice (lengths may differ). Every
            process makes the same calls and holds the same scalars (``info``) bitwise
            (docs/algorithms.md section 13). Default None: one process.
    """

    _method = _ffi.METHOD_GD

    def __init__(self, n, eta, steps=1, v0=None, dtype=np.float64, comm=None):
        super().__init__(n, dict(eta=eta, steps=steps), v0, dtype, comm)


class Neumann(_Estimator):
    """Truncated Neumann series from zero, v = eta sum_{i=0..terms} (I - eta A)^i b
    (stocBiO); ``terms`` products per step, no warm start.

    Args:
        n: dimension.
        eta: step size > 0, below 2 / lambda_max(A) to converge.
        terms: number of products.
        dtype: numpy.float64 or numpy.float32.
        comm: a communicator (mpi4py's, or anything with ``Allreduce``) whose processes
            each hold a slice of every vector: n, b, v0, the operator's argument and
            result and the estimate are this process's slice (lengths may differ). Every
            process makes the same calls and holds the same scalars (``info``) bitwise
            (docs/algorithms.md section 13). Default None: one process.
    """

    _method = _ffi.METHOD_NEUMANN

    def __init__(self, n, eta, terms, dtype=np.float64, comm=None):
        super().__init__(n, dict(eta=eta, terms=terms), None, dtype, comm)


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
        comm: a communicator (mpi4py's, or anything with ``Allreduce``) whose processes
            each hold a slice of every vector: n, b, v0, the operator's argument and
            result and the estimate are this process's slice (lengths may differ). Every
            process makes the same calls and holds the same scalars (``info``) bitwise
            (docs/algorithms.md section 13). Default None: one process.
    """

    _method = _ffi.METHOD_RANDOM_NEUMANN

    def __init__(self, n, eta, max_terms, seed=None, dtype=np.float64, comm=None):
        super().__init__(n, dict(eta=eta, max_terms=max_terms, seed=seed), None, dtype, comm)


#: Every estimator class by the name the C and Swift layers give its method
#: (``lancbio.solve`` and ``lancbio.torch.HyperGradient`` take these names).
BY_NAME = {
    "lanczos": DynamicLanczos,
    "subbio": SubBiO,
    "cg": CG,
    "minres": MINRES,
    "gd": GD,
    "neumann": Neumann,
    "random-neumann": RandomNeumann,
}
