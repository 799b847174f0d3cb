"""Estimator results against numpy/scipy references and the formulas of docs/algorithms.md,
and the wrapper's contracts: reverse communication, exceptions from operators, lifetime."""

import gc
import os
import subprocess
import sys
import textwrap
import traceback
import warnings
import weakref

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg as sla
from hypothesis import given, settings
from hypothesis import strategies as st

import lancbio
from conftest import FACTORIES, indefinite_matrix, spd_matrix


def rel(a, b):
    return np.linalg.norm(np.asarray(a, dtype=np.float64) - b) / max(np.linalg.norm(b), 1e-300)


# -- references ------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 5, 8])
def test_cg_step_equals_scipy_cg_with_same_maxiter_and_x0(rng, k):
    n = 30
    A = spd_matrix(rng, n, cond=10.0)
    b, x0 = rng.standard_normal(n), rng.standard_normal(n)
    with lancbio.CG(n, maxiter=k, v0=x0) as est:
        v = est.step(A, b)
        assert est.info.iterations == k and est.info.products == k + 1
        assert est.info.outcome == "budget_reached"
    ref, _ = sla.cg(A, b, x0=x0, rtol=0.0, atol=0.0, maxiter=k)
    assert rel(v, ref) < 1e-10


def test_cg_second_step_warm_starts_from_the_first(rng):
    n, k = 30, 4
    A = spd_matrix(rng, n, cond=10.0)
    b1, b2 = rng.standard_normal(n), rng.standard_normal(n)
    with lancbio.CG(n, maxiter=k) as est:
        v1 = est.step(A, b1)
        v2 = est.step(A, b2)
    ref1, _ = sla.cg(A, b1, x0=np.zeros(n), rtol=0.0, atol=0.0, maxiter=k)
    ref2, _ = sla.cg(A, b2, x0=ref1, rtol=0.0, atol=0.0, maxiter=k)
    assert rel(v1, ref1) < 1e-10 and rel(v2, ref2) < 1e-10


def test_cg_tolerance_stops_early_with_success(rng):
    n = 20
    A = spd_matrix(rng, n, cond=5.0)
    b = rng.standard_normal(n)
    with lancbio.CG(n, maxiter=200, tol=1e-10) as est:
        v = est.step(A, b)
        assert est.info.outcome == "success" and est.info.iterations < 200
    assert np.linalg.norm(A @ v - b) <= 1e-9 * np.linalg.norm(b)


@pytest.mark.parametrize("k", [1, 3, 6, 10])
def test_minres_step_equals_scipy_minres_on_indefinite_matrix(rng, k):
    n = 30
    A = indefinite_matrix(rng, n, scale=5.0)
    b, x0 = rng.standard_normal(n), rng.standard_normal(n)
    with lancbio.MINRES(n, maxiter=k, v0=x0) as est:
        v = est.step(A, b)
        assert est.info.iterations == k
    ref, _ = sla.minres(A, b, x0=x0, rtol=0.0, maxiter=k)
    assert rel(v, ref) < 1e-10


def test_minres_solves_indefinite_system_to_tolerance(rng):
    n = 25
    A = indefinite_matrix(rng, n, scale=10.0)
    b = rng.standard_normal(n)
    with lancbio.MINRES(n, maxiter=500, tol=1e-11) as est:
        v = est.step(A, b)
    assert rel(v, np.linalg.solve(A, b)) < 1e-8


@pytest.mark.parametrize("variant", ["residual", "plain"])
def test_lanczos_with_full_period_and_reorthogonalization_equals_dense_solve_after_n_steps(rng, variant):
    n = 12
    A = spd_matrix(rng, n, cond=50.0)
    b, v0 = rng.standard_normal(n), rng.standard_normal(n)
    with lancbio.DynamicLanczos(n, m0=n, m_max=n, reorthogonalize=True, variant=variant,
                                v0=v0 if variant == "residual" else None) as est:
        for _ in range(n):
            v = est.step(A, b)
        assert est.dim == n and est.period == n and est.restarts == 1
    assert rel(v, np.linalg.solve(A, b)) < 1e-9


def test_lanczos_counts_one_product_per_step_plus_one_per_restart(rng):
    n, m, steps = 10, 3, 7
    A = spd_matrix(rng, n)
    b = rng.standard_normal(n)
    with lancbio.DynamicLanczos(n, m0=m, m_max=m, growth=1.0) as est:
        for k in range(1, steps + 1):
            est.step(A, b)
            restarts = -(-k // m)
            assert est.restarts == restarts
            assert est.info.restarted == ((k - 1) % m == 0)
            assert est.dim == (k - 1) % m + 1
            assert est.hvp_count == k + restarts
            assert est.info.residual_kind == "estimate"


def test_lanczos_residual_estimate_is_true_residual_for_fixed_operator(rng):
    n = 15
    A = spd_matrix(rng, n, cond=20.0)
    b = rng.standard_normal(n)
    with lancbio.DynamicLanczos(n, m0=n, m_max=n, reorthogonalize=True) as est:
        for _ in range(5):
            v = est.step(A, b)
            true = np.linalg.norm(A @ v - b)
            assert abs(est.info.residual - true) <= 1e-8 * np.linalg.norm(b)


def test_lanczos_period_grows_by_schedule(rng):
    n = 30
    A = spd_matrix(rng, n)
    b = rng.standard_normal(n)
    periods = []
    with lancbio.DynamicLanczos(n, m0=1, m_max=5, growth=2.0, grow_every=3) as est:
        for _ in range(12):
            est.step(A, b)
            periods.append(est.period)
    # k = 4, 7, 10: m <- min(ceil(2 m), 5)
    assert periods == [1, 1, 1, 2, 2, 2, 4, 4, 4, 5, 5, 5]


def test_gd_matches_gradient_step_formula(rng):
    n, eta, s = 8, 0.15, 3
    A = spd_matrix(rng, n)
    v0 = rng.standard_normal(n)
    expected = v0.copy()
    with lancbio.GD(n, eta=eta, steps=s, v0=v0) as est:
        for _ in range(3):
            b = rng.standard_normal(n)
            v = est.step(A, b)
            for _ in range(s):
                expected = expected - eta * (A @ expected - b)
            assert rel(v, expected) < 1e-13
            assert est.info.products == s and est.info.residual_kind == "previous_iterate"


def test_neumann_matches_truncated_series_formula(rng):
    n, eta, terms = 8, 0.1, 4
    A = spd_matrix(rng, n)
    with lancbio.Neumann(n, eta=eta, terms=terms) as est:
        for _ in range(2):
            b = rng.standard_normal(n)
            v = est.step(A, b)
            power, total = b.copy(), b.copy()
            for _ in range(terms):
                power = power - eta * (A @ power)
                total += power
            assert rel(v, eta * total) < 1e-13
            assert est.info.products == terms and est.info.residual_kind == "unavailable"


def random_neumann_formula(A, b, eta, p, q):
    v = b.copy()
    for _ in range(p):
        v = v - eta * (A @ v)
    v = eta * v
    for _ in range(q):
        v = v - eta * (A @ v - b)
    return v


def test_random_neumann_uses_p_plus_max_terms_products_and_matches_formula_for_that_p(rng):
    n, eta, q = 6, 0.1, 5
    A = spd_matrix(rng, n)
    truncations = set()
    with lancbio.RandomNeumann(n, eta=eta, max_terms=q, seed=3) as est:
        for _ in range(25):
            b = rng.standard_normal(n)
            v = est.step(A, b)
            p = est.info.products - q
            assert 0 <= p < q
            truncations.add(p)
            assert rel(v, random_neumann_formula(A, b, eta, p, q)) < 1e-13
            others = [rel(v, random_neumann_formula(A, b, eta, r, q)) for r in range(q) if r != p]
            assert min(others) > 1e-8  # the formula identifies p
    assert len(truncations) > 1  # the truncation is random


def test_random_neumann_same_seed_same_sequence_and_reset_reseeds(rng):
    n = 5
    A, b = spd_matrix(rng, n), rng.standard_normal(n)
    with lancbio.RandomNeumann(n, 0.1, 6, seed=11) as a, lancbio.RandomNeumann(n, 0.1, 6, seed=11) as c:
        first = [a.step(A, b) for _ in range(5)]
        second = [c.step(A, b) for _ in range(5)]
        a.reset()
        third = [a.step(A, b) for _ in range(5)]
    for x, y, z in zip(first, second, third):
        assert np.array_equal(x, y) and np.array_equal(x, z)


def test_subbio_matches_two_dimensional_galerkin_formula(rng):
    n, theta0 = 10, 0.1
    A = spd_matrix(rng, n)
    v0 = rng.standard_normal(n)
    expected = v0.copy()
    with lancbio.SubBiO(n, theta0=theta0, v0=v0) as est:
        for _ in range(3):
            b = rng.standard_normal(n)
            v = est.step(A, b)
            W = np.column_stack([b, expected - theta0 * (A @ expected)])
            expected = W @ np.linalg.solve(W.T @ A @ W, W.T @ b)
            assert rel(v, expected) < 1e-10
            assert est.info.products == 3 and est.dim == 2
            assert abs(est.info.residual - np.linalg.norm(A @ v - b)) < 1e-10 * np.linalg.norm(b)


def test_float32_within_1e4_relative_of_float64(rng, method):
    n = 16
    A = spd_matrix(rng, n, cond=10.0)
    bs = [rng.standard_normal(n) for _ in range(4)]
    with FACTORIES[method](n) as e64, FACTORIES[method](n, dtype=np.float32) as e32:
        for b in bs:
            v64 = e64.step(A, b)
            v32 = e32.step(A.astype(np.float32), b.astype(np.float32))
            assert v32.dtype == np.float32
            assert rel(v32, v64) < 1e-4


# -- reverse communication ----------------------------------------------------------------


def drive_reverse(est, op, b):
    x = est.begin(b)
    while x is not None:
        x = est.resume(op(x))
    return est.v


def test_reverse_communication_equals_callback_stepping_bitwise(rng, method, dtype):
    n = 9
    A = spd_matrix(rng, n).astype(dtype)
    op = lambda x: A @ x  # noqa: E731
    with FACTORIES[method](n, dtype=dtype) as by_callback, FACTORIES[method](n, dtype=dtype) as by_request:
        for _ in range(5):
            b = rng.standard_normal(n).astype(dtype)
            v1 = by_callback.step(op, b)
            v2 = drive_reverse(by_request, op, b)
            assert np.array_equal(v1, v2)
            assert by_callback.info == by_request.info


class _ArraySubclass(np.ndarray):
    pass


def _misaligned(a):
    out = np.zeros(a.nbytes + 1, np.uint8)[1:].view(a.dtype)
    out[:] = a
    return out


# Equivalent forms of one vector: b may take the first four, a product any of them.
_B_FORMS = {
    "array": lambda a: a.copy(),
    "read-only": lambda a: np.lib.stride_tricks.as_strided(a, writeable=False),
    "subclass": lambda a: a.view(_ArraySubclass),
    # claims to be writeable (numpy warns when that flag is read) but exports a read-only buffer
    "broadcast view": lambda a: np.broadcast_arrays(a, np.zeros((1, a.size), a.dtype))[0][0],
}
_PRODUCT_FORMS = dict(_B_FORMS, **{
    "strided": lambda a: np.repeat(a, 2)[::2],
    "misaligned": _misaligned,
    "list": lambda a: a.tolist(),
})


@pytest.mark.parametrize("form", sorted(_PRODUCT_FORMS))
def test_reverse_communication_result_is_the_same_for_every_accepted_form_of_b_and_product(
        rng, method, dtype, form):
    n = 7
    A = spd_matrix(rng, n).astype(dtype)
    to_b, to_product = _B_FORMS.get(form, _B_FORMS["array"]), _PRODUCT_FORMS[form]
    with FACTORIES[method](n, dtype=dtype) as by_callback, FACTORIES[method](n, dtype=dtype) as by_request:
        for _ in range(4):
            b = rng.standard_normal(n).astype(dtype)
            v1 = by_callback.step(lambda x: A @ x, b)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                x = by_request.begin(to_b(b))
                while x is not None:
                    x = by_request.resume(to_product(A @ x))
            assert np.array_equal(v1, by_request.v)
            assert by_callback.info == by_request.info


def test_resume_accepts_its_own_request_as_the_product(method, dtype):
    n = 5
    b = np.linspace(1.0, 2.0, n).astype(dtype)
    with FACTORIES[method](n, dtype=dtype) as by_callback, FACTORIES[method](n, dtype=dtype) as by_request:
        for _ in range(3):
            x = by_request.begin(b)
            while x is not None:
                x = by_request.resume(x)  # A = I: the product is the request itself
            assert np.array_equal(by_callback.step(lambda v: v, b), by_request.v)


def test_an_in_place_operator_returning_its_argument_gives_the_same_steps_as_a_fresh_product(rng, method, dtype):
    # step() passes the operator's argument back as the product when the operator returns
    # it: the library must read that product before it writes the next request there.
    n = 8
    A = spd_matrix(rng, n).astype(dtype)

    def in_place(x):
        x[:] = A @ x
        return x

    with FACTORIES[method](n, dtype=dtype) as fresh, FACTORIES[method](n, dtype=dtype) as shared:
        for _ in range(4):
            b = rng.standard_normal(n).astype(dtype)
            assert np.array_equal(fresh.step(lambda x: A @ x, b), shared.step(in_place, b))
            assert fresh.info == shared.info


def test_b_and_product_of_the_estimators_dtype_and_layout_are_not_copied(rng, monkeypatch, dtype):
    n = 6
    A = spd_matrix(rng, n).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    copies = []

    def no_copies(patch):
        for name in ("array", "asarray", "asanyarray", "ascontiguousarray", "require", "copy"):
            def converter(a, *args, _convert=getattr(np, name), **kwargs):
                result = _convert(a, *args, **kwargs)
                if result is not a:
                    copies.append(name)
                return result
            patch.setattr(np, name, converter)

    with FACTORIES["lanczos"](n, dtype=dtype) as est:
        for _ in range(3):
            with monkeypatch.context() as patch:
                no_copies(patch)
                x = est.begin(b)
            while x is not None:
                product = A @ x
                with monkeypatch.context() as patch:
                    no_copies(patch)
                    x = est.resume(product)
    assert copies == []


def test_begin_returns_none_when_the_step_needs_no_product():
    n, eta = 4, 0.25
    b = np.arange(1.0, n + 1)
    with lancbio.Neumann(n, eta=eta, terms=0) as est:
        assert est.begin(b) is None
        assert np.array_equal(est.v, eta * b) and est.info.products == 0


def test_cancel_abandons_a_reverse_step(rng):
    n = 6
    A, b = spd_matrix(rng, n), rng.standard_normal(n)
    with FACTORIES["cg"](n) as est, FACTORIES["cg"](n) as fresh:
        x = est.begin(b)
        est.resume(A @ x)
        est.cancel()
        assert est.info is None and np.array_equal(est.v, np.zeros(n))
        assert np.array_equal(est.step(A, b), fresh.step(A, b))


# -- operators ----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_every_operator_kind_gives_the_same_step(rng):
    n = 7
    A = spd_matrix(rng, n)
    b = rng.standard_normal(n)
    kinds = [A, np.asmatrix(A), scipy.sparse.csr_matrix(A), scipy.sparse.coo_array(A),
             sla.aslinearoperator(A), lambda x: A @ x]
    results = []
    for op in kinds:
        with lancbio.CG(n, maxiter=4) as est:
            results.append(est.step(op, b))
    for r in results[1:]:
        assert rel(r, results[0]) < 1e-13


def test_as_operator_checks_square_shape_against_n():
    with pytest.raises(ValueError, match="3 x 3"):
        lancbio.as_operator(np.eye(4), 3)
    with pytest.raises(ValueError, match="square"):
        lancbio.as_operator(np.ones((3, 4)), 3)
    with pytest.raises(ValueError, match="square|3 x 3"):
        lancbio.as_operator(scipy.sparse.eye(4), 3)
    with pytest.raises(ValueError):
        lancbio.as_operator(sla.aslinearoperator(np.eye(4)), 3)
    with pytest.raises(TypeError, match="callable"):
        lancbio.as_operator("not an operator", 3)


def test_operator_output_of_other_real_dtype_is_cast(rng):
    n = 5
    A = spd_matrix(rng, n)
    b = rng.standard_normal(n)
    ints = np.diag(np.arange(1, n + 1))
    with lancbio.GD(n, eta=0.1) as e1, lancbio.GD(n, eta=0.1) as e2:
        v1 = e1.step(lambda x: (ints @ x).astype(np.float32), b)
        v2 = e2.step(lambda x: (ints @ x).astype(np.float32).astype(np.float64), b)
    assert np.array_equal(v1, v2)
    with lancbio.GD(n, eta=0.1) as e3:
        assert np.all(np.isfinite(e3.step(lambda x: [1] * n, b)))  # a list of ints is array-like


def test_operator_receives_an_owned_copy_not_library_memory(rng):
    n = 6
    A, b = spd_matrix(rng, n), rng.standard_normal(n)
    seen = []

    def spoiling(x):
        seen.append(x)
        assert x.flags.owndata and x.flags.writeable
        y = A @ x
        x[:] = np.nan  # scribbling on the input must not reach the library
        return y

    est, ref = lancbio.CG(n, maxiter=3), lancbio.CG(n, maxiter=3)
    assert np.array_equal(est.step(spoiling, b), ref.step(A, b))
    est.close()
    ref.close()
    gc.collect()
    assert all(np.all(np.isnan(x)) for x in seen)  # still readable after close


# -- exceptions from operators ------------------------------------------------------------


class OperatorFailure(Exception):
    pass


def test_operator_exception_is_reraised_with_its_type_and_traceback_and_the_estimator_is_unchanged(rng, method):
    n = 8
    A = spd_matrix(rng, n)
    b1, b2 = rng.standard_normal(n), rng.standard_normal(n)
    failure = OperatorFailure("product unavailable")

    def failing_operator(x):
        raise failure

    with FACTORIES[method](n) as est, FACTORIES[method](n) as never_failed:
        est.step(A, b1)
        never_failed.step(A, b1)
        with pytest.raises(OperatorFailure) as excinfo:
            est.step(failing_operator, b2)
        assert excinfo.value is failure
        assert "failing_operator" in [frame.name for frame in traceback.extract_tb(excinfo.tb)]
        assert est.info == never_failed.info
        assert np.array_equal(est.v, never_failed.v)
        assert np.array_equal(est.step(A, b2), never_failed.step(A, b2))
        assert est.info == never_failed.info


def test_operator_failing_mid_step_leaves_cg_unchanged(rng):
    n = 8
    A, b = spd_matrix(rng, n), rng.standard_normal(n)
    calls = []

    def third_product_fails(x):
        calls.append(1)
        if len(calls) == 3:
            raise KeyError("third")
        return A @ x

    with lancbio.CG(n, maxiter=5) as est, lancbio.CG(n, maxiter=5) as never_failed:
        with pytest.raises(KeyError):
            est.step(third_product_fails, b)
        assert len(calls) == 3 and est.info is None and est.hvp_count == 0
        assert np.array_equal(est.step(A, b), never_failed.step(A, b))


def test_keyboard_interrupt_in_operator_propagates(rng):
    def interrupted(x):
        raise KeyboardInterrupt

    with lancbio.GD(3, eta=0.1) as est:
        with pytest.raises(KeyboardInterrupt):
            est.step(interrupted, np.ones(3))
        assert np.array_equal(est.step(np.eye(3), np.ones(3)), np.full(3, 0.1))


def test_operator_returning_wrong_shape_raises_value_error_and_estimator_is_unchanged(rng, method):
    n = 5
    A, b = spd_matrix(rng, n), rng.standard_normal(n)
    with FACTORIES[method](n) as est, FACTORIES[method](n) as never_failed:
        for bad in (lambda x: np.ones(n + 1), lambda x: np.ones((n, 1)), lambda x: 1.0):
            with pytest.raises(ValueError, match=rf"shape \({n},\)"):
                est.step(bad, b)
        assert np.array_equal(est.step(A, b), never_failed.step(A, b))


def test_operator_returning_nan_or_inf_raises_non_finite_product(rng, method, dtype):
    n = 5
    b = rng.standard_normal(n).astype(dtype)
    with FACTORIES[method](n, dtype=dtype) as est:
        for value in (np.nan, np.inf, -np.inf):
            with pytest.raises(lancbio.NonFiniteProductError):
                est.step(lambda x: np.full(n, value), b)
        assert est.info is None and np.array_equal(est.v, np.zeros(n, dtype))


# -- state and lifetime -------------------------------------------------------------------


def test_properties_before_and_after_steps(rng):
    n = 5
    A, b, v0 = spd_matrix(rng, n), rng.standard_normal(n), rng.standard_normal(n)
    est = lancbio.DynamicLanczos(n, m0=2, m_max=2, v0=v0, dtype=np.float64)
    assert est.n == n and est.dtype == np.float64
    assert est.info is None and est.hvp_count == 0 and est.dim == 0 and est.period == 0 and est.restarts == 0
    assert np.array_equal(est.v, v0)
    v = est.step(A, b)
    assert isinstance(est.info, lancbio.StepInfo) and est.info.outcome in lancbio.info.OUTCOMES.values()
    assert est.hvp_count == 2 and est.dim == 1 and est.period == 2 and est.restarts == 1
    snapshot = v.copy()
    est.v[:] = 0  # a copy: writing to it changes nothing
    assert np.array_equal(est.v, snapshot)
    est.step(A, b)
    assert np.array_equal(v, snapshot)  # a returned estimate is never overwritten
    assert "DynamicLanczos(n=5" in repr(est) and "hvp_count=3" in repr(est)
    est.close()
    assert "closed" in repr(est)


def test_reset_reapplies_v0_and_replays_the_same_steps(rng, method):
    n = 6
    A = spd_matrix(rng, n)
    bs = [rng.standard_normal(n) for _ in range(3)]
    kwargs = {} if method in ("neumann", "random_neumann") else {"v0": rng.standard_normal(n)}
    with FACTORIES[method](n, **kwargs) as est:
        first = [est.step(A, b) for b in bs]
        est.reset()
        assert est.info is None and est.hvp_count == 0
        assert np.array_equal(est.v, kwargs.get("v0", np.zeros(n)))
        again = [est.step(A, b) for b in bs]
    for x, y in zip(first, again):
        assert np.array_equal(x, y)


def test_close_is_idempotent_and_a_closed_estimator_raises_a_clear_error():
    est = lancbio.GD(3, eta=0.1)
    est.close()
    est.close()
    assert est.closed
    for use in (lambda: est.step(np.eye(3), np.ones(3)), lambda: est.v, est.reset,
                lambda: est.begin(np.ones(3)), lambda: est.resume(np.ones(3)), est.cancel):
        with pytest.raises(lancbio.InvalidHandleError, match="closed"):
            use()


def test_context_manager_closes():
    with lancbio.CG(3, maxiter=2) as est:
        pass
    assert est.closed


def test_estimator_is_freed_by_refcount_while_its_operator_lives_on(rng):
    n = 4
    A, b = spd_matrix(rng, n), rng.standard_normal(n)

    class Operator:
        def __init__(self):
            self.inputs = []

        def __call__(self, x):
            self.inputs.append(x)
            return A @ x

    op = Operator()
    est = lancbio.CG(n, maxiter=3)
    est.step(op, b)
    alive = weakref.ref(est)
    del est
    assert alive() is None  # no reference cycle keeps the handle alive
    gc.collect()
    assert len(op.inputs) == 4 and all(np.all(np.isfinite(x)) for x in op.inputs)
    with lancbio.CG(n, maxiter=3) as other:  # the operator is still usable
        other.step(op, b)


def test_estimator_in_a_cycle_with_its_operator_is_collected_safely(rng):
    n = 4
    A, b = spd_matrix(rng, n), rng.standard_normal(n)

    class Holder:
        def product(self, x):
            return A @ x

    holder = Holder()
    holder.est = lancbio.GD(n, eta=0.1)
    holder.est.step(holder.product, b)
    alive = weakref.ref(holder.est)
    del holder
    gc.collect()
    assert alive() is None


def test_estimators_alive_at_interpreter_shutdown_are_destroyed_quietly():
    script = textwrap.dedent("""
        import numpy as np, lancbio
        kept = lancbio.DynamicLanczos(3)
        kept.step(np.eye(3), np.ones(3))
        class Cycle:
            pass
        cycle = Cycle()
        cycle.est = lancbio.CG(3, maxiter=2)
        cycle.est.step(lambda x: cycle.est.n * x, np.ones(3))
        cycle.self = cycle
        reverse = lancbio.GD(3, eta=0.1)
        reverse.begin(np.ones(3))  # a step left in progress
    """)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(lancbio.__file__)),
               LANCBIO_LIBRARY=lancbio.library_path)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_reentrant_use_from_inside_the_operator_raises_invalid_state(rng):
    n = 3
    with lancbio.GD(n, eta=0.1) as est:
        def reentrant(x):
            est.step(np.eye(n), np.ones(n))
            return x

        with pytest.raises(lancbio.InvalidStateError, match="inside its own operator"):
            est.step(reentrant, np.ones(n))

        def closing(x):
            est.close()
            return x

        with pytest.raises(lancbio.InvalidStateError):
            est.step(closing, np.ones(n))
        assert not est.closed
        assert np.array_equal(est.step(np.eye(n), np.ones(n)), np.full(n, 0.1))


# -- properties over random problems -------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    log_cond=st.floats(0.0, 3.0),
    dtype=st.sampled_from([np.float64, np.float32]),
    m_max=st.integers(1, 50),
    m0_fraction=st.floats(0.0, 1.0),
    growth=st.floats(1.0, 3.0),
    grow_every=st.integers(1, 5),
    variant=st.sampled_from(["residual", "plain"]),
    reorthogonalize=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_lanczos_random_options_give_finite_consistent_steps(n, log_cond, dtype, m_max, m0_fraction, growth,
                                                             grow_every, variant, reorthogonalize, seed):
    rng = np.random.default_rng(seed)
    A = spd_matrix(rng, n, cond=10.0**log_cond)
    m0 = max(1, int(round(m0_fraction * m_max)))
    products = 0
    with lancbio.DynamicLanczos(n, m0=m0, m_max=m_max, growth=growth, grow_every=grow_every, variant=variant,
                                reorthogonalize=reorthogonalize, dtype=dtype) as est:
        for _ in range(8):
            b = rng.standard_normal(n).astype(dtype)
            v = est.step(A, b)
            assert v.dtype == dtype and v.shape == (n,) and np.all(np.isfinite(v))
            assert 0 <= est.dim <= est.period <= m_max
            products += est.info.products
            assert est.hvp_count == products


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    log_cond=st.floats(0.0, 2.0),
    dtype=st.sampled_from([np.float64, np.float32]),
    seed=st.integers(0, 2**32 - 1),
)
def test_converged_estimators_match_numpy_solve(n, log_cond, dtype, seed):
    rng = np.random.default_rng(seed)
    A = spd_matrix(rng, n, cond=10.0**log_cond)
    b = rng.standard_normal(n)
    exact = np.linalg.solve(A, b)
    tolerance = 1e-7 if dtype == np.float64 else 1e-2
    A_t, b_t = A.astype(dtype), b.astype(dtype)
    with lancbio.CG(n, maxiter=4 * n + 10, tol=1e-12, dtype=dtype) as cg:
        assert rel(cg.step(A_t, b_t), exact) < tolerance
    with lancbio.MINRES(n, maxiter=4 * n + 10, tol=1e-12, dtype=dtype) as mr:
        assert rel(mr.step(A_t, b_t), exact) < tolerance
    with lancbio.DynamicLanczos(n, m0=n, m_max=n, reorthogonalize=True, dtype=dtype) as lz:
        for _ in range(n):
            v = lz.step(A_t, b_t)
        assert rel(v, exact) < tolerance
