"""The synthetic bilevel problem of the LancBiO paper (section 4.1).

With ``*`` the elementwise product and ``n = dx = dy``::

    f(x, y) = 0.1 cos(x^T (a*y)) + 0.5 ||c*x - y||^2
    g(x, y) = gamma sum_i sin(x_i + y_i) + log sum_i exp(x_i y_i)
              + 0.5 y^T diag(d) y + 0.5 y^T G y

where ``a ~ U(-5, 5)^n``, ``c ~ U(0.1, 1.1)^n``, ``d ~ U(0, gamma)^n`` and
``G = U diag(linspace(1, kappa, n)) U^T`` with ``U`` orthogonal.  Because the
log-sum-exp Hessian is positive semidefinite, ``d >= 0`` and ``G >= I``, the lower-level
Hessian satisfies ``A >= (1 - gamma) I``: ``g`` is strongly convex in ``y`` whenever
``gamma < 1``, and ``A`` has condition number about ``kappa``.
"""

import math
import warnings

import numpy as np

__all__ = ["Synthetic"]


def _vector(name, value, size):
    """``value`` as a float64 array of shape ``(size,)``, without copying when possible."""
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {array.shape}")
    return array


def _orthogonal_scaled_gram(z, scale):
    """``Q diag(scale^2) Q^T`` for the orthogonal factor ``Q`` of a QR of ``z``.

    ``z`` (n x n, Fortran-ordered) is overwritten when scipy is available, so that
    at most two n x n matrices (the factor and the result) are alive at once.  The result
    does not depend on the sign convention of the QR, since each column of ``Q`` enters
    only through ``q q^T``.
    """
    n = z.shape[0]
    try:
        from scipy.linalg import lapack
    except ImportError:
        lapack = None
    if lapack is not None:
        # In-place Householder QR and explicit Q: no separate R and no input copy.
        lwork = max(1, 64 * n)
        qr, tau, _, info = lapack.dgeqrf(z, lwork=lwork, overwrite_a=1)
        if info != 0:
            raise RuntimeError(f"LAPACK dgeqrf failed with info = {info}")
        q, _, info = lapack.dorgqr(qr, tau, lwork=lwork, overwrite_a=1)
        if info != 0:
            raise RuntimeError(f"LAPACK dorgqr failed with info = {info}")
        del qr, tau
    else:
        q = np.linalg.qr(z, mode="reduced")[0]
    q *= scale
    # ``q @ q.T`` is dispatched to a symmetric rank-k update, so the result is
    # exactly symmetric.
    gram = np.ascontiguousarray(q @ q.T)
    return gram


class Synthetic:
    """The synthetic problem of LancBiO section 4.1 (docs/algorithms.md section 6).

    Parameters
    ----------
    n : int
        Dimension of both ``x`` and ``y`` (``n >= 1``; the paper uses 10000).
    gamma : float
        Amplitude of the ``sin`` term and upper end of ``d``'s range, ``gamma >= 0``
        (default 0.5).  ``g`` is strongly convex in ``y`` only for ``gamma < 1``.
    kappa : float
        Largest eigenvalue of ``G`` (its smallest is 1), ``kappa >= 1`` (default 1e5).
    seed : int
        Seed of ``numpy.random.default_rng``, which draws ``a``, ``c``, ``d`` and then the
        Gaussian matrix behind ``G``.  Building ``G`` costs about 4 n^3 flops (a QR and a
        symmetric product; minutes at n = 10000).

    Attributes
    ----------
    dx, dy : int
        Both equal to ``n``.
    a, c, d : ndarray, shape (n,)
        The problem data.
    eigenvalues : ndarray, shape (n,)
        ``linspace(1, kappa, n)``, the spectrum of ``G``.
    G : ndarray, shape (n, n)
        Dense, C-contiguous, symmetric, spectrum ``linspace(1, kappa, n)``; 8 n^2 bytes
        (800 MB at n = 10000).  Every method below uses at most one product with it.

    All methods take float64 vectors of shape ``(n,)``, leave them unchanged, and return
    newly allocated arrays.
    """

    def __init__(self, n, gamma=0.5, kappa=1e5, seed=0):
        n = int(n)
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if not gamma >= 0.0:
            raise ValueError(f"gamma must be non-negative, got {gamma}")
        if not kappa >= 1.0:
            raise ValueError(f"kappa must be at least 1, got {kappa}")
        self.n = n
        self.dx = n
        self.dy = n
        self.gamma = float(gamma)
        self.kappa = float(kappa)
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.a = rng.uniform(-5.0, 5.0, n)
        self.c = rng.uniform(0.1, 1.1, n)
        self.d = rng.uniform(0.0, self.gamma, n)
        self.eigenvalues = np.linspace(1.0, self.kappa, n)
        # The transpose of a C-ordered matrix is Fortran-ordered, which LAPACK can
        # factor in place; it is as Gaussian as the original.
        gaussian = rng.standard_normal((n, n)).T
        self.G = _orthogonal_scaled_gram(gaussian, np.sqrt(self.eigenvalues))
        del gaussian

    # -- shared pieces ------------------------------------------------------------

    def _check(self, x, y):
        return _vector("x", x, self.n), _vector("y", y, self.n)

    @staticmethod
    def _softmax(x, y):
        """``q = e / S`` with ``e = exp(x*y)``, ``S = sum(e)``, shape (n,).

        Computed from ``exp(x*y - max(x*y))``: the shift cancels in the ratio and keeps
        the exponentials finite.
        """
        q = x * y
        q -= q.max()
        np.exp(q, out=q)
        q /= q.sum()
        return q

    # -- values -------------------------------------------------------------------

    def f(self, x, y):
        """Upper-level objective ``0.1 cos(x^T (a*y)) + 0.5 ||c*x - y||^2`` (float)."""
        x, y = self._check(x, y)
        residual = self.c * x - y
        return float(0.1 * math.cos(np.dot(x, self.a * y)) + 0.5 * np.dot(residual, residual))

    def g(self, x, y):
        """Lower-level objective (float); the log-sum-exp is evaluated with a shift."""
        x, y = self._check(x, y)
        z = x * y
        shift = z.max()
        z -= shift
        np.exp(z, out=z)
        log_sum_exp = shift + math.log(z.sum())
        quadratic = np.dot(y, self.d * y) + np.dot(y, self.G @ y)
        return float(self.gamma * np.sin(x + y).sum() + log_sum_exp + 0.5 * quadratic)

    # -- first derivatives ----------------------------------------------------------

    def grad_x_f(self, x, y):
        """``-0.1 sin(s) a*y + c*(c*x - y)`` with ``s = x^T (a*y)``, shape (n,)."""
        x, y = self._check(x, y)
        ay = self.a * y
        out = self.c * x
        out -= y
        out *= self.c
        out -= (0.1 * math.sin(np.dot(x, ay))) * ay
        return out

    def grad_y_f(self, x, y):
        """``-0.1 sin(s) a*x - (c*x - y)`` with ``s = x^T (a*y)``, shape (n,)."""
        x, y = self._check(x, y)
        ax = self.a * x
        out = y - self.c * x
        out -= (0.1 * math.sin(np.dot(ax, y))) * ax
        return out

    def grad_y_g(self, x, y):
        """``gamma cos(x+y) + x*e/S + d*y + G y``, shape (n,); one product with ``G``."""
        x, y = self._check(x, y)
        out = self.G @ y
        q = self._softmax(x, y)
        q *= x
        out += q
        out += self.d * y
        np.add(x, y, out=q)
        np.cos(q, out=q)
        q *= self.gamma
        out += q
        return out

    # -- second-order products --------------------------------------------------------

    def hvp_yy_g(self, x, y, v):
        """``A v = (d^2 g / dy^2) v``, shape (n,); one product with ``G``.

        ``A v = -gamma sin(x+y)*v + (x*x*e/S)*v - (p^T v) p + d*v + G v`` with
        ``p = x*e/S``.
        """
        x, y = self._check(x, y)
        v = _vector("v", v, self.n)
        out = self.G @ v
        p = self._softmax(x, y)
        p *= x
        diagonal = np.add(x, y)
        np.sin(diagonal, out=diagonal)
        diagonal *= -self.gamma
        diagonal += self.d
        diagonal += x * p
        diagonal *= v
        out += diagonal
        out -= np.dot(p, v) * p
        return out

    def jvp_xy_g(self, x, y, v):
        """``J v = (d^2 g / dx dy) v``, shape (n,) (a dx-vector); no product with ``G``.

        ``J v = -gamma sin(x+y)*v + ((1 + x*y)*e/S)*v - (p^T v) (y*e/S)`` with
        ``p = x*e/S``.
        """
        x, y = self._check(x, y)
        v = _vector("v", v, self.n)
        q = self._softmax(x, y)
        p_dot_v = np.dot(x * q, v)
        out = x * y
        out += 1.0
        out *= q
        out -= self.gamma * np.sin(x + y)
        out *= v
        q *= y
        q *= p_dot_v
        out -= q
        return out

    # -- reference quantities -------------------------------------------------------------

    def initial_point(self, seed=None):
        """The paper's starting point: ``(x0, y0)``, both standard normal of shape (n,)."""
        rng = np.random.default_rng(seed)
        x0 = rng.standard_normal(self.n)
        y0 = rng.standard_normal(self.n)
        return x0, y0

    def residual(self, x, y, v):
        """``||A v - b||`` with ``A = d^2 g/dy^2 (x, y)`` and ``b = grad_y f(x, y)`` (float)."""
        r = self.hvp_yy_g(x, y, v)
        r -= self.grad_y_f(x, y)
        return float(np.linalg.norm(r))

    def true_hypergradient(self, x, y0=None, tol=1e-10, max_newton=100):
        """The exact hyper-gradient ``grad phi(x)`` and the quantities behind it.

        ``y*`` is found by damped Newton (inexact, the Newton systems solved by conjugate
        gradients on ``hvp_yy_g``, step halved until ``||grad_y g||`` decreases) until
        ``||grad_y g(x, y*)|| < tol``; ``v* = A^{-1} b`` by conjugate gradients to
        relative residual 1e-10; then ``grad phi = grad_x f - J v*``.

        Parameters
        ----------
        x : array_like, shape (n,)
        y0 : array_like, shape (n,), optional
            Starting point of the lower-level solve (default zeros); a nearby ``y``
            saves Newton steps.
        tol : float
            Target of ``||grad_y g(x, y*)||`` (absolute, default 1e-10).  When rounding
            in ``G y`` (of order ``1e-16 * kappa * sqrt(n) * |y|``) makes it unreachable,
            the best point found is used and a ``RuntimeWarning`` is issued.
        max_newton : int
            Bound on Newton steps.

        Returns
        -------
        grad_phi : ndarray, shape (n,)
        y_star : ndarray, shape (n,)
        v_star : ndarray, shape (n,)
        """
        x = _vector("x", x, self.n)
        if y0 is None:
            y = np.zeros(self.n)
        else:
            y = _vector("y0", y0, self.n).copy()
        grad = self.grad_y_g(x, y)
        grad_norm = float(np.linalg.norm(grad))
        for _ in range(max_newton):
            if grad_norm < tol:
                break
            # Forcing term min(0.5, ||grad||) keeps the convergence quadratic near y*.
            forcing = min(0.5, grad_norm)
            step = _conjugate_gradients(lambda w: self.hvp_yy_g(x, y, w), -grad, forcing)
            accepted = False
            t = 1.0
            while t >= 2.0 ** -30:
                trial = y + t * step
                trial_grad = self.grad_y_g(x, trial)
                trial_norm = float(np.linalg.norm(trial_grad))
                if trial_norm <= (1.0 - 1e-4 * t) * grad_norm:
                    accepted = True
                    break
                t *= 0.5
            if not accepted:
                # No decrease even along a tiny Newton step: rounding floor reached.
                break
            y, grad, grad_norm = trial, trial_grad, trial_norm
        if not grad_norm < tol:
            warnings.warn(
                f"Synthetic.true_hypergradient: ||grad_y g(x, y*)|| = {grad_norm:.3e} "
                f"did not reach tol = {tol:.1e}; using the best point found",
                RuntimeWarning,
                stacklevel=2,
            )
        b = self.grad_y_f(x, y)
        v = _conjugate_gradients(lambda w: self.hvp_yy_g(x, y, w), b, 1e-10)
        grad_phi = self.grad_x_f(x, y)
        grad_phi -= self.jvp_xy_g(x, y, v)
        return grad_phi, y, v


def _conjugate_gradients(apply, b, rtol, max_restarts=3):
    """Approximate solution of ``A v = b`` for symmetric positive definite ``A``.

    Stops when the recursively updated residual is below ``rtol * ||b||``; the true
    residual is then recomputed and, if it has drifted above the target by more than a
    factor of 10, CG restarts from the current iterate (at most ``max_restarts`` times).
    ``apply(w)`` returns ``A w`` as a new array.  Returns ``v``, shape ``b.shape``.
    """
    b_norm = float(np.linalg.norm(b))
    v = np.zeros_like(b)
    if b_norm == 0.0:
        return v
    target = rtol * b_norm
    max_iterations = 20 * b.size + 1000
    r = b.copy()
    for restart in range(max_restarts + 1):
        rr = float(np.dot(r, r))
        direction = r.copy()
        for _ in range(max_iterations):
            if math.sqrt(rr) <= target:
                break
            a_direction = apply(direction)
            curvature = float(np.dot(direction, a_direction))
            if not curvature > 0.0:
                # Not positive definite along this direction (or NaN): nothing sound
                # left to do with CG.
                break
            alpha = rr / curvature
            v += alpha * direction
            r -= alpha * a_direction
            rr_next = float(np.dot(r, r))
            direction *= rr_next / rr
            direction += r
            rr = rr_next
        r = b - apply(v)
        if restart == max_restarts or np.linalg.norm(r) <= 10.0 * target:
            break
    return v
