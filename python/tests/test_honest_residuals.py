"""Reported residuals against numpy and scipy on the cases where a recurrence or an
estimate stops telling the truth: singular systems whose b lies outside the range
(scipy.linalg.lstsq gives the least-squares minimum, scipy.sparse.linalg.minres the
method's reference behaviour), and a drifting sequence (docs/algorithms.md sections 3.6
and 9)."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse.linalg

import lancbio

HEADER = Path(__file__).resolve().parents[2] / "include" / "lancbio.h"
SLACK = {np.float64: 1e-9, np.float32: 1e-4}


def singular_inconsistent(n=40, rank=20, seed=3):
    """A PSD A of the given rank and a b with a part outside its range."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eigenvalues = np.zeros(n)
    eigenvalues[:rank] = np.linspace(1, 10, rank)
    a = (q * eigenvalues) @ q.T
    return (a + a.T) / 2, rng.standard_normal(n)


def least_squares(a, b):
    x = scipy.linalg.lstsq(a, b)[0]
    return x, np.linalg.norm(a @ x - b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("maxiter", [10, 20, 21, 30, 80])
def test_minres_on_a_singular_inconsistent_system_reports_a_true_residual_at_or_above_lstsq(dtype, maxiter):
    a, b = singular_inconsistent()
    x_ls, minimum = least_squares(a, b)
    ad, bd = a.astype(dtype), b.astype(dtype)
    est = lancbio.MINRES(len(b), maxiter=maxiter, dtype=dtype)
    v = est.step(lambda q: ad @ q, bd).astype(np.float64)
    info = est.info
    truth = np.linalg.norm(a @ v - b)
    assert info.residual >= minimum * (1 - SLACK[dtype]), (info.residual, minimum)
    assert info.residual_uncertain or abs(info.residual - truth) <= SLACK[dtype] * np.linalg.norm(b), (info, truth)
    # Past the rank scipy's minres takes the update of the exhausted space (its x reaches
    # 1e13 here, where A x is rounding); the estimator stops at the least-squares residual
    # with v near the least-squares solution.
    assert np.linalg.norm(v) <= 100 * np.linalg.norm(x_ls)
    if maxiter > 20:
        assert info.outcome == "singular"
        assert truth <= minimum * (1 + 1e-3)
        x_scipy = scipy.sparse.linalg.minres(a, b, maxiter=maxiter, rtol=1e-30)[0]
        assert np.linalg.norm(v) < np.linalg.norm(x_scipy)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("maxiter", [1, 2, 3, 5])
def test_minres_on_scipys_singular_3x3_reports_the_true_residual_not_zero(dtype, maxiter):
    # scipy's test_iterative.py test_defective_matrix_breakdown.
    a = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=np.float64)
    b = np.array([1, 0, 1], dtype=np.float64)
    _, minimum = least_squares(a, b)
    est = lancbio.MINRES(3, maxiter=maxiter, dtype=dtype)
    v = est.step(lambda q: a.astype(dtype) @ q, b.astype(dtype)).astype(np.float64)
    truth = np.linalg.norm(a @ v - b)
    assert abs(est.info.residual - truth) <= SLACK[dtype]
    assert truth >= minimum * (1 - SLACK[dtype])
    if maxiter >= 3:
        x_scipy = scipy.sparse.linalg.minres(a, b, maxiter=maxiter)[0]
        assert truth <= np.linalg.norm(a @ x_scipy - b) + SLACK[dtype]
        assert est.info.outcome == "singular"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("variant", ["residual", "plain"])
def test_lanczos_on_scipys_singular_3x3_reports_the_true_residual_and_stays_bounded(dtype, variant):
    a = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=np.float64)
    b = np.array([1, 0, 1], dtype=np.float64)
    _, minimum = least_squares(a, b)
    est = lancbio.DynamicLanczos(3, m0=5, m_max=5, variant=variant, dtype=dtype)
    for k in range(8):
        v = est.step(lambda q: a.astype(dtype) @ q, b.astype(dtype)).astype(np.float64)
        truth = np.linalg.norm(a @ v - b)
        assert abs(est.info.residual - truth) <= SLACK[dtype], (k, est.info, truth)
        assert truth >= minimum * (1 - SLACK[dtype])
        assert np.linalg.norm(v) <= 3, (k, np.linalg.norm(v))


def drifting_sequence(k, n=60, seed=5):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a0 = (q * np.logspace(0, 2, n)) @ q.T
    e = rng.standard_normal((n, n))
    e = (e + e.T) / 2
    e /= np.linalg.norm(e, 2)
    b0, db = rng.standard_normal(n), rng.standard_normal(n)
    return a0 + 0.1 * np.sin(0.01 * k) * e, b0 + np.sin(0.007 * k) * db


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lanczos_flags_estimates_far_too_optimistic_and_exact_residual_reports_the_truth(dtype):
    n, steps = 60, 400
    plain = lancbio.DynamicLanczos(n, dtype=dtype)
    exact = lancbio.DynamicLanczos(n, exact_residual=True, dtype=dtype)
    optimistic = flagged = 0
    for k in range(1, steps + 1):
        a, b = drifting_sequence(k)
        ad, bd = a.astype(dtype), b.astype(dtype)
        v = plain.step(lambda q: ad @ q, bd).astype(np.float64)
        w = exact.step(lambda q: ad @ q, bd).astype(np.float64)
        np.testing.assert_array_equal(v, w)  # the check changes no estimate
        truth = np.linalg.norm(a @ v - b)
        if truth > 10 * plain.info.residual:
            optimistic += 1
            flagged += plain.info.residual_uncertain
        assert exact.info.residual_kind == "exact" and not exact.info.residual_uncertain
        assert abs(exact.info.residual - truth) <= SLACK[dtype] * (np.linalg.norm(b) + truth)
        assert exact.info.products == plain.info.products + 1
    assert optimistic > 0, "the sequence no longer exercises the drift"
    assert flagged >= 0.95 * optimistic, (flagged, optimistic)


def test_the_header_documents_the_ranges_the_library_enforces():
    text = HEADER.read_text()
    assert re.search(r"double growth;\s*/\*\*< Period growth factor in \[1, 1e6\]", text)
    assert re.search(r"orthogonality_tolerance;.*?> 0 \(from 1 up it never\s+fires", text, re.S)
    lancbio.DynamicLanczos(4, growth=1.0).close()
    lancbio.DynamicLanczos(4, growth=1e6).close()
    for growth in (math.nextafter(1.0, 0.0), math.nextafter(1e6, math.inf)):
        with pytest.raises(lancbio.InvalidArgumentError, match="growth"):
            lancbio.DynamicLanczos(4, growth=growth)
    for tolerance in (1e-12, 1.0, 5.0, math.inf):
        lancbio.DynamicLanczos(4, orthogonality_tol=tolerance).close()
    for tolerance in (0.0, -1.0, math.nan):
        with pytest.raises(lancbio.InvalidArgumentError, match="orthogonality_tolerance"):
            lancbio.DynamicLanczos(4, orthogonality_tol=tolerance)
