"""lancbio.torch.HyperGradient under hostile input: NaN from the model, losses of the wrong
shape or without a graph, an exception raised inside autograd, unusable tensors. Each
failure raises and leaves the estimator unchanged: the same v and hvp_count, no .grad
touched, and the next compute equal (bitwise) to that of a twin that never saw it."""

import numpy as np
import pytest

from conftest import import_torch

torch = import_torch()

import lancbio  # noqa: E402
from lancbio.torch import HyperGradient  # noqa: E402

F64 = torch.float64


class Armed(torch.autograd.Function):
    """y -> y^2 / 2 whose second derivative runs through Python: it raises while ARMED
    counts down to zero, so a failure can be placed inside a chosen Hessian product."""

    countdown = None

    @staticmethod
    def forward(ctx, y):
        ctx.save_for_backward(y)
        return y * y / 2

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return Linear.apply(grad, y)


class Linear(torch.autograd.Function):
    """(grad, y) -> grad * y, whose backward is the Hessian product of Armed."""

    @staticmethod
    def forward(ctx, grad, y):
        ctx.save_for_backward(grad, y)
        return grad * y

    @staticmethod
    def backward(ctx, out):
        if Armed.countdown is not None:
            Armed.countdown -= 1
            if Armed.countdown < 0:
                raise RuntimeError("boom inside autograd")
        grad, y = ctx.saved_tensors
        return out * y, out * grad


class Problem:
    """g = sum_i a_i Armed(y)_i + exp(x) . y^2 / 2 + c . y, f = |y - t|^2 / 2, n = 6."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.a = torch.tensor(1.0 + rng.random(6), dtype=F64)
        self.c = torch.tensor(rng.standard_normal(6), dtype=F64)
        self.t = torch.tensor(rng.standard_normal(6), dtype=F64)
        self.y = torch.tensor(rng.standard_normal(6), dtype=F64, requires_grad=True)
        self.x = torch.tensor(0.3 * rng.standard_normal(6), dtype=F64, requires_grad=True)

    def losses(self, y=None):
        y = self.y if y is None else y
        g = (self.a * Armed.apply(y)).sum() + 0.5 * (torch.exp(self.x) * y * y).sum() + (self.c * y).sum()
        f = 0.5 * ((y - self.t) ** 2).sum()
        return g, f

    def make(self):
        return HyperGradient([self.y], [self.x], method="lancbio", m0=2, m_max=3)


@pytest.fixture(autouse=True)
def disarm():
    Armed.countdown = None
    yield
    Armed.countdown = None


def _state(hg):
    return [t.clone() for t in hg.v], hg.hvp_count, hg.info


def _prepared():
    """A problem, its estimator after two computes, and a twin in the same state."""
    p = Problem()
    hg, twin = p.make(), p.make()
    for _ in range(2):
        for h in (hg, twin):
            h.compute(*p.losses())
    p.x.grad = None
    return p, hg, twin


def _assert_unchanged_then_equal_to_the_twin(p, hg, twin, before):
    v, count, info = _state(hg)
    assert all(torch.equal(a, b) for a, b in zip(v, before[0])) and count == before[1] and info == before[2]
    assert p.x.grad is None
    got = hg.compute(*p.losses())[0].clone()
    p.x.grad = None
    want = twin.compute(*p.losses())[0]
    assert torch.equal(got, want)
    assert hg.hvp_count == twin.hvp_count and all(torch.equal(a, b) for a, b in zip(hg.v, twin.v))


@pytest.mark.parametrize("countdown", [0, 1, 2])
def test_an_exception_inside_autograd_in_a_hessian_product_leaves_the_estimator_unchanged(countdown):
    # The countdown runs over the products of the next computes (one or two each: restart
    # steps ask for two), so the failure falls on a first product or on a step's last one.
    p, hg, twin = _prepared()
    for _ in range(3):
        before = _state(hg)
        Armed.countdown = countdown
        try:
            hg.compute(*p.losses())
        except RuntimeError as error:
            assert "boom inside autograd" in str(error)
            break
        countdown, Armed.countdown = Armed.countdown, None
        p.x.grad = None
        twin.compute(*p.losses())
        p.x.grad = None
    else:
        pytest.fail("the armed product never ran")
    Armed.countdown = None
    _assert_unchanged_then_equal_to_the_twin(p, hg, twin, before)


def test_nan_from_the_model_in_the_gradient_leaves_the_estimator_unchanged():
    p, hg, twin = _prepared()
    before = _state(hg)
    poisoned = p.y * torch.tensor([1.0, 1.0, float("nan"), 1.0, 1.0, 1.0], dtype=F64)
    with pytest.raises(lancbio.NonFiniteInputError):
        hg.compute(*p.losses(poisoned))
    _assert_unchanged_then_equal_to_the_twin(p, hg, twin, before)


def test_nan_only_in_the_hessian_products_leaves_the_estimator_unchanged():
    p, hg, twin = _prepared()
    before = _state(hg)
    g, f = p.losses()
    nan = torch.tensor(float("nan"), dtype=F64)
    with pytest.raises(lancbio.NonFiniteProductError):
        hg.compute(g, f, hessian_loss=g + nan * (p.y ** 2).sum())
    _assert_unchanged_then_equal_to_the_twin(p, hg, twin, before)


def test_a_nan_direct_term_leaves_the_estimator_unchanged():
    p, hg, twin = _prepared()
    before = _state(hg)
    g, f = p.losses()
    with pytest.raises(lancbio.NonFiniteInputError, match="grad_x f"):
        hg.compute(g, f + torch.tensor(float("nan"), dtype=F64) * p.x.sum())
    _assert_unchanged_then_equal_to_the_twin(p, hg, twin, before)


@pytest.mark.parametrize("which", ["inner_loss", "outer_loss", "hessian_loss"])
def test_a_loss_of_the_wrong_shape_is_refused_and_changes_nothing(which):
    p, hg, twin = _prepared()
    before = _state(hg)
    g, f = p.losses()
    losses = dict(inner_loss=g, outer_loss=f, hessian_loss=None)
    losses[which] = (p.y * p.y) if which != "outer_loss" else (p.y - p.t) ** 2
    with pytest.raises(ValueError, match=f"{which} must be a scalar"):
        hg.compute(**losses)
    _assert_unchanged_then_equal_to_the_twin(p, hg, twin, before)


@pytest.mark.parametrize("how", ["detached", "no_grad", "not a tensor"])
def test_a_loss_without_a_graph_is_refused_and_changes_nothing(how):
    p, hg, twin = _prepared()
    before = _state(hg)
    g, f = p.losses()
    if how == "detached":
        f = f.detach()
    elif how == "no_grad":
        with torch.no_grad():
            f = p.losses()[1]
    else:
        f = f.detach().item()
    with pytest.raises((ValueError, TypeError), match="outer_loss"):
        hg.compute(g, f)
    _assert_unchanged_then_equal_to_the_twin(p, hg, twin, before)


def test_an_hparam_the_inner_loss_does_not_use_is_a_clear_error_and_changes_nothing():
    p = Problem()
    stray = torch.zeros(2, dtype=F64, requires_grad=True)
    hg = HyperGradient([p.y], [p.x, stray], method="lancbio")
    g, f = p.losses()
    with pytest.raises(ValueError, match=r"hparams\[1\] not used by inner_loss.*no hyper-gradient"):
        hg.compute(g, f + stray.sum())
    assert hg.hvp_count == 0 and hg.info is None and p.x.grad is None and stray.grad is None


def test_a_param_the_inner_loss_does_not_use_is_a_clear_error():
    p = Problem()
    stray = torch.zeros(2, dtype=F64, requires_grad=True)
    hg = HyperGradient([p.y, stray], [p.x], method="lancbio")
    with pytest.raises(ValueError, match=r"params\[1\] not used by inner_loss.*not unique"):
        hg.compute(*p.losses())
    assert hg.hvp_count == 0


def test_an_inner_loss_linear_in_the_params_is_a_clear_error():
    p = Problem()
    hg = HyperGradient([p.y], [p.x], method="lancbio")
    with pytest.raises(ValueError, match="Hessian of the inner loss is zero"):
        hg.compute((torch.exp(p.x) * p.y).sum(), (p.y ** 2).sum())
    assert hg.hvp_count == 0


def test_unusable_tensors_and_options_are_refused_at_creation():
    y = torch.zeros(3, dtype=F64, requires_grad=True)
    x = torch.zeros(2, dtype=F64, requires_grad=True)
    with pytest.raises(TypeError, match="mix dtypes"):
        HyperGradient([y], [torch.zeros(2, dtype=torch.float32, requires_grad=True)])
    with pytest.raises(TypeError, match="float32 or torch.float64"):
        HyperGradient([torch.zeros(3, dtype=torch.float16, requires_grad=True)], [x])
    with pytest.raises(ValueError, match="does not require grad"):
        HyperGradient([torch.zeros(3, dtype=F64)], [x])
    with pytest.raises(ValueError, match="not a leaf"):
        HyperGradient([y], [x * 2])
    with pytest.raises(ValueError, match="each tensor may appear once"):
        HyperGradient([y], [x, y])
    with pytest.raises(ValueError, match="params is empty"):
        HyperGradient([], [x])
    with pytest.raises(ValueError, match="unknown method"):
        HyperGradient([y], [x], method="newton")
    with pytest.raises(TypeError, match="maxiter"):
        HyperGradient([y], [x], method="cg")
    with pytest.raises(TypeError, match="sets dtype itself"):
        HyperGradient([y], [x], dtype=np.float32)
    with pytest.raises(lancbio.InvalidArgumentError):
        HyperGradient([y], [x], method="lancbio", m0=0)


class NanGradient(torch.autograd.Function):
    """The identity, whose derivative is NaN: it poisons only what is differentiated
    with respect to its input."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def test_a_nan_cross_term_raises_after_the_step_and_touches_no_grad():
    # The cross term needs the new v, so it runs after the estimator's step: the step stays
    # (as documented), but nothing reaches .grad.
    p = Problem()
    hg = p.make()
    g = 0.5 * (torch.exp(NanGradient.apply(p.x)) * p.y * p.y).sum() + (p.c * p.y).sum()
    f = 0.5 * ((p.y - p.t) ** 2).sum()
    p.x.grad = marker = torch.full_like(p.x, 7.0)
    with pytest.raises(lancbio.NonFiniteResultError, match="cross term"):
        hg.compute(g, f)
    assert hg.hvp_count > 0
    assert p.x.grad is marker and torch.equal(marker, torch.full_like(p.x, 7.0))
