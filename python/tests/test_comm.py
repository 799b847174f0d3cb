"""``comm=`` without MPI: a communicator of one process (its Allreduce copies) runs every
supporting estimator's reduced code path, which must agree with the plain one to
rounding; an Allreduce that raises fails the step with its own exception and leaves the
estimator unchanged; what is not a communicator, and the methods without support, are
refused. (test_mpi.py runs the same estimators on 2 and 3 real processes.)"""

import numpy as np
import pytest

import lancbio
from conftest import spd_matrix


class OneProcess:
    """A communicator of one process: the sum over processes is the value itself."""

    def __init__(self):
        self.calls = 0
        self.fail_at = None

    def Allreduce(self, send, recv):  # noqa: N802 - mpi4py's name
        self.calls += 1
        if self.calls == self.fail_at:
            raise ConnectionError("the interconnect failed")
        recv[...] = send


MAKERS = {
    "lanczos": lambda n, c: lancbio.DynamicLanczos(n, m0=4, m_max=8, comm=c),
    "cg": lambda n, c: lancbio.CG(n, 5, comm=c),
    "gd": lambda n, c: lancbio.GD(n, 0.05, steps=3, comm=c),
    "neumann": lambda n, c: lancbio.Neumann(n, 0.05, 4, comm=c),
    "random-neumann": lambda n, c: lancbio.RandomNeumann(n, 0.05, 4, seed=3, comm=c),
}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_one_process_comm_agrees_with_no_comm_and_counts_its_calls(name):
    rng = np.random.default_rng(1)
    n = 30
    a = spd_matrix(rng, n, cond=15.0)
    comm = OneProcess()
    plain, reduced = MAKERS[name](n, None), MAKERS[name](n, comm)
    assert reduced.comm is comm and plain.comm is None
    calls = comm.calls
    for _ in range(7):
        b = rng.standard_normal(n)
        v, w = plain.step(a, b), reduced.step(a, b)
        assert np.linalg.norm(v - w) <= 1e-12 * np.linalg.norm(v)
        assert plain.info.reductions == 0
        assert reduced.info.reductions == comm.calls - calls > 0
        calls = comm.calls


def test_a_failing_allreduce_raises_itself_and_leaves_the_estimator_unchanged():
    rng = np.random.default_rng(2)
    n = 20
    a = spd_matrix(rng, n)
    comm = OneProcess()
    est = lancbio.DynamicLanczos(n, comm=comm)
    for _ in range(3):
        est.step(a, rng.standard_normal(n))
    v, info, count = est.v, est.info, est.hvp_count
    comm.fail_at = comm.calls + 2
    with pytest.raises(ConnectionError, match="interconnect"):
        est.step(a, rng.standard_normal(n))
    assert np.array_equal(est.v, v) and est.info == info and est.hvp_count == count
    est.step(a, rng.standard_normal(n))


def test_what_is_not_a_communicator_and_methods_without_support_are_refused():
    with pytest.raises(TypeError, match="Allreduce"):
        lancbio.CG(5, 3, comm=object())
    with pytest.raises(lancbio.errors.InvalidArgumentError, match="subbio"):
        lancbio.SubBiO(5, 0.1, comm=OneProcess())
    with pytest.raises(lancbio.errors.InvalidArgumentError, match="minres"):
        lancbio.MINRES(5, 3, comm=OneProcess())


class _Quadratic:
    """A bilevel problem small enough for a one-process comm: g = |y|^2 / 2 - x.y, f = |y - 1|^2 / 2."""

    dx = dy = 4

    def grad_y_g(self, x, y):
        return y - x

    def grad_x_f(self, x, y):
        return np.zeros(4)

    def grad_y_f(self, x, y):
        return y - 1.0

    def hvp_yy_g(self, x, y, v):
        return v.copy()

    def jvp_xy_g(self, x, y, v):
        return -v


@pytest.mark.parametrize("kind", ["estimator", "bilevel"])
def test_objects_with_comm_refuse_copies_and_pickles_which_would_lose_the_slicing(kind):
    import copy
    import pickle

    if kind == "estimator":
        obj = lancbio.DynamicLanczos(6, comm=OneProcess())
    else:
        obj = lancbio.Bilevel(_Quadratic(), "lancbio", x0=np.zeros(4), y0=np.zeros(4), lr_x=0.1, lr_y=0.5,
                              comm=OneProcess())
        obj.step()
    for make in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match="comm= cannot be copied or pickled"):
            make(obj)


def test_bilevel_with_a_one_process_comm_agrees_with_no_comm_and_raises_the_allreduce_error():
    plain = lancbio.Bilevel(_Quadratic(), "lancbio", x0=np.zeros(4), y0=np.zeros(4), lr_x=0.1, lr_y=0.5)
    comm = OneProcess()
    reduced = lancbio.Bilevel(_Quadratic(), "lancbio", x0=np.zeros(4), y0=np.zeros(4), lr_x=0.1, lr_y=0.5, comm=comm)
    for _ in range(6):
        a, b = plain.step(), reduced.step()
        assert abs(a.hypergradient_norm - b.hypergradient_norm) <= 1e-12 * a.hypergradient_norm
    np.testing.assert_allclose(reduced.x, plain.x, rtol=1e-12)
    x, y = reduced.x, reduced.y
    comm.fail_at = comm.calls + 1
    with pytest.raises(ConnectionError, match="interconnect"):
        reduced.step()
    np.testing.assert_array_equal(reduced.x, x)
    np.testing.assert_array_equal(reduced.y, y)
    reduced.step()  # and it goes on
