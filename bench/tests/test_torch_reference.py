"""The plain-PyTorch LancBiO estimator of the benchmark (bench/torch_reference.py) computes
what lancbio.torch.HyperGradient(method="lancbio") computes, to rounding: which is what
makes timing the two against each other a like-for-like comparison."""

import math

import pytest

torch = pytest.importorskip("torch")


def _problem(seed=0, samples=40, features=5, classes=3):
    """A small weighted softmax regression (hyper-cleaning's shape): weights and bias as two
    params, per-sample weights sigmoid(x) as the hparams."""
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(samples, features, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, classes, (samples,), generator=gen)
    A_val = torch.randn(samples, features, generator=gen, dtype=torch.float64)
    labels_val = torch.randint(0, classes, (samples,), generator=gen)
    W = (0.1 * torch.randn(classes, features, generator=gen, dtype=torch.float64)).requires_grad_()
    c = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    x = (0.5 * torch.randn(samples, generator=gen, dtype=torch.float64)).requires_grad_()

    def inner():
        losses = torch.nn.functional.cross_entropy(A @ W.T + c, labels, reduction="none")
        return (torch.sigmoid(x) * losses).mean() + 0.01 * ((W * W).sum() + (c * c).sum())

    def outer():
        return torch.nn.functional.cross_entropy(A_val @ W.T + c, labels_val)

    return [W, c], x, inner, outer


@pytest.mark.parametrize("schedule", [dict(m0=1, m_max=6, growth=1.5, grow_every=3),
                                      dict(m0=4, m_max=4, growth=1.0, grow_every=1)])
def test_plain_torch_lanczos_gives_the_library_v_and_hypergradient_to_rounding(schedule):
    from bench.torch_reference import TorchLanczosHyperGradient
    from lancbio.torch import HyperGradient

    params, x, inner, outer = _problem()
    lib = HyperGradient(params, [x], method="lancbio", **schedule)
    plain = TorchLanczosHyperGradient(params, [x], **schedule, orthogonality_tol=1e-2)
    periods = set()
    for k in range(30):
        g, f = inner(), outer()
        (h_lib,) = lib.compute(g, f)
        x.grad = None
        (h_plain,) = plain.compute(g, f)
        v_lib = torch.cat([t.reshape(-1) for t in lib.v])
        scale = float(torch.linalg.vector_norm(v_lib))
        assert float(torch.linalg.vector_norm(plain.v - v_lib)) <= 1e-10 * scale, k
        assert float(torch.linalg.vector_norm(h_plain - h_lib)) <= 1e-10 * float(torch.linalg.vector_norm(h_lib)), k
        assert plain.hvp_count == lib.hvp_count and plain.period == lib.estimator.period
        periods.add(plain.period)
        # Move (x, y) as a bilevel loop does, so every step sees another Hessian.
        with torch.no_grad():
            x -= 5.0 * h_lib
        x.grad = None
        for _ in range(2):
            gW, gc = torch.autograd.grad(inner(), params)
            with torch.no_grad():
                params[0] -= 0.5 * gW
                params[1] -= 0.5 * gc
    # Cycles of more than one step ran, and restarts happened (the schedule was exercised).
    assert lib.estimator.restarts > 1 and max(periods) > 1
    assert math.isfinite(scale) and scale > 0
