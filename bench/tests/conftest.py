"""Makes the benchmark importable as ``bench`` (it is not installed: it lives at the
repository root) and lancbio importable from python/ when it is not installed."""

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
for path in (REPO, REPO / "python"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def spd_matrix(rng, n, cond=10.0):
    """A random symmetric positive definite n x n matrix with eigenvalues geomspace(1, cond)."""
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = (q * np.geomspace(1.0, cond, n)) @ q.T
    return (a + a.T) / 2


@pytest.fixture
def rng():
    return np.random.default_rng(20250101)
