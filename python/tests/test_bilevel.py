"""The Bilevel optimizer against independent references on a quadratic bilevel problem,
its options, run() and History, and its lifetime.

The problem (written here, independent of lancbio.problems):

    g(x, y) = 0.5 y^T H y - y^T B x,      f(x, y) = 0.5 ||y - c||^2 + 0.5 mu ||x||^2,

so y*(x) = H^{-1} B x, grad^2_yy g = H, grad^2_xy g = -B^T (J v = -B^T v) and

    grad phi(x) = mu x + B^T H^{-1} (H^{-1} B x - c).
"""

import time

import numpy as np
import pytest

import lancbio

DX, DY = 4, 5


class Quadratic:
    """The quadratic bilevel problem above; dx != dy so that swapped sizes show."""

    def __init__(self, dx=DX, dy=DY, mu=0.1, seed=0, eigenvalues=(1.0, 5.0)):
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.standard_normal((dy, dy)))
        h = (q * np.linspace(*eigenvalues, dy)) @ q.T
        self.H = (h + h.T) / 2
        self.B = rng.standard_normal((dy, dx))
        self.c = rng.standard_normal(dy)
        self.mu = mu
        self.dx, self.dy = dx, dy

    # the five callbacks
    def grad_y_g(self, x, y):
        return self.H @ y - self.B @ x

    def grad_x_f(self, x, y):
        return self.mu * x

    def grad_y_f(self, x, y):
        return y - self.c

    def hvp_yy_g(self, x, y, v):
        return self.H @ v

    def jvp_xy_g(self, x, y, v):
        return -self.B.T @ v

    # closed forms
    def y_star(self, x):
        return np.linalg.solve(self.H, self.B @ x)

    def grad_phi(self, x):
        return self.mu * x + self.B.T @ np.linalg.solve(self.H, self.y_star(x) - self.c)

    def phi_hessian_eigenvalues(self):
        hinv_b = np.linalg.solve(self.H, self.B)
        return np.linalg.eigvalsh(self.mu * np.eye(self.dx) + hinv_b.T @ hinv_b)


CALLBACKS = ("grad_y_g", "grad_x_f", "grad_y_f", "hvp_yy_g", "jvp_xy_g")


class Counting(Quadratic):
    """Counts the calls of each callback."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = dict.fromkeys(CALLBACKS, 0)

    def grad_y_g(self, x, y):
        self.calls["grad_y_g"] += 1
        return super().grad_y_g(x, y)

    def grad_x_f(self, x, y):
        self.calls["grad_x_f"] += 1
        return super().grad_x_f(x, y)

    def grad_y_f(self, x, y):
        self.calls["grad_y_f"] += 1
        return super().grad_y_f(x, y)

    def hvp_yy_g(self, x, y, v):
        self.calls["hvp_yy_g"] += 1
        return super().hvp_yy_g(x, y, v)

    def jvp_xy_g(self, x, y, v):
        self.calls["jvp_xy_g"] += 1
        return super().jvp_xy_g(x, y, v)


X0 = np.array([1.0, -0.5, 2.0, 0.25])


def make(method="amigo-gd", problem=None, x0=X0, y0=None, **options):
    problem = problem or Quadratic()
    options = {"lr_x": 0.05, "lr_y": 0.2, **options}
    return lancbio.Bilevel(problem, method, x0=x0, y0=np.zeros(problem.dy) if y0 is None else y0, **options)


def rel(a, b):
    return np.linalg.norm(np.asarray(a) - b) / max(np.linalg.norm(b), 1e-300)


def state(opt):
    """Everything observable about an optimizer, for bitwise comparisons."""
    return opt.x, opt.y, opt.v, opt.hypergradient, opt.info


def assert_same_state(a, b):
    for left, right in zip(state(a)[:4], state(b)[:4]):
        assert np.array_equal(left, right)
    assert a.info == b.info


# -- against closed forms and a numpy reference ----------------------------------------


def test_one_amigo_cg_step_from_y_star_gives_the_closed_form_hypergradient_and_x_step():
    p = Quadratic()
    lr_x = 0.1
    opt = make("amigo-cg", p, y0=p.y_star(X0), lr_x=lr_x, v_steps=60)
    info = opt.step()
    expected = p.grad_phi(X0)
    assert rel(opt.hypergradient, expected) < 1e-12
    assert info.hypergradient_norm == pytest.approx(np.linalg.norm(expected), rel=1e-12)
    assert rel(opt.x, X0 - lr_x * expected) < 1e-12
    assert rel(opt.y, p.y_star(X0)) < 1e-12  # inner steps at y* stay there
    assert rel(opt.v, np.linalg.solve(p.H, p.y_star(X0) - p.c)) < 1e-12


def amigo_gd_reference(p, x0, y0, steps, lr_x, lr_y, inner_steps, v_steps, eta,
                       lr_x_decay=0.0, lr_x_min=0.0, lr_y_decay=0.0, lr_y_min=0.0):
    """docs/algorithms.md section 2 with the AmIGO-GD estimator (section 5), in numpy."""
    x, y, v = np.array(x0, float), np.array(y0, float), np.zeros(p.dy)
    iterates = []
    for k in range(1, steps + 1):
        lam = max(lr_x_min, lr_x / k**lr_x_decay) if lr_x_decay > 0 else lr_x
        theta = max(lr_y_min, lr_y / k**lr_y_decay) if lr_y_decay > 0 else lr_y
        for _ in range(inner_steps):
            y = y - theta * p.grad_y_g(x, y)
        b = p.grad_y_f(x, y)
        gx = p.grad_x_f(x, y)
        for _ in range(v_steps):
            v = v - eta * (p.hvp_yy_g(x, y, v) - b)
        hypergradient = gx - p.jvp_xy_g(x, y, v)
        x = x - lam * hypergradient
        iterates.append((x, y, v, hypergradient, lam, theta))
    return iterates


@pytest.mark.parametrize("options", [
    dict(lr_x=0.05, lr_y=0.2, inner_steps=3, v_steps=4, eta=0.15),
    dict(lr_x=0.3, lr_y=0.25, inner_steps=2, v_steps=1, eta=0.1, lr_x_decay=0.5, lr_x_min=0.08,
         lr_y_decay=0.3, lr_y_min=0.1),
    dict(lr_x=0.05, lr_y=0.2),  # method defaults: T = Q = 5 and eta = lr_y
], ids=["constant", "decaying", "defaults"])
def test_amigo_gd_iterates_equal_the_numpy_outer_loop(options):
    p = Quadratic()
    y0 = np.linspace(-1, 1, p.dy)
    opt = make("amigo-gd", p, y0=y0, **options)
    reference = amigo_gd_reference(p, X0, y0, 25, **{"inner_steps": 5, "v_steps": 5, "eta": options["lr_y"],
                                                     **options})
    for k, (x, y, v, hypergradient, lam, theta) in enumerate(reference, start=1):
        info = opt.step()
        assert info.iteration == k
        assert info.lr_x == pytest.approx(lam, rel=1e-15) and info.lr_y == pytest.approx(theta, rel=1e-15)
        assert rel(opt.x, x) < 1e-12 and rel(opt.y, y) < 1e-12 and rel(opt.v, v) < 1e-12
        assert rel(opt.hypergradient, hypergradient) < 1e-12
        assert info.hypergradient_norm == pytest.approx(np.linalg.norm(hypergradient), rel=1e-12)


# Options that let each method converge on the quadratic (eigenvalues of H in [1, 5],
# eta = lr_y = 0.2): the Neumann-type estimators are biased by (1 - eta lambda_min)^Q = 0.8^Q,
# so they get Q = 40; TTSA/BSA's decaying lr_x would need far more iterations.
CONVERGENT = {
    "lancbio": dict(m_max=DY),  # see test_lancbio_with_the_default_m_max_beyond_dy_converges
    "subbio": {},
    "amigo-cg": {},
    "amigo-gd": {},
    "soba": {},
    "stocbio": dict(v_steps=40),
    "ttsa": dict(v_steps=40, lr_x_decay=0.0),
    "bsa": dict(v_steps=40, lr_x_decay=0.0),
}


def test_convergent_options_cover_every_method():
    assert set(CONVERGENT) == set(lancbio.METHODS)


@pytest.mark.parametrize("method", sorted(lancbio.METHODS))
def test_every_method_drives_the_true_hypergradient_norm_down(method):
    p = Quadratic()
    opt = make(method, p, lr_x=0.1, **CONVERGENT[method])
    opt.run(iterations=2000 if method == "soba" else 700, progress=False)  # SOBA: one y and one v step
    assert np.linalg.norm(p.grad_phi(opt.x)) < 1e-4 * np.linalg.norm(p.grad_phi(X0))


def test_lancbio_with_the_default_m_max_beyond_dy_converges():
    p = Quadratic()
    opt = make("lancbio", p, lr_x=0.1)
    opt.run(iterations=700, progress=False)
    assert np.linalg.norm(p.grad_phi(opt.x)) < 1e-4 * np.linalg.norm(p.grad_phi(X0))


@pytest.mark.parametrize("method", ["ttsa", "bsa"])
def test_ttsa_and_bsa_with_the_paper_decay_still_decrease_the_hypergradient(method):
    p = Quadratic()
    opt = make(method, p, lr_x=0.1, v_steps=40)
    opt.run(iterations=400, progress=False)
    assert np.linalg.norm(p.grad_phi(opt.x)) < 0.3 * np.linalg.norm(p.grad_phi(X0))


def test_stocbio_bias_shrinks_like_one_minus_eta_lambda_min_to_the_q():
    # At the fixed point of the outer loop the hyper-gradient is biased by the truncated
    # series; 0.8^5 = 0.33 against 0.8^40 = 1.3e-4.
    p = Quadratic()
    final = {}
    for q in (5, 40):
        opt = make("stocbio", p, lr_x=0.1, v_steps=q)
        opt.run(iterations=700, progress=False)
        final[q] = np.linalg.norm(p.grad_phi(opt.x))
    assert final[5] > 100 * final[40]
    assert final[5] > 1e-3 * np.linalg.norm(p.grad_phi(X0))


# -- the paper's defaults ---------------------------------------------------------------

PAPER = {  # docs/algorithms.md section 6: T, Q, lr_x decay b, lr_x_min
    "lancbio": (5, None, 0.0, 0.0),
    "subbio": (5, None, 0.0, 0.0),
    "amigo-cg": (5, 5, 0.0, 0.0),
    "amigo-gd": (5, 5, 0.0, 0.0),
    "soba": (1, 1, 0.0, 0.0),
    "stocbio": (10, 10, 0.0, 0.0),
    "ttsa": (1, 10, 0.4, 0.01),
    "bsa": (10, 10, 0.5, 0.01),
}


def test_methods_table_lists_exactly_the_paper_comparison_set():
    assert set(lancbio.METHODS) == set(PAPER)


@pytest.mark.parametrize("method", sorted(PAPER))
def test_method_defaults_are_the_papers_and_reach_the_library(method):
    inner, q, decay, floor = PAPER[method]
    p = Counting()
    opt = make(method, p, lr_x=0.5, lr_y=0.2)
    s = opt.settings
    assert (s["inner_steps"], s.get("v_steps"), s["lr_x_decay"], s["lr_x_min"]) == (inner, q, decay, floor)
    assert s["lr_y_decay"] == 0.0 and s["lr_y_min"] == 0.0
    if "eta" in s:
        assert s["eta"] == 0.2  # eta = theta, as in the research code
    if method == "lancbio":
        assert {k: s[k] for k in ("m0", "m_max", "growth", "grow_every", "variant", "reorthogonalize")} == dict(
            m0=1, m_max=80, growth=1.1, grow_every=20, variant="residual", reorthogonalize=False)
    if method == "subbio":
        assert s["theta0"] == 0.2
    info = opt.step()
    info = opt.step()  # k = 2, where a decay shows
    assert info.gradient_evaluations == inner + 2
    assert p.calls["grad_y_g"] == 2 * inner and p.calls["grad_y_f"] == p.calls["grad_x_f"] == 2
    assert p.calls["jvp_xy_g"] == 2 and info.cross_products == 1
    assert p.calls["hvp_yy_g"] == info.total_products
    assert info.lr_x == pytest.approx(max(floor, 0.5 / 2**decay) if decay else 0.5, rel=1e-15)
    if method in ("ttsa", "bsa"):  # p + Q with p uniform in {0 .. Q-1}
        assert q <= info.products <= 2 * q - 1
    else:  # LancBiO with m0 = 1: a restart (2 products) every step; SubBiO 3
        expected = {"amigo-cg": 6, "amigo-gd": 5, "soba": 1, "stocbio": 10, "subbio": 3, "lancbio": 2}
        assert info.products == expected[method]


def test_ttsa_and_bsa_truncation_depends_on_the_seed():
    counts = set()
    for seed in range(6):
        opt = make("ttsa", seed=seed)
        counts.add(tuple(opt.step().products for _ in range(4)))
    assert len(counts) > 1


# -- option handling --------------------------------------------------------------------


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown method 'newton'.*lancbio.*amigo-cg"):
        make("newton")


@pytest.mark.parametrize("method, option", [
    ("amigo-cg", "m0"), ("amigo-cg", "eta"), ("lancbio", "v_steps"), ("subbio", "eta"),
    ("soba", "theta0"), ("amigo-gd", "tolerance"), ("stocbio", "lr"),
])
def test_option_not_applicable_to_the_method_is_named_in_a_type_error(method, option):
    with pytest.raises(TypeError, match=rf"\['{option}'\] do not apply to method '{method}'"):
        make(method, **{option: 1})


@pytest.mark.parametrize("missing", ["lr_x", "lr_y"])
def test_missing_step_size_raises_value_error_naming_it(missing):
    options = {"lr_x": 0.1, "lr_y": 0.1}
    del options[missing]
    with pytest.raises(ValueError, match=f"{missing} is required"):
        lancbio.Bilevel(Quadratic(), "soba", x0=X0, y0=np.zeros(DY), **options)


@pytest.mark.parametrize("method, options", [
    ("soba", dict(lr_x=-0.1)), ("soba", dict(lr_x=0.0)), ("soba", dict(lr_y=float("nan"))),
    ("soba", dict(lr_x=float("inf"))), ("soba", dict(inner_steps=-1)), ("soba", dict(lr_x_decay=-1.0)),
    ("soba", dict(lr_x_min=-1.0)), ("amigo-gd", dict(v_steps=0)), ("amigo-gd", dict(eta=0.0)),
    ("stocbio", dict(eta=float("nan"))), ("lancbio", dict(m0=0)), ("lancbio", dict(m0=5, m_max=3)),
    ("lancbio", dict(growth=0.5)), ("subbio", dict(theta0=-1.0)),
])
def test_out_of_range_options_raise_invalid_argument_listing_the_settings(method, options):
    with pytest.raises(lancbio.InvalidArgumentError, match=f"invalid options for method '{method}'") as excinfo:
        make(method, **options)
    # The settings as passed, then the library's own reason (lancbio_last_error).
    name, value = next(iter(options.items()))
    assert f"{name}={value!r}" in excinfo.value.message
    reason = lancbio._ffi.lib.lancbio_last_error().decode()
    assert reason and excinfo.value.message.endswith(f": {reason} (invalid argument)")


@pytest.mark.parametrize("method", sorted(PAPER))
def test_settings_the_paper_does_not_fix_are_the_librarys_defaults(method):
    from lancbio import _options

    spec = lancbio.METHODS[method]
    outer = _options.read(_options.bilevel_options(), _options.OUTER, _options.OUTER)
    inner = _options.read(_options.estimator_options(spec["estimator"]), _options.ESTIMATOR, _options.ESTIMATOR)
    inner["v_steps"] = inner["maxiter" if method == "amigo-cg" else "steps"]
    s = make(method, lr_x=0.5, lr_y=0.2).settings
    for name, value in s.items():
        if name in ("lr_x", "lr_y", "eta", "theta0"):  # given, or lr_y
            continue
        expected = spec.get(name, outer.get(name, inner.get(name)))
        assert value == expected, (method, name)


@pytest.mark.filterwarnings("ignore:Casting complex values")
@pytest.mark.parametrize("case", [
    dict(lr_x="0.1"), dict(lr_y=True), dict(inner_steps=2.5), dict(v_steps=2.5), dict(method="lancbio", m0=1.5),
    dict(method="ttsa", seed=-1), dict(x0=X0 + 1j), dict(run=2.5),
], ids=lambda case: ",".join(f"{k}={v!r}" for k, v in case.items() if k != "x0") or "complex x0")
def test_wrongly_typed_options_points_and_budgets_raise_instead_of_being_converted(case):
    case = dict(case)
    run = case.pop("run", None)
    with pytest.raises((TypeError, ValueError)):
        opt = make(case.pop("method", "amigo-gd"), **case)
        if run is not None:
            opt.run(iterations=run, progress=False)


def test_bad_variant_raises_value_error():
    with pytest.raises(ValueError, match="variant must be one of"):
        make("lancbio", variant="anchored")


def test_problem_missing_callbacks_is_named():
    class Partial:
        def grad_y_g(self, x, y):
            return y

    with pytest.raises(TypeError, match="grad_x_f, grad_y_f, hvp_yy_g, jvp_xy_g"):
        lancbio.Bilevel(Partial(), "soba", x0=X0, y0=np.zeros(DY), lr_x=0.1, lr_y=0.1)


@pytest.mark.parametrize("name, x0, y0, v0, message", [
    ("x0 short", np.ones(DX - 1), np.zeros(DY), None, r"x0 must be a 1-D array of length 4"),
    ("y0 2-D", X0, np.zeros((DY, 1)), None, r"y0 must be a 1-D array of length 5"),
    ("x0 NaN", np.array([1, np.nan, 0, 0]), np.zeros(DY), None, "x0 contains NaN"),
    ("y0 inf", X0, np.full(DY, np.inf), None, "y0 contains NaN"),
    ("v0 long", X0, np.zeros(DY), np.zeros(DY + 1), "v0 must be a 1-D array of length 5"),
    ("v0 NaN", X0, np.zeros(DY), np.full(DY, np.nan), "v0 contains NaN"),
])
def test_bad_starting_points_raise_value_error(name, x0, y0, v0, message):
    with pytest.raises(ValueError, match=message):
        lancbio.Bilevel(Quadratic(), "soba", x0=x0, y0=y0, v0=v0, lr_x=0.1, lr_y=0.1)


def test_starting_points_are_private_copies_and_v0_is_the_first_warm_start():
    x0, y0, v0 = X0.copy(), np.ones(DY), np.arange(DY, dtype=float)
    opt = lancbio.Bilevel(Quadratic(), "amigo-gd", x0=x0, y0=y0, v0=v0, lr_x=0.1, lr_y=0.2)
    x0[:] = y0[:] = v0[:] = np.nan
    assert np.array_equal(opt.x, X0) and np.array_equal(opt.y, np.ones(DY))
    assert np.array_equal(opt.v, np.arange(DY, dtype=float))
    opt.x[:] = 7.0  # properties are copies
    assert np.array_equal(opt.x, X0)


@pytest.mark.parametrize("alias", ["same array", "overlapping views"])
def test_x0_and_y0_sharing_memory_step_exactly_as_separate_copies(alias):
    # Bilevel copies x0 and y0 into buffers of its own, so arguments that share memory
    # are harmless (they are accepted, not refused): its x and y never alias each other
    # nor the caller's arrays.
    n = 5
    buffer = np.linspace(0.5, 1.5, n + 1)
    x0, y0 = (buffer[:n], buffer[:n]) if alias == "same array" else (buffer[:n], buffer[1:])
    assert np.shares_memory(x0, y0)
    before = buffer.copy()
    opt = lancbio.Bilevel(Quadratic(dx=n, dy=n), "lancbio", x0=x0, y0=y0, lr_x=0.05, lr_y=0.2)
    twin = lancbio.Bilevel(Quadratic(dx=n, dy=n), "lancbio", x0=x0.copy(), y0=y0.copy(), lr_x=0.05, lr_y=0.2)
    for _ in range(4):
        assert opt.step() == twin.step()
    assert np.array_equal(opt.x, twin.x) and np.array_equal(opt.y, twin.y) and np.array_equal(opt.v, twin.v)
    assert not np.array_equal(opt.x, opt.y)  # they moved apart: two buffers
    opt.reset(x0=x0, y0=x0)
    twin.reset(x0=x0.copy(), y0=x0.copy())
    assert opt.step() == twin.step() and np.array_equal(opt.y, twin.y)
    assert np.array_equal(buffer, before)  # the caller's memory was only read


# -- run() and History ------------------------------------------------------------------

FIELDS = {"iteration", "time", "hvps", "gradient_evaluations", "cross_products", "hypergradient_norm",
          "residual", "residual_kind", "lr_x", "lr_y"}


def test_run_iterations_records_the_documented_fields_consistent_with_step():
    opt, twin = make("amigo-cg"), make("amigo-cg")
    history = opt.run(iterations=6, progress=False)
    assert len(history) == 6 and opt.info.iteration == 6
    infos = [twin.step() for _ in range(6)]
    assert np.array_equal(opt.x, twin.x) and np.array_equal(opt.v, twin.v)
    for k, (record, info) in enumerate(zip(history, infos), start=1):
        assert set(record) == FIELDS
        assert record["iteration"] == k
        assert record["hvps"] == info.total_products == 6 * k
        assert record["gradient_evaluations"] == 7 * k and record["cross_products"] == k
        assert record["hypergradient_norm"] == info.hypergradient_norm
        assert record["residual"] == info.estimator.residual and record["residual_kind"] == "recurrence"
        assert record["lr_x"] == 0.05 and record["lr_y"] == 0.2
    times = history.column("time")
    assert np.all(np.diff(times) >= 0) and times[0] > 0
    table = history.to_dict()
    assert set(table) == FIELDS and table["iteration"] == list(range(1, 7))
    assert np.array_equal(history.column("hvps"), [6, 12, 18, 24, 30, 36])
    assert history[-1] is history.records[-1] and list(history) == history.records
    assert "6 records" in repr(history)


def test_history_columns_by_name_and_a_repr_that_shows_the_last_record():
    history = make("amigo-cg").run(iterations=4, progress=False)
    times = history["time"]
    assert isinstance(times, np.ndarray) and times.dtype == float and np.array_equal(times, history.column("time"))
    assert history["iteration"].tolist() == [1, 2, 3, 4] and history["hvps"].dtype.kind == "i"
    assert history["residual_kind"].tolist() == ["recurrence"] * 4
    assert history.columns == list(history[0])
    with pytest.raises(KeyError, match="'tme'.*'time'"):
        history["tme"]
    assert history[1:3] == history.records[1:3]  # indices and slices still give records
    text = repr(history)
    assert text.startswith("History(4 records; columns: iteration, time, hvps, ")
    assert "last: iteration=4, time=" in text and f"hvps={history[-1]['hvps']}" in text
    assert repr(lancbio.History()) == "History(0 records)"


def test_history_column_of_a_field_some_records_lack_fills_nan_or_none():
    history = lancbio.History()
    history.records += [{"iteration": 1, "note": "a"}, {"iteration": 2, "extra": 0.5}]
    assert np.array_equal(history["extra"], [np.nan, 0.5], equal_nan=True)
    assert history["note"].tolist() == ["a", None]


class FakeAxes:
    """Records what History.plot asks of matplotlib axes."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


def test_history_plot_draws_y_against_x_on_the_given_axes():
    history = make("amigo-cg").run(iterations=5, progress=False)
    ax = FakeAxes()
    assert history.plot(ax=ax) is ax
    (name, (xs, ys), kwargs), *rest = ax.calls
    assert name == "plot" and np.array_equal(xs, history["hvps"]) and np.array_equal(ys, history["hypergradient_norm"])
    assert ("set_xlabel", ("HVPs",), {}) in rest and ("set_ylabel", ("hypergradient_norm",), {}) in rest
    assert ("set_yscale", ("log",), {}) in rest
    ax = FakeAxes()
    history.plot(x="time", y="lr_x", ax=ax, label="amigo-cg", color="k")
    assert np.array_equal(ax.calls[0][1][0], history["time"]) and ax.calls[0][2] == dict(label="amigo-cg", color="k")
    assert ("legend", (), {}) in ax.calls
    with pytest.raises(KeyError, match="no column 'hvp'"):
        history.plot(x="hvp", ax=FakeAxes())
    with pytest.raises(ValueError, match="no records"):
        lancbio.History().plot(ax=FakeAxes())


def test_history_plot_without_matplotlib_says_how_to_install_it(monkeypatch):
    import sys

    history = make("amigo-cg").run(iterations=2, progress=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        history.plot()


def test_history_plot_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    history = make("amigo-cg").run(iterations=5, progress=False)
    ax = history.plot(x="iteration")
    assert ax.get_xlabel() == "iteration" and ax.get_yscale() == "log"
    assert np.array_equal(ax.lines[0].get_xdata(), history["iteration"])
    ax.figure.savefig(tmp_path / "history.png")


def test_run_continues_from_the_current_state():
    opt, twin = make(), make()
    opt.run(iterations=2, progress=False)
    history = opt.run(iterations=3, progress=False)
    for _ in range(5):
        twin.step()
    assert [r["iteration"] for r in history] == [3, 4, 5]
    assert_same_state(opt, twin)


def test_run_zero_iterations_does_nothing():
    opt = make()
    opt.step()
    before = state(opt)
    assert len(opt.run(iterations=0, progress=False)) == 0
    for left, right in zip(before[:4], state(opt)[:4]):
        assert np.array_equal(left, right)


def test_run_requires_a_budget_and_rejects_negative_iterations():
    opt = make()
    with pytest.raises(ValueError, match="iterations=, seconds="):
        opt.run()
    with pytest.raises(ValueError, match="iterations must be >= 0"):
        opt.run(iterations=-1)
    assert opt.info is None


class Slow(Quadratic):
    """Each outer iteration takes at least `delay` seconds of optimizer time."""

    delay = 0.004

    def grad_x_f(self, x, y):
        time.sleep(self.delay)
        return super().grad_x_f(x, y)


def test_run_seconds_stops_at_the_first_iteration_that_reaches_the_budget():
    opt = make(problem=Slow())
    history = opt.run(seconds=0.03, progress=False)
    times = history.column("time")
    assert times[-1] >= 0.03 and np.all(times[:-1] < 0.03)
    assert 2 <= len(history) <= 0.03 / Slow.delay + 1


def test_run_stops_at_whichever_budget_comes_first():
    assert len(make(problem=Slow()).run(iterations=3, seconds=100.0, progress=False)) == 3
    assert len(make(problem=Slow()).run(iterations=10**6, seconds=0.02, progress=False)) <= 0.02 / Slow.delay + 1


def test_history_time_excludes_the_callback():
    def slow_callback(opt, record):
        time.sleep(0.05)

    history = make().run(iterations=3, callback=slow_callback, progress=False)
    assert history[-1]["time"] < 0.05


def test_callback_fields_are_recorded_and_false_stops_after_recording():
    p = Quadratic()
    seen = []

    def callback(opt, record):
        seen.append(record["iteration"])
        if record["iteration"] == 4:
            return False
        return {"true_norm": float(np.linalg.norm(p.grad_phi(opt.x)))} if record["iteration"] % 2 else None

    history = make(problem=p).run(iterations=10, callback=callback, progress=False)
    assert seen == [1, 2, 3, 4] and len(history) == 4 and history[-1]["iteration"] == 4
    twin = make(problem=p)
    expected = [float(np.linalg.norm(p.grad_phi(twin.x))) for _ in range(3) if twin.step()]
    assert history.to_dict()["true_norm"] == [expected[0], None, expected[2], None]
    assert np.array_equal(history.column("true_norm"), [expected[0], np.nan, expected[2], np.nan], equal_nan=True)


def test_progress_lines_go_to_stderr_and_only_when_asked(capsys):
    make().run(iterations=3, progress=True, progress_every=0.0, label="quad")
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("quad: iteration ") for line in lines)
    assert "iteration 3/3" in lines[-1] and "HVPs" in lines[-1] and "hypergradient" in lines[-1]
    make().run(iterations=3, progress=False, progress_every=0.0)
    assert capsys.readouterr() == ("", "")
    make().run(iterations=3)  # default: about every 2 s, so nothing for a short run
    assert capsys.readouterr() == ("", "")


# -- reset, close, lifetime -------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(lancbio.METHODS))
def test_reset_to_x0_y0_replays_the_sequence_of_a_fresh_optimizer(method):
    y0 = np.linspace(0, 1, DY)
    opt = make(method, y0=y0, seed=3) if method in ("ttsa", "bsa") else make(method, y0=y0)
    first = []
    for _ in range(4):
        opt.step()
        first.append(state(opt))
    opt.reset(x0=X0, y0=y0)
    assert opt.info is None and np.array_equal(opt.v, np.zeros(DY))
    assert np.array_equal(opt.x, X0) and np.array_equal(opt.y, y0)
    for before in first:
        opt.step()
        for left, right in zip(before[:4], state(opt)[:4]):
            assert np.array_equal(left, right)
        assert before[4] == opt.info


def test_reset_without_points_keeps_x_and_y_and_restarts_counters():
    opt = make()
    opt.run(iterations=3, progress=False)
    x, y = opt.x, opt.y
    opt.reset()
    assert np.array_equal(opt.x, x) and np.array_equal(opt.y, y)
    assert opt.step().iteration == 1 and opt.info.total_products == 5


def test_reset_with_a_bad_point_raises_and_changes_nothing():
    opt = make()
    opt.run(iterations=3, progress=False)
    before = state(opt)
    with pytest.raises(ValueError):
        opt.reset(x0=np.ones(DX + 1))
    for left, right in zip(before[:4], state(opt)[:4]):
        assert np.array_equal(left, right)
    assert opt.step().iteration == 4


def test_close_is_idempotent_and_every_use_after_close_raises_invalid_handle():
    opt = make()
    opt.step()
    opt.close()
    opt.close()
    assert opt.closed and "closed" in repr(opt)
    for use in (opt.step, lambda: opt.run(iterations=1), opt.reset, lambda: opt.x, lambda: opt.y,
                lambda: opt.v, lambda: opt.hypergradient):
        with pytest.raises(lancbio.InvalidHandleError, match="closed"):
            use()


@pytest.mark.parametrize("budget", [dict(iterations=0), dict(seconds=0.0)])
def test_run_with_an_empty_budget_on_a_closed_optimizer_raises_invalid_handle(budget):
    opt = make()
    opt.close()
    with pytest.raises(lancbio.InvalidHandleError, match="closed"):
        opt.run(progress=False, **budget)


def test_context_manager_closes():
    with make() as opt:
        opt.step()
    assert opt.closed


def test_many_steps_and_failures_do_not_grow_memory():
    """A long run (and a long series of failing steps) holds memory flat: no per-step leak
    in the callbacks, the view caches, the stored exceptions or the native handle."""

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    class Failing(Quadratic):
        def hvp_yy_g(self, x, y, v):
            raise ArithmeticError("no Hessian today")

    good = make("soba", lr_x=0.01)
    bad = make("soba", problem=Failing())

    def churn(count):
        for _ in range(count):
            good.step()
            try:
                bad.step()
            except ArithmeticError:
                pass

    churn(3000)  # warm up allocator pools and caches
    before = rss()
    churn(20000)
    assert rss() - before < 2 * 1024 * 1024
    assert good.info.iteration == 23000 and bad.info is None


def test_steady_state_steps_allocate_no_vector_and_leave_no_garbage():
    """Once warm, a step allocates nothing the size of a vector (the copies each callback
    hands the problem go into reused buffers, the results into the library's) and leaves
    nothing behind for the collector: over 100 steps with the collector off, traced
    memory peaks less than one vector above where it started, and the collector tracks
    no more objects than before (each step's info replaces the last)."""
    import gc
    import tracemalloc

    n = 20000

    class Still:
        """Returns preallocated arrays, so that any allocation seen is the library's."""
        dx = dy = n

        def __init__(self):
            self.g, self.c = np.full(n, 1e-3), np.full(n, 0.5)

        def grad_y_g(self, x, y):
            return self.g

        def grad_x_f(self, x, y):
            return self.c

        def grad_y_f(self, x, y):
            return self.c

        def hvp_yy_g(self, x, y, v):
            return self.c

        def jvp_xy_g(self, x, y, v):
            return self.g

    for method in ("lancbio", "amigo-cg"):
        opt = lancbio.Bilevel(Still(), method, x0=np.ones(n), y0=np.ones(n), lr_x=0.01, lr_y=0.01)
        for _ in range(20):
            opt.step()
        gc.collect()
        gc.disable()
        try:
            objects = len(gc.get_objects())
            tracemalloc.start()
            start = tracemalloc.get_traced_memory()[0]
            for _ in range(100):
                opt.step()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            growth = len(gc.get_objects()) - objects
        finally:
            tracemalloc.stop()
            gc.enable()
        assert peak - start < 8 * n, (method, peak - start)
        assert growth < 10, (method, growth)  # 4 a step before pointers were made once
        opt.close()
