"""Data hyper-cleaning in PyTorch: lancbio.torch.Bilevel on the linear model gives the
iterates of lancbio.Bilevel on the numpy problem (same data, same settings) to rounding for
every method, and `python3 -m lancbio hyperclean --backend torch` runs the linear and MLP
models, full batch and mini-batch."""

import importlib.util

import numpy as np
import pytest

from conftest import import_torch
from test_cli import run_cli, table_rows

torch = import_torch()

import lancbio  # noqa: E402
from lancbio.torch.bilevel import Bilevel  # noqa: E402
from lancbio.torch.hypercleaning import HyperCleaningModel  # noqa: E402

pytestmark = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                reason="scikit-learn (the digits data) is not installed")


@pytest.fixture(scope="module")
def problem():
    from lancbio.problems import HyperCleaning

    return HyperCleaning.digits(corruption=0.5, seed=0)


@pytest.mark.parametrize("method", list(lancbio.METHODS))
def test_the_torch_loop_gives_the_numpy_back_end_iterates_to_rounding(problem, method):
    options = dict(lr_x=500.0, lr_y=0.1)
    if method == "lancbio":
        options.update(inner_steps=5, m0=1, growth=1.3, grow_every=2, m_max=4)
    x0, y0 = problem.initial_point()
    reference = lancbio.Bilevel(problem, method, x0=x0, y0=y0, **options)
    model = HyperCleaningModel(problem, "linear")
    loop = Bilevel(model.params, [model.x], model.inner_loss, model.outer_loss, method, **options)
    for _ in range(8):
        info = reference.step()
        record = loop.step()
        x, y = model.x.detach().numpy(), model.params[0].detach().numpy().ravel()
        np.testing.assert_allclose(x, reference.x, rtol=1e-11, atol=1e-12 * np.abs(reference.x).max())
        np.testing.assert_allclose(y, reference.y, rtol=1e-11, atol=1e-12 * np.abs(reference.y).max())
        assert record["hvps"] == info.total_products
        assert record["hypergradient_norm"] == pytest.approx(info.hypergradient_norm, rel=1e-10)
    assert loop.settings["inner_steps"] == reference.settings["inner_steps"]
    reference.close()
    loop.close()


def test_a_failed_iteration_leaves_x_and_y_as_before(problem):
    model = HyperCleaningModel(problem, "linear")
    calls = [0]

    def outer():
        calls[0] += 1
        loss = model.outer_loss()
        return loss * float("nan") if calls[0] == 2 else loss

    loop = Bilevel(model.params, [model.x], model.inner_loss, outer, "soba", lr_x=500.0, lr_y=0.1)
    loop.step()
    x, y = model.x.detach().clone(), model.params[0].detach().clone()
    with pytest.raises(lancbio.NonFiniteInputError):
        loop.step()
    assert torch.equal(model.x, x) and torch.equal(model.params[0], y) and loop.iteration == 1


@pytest.mark.parametrize("extra", [["--model", "linear"], ["--model", "mlp", "--batch", "256"]])
def test_hyperclean_torch_back_end_runs_and_cleans(tmp_path, extra):
    result = run_cli("hyperclean", "--backend", "torch", *extra, "--seconds", "0.5", "--methods", "lancbio,soba",
                     "--output", str(tmp_path / "clean.png"), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "torch back end" in result.stdout
    assert "lancbio" in result.stderr and "validation loss" in result.stderr  # progress lines
    rows = table_rows(result.stdout)
    assert set(rows) == {"lancbio", "soba"}
    for cells in rows.values():
        loss, accuracy = float(cells[4]), float(cells[5])
        assert 0 < loss < 2.30 and accuracy > 0.15   # better than y = 0 (log 10, chance)
        assert cells[-1] == "ok"


def test_the_numpy_back_end_refuses_the_torch_only_options():
    result = run_cli("hyperclean", "--model", "mlp", "--seconds", "0.1")
    assert result.returncode == 2 and "need --backend torch" in result.stderr
