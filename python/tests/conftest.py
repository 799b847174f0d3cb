"""Shared helpers: random symmetric test matrices and the estimators' constructors."""

import importlib
import os

import numpy as np
import pytest


def _lancbio():
    # Imported on use, so that test modules that do not need the native library
    # (test_problems.py, test_loader.py's subprocesses) still collect without it.
    return importlib.import_module("lancbio")


def spd_matrix(rng, n, cond=10.0):
    """A random symmetric positive definite n x n matrix with eigenvalues geomspace(1, cond)."""
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = (q * np.geomspace(1.0, cond, n)) @ q.T
    return (a + a.T) / 2


def indefinite_matrix(rng, n, scale=10.0):
    """A random symmetric indefinite n x n matrix, eigenvalues in [-scale, -1] U [1, scale]."""
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    half = n // 2
    ev = np.concatenate([-np.geomspace(1.0, scale, half), np.geomspace(1.0, scale, n - half)])
    a = (q * ev) @ q.T
    return (a + a.T) / 2


# One factory per estimator with options that suit an SPD matrix whose eigenvalues lie
# in [1, 10] (step sizes below 2 / 10).
FACTORIES = {
    "lanczos": lambda n, **kw: _lancbio().DynamicLanczos(n, m0=2, m_max=4, growth=1.5, grow_every=2, **kw),
    "subbio": lambda n, **kw: _lancbio().SubBiO(n, theta0=0.1, **kw),
    "cg": lambda n, **kw: _lancbio().CG(n, maxiter=3, **kw),
    "minres": lambda n, **kw: _lancbio().MINRES(n, maxiter=3, **kw),
    "gd": lambda n, **kw: _lancbio().GD(n, eta=0.1, steps=3, **kw),
    "neumann": lambda n, **kw: _lancbio().Neumann(n, eta=0.1, terms=3, **kw),
    "random_neumann": lambda n, **kw: _lancbio().RandomNeumann(n, eta=0.1, max_terms=3, seed=5, **kw),
}


@pytest.fixture
def rng():
    return np.random.default_rng(20250101)


@pytest.fixture(params=sorted(FACTORIES))
def method(request):
    return request.param


@pytest.fixture(params=[np.float64, np.float32], ids=["f64", "f32"])
def dtype(request):
    return request.param


def import_torch():
    """The torch module for the lancbio.torch tests, or a skip of the calling module where
    torch is not installed; under CI=true a missing torch is an ImportError at collection,
    a failure (CI installs it: .ci/run)."""
    if os.environ.get("CI") == "true":
        return importlib.import_module("torch")
    return pytest.importorskip("torch", reason="PyTorch is not installed (pip install './python[torch]')")
