"""Hostile callbacks: problems and operators that raise, return garbage, keep and mutate
the arrays they were given, call back into the object that is calling them, or vanish.

Every case must end in the documented exception (or a correct result), with the
optimizer or estimator exactly as before the failed call, and never in a crash: cases
where a crash is conceivable (native re-entrancy) run in a subprocess.
"""

import gc
import json
import os
import subprocess
import sys
import textwrap
import traceback
import weakref

import numpy as np
import pytest

import lancbio
from conftest import FACTORIES, spd_matrix
from test_bilevel import CALLBACKS, DX, DY, X0, Quadratic, assert_same_state, make

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

# Calls of each callback in one amigo-cg step with the defaults (T = 5, Q = 5).
PER_STEP = {"grad_y_g": 5, "grad_x_f": 1, "grad_y_f": 1, "hvp_yy_g": 6, "jvp_xy_g": 1}


class ProblemFailure(Exception):
    """Raised by a hostile problem; its own type, so that nothing else is mistaken for it."""


class Faulty(Quadratic):
    """The quadratic problem, except that callback ``target`` misbehaves at its ``k``-th call
    (counted over the whole life of the problem): ``action(result)`` is returned instead
    of the result, or raises. ``armed = False`` makes it behave."""

    def __init__(self, target=None, k=1, action=None):
        super().__init__()
        self.target, self.k, self.action = target, k, action
        self.armed = True
        self.calls = dict.fromkeys(CALLBACKS, 0)

    def _out(self, name, result):
        self.calls[name] += 1
        if self.armed and name == self.target and self.calls[name] == self.k:
            return self.action(result)
        return result

    def grad_y_g(self, x, y):
        return self._out("grad_y_g", super().grad_y_g(x, y))

    def grad_x_f(self, x, y):
        return self._out("grad_x_f", super().grad_x_f(x, y))

    def grad_y_f(self, x, y):
        return self._out("grad_y_f", super().grad_y_f(x, y))

    def hvp_yy_g(self, x, y, v):
        return self._out("hvp_yy_g", super().hvp_yy_g(x, y, v))

    def jvp_xy_g(self, x, y, v):
        return self._out("jvp_xy_g", super().jvp_xy_g(x, y, v))


def k_for(name, when):
    """The call index that falls in the first step, or in the middle of the second."""
    return 1 if when == "first" else PER_STEP[name] + (PER_STEP[name] + 1) // 2


def raise_(exc):
    def action(result):
        raise exc
    return action


def frames(tb):
    return [frame.name for frame in traceback.extract_tb(tb)]


def run_isolated(code: str) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter with lancbio and the test helpers importable."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(lancbio.__file__)),
                                                       TESTS_DIR]),
               LANCBIO_LIBRARY=lancbio.library_path)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=120)


def isolated_results(code: str) -> dict:
    result = run_isolated(code)
    assert result.returncode == 0, f"the subprocess died ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- exceptions raised by the problem --------------------------------------------------------


@pytest.mark.parametrize("when", ["first", "second"])
@pytest.mark.parametrize("name", CALLBACKS)
def test_problem_exception_is_reraised_as_is_and_the_optimizer_is_unchanged(name, when):
    failure = ProblemFailure(f"{name} failed")
    opt = make("amigo-cg", Faulty(name, k_for(name, when), raise_(failure)))
    twin = make("amigo-cg")
    if when == "second":
        opt.step()
        twin.step()
    with pytest.raises(ProblemFailure) as excinfo:
        opt.step()
    assert excinfo.value is failure
    names = frames(excinfo.tb)
    assert name in names and "step" in names  # the problem's frame and the optimizer's
    assert_same_state(opt, twin)
    opt._problem.armed = False
    assert opt.step() == twin.step()
    assert_same_state(opt, twin)


# A callback that fails before its first statement (as one does when a signal handler
# raises on entry to it): ctypes hands the exception to sys.unraisablehook and returns to
# the library without writing the return value or the output.
ENTRY_FAILURE = """
    import numpy as np
    import lancbio
    from lancbio import _ffi
    from test_bilevel import assert_same_state, make

    class EntryFailure(BaseException):
        pass

    def raising_on_entry(*args):
        raise EntryFailure()

    opt, twin = make("amigo-cg"), make("amigo-cg")
    opt.step(); twin.step()
    struct = opt._problem_struct
    saved = opt._callbacks[{index}]  # (reading the field would give a view of it)
    struct.{name} = callback = _ffi.{prototype}(raising_on_entry)
    try:
        opt.step()
        raised = None
    except BaseException as error:
        raised = type(error).__name__
    assert_same_state(opt, twin)
    struct.{name} = saved
    assert opt.step() == twin.step()
    print(raised)
"""


@pytest.mark.parametrize("name", CALLBACKS)
def test_a_callback_that_fails_before_it_runs_is_the_exception_it_raised_and_changes_nothing(name, capsys):
    # The wrapper's own callbacks carry their error slot: the exception comes back as is.
    from lancbio import _ffi

    class EntryFailure(BaseException):
        pass

    def raising_on_entry(*args):
        raise EntryFailure()

    opt, twin = make("amigo-cg"), make("amigo-cg")
    opt.step()
    twin.step()
    raising_on_entry._lancbio_state = opt._state  # as make_callback marks its callbacks
    struct = opt._problem_struct
    saved = opt._callbacks[CALLBACKS.index(name)]  # (reading the field would give a view of it)
    prototype = _ffi.GRADIENT_CALLBACK if name.startswith("grad") else _ffi.PRODUCT_CALLBACK
    setattr(struct, name, prototype(raising_on_entry))
    with pytest.raises(EntryFailure):
        opt.step()
    assert_same_state(opt, twin)
    setattr(struct, name, saved)
    assert opt.step() == twin.step()
    assert "Exception ignored" not in capsys.readouterr().err


@pytest.mark.parametrize("name", ["grad_y_g", "jvp_xy_g"])
def test_a_foreign_callback_that_fails_before_it_runs_raises_keyboard_interrupt_and_changes_nothing(name):
    # Without an error slot to find, the exception is lost to ctypes (which prints it), but
    # the step still fails as a whole: KeyboardInterrupt, what such a failure almost always is.
    prototype = "GRADIENT_CALLBACK" if name.startswith("grad") else "PRODUCT_CALLBACK"
    result = run_isolated(ENTRY_FAILURE.format(name=name, prototype=prototype, index=CALLBACKS.index(name)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["KeyboardInterrupt"], result.stdout
    assert "EntryFailure" in result.stderr  # ctypes reported the original


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, GeneratorExit])
@pytest.mark.parametrize("name", CALLBACKS)
def test_base_exceptions_from_the_problem_propagate_and_leave_the_state_unchanged(name, interrupt):
    opt, twin = make("amigo-cg", Faulty(name, k_for(name, "second"), raise_(interrupt()))), make("amigo-cg")
    opt.step()
    twin.step()
    with pytest.raises(interrupt):
        opt.step()
    assert_same_state(opt, twin)
    opt._problem.armed = False
    assert opt.step() == twin.step()


BAD_RESULTS = {
    "nan": (lambda r: r * np.nan, lancbio.NonFiniteProductError),
    "inf": (lambda r: np.where(np.arange(r.size) == 0, np.inf, r), lancbio.NonFiniteProductError),
    "-inf list": (lambda r: [-np.inf] + list(r[1:]), lancbio.NonFiniteProductError),
    "complex": (lambda r: r + 1j, TypeError),
    "complex with zero imaginary part": (lambda r: r.astype(complex), TypeError),
    "object": (lambda r: r.astype(object), TypeError),
    "strings": (lambda r: r.astype(str), TypeError),
    "bytes": (lambda r: r.tobytes(), ValueError),
    "bool": (lambda r: r > 0, TypeError),
    "too long": (lambda r: np.append(r, 0.0), ValueError),
    "too short": (lambda r: r[:-1], ValueError),
    "column": (lambda r: r[:, None], ValueError),
    "numpy scalar": (lambda r: np.float64(r[0]), ValueError),
    "python float": (lambda r: 1.0, ValueError),
    "None": (lambda r: None, (TypeError, ValueError)),
    "ragged list": (lambda r: [1.0, [2.0, 3.0]], ValueError),
    "numpy matrix": (lambda r: np.asmatrix(r), ValueError),
}


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("bad", sorted(BAD_RESULTS))
@pytest.mark.parametrize("name", CALLBACKS)
def test_unusable_problem_results_raise_the_documented_error_and_change_nothing(name, bad):
    action, expected = BAD_RESULTS[bad]
    opt, twin = make("amigo-cg", Faulty(name, k_for(name, "second"), action)), make("amigo-cg")
    opt.step()
    twin.step()
    with pytest.raises(expected) as excinfo:
        opt.step()
    assert isinstance(excinfo.value, (lancbio.LancbioError, TypeError, ValueError))
    assert_same_state(opt, twin)
    opt._problem.armed = False
    assert opt.step() == twin.step()
    assert_same_state(opt, twin)


# Results that are not float64 arrays but convertible without loss of meaning, and the
# float64 array the optimizer must see instead.
CONVERTIBLE = {
    "list": (list, lambda r: r),
    "tuple": (tuple, lambda r: r),
    "int64 array": (lambda r: np.round(4 * r).astype(np.int64), lambda r: np.round(4 * r)),
    "float32 array": (lambda r: r.astype(np.float32), lambda r: r.astype(np.float32).astype(np.float64)),
    "big-endian": (lambda r: r.astype(">f8"), lambda r: r),
    "strided view": (lambda r: np.repeat(r, 2)[::2], lambda r: r),
    "read-only": (lambda r: np.frombuffer(r.tobytes()), lambda r: r),
}


@pytest.mark.parametrize("kind", sorted(CONVERTIBLE))
@pytest.mark.parametrize("name", CALLBACKS)
def test_convertible_problem_results_give_the_same_step_as_their_float64_values(name, kind):
    given, meant = CONVERTIBLE[kind]
    opt = make("amigo-cg", Faulty(name, k_for(name, "second"), given))
    twin = make("amigo-cg", Faulty(name, k_for(name, "second"), meant))
    for _ in range(3):
        assert opt.step() == twin.step()
    assert_same_state(opt, twin)


def test_problem_dimensions_disagreeing_with_x0_raise_value_error():
    p = Quadratic()
    p.dx = DX + 1
    with pytest.raises(ValueError, match="x0 must be a 1-D array of length 5"):
        lancbio.Bilevel(p, "soba", x0=X0, y0=np.zeros(DY), lr_x=0.1, lr_y=0.1)


# -- arrays kept and mutated later ---------------------------------------------------------


class Hoarding(Quadratic):
    """Keeps every array it is given and every array it returns, and scribbles NaN over all
    of them at each call: none may be memory the optimizer still uses."""

    def __init__(self):
        super().__init__()
        self.kept = []

    def _scribble(self):
        for a in self.kept:
            a.fill(np.nan)

    def _keep(self, *arrays):
        self._scribble()
        self.kept.extend(arrays)

    def grad_y_g(self, x, y):
        r = super().grad_y_g(x.copy(), y.copy())
        self._keep(x, y, r)
        return r

    def grad_x_f(self, x, y):
        r = super().grad_x_f(x.copy(), y.copy())
        self._keep(x, y, r)
        return r

    def grad_y_f(self, x, y):
        r = super().grad_y_f(x.copy(), y.copy())
        self._keep(x, y, r)
        return r

    def hvp_yy_g(self, x, y, v):
        r = super().hvp_yy_g(x.copy(), y.copy(), v.copy())
        self._keep(x, y, v, r)
        return r

    def jvp_xy_g(self, x, y, v):
        r = super().jvp_xy_g(x.copy(), y.copy(), v.copy())
        self._keep(x, y, v, r)
        return r


@pytest.mark.parametrize("method", sorted(lancbio.METHODS))
def test_problem_keeping_and_mutating_its_arrays_cannot_reach_the_optimizer(method):
    hoarder = Hoarding()
    opt, twin = make(method, hoarder), make(method)
    for _ in range(4):
        assert opt.step() == twin.step()
        hoarder._scribble()
        assert_same_state(opt, twin)
    assert len(hoarder.kept) > 0 and all(np.isnan(a).all() for a in hoarder.kept)
    opt.x.fill(np.nan)  # the properties are copies too
    opt.v.fill(np.nan)
    assert_same_state(opt, twin)


def test_operator_keeping_and_mutating_its_inputs_cannot_reach_the_estimator(rng, method):
    n = 6
    A, b = spd_matrix(rng, n), rng.standard_normal(n)
    kept = []

    def hoarding(x):
        for old in kept:
            old.fill(np.nan)
        y = A @ x
        kept.extend([x, y])
        return y

    with FACTORIES[method](n) as est, FACTORIES[method](n) as twin:
        for _ in range(3):
            v = est.step(hoarding, b)
            assert np.array_equal(v, twin.step(A, b))
            v.fill(np.nan)  # the returned estimate is the caller's
            assert np.array_equal(est.v, twin.v) and est.info == twin.info


# -- failures inside run() ---------------------------------------------------------------


@pytest.mark.parametrize("failure, expected", [
    (raise_(ProblemFailure("third iteration")), ProblemFailure),
    (lambda r: r * np.nan, lancbio.NonFiniteProductError),
    (raise_(KeyboardInterrupt()), KeyboardInterrupt),
], ids=["exception", "nan", "keyboard-interrupt"])
@pytest.mark.parametrize("name", ["grad_y_g", "hvp_yy_g", "jvp_xy_g"])
def test_failure_mid_run_keeps_the_last_completed_step_and_attaches_the_history(name, failure, expected):
    k = 2 * PER_STEP[name] + 1  # the first call of the third iteration
    opt, twin = make("amigo-cg", Faulty(name, k, failure)), make("amigo-cg")
    with pytest.raises(expected) as excinfo:
        opt.run(iterations=10, progress=False)
    assert name in frames(excinfo.tb) or expected is lancbio.NonFiniteProductError
    history = excinfo.value.history
    reference = twin.run(iterations=2, progress=False)
    assert len(history) == 2
    for got, want in zip(history, reference):
        assert {k: v for k, v in got.items() if k != "time"} == {k: v for k, v in want.items() if k != "time"}
    assert_same_state(opt, twin)
    opt._problem.armed = False
    assert len(opt.run(iterations=2, progress=False)) == 2
    twin.run(iterations=2, progress=False)
    assert_same_state(opt, twin)


def test_run_callback_exception_propagates_as_is_with_the_history_attached():
    failure = ProblemFailure("in the user's run callback")

    def callback(opt, record):
        if record["iteration"] == 3:
            raise failure

    opt, twin = make(), make()
    with pytest.raises(ProblemFailure) as excinfo:
        opt.run(iterations=10, callback=callback, progress=False)
    assert excinfo.value is failure and "callback" in frames(excinfo.tb)
    assert [r["iteration"] for r in excinfo.value.history][:2] == [1, 2]
    for _ in range(3):  # the callback runs after the iteration completed
        twin.step()
    assert_same_state(opt, twin)


def test_run_callback_exception_history_covers_every_completed_iteration():
    def callback(opt, record):
        if record["iteration"] == 3:
            raise ProblemFailure("stop")

    opt = make()
    with pytest.raises(ProblemFailure) as excinfo:
        opt.run(iterations=10, callback=callback, progress=False)
    assert len(excinfo.value.history) == opt.info.iteration == 3


def test_run_callback_may_step_reset_or_close_the_optimizer_between_iterations():
    opt, twin = make(), make()

    def callback(o, record):
        if record["iteration"] == 2:
            o.step()  # outside the native step: an ordinary extra iteration
        if record["iteration"] == 4:
            o.close()

    with pytest.raises(lancbio.InvalidHandleError) as excinfo:
        opt.run(iterations=10, callback=callback, progress=False)
    assert [r["iteration"] for r in excinfo.value.history] == [1, 2, 4]
    assert opt.closed


# -- lifetime: objects collected while the other side lives --------------------------------


def test_problem_dropped_by_the_caller_lives_as_long_as_its_optimizer():
    problem = Quadratic()
    alive = weakref.ref(problem)
    opt = make(problem=problem)
    twin = make()
    del problem
    gc.collect()
    assert alive() is not None
    for _ in range(3):
        assert opt.step() == twin.step()
    optimizer_alive = weakref.ref(opt)
    del opt
    gc.collect()
    assert optimizer_alive() is None and alive() is None


def test_optimizer_collected_while_its_problem_lives_on_leaves_the_problem_usable():
    problem = Quadratic()
    opt = make(problem=problem)
    opt.step()
    alive = weakref.ref(opt)
    del opt
    gc.collect()
    assert alive() is None
    again, twin = make(problem=problem), make()
    assert again.step() == twin.step()


def test_optimizer_and_problem_in_a_reference_cycle_are_collected():
    class Owner(Quadratic):
        pass

    owner = Owner()
    owner.opt = make(problem=owner)
    owner.opt.step()
    alive = weakref.ref(owner.opt), weakref.ref(owner)
    del owner
    gc.collect()
    assert alive[0]() is None and alive[1]() is None


def test_optimizer_whose_last_reference_is_dropped_inside_its_own_callback_finishes_the_step():
    class Holder(Quadratic):
        def grad_x_f(self, x, y):
            if getattr(self, "opt", None) is not None:
                self.opt = None  # drop the only reference while the optimizer is stepping
                gc.collect()
            return super().grad_x_f(x, y)

    holder = Holder()
    holder.opt = make(problem=holder)
    alive = weakref.ref(holder.opt)
    info = holder.opt.step()
    gc.collect()
    assert alive() is None and info.iteration == 1
    assert info == make().step()


def test_operator_dropped_after_a_step_is_not_kept_by_the_estimator(rng):
    n = 4
    A, b = spd_matrix(rng, n), rng.standard_normal(n)

    class Operator:
        def __call__(self, x):
            return A @ x

    op = Operator()
    est = lancbio.GD(n, eta=0.1, steps=2)
    est.step(op, b)
    alive = weakref.ref(op)
    del op
    gc.collect()
    assert alive() is None
    with lancbio.GD(n, eta=0.1, steps=2) as twin:
        twin.step(A, b)
        assert np.array_equal(est.step(A, b), twin.step(A, b))


def test_estimator_collected_in_the_middle_of_a_reverse_step_is_safe(rng):
    n = 4
    A, b = spd_matrix(rng, n), rng.standard_normal(n)
    est = lancbio.CG(n, maxiter=3)
    request = est.begin(b)
    alive = weakref.ref(est)
    del est
    gc.collect()
    assert alive() is None
    assert np.all(np.isfinite(A @ request))  # the request is the caller's copy
    with lancbio.CG(n, maxiter=3) as other:
        other.step(A, b)


def test_many_short_lived_optimizers_and_estimators_do_not_grow_memory():
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    problem = Quadratic()

    def churn(count):
        for i in range(count):
            make("lancbio", problem, m_max=DY).step()  # a cycle: freed by the collector
            with lancbio.DynamicLanczos(DY, m0=2, m_max=4) as est:
                est.step(problem.H, problem.c)
            if i % 200 == 0:
                gc.collect()

    churn(500)
    before = rss()
    churn(3000)
    gc.collect()
    assert rss() - before < 2 * 1024 * 1024


# -- re-entrancy ---------------------------------------------------------------------------

ESTIMATOR_REENTRY = textwrap.dedent("""
    import json
    import numpy as np
    import lancbio
    from conftest import FACTORIES, spd_matrix

    n = 5
    rng = np.random.default_rng(7)
    A, b = spd_matrix(rng, n), rng.standard_normal(n)
    results = {}
    for method in sorted(FACTORIES):
        for action in ("step", "v", "reset", "begin", "cancel", "resume", "close", "info"):
            est, twin = FACTORIES[method](n), FACTORIES[method](n)
            est.step(A, b); twin.step(A, b)
            def operator(x, est=est, action=action):
                if action == "step":
                    est.step(A, b)
                elif action == "v":
                    est.v
                elif action == "reset":
                    est.reset()
                elif action == "begin":
                    est.begin(b)
                elif action == "cancel":
                    est.cancel()
                elif action == "resume":
                    est.resume(A @ x)
                elif action == "close":
                    est.close()
                elif action == "info":
                    (est.info, est.hvp_count, est.n, est.closed, repr(est))
                return A @ x
            try:
                v = est.step(operator, b)
                raised = None
                correct = bool(np.array_equal(v, twin.step(A, b)))
            except Exception as error:
                raised = type(error).__name__
                correct = bool(np.array_equal(est.v, twin.v) and est.info == twin.info
                               and np.array_equal(est.step(A, b), twin.step(A, b)))
            results[f"{method} {action}"] = [raised, correct, est.closed]
            print(method, action, raised, correct, flush=True)
    print(json.dumps(results))
""")


def test_estimator_used_from_inside_its_own_operator_raises_invalid_state_or_works():
    results = isolated_results(ESTIMATOR_REENTRY)
    for case, (raised, correct, closed) in results.items():
        action = case.split()[1]
        assert correct and not closed, case
        if action == "info":  # pure Python reads: allowed
            assert raised is None, case
        else:
            assert raised == "InvalidStateError", case


def test_operator_stepping_another_estimator_works(rng):
    n = 5
    A, b = spd_matrix(rng, n), rng.standard_normal(n)
    inner, inner_twin = lancbio.CG(n, maxiter=2), lancbio.CG(n, maxiter=2)
    inner_results = []

    def product_that_also_steps_another_estimator(x):
        inner_results.append(inner.step(A, x))  # an independent handle: allowed
        return A @ x

    with lancbio.GD(n, eta=0.1, steps=3) as outer, lancbio.GD(n, eta=0.1, steps=3) as twin:
        products = []
        assert np.array_equal(outer.step(product_that_also_steps_another_estimator, b),
                              twin.step(lambda x: products.append(x) or A @ x, b))
    assert len(inner_results) == 3
    for got, x in zip(inner_results, products):
        assert np.array_equal(got, inner_twin.step(A, x))
    inner.close()
    inner_twin.close()


def test_problem_using_another_optimizer_and_estimator_inside_its_callbacks_works():
    class Nested(Quadratic):
        def __init__(self):
            super().__init__()
            self.other = make("soba")
            self.est = lancbio.CG(DY, maxiter=2)

        def grad_x_f(self, x, y):
            self.other.step()
            self.est.step(self.H, y.copy())
            return super().grad_x_f(x, y)

    nested = Nested()
    opt, twin = make("amigo-cg", nested), make("amigo-cg")
    for _ in range(3):
        assert opt.step() == twin.step()
    assert nested.other.info.iteration == 3 and nested.est.hvp_count == 9


BILEVEL_REENTRY = """
    import json
    import numpy as np
    import lancbio
    from test_bilevel import CALLBACKS, Quadratic, make

    ACTION = {action!r}
    results = {{}}

    class Reentrant(Quadratic):
        def __init__(self, target):
            super().__init__()
            self.target, self.opt, self.done = target, None, False

        def _maybe(self, name):
            if name == self.target and self.opt is not None and not self.done:
                self.done = True
                o = self.opt
                if ACTION == "step":
                    o.step()
                elif ACTION == "run":
                    o.run(iterations=2, progress=False)
                elif ACTION == "reset":
                    o.reset()
                elif ACTION == "reset to a new point":
                    o.reset(x0=np.zeros(o.x.size), y0=np.ones(o.y.size))
                elif ACTION == "close":
                    o.close()
                elif ACTION == "read":
                    (o.x, o.y, o.v, o.hypergradient, o.info, o.settings, o.closed, repr(o))

        def grad_y_g(self, x, y):
            self._maybe("grad_y_g"); return super().grad_y_g(x, y)

        def grad_x_f(self, x, y):
            self._maybe("grad_x_f"); return super().grad_x_f(x, y)

        def grad_y_f(self, x, y):
            self._maybe("grad_y_f"); return super().grad_y_f(x, y)

        def hvp_yy_g(self, x, y, v):
            self._maybe("hvp_yy_g"); return super().hvp_yy_g(x, y, v)

        def jvp_xy_g(self, x, y, v):
            self._maybe("jvp_xy_g"); return super().jvp_xy_g(x, y, v)

    def snapshot(o):
        return [o.x.tolist(), o.y.tolist(), o.v.tolist(), o.hypergradient.tolist(), repr(o.info)]

    for name in CALLBACKS:
        problem = Reentrant(name)
        opt, twin = make("amigo-cg", problem), make("amigo-cg")
        opt.step(); twin.step()  # re-enter during the second iteration
        problem.opt = opt
        before = snapshot(twin)
        try:
            opt.step()
            raised = None
        except Exception as error:
            raised = type(error).__name__
        if opt.closed:
            outcome = "closed"
        elif raised is not None:
            outcome = "unchanged" if snapshot(opt) == before else "changed"
        else:
            # It "worked": the result must be that of some sequential order of the calls.
            twin.step()
            once = snapshot(twin)
            twin.step()
            twice = snapshot(twin)
            outcome = {{str(once): "as one step", str(twice): "as two steps"}}.get(str(snapshot(opt)), "corrupted")
        results[name] = [raised, outcome]
        print(name, raised, outcome, flush=True)
    print(json.dumps(results))
"""


def bilevel_reentry(action):
    return isolated_results(BILEVEL_REENTRY.format(action=action))


def test_reading_the_optimizer_from_inside_its_callbacks_works():
    results = bilevel_reentry("read")
    assert results == {name: [None, "as one step"] for name in CALLBACKS}


def test_closing_the_optimizer_from_inside_its_callback_raises_and_leaves_it_closed():
    results = bilevel_reentry("close")
    for name, (raised, outcome) in results.items():
        assert raised == "InvalidHandleError" and outcome == "closed", name


@pytest.mark.parametrize("action", ["step", "run"])
def test_stepping_the_optimizer_from_inside_its_callbacks_raises_invalid_state(action):
    results = bilevel_reentry(action)
    for name, (raised, outcome) in results.items():
        assert raised == "InvalidStateError" and outcome == "unchanged", (name, raised, outcome)


@pytest.mark.parametrize("action", ["reset", "reset to a new point"])
def test_resetting_the_optimizer_from_inside_its_callbacks_raises_invalid_state(action):
    results = bilevel_reentry(action)
    for name, (raised, outcome) in results.items():
        assert raised == "InvalidStateError" and outcome == "unchanged", (name, raised, outcome)


@pytest.mark.parametrize("action", ["step", "run", "reset", "reset to a new point", "close", "read"])
def test_reentrant_calls_never_crash_the_process(action):
    result = run_isolated(BILEVEL_REENTRY.format(action=action))
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout.strip().splitlines()[-1])) == set(CALLBACKS)


def test_operator_input_buffer_is_reused_only_while_the_operator_does_not_keep_it(rng):
    # Reusing the input buffer saves an allocation per product (and the page faults of
    # fresh memory); it must never hand out an array the operator still holds.
    n = 50
    A, b = spd_matrix(rng, n), rng.standard_normal(n)
    seen, kept = [], []

    def forgetful(x):
        seen.append(id(x))
        return A @ x

    def keeping(x):
        kept.append(x)
        return A @ x

    with lancbio.CG(n, maxiter=6) as est, lancbio.CG(n, maxiter=6) as twin:
        v = est.step(forgetful, b)
        assert len(seen) == 7 and len(set(seen)) == 1
        assert np.array_equal(v, twin.step(A, b))
        est.step(keeping, b)
        assert len({id(x) for x in kept}) == len(kept) == 7
        before = [x.copy() for x in kept]
        est.step(forgetful, b)  # the kept arrays are not written to
        assert all(np.array_equal(x, y) for x, y in zip(kept, before))
