"""Pure numpy reference implementations that the benchmark times lancbio against.

Both Lanczos references implement exactly the mathematics of docs/algorithms.md section 3
(residual variant: anchor vbar, w = A vbar stored at the restart, the restart schedule
m <- min(ceil(m * growth), m_max) every ``grow_every`` steps) with the same
reverse-communication interface as :class:`lancbio.DynamicLanczos`:

    request = est.begin(b)          # a vector x whose product A x is needed, or None
    while request is not None:
        request = est.resume(A @ request)
    est.v                           # the new estimate

so that one timing driver can exclude the product fairly from every implementation.
They agree with the library to rounding (python/tests/test_bench.py checks it), which
is what makes them valid references.

- :class:`ResearchLanczos` is written the way research code writes it: the basis is
  rebuilt with ``np.concatenate`` every step, T is rebuilt as a dense matrix from Python
  lists every step and solved with ``np.linalg.solve``, vectors are fresh temporaries.
- :class:`CarefulLanczos` is what a careful numpy programmer writes: a preallocated
  Fortran-ordered basis (columns contiguous), BLAS matrix-vector products
  ``Q[:, :j].T @ r`` and ``Q[:, :j] @ s``, in-place level-1 BLAS updates, and a
  tridiagonal solve with LAPACK ``gtsv`` (the pivoted tridiagonal routine behind
  ``scipy.linalg.solve_banded`` for bandwidth 1, called directly to save its Python
  overhead), or a hand-written Thomas solve without scipy.

:class:`ReferenceBilevel` is the outer loop of docs/algorithms.md section 2 in numpy around
:class:`CarefulLanczos`, in the same order of operations as the library's
``BilevelOptimizer`` and with the library's default orthogonality safeguard (restart a
cycle early when max_i |q_i . q_(j+1)| > 1e-2), so the iterates agree to rounding.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ResearchLanczos", "CarefulLanczos", "ReferenceBilevel", "thomas_solve", "tridiagonal_solver"]


def _next_period(k: int, m: int, m0_growth: float, grow_every: int, m_max: int) -> int:
    """The restart period in force at step k (1-based), given the period m of step k - 1."""
    if k > 1 and (k - 1) % grow_every == 0:
        return min(int(math.ceil(m * m0_growth)), m_max)
    return m


def thomas_solve(lower, diagonal, upper, rhs):
    """Solves the tridiagonal system (sub-diagonal ``lower``, ``diagonal``, super-diagonal
    ``upper``) by the Thomas algorithm without pivoting; returns a new float64 array.
    Used only when scipy is missing (the systems here are symmetric positive definite)."""
    n = len(diagonal)
    c = np.empty(max(n - 1, 0))
    d = np.empty(n)
    b0 = float(diagonal[0])
    d[0] = rhs[0] / b0
    if n > 1:
        c[0] = upper[0] / b0
    for i in range(1, n):
        denom = diagonal[i] - lower[i - 1] * c[i - 1]
        if i < n - 1:
            c[i] = upper[i] / denom
        d[i] = (rhs[i] - lower[i - 1] * d[i - 1]) / denom
    for i in range(n - 2, -1, -1):
        d[i] -= c[i] * d[i + 1]
    return d


def tridiagonal_solver():
    """(solve, name): ``solve(offdiag, diag, rhs)`` for a symmetric tridiagonal system
    (all float64, rhs overwritten or not), LAPACK dgtsv when scipy is available."""
    try:
        from scipy.linalg import lapack
    except ImportError:  # pragma: no cover - scipy is a test dependency
        return (lambda e, d, r: thomas_solve(e, d, e, r)), "hand-written Thomas solve (no scipy)"
    gtsv = lapack.dgtsv

    def solve(e, d, r):
        if len(d) == 1:
            return r / d[0]
        _, _, _, x, info = gtsv(e, d, e, r, overwrite_b=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"dgtsv failed with info = {info}")
        return x

    return solve, "LAPACK dgtsv (scipy.linalg.lapack)"


class ResearchLanczos:
    """Dynamic Lanczos as research code writes it (float64; see the module docstring)."""

    def __init__(self, n, m0=1, m_max=80, growth=1.1, grow_every=20):
        self.n = n
        self.m_max, self.growth, self.grow_every = m_max, growth, grow_every
        self.period = m0
        self.steps = 0
        self.v = np.zeros(n)
        self.Q = None
        self.alphas: list = []
        self.betas: list = []
        self.must_restart = True

    def begin(self, b):
        k = self.steps + 1
        self._m = _next_period(k, self.period, self.growth, self.grow_every, self.m_max)
        self._b = b
        self._restart = self.must_restart or len(self.alphas) >= self._m
        if self._restart:
            self._phase = "anchor"
            return self.v
        self._phase = "basis"
        return self.q

    def resume(self, y):
        if self._phase == "anchor":
            self.v_bar = self.v.copy()
            self.w = y.copy()
            r = self._b - self.w
            self.q = r / np.linalg.norm(r)
            self.Q = self.q.reshape(-1, 1)
            self.alphas, self.betas = [], []
            self.q_prev = np.zeros(self.n)
            self.beta = 0.0
            self._phase = "basis"
            return self.q
        u = y - self.beta * self.q_prev
        alpha = float(self.q @ u)
        omega = u - alpha * self.q
        beta = float(np.linalg.norm(omega))
        q_next = omega / beta
        self.alphas.append(alpha)
        j = len(self.alphas)
        off = self.betas[: j - 1]
        T = np.diag(self.alphas) + np.diag(off, 1) + np.diag(off, -1)
        s = np.linalg.solve(T, self.Q.T @ (self._b - self.w))
        self.v = self.v_bar + self.Q @ s
        self.betas.append(beta)
        self.q_prev, self.q, self.beta = self.q, q_next, beta
        self.Q = np.concatenate([self.Q, q_next.reshape(-1, 1)], axis=1)
        self.steps += 1
        self.period = self._m
        self.must_restart = False
        self._b = None
        return None


class CarefulLanczos:
    """Dynamic Lanczos in careful numpy (see the module docstring); float64 or float32
    storage, the small system in float64 like the library. Breakdown and a zero residual
    at restart are handled as the library handles them (docs/algorithms.md section 3)."""

    def __init__(self, n, m0=1, m_max=80, growth=1.1, grow_every=20, dtype=np.float64,
                 orthogonality_tol=math.inf):
        self.n = n
        # The library's safeguard (DynamicLanczos(orthogonality_tol=...)): when the new basis
        # vector has lost orthogonality, max_i |q_i . q_(j+1)| > tol, the next step restarts.
        # Off (inf) by default here: the paper's behaviour (docs/algorithms.md section 3.8); Q^T r and Q^T q_(j+1)
        # then come from one two-column product, one pass over the basis like the library's.
        self.orthogonality_tol = float(orthogonality_tol)
        self._rz = (np.zeros((n, 2), dtype=dtype, order="F") if math.isfinite(self.orthogonality_tol)
                    else None)
        self.orthogonality_restarts = 0
        self.dtype = np.dtype(dtype)
        self.m_max, self.growth, self.grow_every = m_max, growth, grow_every
        self.period = m0
        self.steps = 0
        self.restarts = 0
        self.j = 0
        self.must_restart = True
        self.Q = np.zeros((n, m_max + 1), dtype=self.dtype, order="F")
        self.alpha = np.zeros(m_max + 1)
        self.beta = np.zeros(m_max + 1)
        self.v = np.zeros(n, dtype=self.dtype)
        self._pending = np.zeros(n, dtype=self.dtype)
        self.vbar = np.zeros(n, dtype=self.dtype)
        self.w = np.zeros(n, dtype=self.dtype)
        self.r = np.zeros(n, dtype=self.dtype)
        self._ulp = float(np.finfo(self.dtype).eps)
        self._solve, self.solver_name = tridiagonal_solver()
        try:
            from scipy.linalg import blas
            self._axpy = blas.get_blas_funcs("axpy", dtype=self.dtype)
        except ImportError:  # pragma: no cover
            self._axpy = None

    def _axpy_(self, a, x, y):
        """y += a x in place."""
        if self._axpy is not None:
            self._axpy(x, y, a=a)
        else:  # pragma: no cover
            y += a * x

    def begin(self, b):
        k = self.steps + 1
        self._m = _next_period(k, self.period, self.growth, self.grow_every, self.m_max)
        self._b = b
        self._restart = self.must_restart or self.j >= self._m
        if self._restart:
            self._phase = "anchor"
            return self.v
        self._phase = "basis"
        return self.Q[:, self.j]

    def resume(self, y):
        if self._phase == "anchor":
            b = self._b
            r = self.r
            np.subtract(b, y, out=r)
            rho = math.sqrt(float(np.dot(r, r)))
            if rho <= self._ulp * (math.sqrt(float(np.dot(b, b))) + math.sqrt(float(np.dot(y, y)))):
                # v already solves this system: no basis vector, restart next time.
                self._finish(restart=True)
                self.j = 0
                self.must_restart = True
                return None
            np.multiply(r, 1.0 / rho, out=self.Q[:, 0])
            np.copyto(self.vbar, self.v)
            np.copyto(self.w, y)
            self._rho = rho
            self.j = 0
            self._phase = "basis"
            return self.Q[:, 0]
        return self._lanczos(y)

    def _lanczos(self, u):
        c = self.j
        Q = self.Q
        q = Q[:, c]
        beta_prev = self.beta[c - 1] if c > 0 else 0.0
        if c > 0:
            self._axpy_(-beta_prev, Q[:, c - 1], u)
        a = float(np.dot(q, u))
        self._axpy_(-a, q, u)
        bn = math.sqrt(float(np.dot(u, u)))
        scale = math.hypot(math.hypot(a, beta_prev), bn)
        breakdown = not (bn > 16 * self._ulp * scale)
        if not breakdown:
            np.multiply(u, 1.0 / bn, out=Q[:, c + 1])
        self.alpha[c] = a
        self.beta[c] = 0.0 if breakdown else bn
        jj = c + 1
        lost = False
        if self._restart:
            rhs = np.zeros(1)
            rhs[0] = self._rho
        elif self._rz is not None and not breakdown:
            rz = self._rz
            np.subtract(self._b, self.w, out=rz[:, 0])
            np.copyto(rz[:, 1], Q[:, c + 1])
            both = np.asarray(Q[:, :jj].T @ rz, dtype=np.float64)
            rhs = np.ascontiguousarray(both[:, 0])
            lost = not (float(np.max(np.abs(both[:, 1]))) <= self.orthogonality_tol)
            self.orthogonality_restarts += lost
        else:
            np.subtract(self._b, self.w, out=self.r)
            rhs = np.asarray(Q[:, :jj].T @ self.r, dtype=np.float64)
        s = self._solve(self.beta[: jj - 1], self.alpha[:jj], rhs)
        v = self._pending
        np.dot(Q[:, :jj], s.astype(self.dtype, copy=False), out=v)
        v += self.vbar
        self._pending, self.v = self.v, v
        self.j = jj
        self.must_restart = breakdown or lost
        self._finish(self._restart)
        return None

    def _finish(self, restart):
        self.steps += 1
        self.period = self._m
        if restart:
            self.restarts += 1
        self._b = None

    def step(self, op, b):
        """One step with products from ``op`` (callable); returns v (not a copy)."""
        request = self.begin(b)
        while request is not None:
            request = self.resume(np.array(op(request), dtype=self.dtype))
        return self.v


class ReferenceBilevel:
    """The outer loop of docs/algorithms.md section 2 with :class:`CarefulLanczos`, in numpy,
    with the operations in the order of the library's BilevelOptimizer (float64)."""

    def __init__(self, problem, x0, y0, lr_x, lr_y, inner_steps=5, m0=1, m_max=80, growth=1.1,
                 grow_every=20, orthogonality_tol=1e-2):
        self.p = problem
        self.x = np.array(x0, dtype=np.float64)
        self.y = np.array(y0, dtype=np.float64)
        self.lr_x, self.lr_y, self.inner_steps = float(lr_x), float(lr_y), int(inner_steps)
        self.est = CarefulLanczos(len(self.y), m0=m0, m_max=m_max, growth=growth, grow_every=grow_every,
                                  orthogonality_tol=orthogonality_tol)
        # The hyper-gradient goes into a buffer of its own: grad_x_f's result may be an
        # array the problem keeps (a constant), which an in-place update would change.
        self._hypergradient = np.empty_like(self.x)

    def step(self):
        p, x, theta = self.p, self.x, self.lr_y
        y = self.y.copy()
        for _ in range(self.inner_steps):
            y -= theta * p.grad_y_g(x, y)
        b = p.grad_y_f(x, y)
        gxf = p.grad_x_f(x, y)
        est = self.est
        request = est.begin(b)
        while request is not None:
            request = est.resume(p.hvp_yy_g(x, y, request))
        hypergradient = np.subtract(gxf, p.jvp_xy_g(x, y, est.v), out=self._hypergradient)
        x -= self.lr_x * hypergradient
        self.y = y
        return hypergradient
