"""lr_y="auto": the inner step from the estimator's curvature (BilevelOptions.lrYAuto)."""

import pickle

import numpy as np
import pytest

import lancbio
from lancbio.problems import Synthetic


def _run(problem, lr_y, iterations, **options):
    opt = lancbio.Bilevel(problem, method="lancbio", lr_x=1.0, lr_y=lr_y, **options)
    for _ in range(iterations):
        info = opt.step()
    return opt, info


@pytest.mark.parametrize("kappa", [1e3, 1e5])
def test_auto_step_reaches_the_hand_set_one_over_kappa_hypergradient_with_the_same_products(kappa):
    problem = Synthetic(120, kappa=kappa, seed=1)
    hand, hand_info = _run(problem, 1 / kappa, 200)
    auto, auto_info = _run(problem, "auto", 200)
    assert auto_info.total_products == hand_info.total_products
    g_hand = np.linalg.norm(problem.true_hypergradient(hand.x)[0])
    g_auto = np.linalg.norm(problem.true_hypergradient(auto.x)[0])
    assert g_auto <= 1.02 * g_hand
    # The lower level's Hessian is constant here: its largest eigenvalue, densely.
    hessian = np.column_stack([problem.hvp_yy_g(auto.x, auto.y, e) for e in np.eye(problem.dy)])
    lam_max = np.linalg.eigvalsh((hessian + hessian.T) / 2)[-1]
    assert 0.9 * lam_max <= auto.curvature <= 2 * lam_max
    assert auto_info.lr_y == pytest.approx(1 / auto.curvature, rel=0.2)


class _PoorlyScaledQuadratic:
    """g = 1/2 y^T D y - x^T y with D = diag(1 .. 1e4), f = 1/2 ||y - c||^2 with c along the
    smallest eigenvector: the first Ritz value is 1, so theta = 1 would diverge 1e4-fold
    per inner step along the largest eigenvector."""

    def __init__(self, n=50):
        self.dx = self.dy = n
        self.d = np.logspace(0, 4, n)
        self.c = np.zeros(n)
        self.c[0] = 1.0

    def initial_point(self, seed=0):
        rng = np.random.default_rng(seed)
        return rng.standard_normal(self.dx), np.zeros(self.dy)

    def grad_y_g(self, x, y):
        return self.d * y - x

    def grad_x_f(self, x, y):
        return np.zeros(self.dx)

    def grad_y_f(self, x, y):
        return y - self.c

    def hvp_yy_g(self, x, y, v):
        return self.d * v

    def jvp_xy_g(self, x, y, v):
        return -v


def test_a_curvature_estimate_far_below_lambda_max_is_raised_before_the_inner_steps_diverge():
    problem = _PoorlyScaledQuadratic()
    opt = lancbio.Bilevel(problem, method="lancbio", lr_x=1e-3, lr_y="auto", m0=1, m_max=1)
    first = opt.step()
    assert first.lr_y == 0 and first.curvature == pytest.approx(problem.d[0], rel=1e-9)  # the poor estimate
    start = np.linalg.norm(problem.grad_y_g(opt.x, opt.y))
    for _ in range(40):
        info = opt.step()
        assert np.all(np.isfinite(opt.y))
    # Raised to at least lambda_max / 2, so every theta since is a converging step.
    assert opt.curvature >= problem.d[-1] / 2
    assert info.lr_y < 2 / problem.d[-1]
    assert np.linalg.norm(problem.grad_y_g(opt.x, opt.y)) < start


def test_auto_step_survives_pickle_bitwise_and_reset_forgets_the_curvature():
    problem = Synthetic(40, kappa=1e3, seed=2)
    a, _ = _run(problem, "auto", 7)
    b = pickle.loads(pickle.dumps(a))
    assert b.settings["lr_y"] == "auto" and b.curvature == a.curvature
    for _ in range(5):
        assert a.step() == b.step()
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    a.reset()
    assert a.curvature is None
    assert a.step().lr_y == 0


class _FailingCross(Synthetic):
    fail = False

    def jvp_xy_g(self, x, y, v):
        if self.fail:
            raise RuntimeError("cross product failed")
        return super().jvp_xy_g(x, y, v)


def test_a_failed_iteration_leaves_the_curvature_as_it_was():
    problem = _FailingCross(40, kappa=1e3, seed=3)
    a, _ = _run(problem, "auto", 3)
    twin, _ = _run(Synthetic(40, kappa=1e3, seed=3), "auto", 3)
    before = a.curvature
    problem.fail = True
    with pytest.raises(RuntimeError, match="cross product failed"):
        a.step()
    problem.fail = False
    assert a.curvature == before
    assert a.step() == twin.step()


def test_auto_step_needs_a_method_with_ritz_values_and_names_what_is_wrong():
    problem = Synthetic(20, kappa=10, seed=0)
    with pytest.raises(lancbio.InvalidArgumentError, match="lr_y_auto"):
        lancbio.Bilevel(problem, method="amigo-cg", lr_x=1.0, lr_y="auto")
    with pytest.raises(ValueError, match="theta0 is required"):
        lancbio.Bilevel(problem, method="subbio", lr_x=1.0, lr_y="auto")
    with pytest.raises(ValueError, match="'auto'"):
        lancbio.Bilevel(problem, method="lancbio", lr_x=1.0, lr_y="fast")
    opt = lancbio.Bilevel(problem, method="subbio", lr_x=1.0, lr_y="auto", theta0=0.01)
    opt.step()
    opt.step()
    assert opt.curvature > 0
    fixed = lancbio.Bilevel(problem, method="lancbio", lr_x=1.0, lr_y=0.01)
    fixed.step()
    assert fixed.curvature is None and fixed.info.curvature == 0
