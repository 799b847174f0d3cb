"""lancbio.solve against numpy.linalg.solve."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lancbio
from conftest import indefinite_matrix, spd_matrix


def true_residual(A, v, b):
    return float(np.linalg.norm(A @ v - b))


@pytest.mark.parametrize("method, options", [
    ("lanczos", {}),
    ("lanczos", {"reorthogonalize": True}),
    ("cg", {}),
    ("minres", {}),
    ("gd", {"eta": 0.15}),
    ("neumann", {"eta": 0.15}),
])
def test_each_method_solves_an_spd_system_to_tolerance(rng, method, options):
    n = 20
    A = spd_matrix(rng, n, cond=10.0)
    b = rng.standard_normal(n)
    v, info = lancbio.solve(A, b, method=method, tol=1e-9, maxiter=2000, **options)
    assert info.converged and info.method == method
    assert info.residual == pytest.approx(true_residual(A, v, b), rel=1e-6, abs=1e-14)
    assert info.residual <= 1e-9 * np.linalg.norm(b)
    assert np.linalg.norm(v - np.linalg.solve(A, b)) <= 1e-7 * np.linalg.norm(np.linalg.solve(A, b))
    assert isinstance(info.step_info, lancbio.StepInfo)


def test_minres_solves_an_indefinite_system(rng):
    n = 24
    A = indefinite_matrix(rng, n)
    b = rng.standard_normal(n)
    v, info = lancbio.solve(A, b, method="minres", tol=1e-10)
    assert info.converged
    assert np.allclose(v, np.linalg.solve(A, b), rtol=1e-7, atol=1e-9)


def test_lanczos_verifies_with_one_extra_product_and_counts_it(rng):
    n = 10
    A = spd_matrix(rng, n, cond=5.0)
    b = rng.standard_normal(n)
    calls = []

    def op(x):
        calls.append(1)
        return A @ x

    v, info = lancbio.solve(op, b, method="lanczos", tol=1e-10, reorthogonalize=True)
    assert info.converged and info.products == len(calls)
    assert info.step_info.total_products == len(calls) - 1  # the last product checked the residual
    assert info.residual == pytest.approx(true_residual(A, v, b), rel=1e-6, abs=1e-14)


def test_lanczos_stops_at_maxiter_products_unconverged(rng):
    n = 30
    A = spd_matrix(rng, n, cond=1e4)
    b = rng.standard_normal(n)
    v, info = lancbio.solve(A, b, method="lanczos", tol=1e-14, maxiter=12)
    assert not info.converged
    assert 12 <= info.products <= 14
    assert info.residual == pytest.approx(true_residual(A, v, b), rel=1e-9)


def test_cg_runs_at_most_maxiter_iterations_from_x0(rng):
    n = 30
    A = spd_matrix(rng, n, cond=100.0)
    b, x0 = rng.standard_normal(n), rng.standard_normal(n)
    v, info = lancbio.solve(A, b, method="cg", x0=x0, tol=0.0, maxiter=3)
    assert info.iterations == 3 and info.products == 3 + 1 + 1 and not info.converged
    with lancbio.CG(n, maxiter=3, v0=x0) as est:
        assert np.array_equal(v, est.step(A, b))


def test_exact_x0_converges_without_iterations(rng):
    n = 8
    A = spd_matrix(rng, n)
    b = rng.standard_normal(n)
    x0 = np.linalg.solve(A, b)
    for method in ("lanczos", "cg", "minres"):
        v, info = lancbio.solve(A, b, method=method, x0=x0, tol=1e-8)
        assert info.converged and info.products <= 3, method


def test_float32_right_hand_side_solves_in_float32(rng):
    n = 12
    A = spd_matrix(rng, n, cond=10.0)
    b = rng.standard_normal(n).astype(np.float32)
    v, info = lancbio.solve(A.astype(np.float32), b, method="cg", tol=1e-5)
    assert v.dtype == np.float32 and info.converged
    assert np.allclose(v, np.linalg.solve(A, b.astype(np.float64)), rtol=1e-3, atol=1e-4)


def test_zero_right_hand_side_gives_zero(rng):
    A = spd_matrix(rng, 5)
    for method in ("lanczos", "cg", "minres"):
        v, info = lancbio.solve(A, np.zeros(5), method=method)
        assert info.converged and np.array_equal(v, np.zeros(5))


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="lanczos, cg, minres, gd, neumann"):
        lancbio.solve(np.eye(3), np.ones(3), method="bicgstab")


def test_bad_solve_arguments_raise():
    with pytest.raises(TypeError, match="eta"):
        lancbio.solve(np.eye(3), np.ones(3), method="gd")
    with pytest.raises(ValueError, match="tol"):
        lancbio.solve(np.eye(3), np.ones(3), tol=-1.0)
    with pytest.raises(ValueError, match="maxiter"):
        lancbio.solve(np.eye(3), np.ones(3), maxiter=0)
    with pytest.raises(ValueError, match="x0"):
        lancbio.solve(np.eye(3), np.ones(3), method="neumann", eta=0.5, x0=np.zeros(3))
    with pytest.raises(TypeError, match="ascontiguousarray"):
        lancbio.solve(np.eye(3), [1.0, 2.0, 3.0])
    with pytest.raises(TypeError):
        lancbio.solve(np.eye(3), np.ones(3), method="cg", x0=np.zeros(3, dtype=np.float32))
    with pytest.raises(TypeError):
        lancbio.solve(np.eye(3), np.ones(3), method="cg", eta=0.1)  # not a CG option
    with pytest.raises(ValueError, match="3 x 3"):
        lancbio.solve(np.eye(4), np.ones(3))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    log_cond=st.floats(0.0, 3.0),
    dtype=st.sampled_from([np.float64, np.float32]),
    method=st.sampled_from(["lanczos", "cg", "minres"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_solve_random_spd_systems_finite_and_matching_numpy(n, log_cond, dtype, method, seed):
    rng = np.random.default_rng(seed)
    A = spd_matrix(rng, n, cond=10.0**log_cond)
    b = rng.standard_normal(n)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    v, info = lancbio.solve(A.astype(dtype), b.astype(dtype), method=method, tol=tol, maxiter=20 * n + 20,
                            reorthogonalize=True) if method == "lanczos" else \
        lancbio.solve(A.astype(dtype), b.astype(dtype), method=method, tol=tol, maxiter=20 * n + 20)
    assert v.dtype == dtype and np.all(np.isfinite(v))
    assert info.residual == pytest.approx(true_residual(A.astype(dtype), v, b.astype(dtype)), rel=1e-3, abs=1e-6)
    if dtype == np.float64:
        assert info.converged
        exact = np.linalg.solve(A, b)
        assert np.linalg.norm(v - exact) <= 1e-10 * 10.0**log_cond * 10 * np.linalg.norm(exact) + 1e-12


def test_lanczos_solve_refuses_the_plain_variant_with_the_library_reason():
    with pytest.raises(lancbio.InvalidArgumentError, match="residual variant"):
        lancbio.solve(np.eye(3), np.ones(3), method="lanczos", variant="plain")


def test_lanczos_solve_is_never_worse_than_its_start_on_an_ill_conditioned_system(rng):
    # Condition 1e8: 400 Galerkin steps can end far above ||b|| (CG does, at 3.6 ||b||);
    # the solve answers with its best checked iterate, x0 = 0 included, and says so honestly.
    n = 120
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = (q * np.logspace(0, 8, n)) @ q.T
    a = (a + a.T) / 2
    b = rng.standard_normal(n)
    v, info = lancbio.solve(a, b, method="lanczos", tol=1e-12, maxiter=400)
    assert not info.converged
    assert info.residual <= np.linalg.norm(b) * (1 + 1e-12)
    assert info.residual == pytest.approx(np.linalg.norm(a @ v - b), rel=1e-9, abs=1e-12 * np.linalg.norm(b))


@pytest.mark.parametrize("method", ["lanczos", "cg", "minres"])
def test_huge_right_hand_side_with_a_zero_operator_is_not_converged_and_finite(method):
    # ||b|| = 3.2e300: a norm computed naively overflows to inf and "inf <= tol * inf" would
    # call the zero solution converged; the library's scaled norms report the truth.
    b = np.full(10, 1e300)
    v, info = lancbio.solve(lambda x: 0 * x, b, method=method)
    assert not info.converged
    assert np.isfinite(info.residual) and info.residual == pytest.approx(np.sqrt(10) * 1e300, rel=1e-12)
    assert np.all(v == 0)


def test_huge_right_hand_side_is_solved_to_a_finite_residual():
    b = np.full(10, 1e300)
    v, info = lancbio.solve(2 * np.eye(10), b, method="lanczos")
    assert info.converged and np.isfinite(info.residual)
    assert np.allclose(v, b / 2, rtol=1e-12)


def test_lanczos_solve_of_a_million_unknowns_needs_no_basis():
    # The stored-basis form reserved n (m + 7) doubles with m = 4096 (33 GB at n = 1e6);
    # the short recurrence needs a few n-vectors whatever the budget.
    n = 10**6
    b = np.ones(n)
    v, info = lancbio.solve(lambda x: 2.0 * x, b, method="lanczos", tol=1e-10)
    assert info.converged and info.products <= 3
    assert np.allclose(v, 0.5, rtol=1e-12)


@pytest.mark.parametrize("n, condition", [(200, 1e3), (400, 1e6)])
def test_lanczos_solve_matches_cg_products_on_fixed_spd_systems(n, condition, rng):
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = (q * np.logspace(0, np.log10(condition), n)) @ q.T
    a = (a + a.T) / 2
    b = rng.standard_normal(n)
    _, lanczos = lancbio.solve(a, b, method="lanczos", tol=1e-8, maxiter=20 * n)
    _, cg = lancbio.solve(a, b, method="cg", tol=1e-8, maxiter=20 * n)
    assert lanczos.converged and cg.converged
    assert lanczos.products <= 1.2 * cg.products
