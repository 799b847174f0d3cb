"""Bad input always raises the documented exception and never crashes the process;
every negative status maps to its exception class."""

import ctypes

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lancbio
from conftest import FACTORIES
from lancbio import _ffi, _handle, errors

N = 4

# -- status-to-exception mapping ------------------------------------------------------------

EXPECTED = {
    -1: (lancbio.InvalidArgumentError, ValueError),
    -2: (lancbio.NullPointerError, ValueError),
    -3: (lancbio.NonFiniteInputError, ValueError),
    -4: (lancbio.NonFiniteProductError, ValueError),
    -5: (lancbio.NonFiniteResultError, OverflowError),
    -6: (lancbio.CallbackError, RuntimeError),
    -7: (lancbio.WrongPrecisionError, TypeError),
    -8: (lancbio.InvalidStateError, RuntimeError),
    -9: (lancbio.InvalidHandleError, RuntimeError),
    -10: (lancbio.OutOfMemoryError, MemoryError),
    -11: (lancbio.BufferTooSmallError, ValueError),
    -12: (lancbio.InvalidCheckpointError, ValueError),
}


@pytest.mark.parametrize("status", sorted(EXPECTED))
def test_every_negative_status_maps_to_its_exception_class(status):
    cls, builtin = EXPECTED[status]
    assert errors.error_class(status) is cls
    assert issubclass(cls, lancbio.LancbioError) and issubclass(cls, builtin)
    with pytest.raises(cls) as excinfo:
        _handle.check(status)
    assert excinfo.value.status == status
    assert excinfo.value.message == _handle.status_string(status)


def test_non_negative_statuses_pass_and_unknown_negative_gives_base_class():
    for status in (0, 1, 2, 3, 4, 100):
        assert _handle.check(status) == status
    with pytest.raises(lancbio.LancbioError):
        _handle.check(-1000)


def test_check_reports_the_handles_last_error_message():
    est = lancbio.GD(N, eta=0.1)
    handle = est._handle
    product, request = np.zeros(N), np.zeros(N)
    status = _ffi.lib.lancbio_estimator_resume_f64(handle, f64_pointer(product), f64_pointer(request), N)
    with pytest.raises(lancbio.InvalidStateError, match="no step is in progress") as excinfo:
        est._check(status)
    assert excinfo.value.status == -8
    est.close()


def f64_pointer(arr):
    return arr.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


def test_library_errors_surface_as_their_classes():
    """Each reachable error status, produced by the real library."""
    b = np.ones(N)
    # -1: an option out of range
    with pytest.raises(lancbio.InvalidArgumentError, match="m_max"):
        lancbio.DynamicLanczos(N, m_max=0)
    # -2: NULL info pointer
    with lancbio.GD(N, eta=0.1) as est:
        with pytest.raises(lancbio.NullPointerError):
            est._check(_ffi.lib.lancbio_estimator_info(est._handle, None))
    # -3: NaN in b
    with lancbio.GD(N, eta=0.1) as est:
        with pytest.raises(lancbio.NonFiniteInputError, match="NaN"):
            est.step(np.eye(N), np.full(N, np.nan))
    # -4: NaN product
    with lancbio.GD(N, eta=0.1) as est:
        with pytest.raises(lancbio.NonFiniteProductError):
            est.step(lambda x: np.full(N, np.nan), b)
    # -5: the estimate overflows: v = 0 - eta (A 0 - b) with eta b beyond float64
    with lancbio.GD(N, eta=1e10) as est:
        with pytest.raises(lancbio.NonFiniteResultError):
            est.step(np.eye(N), np.full(N, 1e300))
    # -6: a C callback returning non-zero, outside the Python trampoline
    with lancbio.GD(N, eta=0.1) as est:
        refuse = _ffi.HVP_CALLBACK(lambda p_in, p_out, n, data: 7)
        v = np.empty(N)
        status = _ffi.lib.lancbio_estimator_step_f64(est._handle, refuse, None, f64_pointer(b), f64_pointer(v), N, None)
        assert _ffi.lib.lancbio_estimator_callback_status(est._handle) == 7
        with pytest.raises(lancbio.CallbackError, match="returned 7"):
            est._check(status)
    # -7: a float32 function on a float64 handle
    with lancbio.GD(N, eta=0.1) as est:
        out = np.empty(N, dtype=np.float32)
        status = _ffi.lib.lancbio_estimator_get_v_f32(est._handle, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), N)
        with pytest.raises(lancbio.WrongPrecisionError, match="float64"):
            est._check(status)
    # -8: resume with no step in progress
    with lancbio.GD(N, eta=0.1) as est:
        with pytest.raises(lancbio.InvalidStateError):
            est.resume(np.ones(N))
    # -9: a destroyed handle
    est = lancbio.GD(N, eta=0.1)
    handle = est._handle
    est.close()
    with pytest.raises(lancbio.InvalidHandleError):
        est._check(_ffi.lib.lancbio_estimator_reset(handle))


def test_error_with_context_and_a_bilevel_handles_check_map_statuses_like_check():
    err = _handle.error(-1, None, "rejected options")
    assert type(err) is lancbio.InvalidArgumentError and err.status == -1
    assert str(err) == f"rejected options: {_handle.status_string(-1)}"
    err = _handle.error(-1, b"m0 is too large", "DynamicLanczos(n=4) was rejected")
    assert str(err) == f"DynamicLanczos(n=4) was rejected: m0 is too large ({_handle.status_string(-1)})"
    from lancbio.problems import Synthetic

    opt = lancbio.Bilevel(Synthetic(n=4, seed=0), "soba", lr_x=0.1, lr_y=0.1)
    assert opt._check(0) == 0
    opt.close()
    with pytest.raises(lancbio.InvalidHandleError) as excinfo:
        opt._check(_ffi.lib.lancbio_bilevel_reset(None))
    assert excinfo.value.status == -9


def test_errors_pickle_with_status_and_message():
    import pickle

    err = pickle.loads(pickle.dumps(lancbio.NonFiniteInputError("b has NaN", -3)))
    assert type(err) is lancbio.NonFiniteInputError and err.status == -3 and err.message == "b has NaN"


# -- arrays ------------------------------------------------------------------------------


def bad_vectors(dtype):
    other = np.float32 if dtype == np.float64 else np.float64
    good = np.ones(N, dtype=dtype)
    misaligned = np.frombuffer(np.zeros(N * good.itemsize + 1, np.uint8).data, dtype=np.uint8)[1:].view(dtype)
    return [
        (list(good), TypeError, "numpy.ndarray"),
        (tuple(good), TypeError, "numpy.ndarray"),
        (3.0, TypeError, "numpy.ndarray"),
        (good.astype(other), TypeError, "ascontiguousarray"),
        (np.ones(N, dtype=np.int64), TypeError, "ascontiguousarray"),
        (np.ones(N, dtype=np.complex128), TypeError, "dtype"),
        (good.astype(good.dtype.newbyteorder()), TypeError, "dtype"),
        (np.ones(N + 1, dtype=dtype), ValueError, rf"shape \({N},\)"),
        (np.ones(N - 1, dtype=dtype), ValueError, rf"shape \({N},\)"),
        (np.ones((N, 1), dtype=dtype), ValueError, rf"shape \({N},\)"),
        (np.ones((1, N), dtype=dtype), ValueError, rf"shape \({N},\)"),
        (np.array(1.0, dtype=dtype), ValueError, rf"shape \({N},\)"),
        (np.ones(2 * N, dtype=dtype)[::2], ValueError, "C-contiguous"),
        (misaligned, ValueError, "aligned"),
    ]


@pytest.mark.parametrize("index", range(14))
def test_bad_b_raises_documented_error_and_leaves_estimator_usable(method, dtype, index):
    value, exc, pattern = bad_vectors(dtype)[index]
    with FACTORIES[method](N, dtype=dtype) as est:
        with pytest.raises(exc, match=pattern):
            est.step(np.eye(N), value)
        with pytest.raises(exc, match=pattern):
            est.begin(value)
        assert est.info is None
        assert np.all(np.isfinite(est.step(np.eye(N), np.ones(N, dtype=dtype))))


@pytest.mark.parametrize("index", range(14))
def test_bad_v0_raises_documented_error(dtype, index):
    value, exc, pattern = bad_vectors(dtype)[index]
    with pytest.raises(exc, match=pattern):
        lancbio.CG(N, maxiter=2, v0=value, dtype=dtype)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_b_or_v0_raises_non_finite_input(method, value):
    b = np.ones(N)
    b[1] = value
    with FACTORIES[method](N) as est:
        with pytest.raises(lancbio.NonFiniteInputError):
            est.step(np.eye(N), b)
        with pytest.raises(lancbio.NonFiniteInputError):
            est.begin(b)
    with pytest.raises(lancbio.NonFiniteInputError):
        lancbio.GD(N, eta=0.1, v0=b)


def test_error_message_suggests_the_conversion():
    with lancbio.GD(N, eta=0.1) as est:
        with pytest.raises(TypeError, match=r"numpy\.ascontiguousarray\(b, dtype=numpy\.float64\)"):
            est.step(np.eye(N), [1.0] * N)


# -- operators ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "result, exc",
    [
        (lambda x: np.ones(N + 1), ValueError),
        (lambda x: np.ones((N, N)), ValueError),
        (lambda x: np.float64(1.0), ValueError),
        (lambda x: None, TypeError),
        (lambda x: "abcd", TypeError),
        (lambda x: np.ones(N, dtype=complex), TypeError),
        (lambda x: np.ones(N, dtype=bool), TypeError),
        (lambda x: [object()] * N, TypeError),
        (lambda x: np.full(N, np.nan), lancbio.NonFiniteProductError),
        (lambda x: 1 / 0, ZeroDivisionError),
    ],
)
def test_bad_operator_results_raise_documented_errors(method, dtype, result, exc):
    with FACTORIES[method](N, dtype=dtype) as est:
        with pytest.raises(exc):
            est.step(result, np.ones(N, dtype=dtype))
        assert est.info is None
        assert np.all(np.isfinite(est.step(np.eye(N), np.ones(N, dtype=dtype))))


def test_bad_products_in_resume_keep_the_step_resumable():
    with lancbio.CG(N, maxiter=2) as est, lancbio.CG(N, maxiter=2) as ref:
        x = est.begin(np.ones(N))
        with pytest.raises(ValueError, match="shape"):
            est.resume(np.ones(N + 1))
        with pytest.raises(TypeError):
            est.resume(None)
        while x is not None:
            x = est.resume(2 * x)
        assert np.array_equal(est.v, ref.step(lambda y: 2 * y, np.ones(N)))
        x = est.begin(np.ones(N))
        with pytest.raises(lancbio.NonFiniteProductError):
            est.resume(np.full(N, np.nan))
        with pytest.raises(lancbio.InvalidStateError):  # the failed resume abandoned the step
            est.resume(np.ones(N))


def test_step_during_a_reverse_step_raises_invalid_state():
    with lancbio.CG(N, maxiter=2) as est:
        est.begin(np.ones(N))
        with pytest.raises(lancbio.InvalidStateError):
            est.step(np.eye(N), np.ones(N))
        with pytest.raises(lancbio.InvalidStateError):
            est.begin(np.ones(N))
        est.cancel()
        est.step(np.eye(N), np.ones(N))


def test_non_operator_raises_type_error():
    with lancbio.GD(N, eta=0.1) as est:
        with pytest.raises(TypeError, match="callable"):
            est.step(42, np.ones(N))
        with pytest.raises(ValueError, match="4 x 4"):
            est.step(np.eye(N + 1), np.ones(N))


# -- options ------------------------------------------------------------------------------

BAD_OPTIONS = [
    (lambda: lancbio.DynamicLanczos(N, m_max=0), lancbio.InvalidArgumentError),
    (lambda: lancbio.DynamicLanczos(N, m_max=4097), lancbio.InvalidArgumentError),
    (lambda: lancbio.DynamicLanczos(N, m0=0), lancbio.InvalidArgumentError),
    (lambda: lancbio.DynamicLanczos(N, m0=5, m_max=4), lancbio.InvalidArgumentError),
    (lambda: lancbio.DynamicLanczos(N, growth=0.5), lancbio.InvalidArgumentError),
    (lambda: lancbio.DynamicLanczos(N, growth=float("nan")), lancbio.InvalidArgumentError),
    (lambda: lancbio.DynamicLanczos(N, growth=float("inf")), lancbio.InvalidArgumentError),
    (lambda: lancbio.DynamicLanczos(N, grow_every=0), lancbio.InvalidArgumentError),
    (lambda: lancbio.DynamicLanczos(N, variant="other"), ValueError),
    (lambda: lancbio.DynamicLanczos(N, m_max=2**70), lancbio.InvalidArgumentError),
    (lambda: lancbio.DynamicLanczos(N, m_max=2.5), TypeError),
    (lambda: lancbio.DynamicLanczos(N, growth="1.1"), TypeError),
    (lambda: lancbio.SubBiO(N, theta0=0.0), lancbio.InvalidArgumentError),
    (lambda: lancbio.SubBiO(N, theta0=-1.0), lancbio.InvalidArgumentError),
    (lambda: lancbio.CG(N, maxiter=-1), lancbio.InvalidArgumentError),
    (lambda: lancbio.CG(N, maxiter=3, tol=-1e-3), lancbio.InvalidArgumentError),
    (lambda: lancbio.MINRES(N, maxiter=3, tol=float("nan")), lancbio.InvalidArgumentError),
    (lambda: lancbio.GD(N, eta=0.0), lancbio.InvalidArgumentError),
    (lambda: lancbio.GD(N, eta=-0.1), lancbio.InvalidArgumentError),
    (lambda: lancbio.GD(N, eta=0.1, steps=0), lancbio.InvalidArgumentError),
    (lambda: lancbio.Neumann(N, eta=0.0, terms=3), lancbio.InvalidArgumentError),
    (lambda: lancbio.Neumann(N, eta=0.1, terms=-1), lancbio.InvalidArgumentError),
    (lambda: lancbio.RandomNeumann(N, eta=0.1, max_terms=0), lancbio.InvalidArgumentError),
    (lambda: lancbio.RandomNeumann(N, eta=0.1, max_terms=3, seed=-1), lancbio.InvalidArgumentError),
    (lambda: lancbio.RandomNeumann(N, eta=0.1, max_terms=3, seed=2**64), lancbio.InvalidArgumentError),
    (lambda: lancbio.GD(0, eta=0.1), lancbio.InvalidArgumentError),
    (lambda: lancbio.GD(-3, eta=0.1), lancbio.InvalidArgumentError),
    (lambda: lancbio.GD(2**62, eta=0.1), lancbio.InvalidArgumentError),
    (lambda: lancbio.GD(N, eta=0.1, dtype=np.int32), TypeError),
    (lambda: lancbio.GD(N, eta=0.1, dtype="float16"), TypeError),
]


@pytest.mark.parametrize("index", range(len(BAD_OPTIONS)))
def test_bad_options_raise_documented_errors(index):
    make, exc = BAD_OPTIONS[index]
    with pytest.raises(exc):
        make()


def test_rejected_options_are_named_in_the_message():
    # The call as Python saw it (the library's defaults filled in), then the library's reason.
    with pytest.raises(lancbio.InvalidArgumentError, match=r"m_max=0.*was rejected: .*m_max.*4096.*invalid argument"):
        lancbio.DynamicLanczos(N, m_max=0)


def creation_message(make) -> str:
    """The message of the InvalidArgumentError that ``make()`` raises, checked to end with
    the library's own text for the failed create (lancbio_last_error)."""
    with pytest.raises(lancbio.InvalidArgumentError) as excinfo:
        make()
    library = _ffi.lib.lancbio_last_error().decode()
    assert library and library in excinfo.value.message
    assert excinfo.value.message.endswith(f"{library} ({_handle.status_string(-1)})")
    return library


def test_out_of_range_options_raise_with_the_librarys_message():
    # The ranges are the library's: Python passes the values on and reports its verdict.
    message = creation_message(lambda: lancbio.DynamicLanczos(10, m0=5, m_max=3))
    assert "m0" in message and "m_max" in message
    message = creation_message(lambda: lancbio.CG(10, maxiter=-1))
    assert "-1" in message
    message = creation_message(lambda: lancbio.GD(N, eta=0.0))
    assert "step_size" in message


def test_an_estimator_too_large_to_allocate_is_refused_with_the_librarys_reason():
    message = creation_message(lambda: lancbio.DynamicLanczos(2**36, m_max=4096))
    assert "allocate" in message or "memory" in message


def test_options_left_at_none_take_the_librarys_defaults():
    # What lancbio_estimator_options_init writes, read back by the estimator.
    from lancbio import _options

    defaults = _options.read(_options.estimator_options(_ffi.METHOD_LANCZOS), _options.ESTIMATOR,
                             ["m0", "m_max", "growth", "grow_every", "variant", "reorthogonalize",
                              "orthogonality_tol", "exact_residual"])
    with lancbio.DynamicLanczos(N) as est:
        assert est._settings == defaults
        assert "m_max=%d" % defaults["m_max"] in repr(est)
    with lancbio.DynamicLanczos(N, m_max=None, m0=None) as est:
        assert est._settings == defaults
    with lancbio.CG(N, maxiter=3) as est:
        assert est._settings == dict(maxiter=3, tol=_options.estimator_options(_ffi.METHOD_CG).tolerance)


@settings(max_examples=60, deadline=None)
@given(
    b=st.one_of(
        hnp.arrays(
            dtype=st.sampled_from([np.float64, np.float32, np.int32, np.float16, np.complex64, np.bool_]),
            shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=6),
        ),
        st.lists(st.floats(allow_nan=True), max_size=6),
        st.none(),
        st.text(max_size=4),
    ),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_arbitrary_b_either_works_or_raises_a_documented_exception(b, dtype):
    with lancbio.CG(N, maxiter=2, dtype=dtype) as est:
        try:
            v = est.step(np.eye(N), b)
        except (TypeError, ValueError, lancbio.LancbioError):
            assert est.info is None
        else:
            assert v.shape == (N,) and np.all(np.isfinite(v))


@settings(max_examples=60, deadline=None)
@given(
    product=hnp.arrays(
        dtype=st.sampled_from([np.float64, np.float32, np.int64, np.uint8, np.complex128, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=6),
    ),
    method=st.sampled_from(sorted(FACTORIES)),
)
def test_arbitrary_operator_results_either_work_or_raise_documented_exceptions(product, method):
    with FACTORIES[method](N) as est:
        try:
            v = est.step(lambda x: product, np.ones(N))
        except (TypeError, ValueError, OverflowError, lancbio.LancbioError):
            assert est.info is None
        else:
            assert product.shape == (N,) and product.dtype.kind in "fiu"
            assert np.all(np.isfinite(v))


def test_subnormal_but_finite_b_is_accepted(method):
    b = np.array([1e-310, 0.0, 0.0, 0.0])
    with FACTORIES[method](N) as est:
        v = est.step(np.eye(N), b)
    assert np.all(np.isfinite(v))


# -- numpy.ma masked arrays ------------------------------------------------------------------


def _masked(values):
    """A masked array whose masked entry holds a finite value that is not data."""
    return np.ma.masked_array(values, mask=[i == 1 for i in range(len(values))])


def test_masked_b_v0_products_and_matrices_are_refused_naming_filled_and_change_nothing(method):
    n = N
    A, b = np.diag(np.arange(1.0, n + 1)), np.linspace(1.0, 2.0, n)
    with FACTORIES[method](n) as est, FACTORIES[method](n) as twin:
        est.step(A, b)
        twin.step(A, b)
        attempts = {
            "step b": lambda: est.step(A, _masked(b)),
            "begin b": lambda: est.begin(_masked(b)),
            "operator result": lambda: est.step(lambda x: _masked(A @ x), b),
            "matrix": lambda: est.step(np.ma.masked_array(A, mask=A == 0), b),
        }
        for what, attempt in attempts.items():
            with pytest.raises(TypeError, match=r"masked array.*\.filled\(") as excinfo:
                attempt()
            assert "masked" in str(excinfo.value), what
            assert np.array_equal(est.v, twin.v) and est.info == twin.info, what
        x = est.begin(b)
        with pytest.raises(TypeError, match=r"\.filled\("):
            est.resume(_masked(A @ x))
        while x is not None:  # the refused product left the step resumable
            x = est.resume(A @ x)
        assert np.array_equal(est.v, twin.step(A, b))
    if method not in ("neumann", "random_neumann"):
        with pytest.raises(TypeError, match=r"v0 is a numpy.ma masked array.*v0\.filled\("):
            FACTORIES[method](n, v0=_masked(b))


def test_masked_starting_points_of_an_optimizer_and_a_solve_are_refused_naming_filled():
    from test_bilevel import DX, DY, X0, make

    y0 = np.zeros(DY)
    for name, kwargs in {"x0": dict(x0=_masked(X0)), "y0": dict(y0=_masked(y0)),
                         "v0": dict(v0=_masked(np.ones(DY)))}.items():
        with pytest.raises(TypeError, match=rf"{name} is a numpy.ma masked array.*{name}\.filled\("):
            make("amigo-cg", **kwargs)
    opt, twin = make("amigo-cg"), make("amigo-cg")
    opt.step()
    twin.step()
    with pytest.raises(TypeError, match=r"x0\.filled\("):
        opt.reset(x0=_masked(np.ones(DX)))
    assert opt.step() == twin.step()
    b = np.linspace(1.0, 2.0, N)
    for name, kwargs in {"b": dict(b=_masked(b)), "x0": dict(b=b, x0=_masked(b))}.items():
        with pytest.raises(TypeError, match=rf"{name} is a numpy.ma masked array.*{name}\.filled\("):
            lancbio.solve(np.eye(N), **kwargs)
