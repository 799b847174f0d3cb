"""pickle, copy.copy and copy.deepcopy of estimators and Bilevel go through the library's
checkpoints: the copy is independent and its next steps are bitwise the original's; damaged
bytes, steps in progress and unpicklable problems are refused with a clear error.

The references are the originals themselves, stepped on alongside their copies with the
same drifting operators, compared bit for bit.
"""

import copy
import pickle

import numpy as np
import pytest

import lancbio
from conftest import FACTORIES, spd_matrix


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint64 if a.dtype == np.float64 else np.uint32)


def drifting(rng, n, count):
    """Operators and right-hand sides that change from step to step, as in a bilevel run."""
    base = spd_matrix(rng, n, cond=8.0)
    return [(base + 0.05 * k * np.diag(np.linspace(0, 1, n)), rng.standard_normal(n)) for k in range(count)]


COPIES = {
    "pickle": lambda obj: pickle.loads(pickle.dumps(obj)),
    "pickle-protocol-2": lambda obj: pickle.loads(pickle.dumps(obj, protocol=2)),
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
}


@pytest.mark.parametrize("how", sorted(COPIES))
@pytest.mark.parametrize("split", [0, 1, 5])
def test_a_copied_estimator_takes_bitwise_the_originals_next_steps(method, dtype, how, split, rng):
    n = 12
    sequence = drifting(rng, n, split + 6)
    original = FACTORIES[method](n, dtype=dtype)
    for a, b in sequence[:split]:
        original.step(a, b.astype(dtype))
    clone = COPIES[how](original)
    assert type(clone) is type(original) and clone is not original
    assert clone.n == n and clone.dtype == original.dtype and repr(clone) == repr(original)
    assert clone.info == original.info and clone.hvp_count == original.hvp_count
    assert np.array_equal(bits(clone.v), bits(original.v))
    for a, b in sequence[split:]:
        v = original.step(a, b.astype(dtype))
        w = clone.step(a, b.astype(dtype))
        assert np.array_equal(bits(w), bits(v)), f"{method} {dtype.__name__} via {how} after {split} steps"
        assert clone.info == original.info


def test_a_copy_is_independent_and_keeps_v0(rng):
    n = 8
    v0 = rng.standard_normal(n)
    original = lancbio.CG(n, maxiter=3, v0=v0)
    a, b = spd_matrix(rng, n), rng.standard_normal(n)
    original.step(a, b)
    clone = copy.copy(original)
    clone.step(a, b)
    assert original.hvp_count == 4 and clone.hvp_count == 8
    clone.reset()
    assert np.array_equal(clone.v, v0) and clone.info is None
    original.close()
    assert np.array_equal(clone.v, v0)  # the copy owns its own handle


def test_reverse_communication_continues_after_a_pickle_taken_between_steps(rng):
    n = 10
    a, b = spd_matrix(rng, n), rng.standard_normal(n)
    original = lancbio.DynamicLanczos(n, m0=3, m_max=6)
    for _ in range(2):
        original.step(a, b)
    clone = pickle.loads(pickle.dumps(original))
    for est in (original, clone):
        x = est.begin(b)
        while x is not None:
            x = est.resume(a @ x)
    assert np.array_equal(bits(clone.v), bits(original.v)) and clone.info == original.info


def test_a_step_in_progress_cannot_be_pickled_or_copied_and_goes_on(rng):
    n = 6
    a, b = spd_matrix(rng, n), rng.standard_normal(n)
    est = lancbio.DynamicLanczos(n)
    x = est.begin(b)
    for how in COPIES.values():
        with pytest.raises(lancbio.InvalidStateError, match="step"):
            how(est)
    while x is not None:
        x = est.resume(a @ x)
    assert est.info is not None
    pickle.dumps(est)


def test_an_estimator_cannot_be_copied_from_inside_its_own_operator(rng):
    n = 6
    a, b = spd_matrix(rng, n), rng.standard_normal(n)
    est = lancbio.CG(n, maxiter=2)
    seen = []

    def op(q):
        try:
            pickle.dumps(est)
        except lancbio.InvalidStateError as error:
            seen.append(error)
        return a @ q

    est.step(op, b)
    assert seen and all(isinstance(e, lancbio.InvalidStateError) for e in seen)


def test_a_closed_estimator_cannot_be_pickled():
    est = lancbio.GD(4, eta=0.1)
    est.close()
    with pytest.raises(lancbio.InvalidHandleError):
        pickle.dumps(est)


def test_damaged_checkpoint_bytes_raise_invalid_checkpoint_error(rng):
    n = 7
    est = lancbio.DynamicLanczos(n, m0=4, m_max=4)
    a, b = spd_matrix(rng, n), rng.standard_normal(n)
    for _ in range(2):
        est.step(a, b)
    restore, (cls, data, state) = est.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    assert isinstance(data, bytes) and data[:8] == b"LBIOCKPT"
    for index in range(0, len(data), 5):
        damaged = bytearray(data)
        damaged[index] ^= 0x20
        with pytest.raises(lancbio.InvalidCheckpointError) as caught:
            restore(cls, bytes(damaged), state)
        assert caught.value.status == -12 and isinstance(caught.value, ValueError) and caught.value.message
    for length in (0, 7, 55, len(data) // 2, len(data) - 1):
        with pytest.raises(lancbio.InvalidCheckpointError, match="truncated|not a lancbio checkpoint"):
            restore(cls, data[:length], state)
    with pytest.raises(TypeError):
        restore(cls, 12345, state)
    # A checkpoint of another estimator under this class's name is refused too.
    other = lancbio.CG(n, maxiter=2).__reduce_ex__(2)[1][1]
    with pytest.raises(ValueError, match="another estimator"):
        restore(cls, other, state)
    assert np.array_equal(bits(restore(cls, bytearray(data), state).v), bits(est.v))  # any bytes-like


# -- Bilevel ---------------------------------------------------------------------------------

class Cubic:
    """g = 0.5 y^T D y + 0.025 sum y^4 - y^T C x, f = 0.5 ||y - c||^2 + 0.05 ||x||^2: the
    Hessian of g moves with y, so the estimators see a drifting operator."""

    def __init__(self, dx=4, dy=6, seed=0):
        rng = np.random.default_rng(seed)
        self.d = np.linspace(1.0, 4.0, dy)
        self.C = 0.3 * rng.standard_normal((dy, dx))
        self.c = rng.standard_normal(dy)
        self.dx, self.dy = dx, dy
        self.owner = None

    def grad_y_g(self, x, y):
        return self.d * y + 0.1 * y**3 - self.C @ x

    def grad_x_f(self, x, y):
        return 0.1 * x

    def grad_y_f(self, x, y):
        return y - self.c

    def hvp_yy_g(self, x, y, v):
        return (self.d + 0.3 * y**2) * v

    def jvp_xy_g(self, x, y, v):
        return -self.C.T @ v


def make_bilevel(method="lancbio", problem=None, **options):
    problem = problem or Cubic()
    options.setdefault("lr_x", 0.5)
    options.setdefault("lr_y", 0.2)
    return lancbio.Bilevel(problem, method=method, x0=np.linspace(-1, 1, problem.dx), y0=np.zeros(problem.dy),
                           **options)


@pytest.mark.parametrize("how", sorted(COPIES))
@pytest.mark.parametrize("method", ["lancbio", "amigo-cg", "ttsa"])
def test_a_copied_bilevel_takes_bitwise_the_originals_next_iterations(method, how):
    original = make_bilevel(method, lr_x_decay=0.3, inner_steps=2)
    for _ in range(4):
        original.step()
    clone = COPIES[how](original)
    assert clone.info == original.info and clone.settings == original.settings and clone.method == method
    for _ in range(6):
        a, b = original.step(), clone.step()
        assert a == b
        for name in ("x", "y", "v", "hypergradient"):
            assert np.array_equal(bits(getattr(clone, name)), bits(getattr(original, name))), (method, how, name)


def test_a_copied_bilevel_owns_its_x_and_y_and_shares_the_problem_only_when_shallow():
    original = make_bilevel(v0=np.full(6, 0.5))
    original.step()
    shallow, deep = copy.copy(original), copy.deepcopy(original)
    x = original.x
    shallow.step()
    deep.step()
    assert np.array_equal(original.x, x)
    assert shallow._problem is original._problem and deep._problem is not original._problem
    shallow.reset()
    assert np.array_equal(shallow.v, np.full(6, 0.5))


def test_a_bilevel_whose_problem_cannot_be_pickled_raises_a_clear_type_error():
    problem = Cubic()
    problem.hook = lambda: None  # lambdas do not pickle
    optimizer = make_bilevel(problem=problem)
    with pytest.raises(TypeError, match="Bilevel's problem .*Cubic.* cannot be pickled"):
        pickle.dumps(optimizer)
    copy.copy(optimizer).step()  # copies do not pickle the problem


def test_a_problem_that_refers_to_its_bilevel_pickles_and_deep_copies():
    problem = Cubic()
    optimizer = make_bilevel(problem=problem)
    problem.owner = optimizer
    optimizer.step()
    for how in (COPIES["pickle"], COPIES["deepcopy"]):
        clone = how(optimizer)
        assert clone._problem.owner is clone and clone._problem is not problem
        assert clone.step() == optimizer.step()
        assert np.array_equal(bits(clone.x), bits(optimizer.x))


def test_a_bilevel_cannot_be_copied_from_inside_its_own_step():
    problem = Cubic()
    seen = []
    hvp = problem.hvp_yy_g

    def copying_hvp(x, y, v):
        try:
            copy.copy(optimizer)
        except lancbio.InvalidStateError as error:
            seen.append(error)
        return hvp(x, y, v)

    problem.hvp_yy_g = copying_hvp
    optimizer = make_bilevel(method="amigo-cg", problem=problem)
    optimizer.step()
    assert len(seen) == optimizer.info.products > 0  # one refusal per product of the step


def test_a_damaged_bilevel_checkpoint_raises_invalid_checkpoint_error():
    optimizer = make_bilevel()
    optimizer.step()
    restore, (cls, data, state) = optimizer.__reduce_ex__(2)
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 1
    with pytest.raises(lancbio.InvalidCheckpointError, match="checksum"):
        restore(cls, bytes(damaged), state)
    estimator_bytes = lancbio.CG(6, maxiter=2).__reduce_ex__(2)[1][1]
    with pytest.raises(lancbio.InvalidArgumentError, match="estimator's"):
        restore(cls, estimator_bytes, state)
