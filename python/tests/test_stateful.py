"""Stateful (hypothesis RuleBasedStateMachine) tests of the estimator and Bilevel APIs.

Each machine drives one object through random sequences of good and failing calls while a
pure-Python model tracks what must hold: the committed state changes only on success and
is bitwise unchanged by any failure; counters are exact; closed objects raise; and the
state always equals that of a fresh object replaying only the successful operations since
creation or the last reset (so failures, cancelled reverse steps and resets leave no trace).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import lancbio
from conftest import indefinite_matrix, spd_matrix
from test_bilevel import CALLBACKS, Quadratic

SETTINGS = settings(max_examples=300, stateful_step_count=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


class Failure(Exception):
    """Raised by a failing operator or problem."""


# -- estimators ------------------------------------------------------------------------------

ETAS = st.sampled_from([0.05, 0.1])


@st.composite
def estimator_configs(draw):
    method = draw(st.sampled_from(["lanczos", "subbio", "cg", "minres", "gd", "neumann", "random_neumann"]))
    n = draw(st.integers(1, 6))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    if method == "lanczos":
        m_max = draw(st.integers(1, 6))
        options = dict(m0=draw(st.integers(1, m_max)), m_max=m_max, growth=draw(st.sampled_from([1.0, 1.5, 2.0])),
                       grow_every=draw(st.integers(1, 4)), variant=draw(st.sampled_from(["residual", "plain"])),
                       reorthogonalize=draw(st.booleans()))
    elif method == "subbio":
        options = dict(theta0=draw(ETAS))
    elif method in ("cg", "minres"):
        options = dict(maxiter=draw(st.integers(0, 6)), tol=draw(st.sampled_from([0.0, 1e-6])))
    elif method == "gd":
        options = dict(eta=draw(ETAS), steps=draw(st.integers(1, 4)))
    elif method == "neumann":
        options = dict(eta=draw(ETAS), terms=draw(st.integers(0, 4)))
    else:
        options = dict(eta=draw(ETAS), max_terms=draw(st.integers(1, 4)), seed=draw(st.integers(0, 2**64 - 1)))
    if method not in ("neumann", "random_neumann") and draw(st.booleans()):
        options["v0"] = np.linspace(-1, 1, n).astype(dtype)
    return dict(method=method, n=n, dtype=dtype, options=options, seed=draw(st.integers(0, 2**32 - 1)))


CLASSES = {"lanczos": lancbio.DynamicLanczos, "subbio": lancbio.SubBiO, "cg": lancbio.CG, "minres": lancbio.MINRES,
           "gd": lancbio.GD, "neumann": lancbio.Neumann, "random_neumann": lancbio.RandomNeumann}


def new_estimator(config):
    return CLASSES[config["method"]](config["n"], dtype=config["dtype"], **config["options"])


def same_info(a, b):
    return repr(a) == repr(b)  # repr: NaN fields compare equal


B_KINDS = st.sampled_from(["random", "random", "zero", "large"])
FAULTS = {  # what the operator does at its k-th product, and the exception that must follow
    "nan": (lambda x: np.full(x.shape, np.nan), lancbio.NonFiniteProductError),
    "inf": (lambda x: np.full(x.shape, np.inf), lancbio.NonFiniteProductError),
    "raise": (None, Failure),
    "interrupt": (None, KeyboardInterrupt),
    "wrong shape": (lambda x: np.ones(x.size + 1), ValueError),
    "complex": (lambda x: x + 1j, TypeError),
    "strings": (lambda x: x.astype(str), TypeError),
}


class EstimatorMachine(RuleBasedStateMachine):
    """One estimator driven through step / begin / resume / cancel / reset / close."""

    @initialize(config=estimator_configs())
    def create(self, config):
        self.start(config)

    @rule(config=estimator_configs())
    def replace_with_a_new_estimator(self, config):
        self.est.close()
        self.start(config)

    def start(self, config):
        self.config = config
        rng = np.random.default_rng(config["seed"])
        n = config["n"]
        self.matrices = {"spd": spd_matrix(rng, n), "indefinite": indefinite_matrix(rng, n)}
        self.b_rng = rng
        self.est = new_estimator(config)
        self.closed = False
        self.in_progress = False
        self.request = None
        self.pending = None
        self.log = []  # (operator kind, b) of the successful steps since creation or reset
        self.hvp = 0
        self.previous_hvp = 0
        self.info = None
        self.v = config["options"].get("v0", np.zeros(n, config["dtype"])).copy()

    def teardown(self):
        if hasattr(self, "est"):
            self.est.close()

    # helpers
    def b(self, kind):
        n, dtype = self.config["n"], self.config["dtype"]
        if kind == "zero":
            return np.zeros(n, dtype)
        scale = 1e3 if kind == "large" else 1.0
        return (scale * self.b_rng.standard_normal(n)).astype(dtype)

    def committed(self, operator_kind, b):
        """The estimator finished a step: record it in the model."""
        info = self.est.info
        self.log.append((operator_kind, b))
        self.hvp += info.products
        self.info = info
        self.v = self.est.v
        assert info.total_products == self.hvp

    def expect_unchanged(self):
        assert np.array_equal(self.est.v, self.v)
        assert self.est.hvp_count == self.hvp and same_info(self.est.info, self.info)

    def closed_raises(self, call):
        with pytest.raises(lancbio.InvalidHandleError, match="closed"):
            call()

    # rules: stepping
    @rule(kind=st.sampled_from(["spd", "indefinite"]), b_kind=B_KINDS)
    def step(self, kind, b_kind):
        b = self.b(b_kind)
        A = self.matrices[kind]
        if self.closed:
            return self.closed_raises(lambda: self.est.step(A, b))
        if self.in_progress:
            with pytest.raises(lancbio.InvalidStateError):
                self.est.step(A, b)
            return self.expect_unchanged()
        try:
            v = self.est.step(A, b)
        except (lancbio.NonFiniteResultError, lancbio.NonFiniteProductError):
            # An indefinite A may make the gradient/Neumann iterations overflow.
            assert kind == "indefinite" and self.config["method"] in ("gd", "neumann", "random_neumann")
            event("estimator: indefinite step overflowed")
            return self.expect_unchanged()
        assert v.dtype == self.config["dtype"] and np.all(np.isfinite(v))
        self.committed(kind, b)
        assert np.array_equal(v, self.v)

    @rule(fault=st.sampled_from(sorted(FAULTS)), k=st.integers(1, 4), b_kind=B_KINDS)
    def step_with_failing_operator(self, fault, k, b_kind):
        b = self.b(b_kind)
        A = self.matrices["spd"]
        make_result, expected = FAULTS[fault]
        failure = Failure(fault) if fault == "raise" else KeyboardInterrupt()
        calls = []

        def operator(x):
            calls.append(1)
            if len(calls) == k:
                if make_result is None:
                    raise failure
                return make_result(x)
            return A @ x

        if self.closed:
            return self.closed_raises(lambda: self.est.step(operator, b))
        if self.in_progress:
            with pytest.raises(lancbio.InvalidStateError):
                self.est.step(operator, b)
            return self.expect_unchanged()
        try:
            self.est.step(operator, b)
        except expected as error:
            event(f"estimator: operator fault {fault} raised")
            assert len(calls) == k
            if make_result is None:
                assert error is failure
            return self.expect_unchanged()
        event("estimator: faulty operator not reached")
        assert len(calls) < k  # the step needed fewer products: the operator was A throughout
        self.committed("spd", b)

    # rules: reverse communication
    @rule(kind=st.sampled_from(["spd", "indefinite"]), b_kind=B_KINDS)
    def begin(self, kind, b_kind):
        b = self.b(b_kind)
        if self.closed:
            return self.closed_raises(lambda: self.est.begin(b))
        if self.in_progress:
            with pytest.raises(lancbio.InvalidStateError):
                self.est.begin(b)
            return
        request = self.est.begin(b)
        if request is None:  # finished without a product
            assert self.est.info.products == 0
            self.committed(kind, b)
        else:
            assert request.dtype == self.config["dtype"] and np.all(np.isfinite(request))
            self.in_progress, self.request, self.pending = True, request, (kind, b)

    @rule()
    def resume(self):
        if self.closed:
            return self.closed_raises(lambda: self.est.resume(np.zeros(self.config["n"])))
        if not self.in_progress:
            with pytest.raises(lancbio.InvalidStateError):
                self.est.resume(np.zeros(self.config["n"]))
            return
        kind, b = self.pending
        try:
            request = self.est.resume(self.matrices[kind] @ self.request)
        except (lancbio.NonFiniteResultError, lancbio.NonFiniteProductError):
            assert kind == "indefinite"
            self.in_progress = False  # abandoned: the estimator is as before begin
            return
        if request is None:
            event("estimator: reverse step completed")
            self.in_progress = False
            self.committed(kind, b)
        else:
            self.request = request

    @rule()
    def finish_the_reverse_step(self):
        for _ in range(100):
            if self.closed or not self.in_progress:
                return
            self.resume()
        raise AssertionError("a reverse step asked for more than 100 products")

    @rule(fault=st.sampled_from(["wrong shape", "complex", "strings"]))
    def resume_with_unusable_product(self, fault):
        product = FAULTS[fault][0](np.ones(self.config["n"]))
        if self.closed:
            return self.closed_raises(lambda: self.est.resume(product))
        with pytest.raises(FAULTS[fault][1]):
            self.est.resume(product)  # the step, if any, stays in progress

    @rule(value=st.sampled_from([np.nan, np.inf, -np.inf]))
    def resume_with_non_finite_product(self, value):
        product = np.full(self.config["n"], value)
        if self.closed:
            return self.closed_raises(lambda: self.est.resume(product))
        if not self.in_progress:
            with pytest.raises(lancbio.InvalidStateError):
                self.est.resume(product)
            return
        with pytest.raises(lancbio.NonFiniteProductError):
            self.est.resume(product)
        self.in_progress = False  # abandoned

    @rule()
    def cancel(self):
        if self.closed:
            return self.closed_raises(self.est.cancel)
        self.est.cancel()
        self.in_progress = False

    # rules: lifetime
    @rule()
    def reset(self):
        if self.closed:
            return self.closed_raises(self.est.reset)
        self.est.reset()
        self.in_progress = False
        self.log, self.hvp, self.previous_hvp, self.info = [], 0, 0, None
        self.v = self.config["options"].get("v0", np.zeros(self.config["n"], self.config["dtype"])).copy()

    @rule()
    def close(self):
        self.est.close()
        self.closed = True

    @rule()
    def equals_a_fresh_estimator_replaying_the_successful_steps(self):
        if self.closed:
            return
        with new_estimator(self.config) as fresh:
            event(f"estimator: replayed {min(len(self.log), 10)}+ steps")
            for kind, b in self.log:
                fresh.step(self.matrices[kind], b)
            assert np.array_equal(fresh.v, self.est.v)
            assert fresh.hvp_count == self.est.hvp_count and same_info(fresh.info, self.est.info)

    # invariants
    @invariant()
    def committed_state_is_the_models(self):
        if self.closed:
            assert self.est.closed
            self.closed_raises(lambda: self.est.v)
            return
        v = self.est.v
        assert v.dtype == self.config["dtype"] and v.shape == (self.config["n"],)
        assert np.all(np.isfinite(v))
        self.expect_unchanged()

    @invariant()
    def hvp_count_is_monotone_between_resets(self):
        if not self.closed:
            assert self.est.hvp_count >= self.previous_hvp
            self.previous_hvp = self.est.hvp_count


TestEstimatorStateMachine = EstimatorMachine.TestCase
TestEstimatorStateMachine.settings = SETTINGS


# -- Bilevel --------------------------------------------------------------------------------


class Switchable(Quadratic):
    """The quadratic problem with an optional fault: callback ``name`` misbehaves at its
    ``k``-th call after the fault is armed."""

    def __init__(self):
        super().__init__()
        self.fault = None
        self.calls = 0

    def arm(self, fault):
        self.fault, self.calls = fault, 0

    def _out(self, name, compute):
        if self.fault is not None and self.fault[0] == name:
            self.calls += 1
            if self.calls == self.fault[1]:
                kind = self.fault[2]
                if kind == "raise":
                    raise self.fault[3]
                if kind == "interrupt":
                    raise KeyboardInterrupt
                result = compute()
                return {"nan": result * np.nan, "wrong shape": result[:-1], "complex": result + 1j}[kind]
        return compute()

    def grad_y_g(self, x, y):
        return self._out("grad_y_g", lambda: super(Switchable, self).grad_y_g(x, y))

    def grad_x_f(self, x, y):
        return self._out("grad_x_f", lambda: super(Switchable, self).grad_x_f(x, y))

    def grad_y_f(self, x, y):
        return self._out("grad_y_f", lambda: super(Switchable, self).grad_y_f(x, y))

    def hvp_yy_g(self, x, y, v):
        return self._out("hvp_yy_g", lambda: super(Switchable, self).hvp_yy_g(x, y, v))

    def jvp_xy_g(self, x, y, v):
        return self._out("jvp_xy_g", lambda: super(Switchable, self).jvp_xy_g(x, y, v))


BILEVEL_FAULTS = {"raise": Failure, "interrupt": KeyboardInterrupt, "nan": lancbio.NonFiniteProductError,
                  "wrong shape": ValueError, "complex": TypeError}


@st.composite
def bilevel_configs(draw):
    method = draw(st.sampled_from(sorted(lancbio.METHODS)))
    accepted = lancbio.METHODS[method]["options"]
    options = dict(lr_x=draw(st.sampled_from([0.02, 0.05])), lr_y=draw(st.sampled_from([0.1, 0.2])),
                   inner_steps=draw(st.integers(0, 3)))
    if "v_steps" in accepted:
        options["v_steps"] = draw(st.integers(1, 4))
    if method == "lancbio":
        options.update(m0=draw(st.integers(1, 3)), m_max=draw(st.integers(3, 5)), grow_every=draw(st.integers(1, 3)))
    if "seed" in accepted:
        options["seed"] = draw(st.integers(0, 1000))
    if draw(st.booleans()):
        options["lr_x_decay"], options["lr_x_min"] = 0.5, 0.01
    return dict(method=method, options=options, seed=draw(st.integers(0, 2**32 - 1)),
                warm_start=draw(st.booleans()))


def snapshot(opt):
    return opt.x, opt.y, opt.v, opt.hypergradient, repr(opt.info)


def same_snapshot(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a[:4], b[:4])) and a[4] == b[4]


class BilevelMachine(RuleBasedStateMachine):
    """One Bilevel optimizer driven through step / run / reset / close with faults."""

    @initialize(config=bilevel_configs())
    def create(self, config):
        self.start(config)

    @rule(config=bilevel_configs())
    def replace_with_a_new_optimizer(self, config):
        self.opt.close()
        self.start(config)

    def start(self, config):
        self.config = config
        rng = np.random.default_rng(config["seed"])
        self.problem = Switchable()
        self.x_start = rng.standard_normal(self.problem.dx)
        self.y_start = rng.standard_normal(self.problem.dy)
        self.v_start = rng.standard_normal(self.problem.dy) if config["warm_start"] else None
        self.rng = rng
        self.opt = self.new_optimizer(self.problem)
        self.closed = False
        self.steps = 0  # successful iterations since creation or reset
        self.state = snapshot(self.opt)

    def teardown(self):
        if hasattr(self, "opt"):
            self.opt.close()

    def new_optimizer(self, problem):
        return lancbio.Bilevel(problem, self.config["method"], x0=self.x_start, y0=self.y_start,
                               v0=self.v_start, **self.config["options"])

    def succeeded(self, count):
        self.steps += count
        assert self.opt.info.iteration == self.steps
        self.state = snapshot(self.opt)

    def closed_raises(self, call):
        with pytest.raises(lancbio.InvalidHandleError, match="closed"):
            call()

    @rule()
    def step(self):
        if self.closed:
            return self.closed_raises(self.opt.step)
        info = self.opt.step()
        assert info is self.opt.info and np.isfinite(info.hypergradient_norm)
        self.succeeded(1)

    @rule(name=st.sampled_from(CALLBACKS), k=st.integers(1, 6), kind=st.sampled_from(sorted(BILEVEL_FAULTS)))
    def step_with_failing_problem(self, name, k, kind):
        failure = Failure(f"{name} #{k}")
        self.problem.arm((name, k, kind, failure))
        try:
            if self.closed:
                return self.closed_raises(self.opt.step)
            try:
                self.opt.step()
            except BILEVEL_FAULTS[kind] as error:
                event(f"bilevel: step fault {kind} raised")
                assert self.problem.calls == k
                if kind == "raise":
                    assert error is failure
                assert same_snapshot(snapshot(self.opt), self.state)
                return
            assert self.problem.calls < k  # the callback was called fewer than k times
            self.succeeded(1)
        finally:
            self.problem.arm(None)

    @rule(iterations=st.integers(0, 3))
    def run(self, iterations):
        if self.closed:
            return self.closed_raises(lambda: self.opt.run(iterations=iterations))
        history = self.opt.run(iterations=iterations, progress=False)
        assert len(history) == iterations
        assert [r["iteration"] for r in history] == list(range(self.steps + 1, self.steps + iterations + 1))
        if iterations:
            self.succeeded(iterations)

    @rule(iterations=st.integers(1, 4), name=st.sampled_from(CALLBACKS), k=st.integers(1, 12),
          kind=st.sampled_from(["raise", "nan", "interrupt"]))
    def run_with_failing_problem(self, iterations, name, k, kind):
        failure = Failure("mid-run")
        self.problem.arm((name, k, kind, failure))
        try:
            if self.closed:
                return self.closed_raises(lambda: self.opt.run(iterations=iterations))
            try:
                history = self.opt.run(iterations=iterations, progress=False)
            except BILEVEL_FAULTS[kind] as error:
                done = len(error.history)
                event(f"bilevel: run fault after {done} iterations")
                assert done < iterations
                if done:
                    self.succeeded(done)
                assert same_snapshot(snapshot(self.opt), self.state)
                return
            assert len(history) == iterations
            self.succeeded(iterations)
        finally:
            self.problem.arm(None)

    @rule(move=st.booleans())
    def reset(self, move):
        if self.closed:
            return self.closed_raises(self.opt.reset)
        if move:
            self.x_start = self.rng.standard_normal(self.problem.dx)
            self.y_start = self.rng.standard_normal(self.problem.dy)
            self.opt.reset(x0=self.x_start, y0=self.y_start)
        else:
            self.x_start, self.y_start = self.opt.x, self.opt.y
            self.opt.reset()
        # reset restores the state after creation, v0 included: v_start stays.
        self.steps = 0
        assert self.opt.info is None
        self.state = snapshot(self.opt)

    @rule()
    def close(self):
        self.opt.close()
        self.closed = True

    @rule()
    def equals_a_fresh_optimizer_replaying_the_successful_steps(self):
        if self.closed:
            return
        with self.new_optimizer(Quadratic()) as fresh:
            event(f"bilevel: replayed {min(self.steps, 10)}+ steps")
            for _ in range(self.steps):
                fresh.step()
            assert same_snapshot(snapshot(fresh), snapshot(self.opt))

    @invariant()
    def state_is_the_models(self):
        if self.closed:
            assert self.opt.closed
            self.closed_raises(lambda: self.opt.x)
            return
        now = snapshot(self.opt)
        assert same_snapshot(now, self.state)
        assert all(np.all(np.isfinite(a)) for a in now[:4])
        assert (self.opt.info.iteration if self.opt.info else 0) == self.steps


TestBilevelStateMachine = BilevelMachine.TestCase
TestBilevelStateMachine.settings = SETTINGS
