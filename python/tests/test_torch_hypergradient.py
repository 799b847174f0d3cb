"""lancbio.torch.HyperGradient against independent references: the closed-form hyper-gradient
of ridge regression with per-feature penalties, finite differences of phi with the lower
level re-solved by Newton's method (an nn.Module), the numpy estimators fed the same
products, and backward() of a surrogate loss for the accumulation into .grad."""

import numpy as np
import pytest

from conftest import import_torch

torch = import_torch()

import lancbio  # noqa: E402
from lancbio.torch import METHODS, HyperGradient  # noqa: E402

F64 = torch.float64


class Ridge:
    """g(x, y) = ||X y - t||^2 / 2m + sum_i exp(x_i) y_i^2 / 2, f(x, y) = ||Xv y - tv||^2 / 2m.

    y* = A^{-1} X^T t / m with A = X^T X / m + diag(exp x), and
    grad phi = -diag(exp(x) y*) A^{-1} Xv^T (Xv y* - tv) / m exactly (f has no direct term)."""

    def __init__(self, d=8, m=100, seed=0, dtype=F64):
        rng = np.random.default_rng(seed)
        self.d, self.m = d, m
        self.X, self.Xv = rng.standard_normal((m, d)), rng.standard_normal((m, d))
        self.t, self.tv = rng.standard_normal(m), rng.standard_normal(m)
        self.x = 0.5 * rng.standard_normal(d)
        self.dtype = dtype
        self.T = {k: torch.tensor(getattr(self, k), dtype=dtype) for k in ("X", "Xv", "t", "tv")}

    def A(self, x=None):
        x = self.x if x is None else x
        return self.X.T @ self.X / self.m + np.diag(np.exp(x))

    def y_star(self, x=None):
        return np.linalg.solve(self.A(x), self.X.T @ self.t / self.m)

    def exact(self, x=None):
        x = self.x if x is None else x
        y = self.y_star(x)
        b = self.Xv.T @ (self.Xv @ y - self.tv) / self.m
        return -np.exp(x) * y * np.linalg.solve(self.A(x), b)

    def losses(self, y, x):
        T = self.T
        g = ((T["X"] @ y - T["t"]) ** 2).sum() / (2 * self.m) + 0.5 * (torch.exp(x) * y * y).sum()
        f = ((T["Xv"] @ y - T["tv"]) ** 2).sum() / (2 * self.m)
        return g, f


# Options under which each method converges on the ridge Hessian (eigenvalues in about
# [1, 3.5]) at a fixed point within CALLS calls.
CONVERGING = {
    "lancbio": dict(m0=8, m_max=8),
    "lanczos": dict(m0=4, m_max=8),
    "subbio": dict(theta0=0.25),
    "cg": dict(maxiter=8),
    "minres": dict(maxiter=8),
    "gd": dict(eta=0.25, steps=20),
    "neumann": dict(eta=0.25, terms=200),
    "random-neumann": dict(eta=0.25, max_terms=100, seed=3),
}
CALLS = 40


def test_every_method_of_the_python_estimators_is_offered_and_tested():
    assert set(METHODS) == set(lancbio.estimators.BY_NAME) | {"lancbio"} == set(CONVERGING)


@pytest.mark.parametrize("method", sorted(CONVERGING))
def test_ridge_hypergradient_matches_the_closed_form_for_every_method(method):
    p = Ridge()
    y = torch.tensor(p.y_star(), dtype=F64, requires_grad=True)
    x = torch.tensor(p.x, dtype=F64, requires_grad=True)
    hg = HyperGradient([y], [x], method=method, **CONVERGING[method])
    for _ in range(CALLS):
        grads = hg.compute(*p.losses(y, x))
    assert isinstance(grads, tuple) and len(grads) == 1
    assert grads[0].shape == x.shape and grads[0].dtype == F64
    exact = p.exact()
    np.testing.assert_allclose(grads[0].numpy(), exact, rtol=1e-6, atol=1e-9 * np.abs(exact).max())


def test_params_and_hparams_of_any_shapes_give_the_closed_form():
    # y as a 2x2 matrix and a vector, x as a vector and a 2x2 matrix: the flat layout must
    # put every entry where the closed form has it.
    p = Ridge()
    ys, xs = p.y_star(), p.x
    ya = torch.tensor(ys[:4].reshape(2, 2), dtype=F64, requires_grad=True)
    yb = torch.tensor(ys[4:], dtype=F64, requires_grad=True)
    xa = torch.tensor(xs[:4], dtype=F64, requires_grad=True)
    xb = torch.tensor(xs[4:].reshape(2, 2), dtype=F64, requires_grad=True)
    hg = HyperGradient([ya, yb], [xa, xb], method="lancbio", m0=8, m_max=8)
    assert hg.n == 8
    for _ in range(10):
        grads = hg.compute(*p.losses(torch.cat([ya.reshape(-1), yb]), torch.cat([xa, xb.reshape(-1)])))
    assert [g.shape for g in grads] == [xa.shape, xb.shape]
    got = np.concatenate([grads[0].numpy(), grads[1].numpy().reshape(-1)])
    np.testing.assert_allclose(got, p.exact(), rtol=1e-8)
    v = hg.v
    assert [t.shape for t in v] == [ya.shape, yb.shape]
    exact_v = np.linalg.solve(p.A(), p.Xv.T @ (p.Xv @ ys - p.tv) / p.m)
    np.testing.assert_allclose(np.concatenate([v[0].numpy().reshape(-1), v[1].numpy()]), exact_v, rtol=1e-8)


class Classifier(torch.nn.Module):
    """A linear softmax classifier of scaled features, logits = W (X * exp(s)) + c, with
    its data: g is the training cross-entropy plus exp(log_lam) / 2 times the squared norm
    of every parameter (strongly convex), f the validation cross-entropy."""

    def __init__(self, d=5, k=3, m=60, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.linear = torch.nn.Linear(d, k, dtype=F64)
        self.X, self.Xv = (torch.randn(m, d, generator=gen, dtype=F64) for _ in range(2))
        w = torch.randn(d, k, generator=gen, dtype=F64)
        self.labels, self.labels_v = (self.X @ w).argmax(1), (self.Xv @ w).argmax(1)
        self.log_lam = torch.tensor(-1.0, dtype=F64, requires_grad=True)
        self.s = (0.3 * torch.randn(d, generator=gen, dtype=F64)).requires_grad_()

    def forward(self, X, s):
        return self.linear(X * torch.exp(s))

    def inner(self, log_lam, s, params=None):
        params = dict(self.named_parameters()) if params is None else params
        logits = torch.func.functional_call(self, params, (self.X, s))
        penalty = sum((p * p).sum() for p in params.values())
        return torch.nn.functional.cross_entropy(logits, self.labels) + 0.5 * torch.exp(log_lam) * penalty

    def outer(self, s):
        return torch.nn.functional.cross_entropy(self(self.Xv, s), self.labels_v)

    def solve(self, log_lam, s):
        """Newton's method on the lower level with the dense Hessian, to rounding."""
        names = [n for n, _ in self.named_parameters()]
        shapes = [p.shape for p in self.parameters()]
        sizes = [p.numel() for p in self.parameters()]

        def of_flat(z):
            return self.inner(log_lam, s, {n: q.view(shape) for n, q, shape in zip(names, z.split(sizes), shapes)})

        for _ in range(50):
            z = torch.cat([p.detach().reshape(-1) for p in self.parameters()])
            grad = torch.func.grad(of_flat)(z)
            if float(grad.norm()) < 1e-13:
                break
            z = z - torch.linalg.solve(torch.func.hessian(of_flat)(z), grad)
            with torch.no_grad():
                for p, q in zip(self.parameters(), z.split(sizes)):
                    p.copy_(q.view(p.shape))

    def phi(self, log_lam, s):
        self.solve(log_lam, s)
        with torch.no_grad():
            return float(self.outer(s))


def test_module_hypergradient_matches_finite_differences_of_phi_with_the_lower_level_resolved():
    model = Classifier()
    lam0, s0 = model.log_lam.detach().clone(), model.s.detach().clone()
    model.solve(lam0, s0)
    hg = HyperGradient(model.parameters(), [model.log_lam, model.s], method="lancbio", m0=18, m_max=18)
    assert hg.n == 18
    # y is fixed, so the Lanczos solve converges; when its orthogonality safeguard restarts
    # a cycle depends on rounding (torch's threaded reductions vary from run to run), so
    # the calls go on until a converged one rather than for a fixed count.
    for _ in range(60):
        grads = hg.compute(model.inner(model.log_lam, model.s), model.outer(model.s))
        if hg.info.residual < 1e-10 and hg.hvp_count >= 25:
            break
    assert hg.info.residual < 1e-10
    eps = 1e-5
    fd = [(model.phi(lam0 + eps, s0) - model.phi(lam0 - eps, s0)) / (2 * eps)]
    for e in torch.eye(5, dtype=F64) * eps:
        fd.append((model.phi(lam0, s0 + e) - model.phi(lam0, s0 - e)) / (2 * eps))
    got = np.concatenate([[float(grads[0])], grads[1].numpy()])
    np.testing.assert_allclose(got, fd, rtol=1e-5, atol=1e-8)
    # s enters the outer loss: its direct term is not zero, so the test covers one.
    assert float(torch.autograd.grad(model.outer(model.s), model.s)[0].abs().max()) > 1e-3


def test_iterates_agree_with_the_numpy_estimator_fed_the_same_products():
    # An outer loop with moving x and y: the torch adapter and a numpy DynamicLanczos that
    # steps with the dense Hessian and the closed-form b must give the same v and
    # hyper-gradients to rounding at every iteration.
    p = Ridge(seed=4)
    y = torch.zeros(p.d, dtype=F64, requires_grad=True)
    x = torch.tensor(p.x, dtype=F64, requires_grad=True)
    options = dict(m0=2, m_max=5, growth=1.5, grow_every=3)
    hg = HyperGradient([y], [x], method="lancbio", **options)
    reference = lancbio.DynamicLanczos(p.d, **options)
    for k in range(30):
        g, f = p.losses(y, x)
        xn, yn = x.detach().numpy().copy(), y.detach().numpy().copy()
        x.grad = None
        grad = hg.compute(g, f)[0].numpy()
        A = p.A(xn)
        b = p.Xv.T @ (p.Xv @ yn - p.tv) / p.m
        v = reference.step(A, b)
        np.testing.assert_allclose(hg.v[0].numpy(), v, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(grad, -np.exp(xn) * yn * v, rtol=1e-10, atol=1e-13)
        assert hg.hvp_count == reference.hvp_count
        with torch.no_grad():  # one inner gradient step and one outer step
            gy = torch.tensor(p.X.T @ (p.X @ yn - p.t) / p.m + np.exp(xn) * yn)
            y -= 0.3 * gy
            x -= 2.0 * x.grad


def test_compute_accumulates_into_grad_exactly_as_backward_of_the_surrogate():
    # grad_x of f(x, y) - <grad_y g(x, y), stop_gradient(v)> is the hyper-gradient, so
    # backward() of that surrogate is the reference of both the value and the accumulation.
    p = Ridge(seed=1)
    y = torch.tensor(p.y_star(), dtype=F64, requires_grad=True)
    x = torch.tensor(p.x, dtype=F64, requires_grad=True)
    x2 = torch.tensor(p.x, dtype=F64, requires_grad=True)
    unused_by_f = torch.tensor(0.0, dtype=F64, requires_grad=True)
    hg = HyperGradient([y], [x], method="cg", maxiter=8)
    start = torch.arange(p.d, dtype=F64)
    x.grad, x2.grad = start.clone(), start.clone()
    for _ in range(3):
        grads = hg.compute(*p.losses(y, x))
        v = hg.v[0]
        g, f = p.losses(y, x2)
        gy = torch.autograd.grad(g, y, create_graph=True)[0]
        (f - (gy * v).sum()).backward()
        assert torch.equal(x.grad, x2.grad) or torch.allclose(x.grad, x2.grad, rtol=1e-14, atol=1e-15)
    assert not torch.equal(grads[0], torch.zeros_like(grads[0]))
    # A grad of None is set, not added to, and is not the returned tensor itself.
    x.grad = None
    grads = hg.compute(*p.losses(y, x))
    assert torch.equal(x.grad, grads[0]) and x.grad.data_ptr() != grads[0].data_ptr()
    # An hparam g uses but f does not: the direct term is zero, the result is -(cross term).
    hg2 = HyperGradient([y], [x, unused_by_f], method="cg", maxiter=8)
    g, f = p.losses(y, x)
    grads = hg2.compute(g + unused_by_f * (y * y).sum(), f)
    assert grads[1].shape == () and unused_by_f.grad is not None and float(grads[1]) != 0.0


def test_the_optimizer_steps_the_upper_level_with_the_accumulated_grad():
    p = Ridge(seed=2)
    y = torch.tensor(p.y_star(), dtype=F64, requires_grad=True)
    x = torch.tensor(p.x, dtype=F64, requires_grad=True)
    optimizer = torch.optim.SGD([x], lr=0.5)
    hg = HyperGradient([y], [x], method="lancbio", m0=8, m_max=8)
    for _ in range(10):
        hg.compute(*p.losses(y, x))
        optimizer.zero_grad()
        grads = hg.compute(*p.losses(y, x))
    before = x.detach().clone()
    optimizer.step()
    assert torch.allclose(x.detach(), before - 0.5 * grads[0], rtol=0, atol=1e-15)


def test_float32_tensors_run_a_float32_estimator_that_agrees_with_the_closed_form():
    p = Ridge(seed=3, dtype=torch.float32)
    y = torch.tensor(p.y_star(), dtype=torch.float32, requires_grad=True)
    x = torch.tensor(p.x, dtype=torch.float32, requires_grad=True)
    hg = HyperGradient([y], [x], method="lancbio", m0=8, m_max=8)
    assert hg.estimator.dtype == np.float32
    for _ in range(10):
        grads = hg.compute(*p.losses(y, x))
    assert grads[0].dtype == torch.float32 and hg.v[0].dtype == torch.float32
    exact = p.exact()
    np.testing.assert_allclose(grads[0].numpy(), exact, rtol=1e-3, atol=1e-4 * np.abs(exact).max())


def test_the_staged_path_of_devices_gives_bitwise_the_in_place_results():
    # Off the CPU the vectors go through host buffers; forcing that path on the CPU must
    # change no bit of any result.
    results = []
    for staged in (False, True):
        p = Ridge(seed=5)
        ya = torch.tensor(p.y_star()[:3], dtype=F64, requires_grad=True)
        yb = torch.tensor(p.y_star()[3:], dtype=F64, requires_grad=True)
        x = torch.tensor(p.x, dtype=F64, requires_grad=True)
        hg = HyperGradient([ya, yb], [x], method="lancbio", m0=2, m_max=4, _staged=staged)
        out = []
        for _ in range(6):
            out.append(hg.compute(*p.losses(torch.cat([ya, yb]), x))[0].clone())
            with torch.no_grad():
                ya -= 0.1 * ya
        results.append((torch.stack(out), torch.cat(hg.v), hg.hvp_count))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    assert results[0][2] == results[1][2]


def test_a_separate_hessian_loss_takes_the_hessian_and_the_inner_loss_the_cross_term():
    # hessian_loss = 2 g: A doubles, so v halves and so does the hyper-gradient.
    p = Ridge(seed=6)
    y = torch.tensor(p.y_star(), dtype=F64, requires_grad=True)
    x = torch.tensor(p.x, dtype=F64, requires_grad=True)
    hg = HyperGradient([y], [x], method="lancbio", m0=8, m_max=8)
    for _ in range(10):
        g, f = p.losses(y, x)
        grads = hg.compute(g, f, hessian_loss=2 * p.losses(y, x)[0])
    np.testing.assert_allclose(grads[0].numpy(), p.exact() / 2, rtol=1e-8)


def test_reset_returns_to_the_estimator_state_after_creation():
    p = Ridge(seed=7)
    y = torch.tensor(p.y_star(), dtype=F64, requires_grad=True)
    x = torch.tensor(p.x, dtype=F64, requires_grad=True)
    hg = HyperGradient([y], [x], method="lancbio", m0=3, m_max=3)
    assert hg.info is None and hg.hvp_count == 0
    first = hg.compute(*p.losses(y, x))[0].clone()
    hg.compute(*p.losses(y, x))
    hg.reset()
    assert hg.info is None and hg.hvp_count == 0 and not any(bool(t.any()) for t in hg.v)
    assert torch.equal(hg.compute(*p.losses(y, x))[0], first)


def test_curvature_lies_inside_the_spectrum_and_reaches_its_extremes_once_the_krylov_space_is_full():
    p = Ridge(seed=8)
    eigenvalues = np.linalg.eigvalsh(p.A())
    y = torch.tensor(p.y_star(), dtype=F64, requires_grad=True)
    x = torch.tensor(p.x, dtype=F64, requires_grad=True)
    hg = HyperGradient([y], [x], method="lancbio", m0=8, m_max=8)
    assert hg.curvature is None
    for _ in range(8):
        hg.compute(*p.losses(y, x))
        low, high = hg.curvature
        assert eigenvalues[0] * (1 - 1e-12) <= low <= high <= eigenvalues[-1] * (1 + 1e-12)
    np.testing.assert_allclose(hg.curvature, [eigenvalues[0], eigenvalues[-1]], rtol=1e-8)
    hg.reset()
    assert hg.curvature is None
    cg = HyperGradient([y], [x], method="cg", maxiter=3)
    cg.compute(*p.losses(y, x))
    assert cg.curvature is None
