"""Properties of the benchmark problems (lancbio.problems), checked in float64."""

import gzip
import importlib.util
import pathlib
import warnings

import numpy as np
import pytest

try:
    from lancbio.problems.hypercleaning import HyperCleaning
    from lancbio.problems.synthetic import Synthetic
except (ImportError, OSError):
    # The package __init__ loads the native library; the problems do not need it.
    def _load(name):
        path = pathlib.Path(__file__).resolve().parents[1] / "lancbio" / "problems" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"_lancbio_problems_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    Synthetic = _load("synthetic").Synthetic
    HyperCleaning = _load("hypercleaning").HyperCleaning


FD_TOLERANCE = 1e-6


# -- finite-difference helpers -----------------------------------------------------------


def relative_error(actual, expected):
    actual, expected = np.asarray(actual), np.asarray(expected)
    return np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-300)


def fd_gradient(function, point, step):
    """Fourth-order central differences of a scalar function, one coordinate at a time.

    The higher order allows steps large enough that rounding in values of size kappa
    (1e5) stays far below the tolerance.
    """
    gradient = np.empty(point.size)
    for i in range(point.size):
        direction = np.zeros(point.size)
        direction[i] = 1.0
        gradient[i] = fd_directional(function, point, direction, step)
    return gradient


def fd_directional(function, point, direction, step):
    """Fourth-order central difference of a function along ``direction``."""
    near = function(point + step * direction) - function(point - step * direction)
    far = function(point + 2.0 * step * direction) - function(point - 2.0 * step * direction)
    return (8.0 * near - far) / (12.0 * step)


def dense_from_products(product, size):
    """The matrix whose columns are ``product(e_i)``."""
    return np.column_stack([product(column) for column in np.eye(size)])


# -- fixtures ---------------------------------------------------------------------------------


def synthetic_case(kappa, n=8, seed=3):
    problem = Synthetic(n, kappa=kappa, seed=seed)
    rng = np.random.default_rng(seed + 100)
    x, y = rng.standard_normal(n), rng.standard_normal(n)
    return problem, x, y, rng


def small_cleaning_problem(seed=0, n_train=15, n_val=9, n_test=7, features=4, classes=3):
    rng = np.random.default_rng(seed)
    problem = HyperCleaning(
        rng.standard_normal((n_train, features)),
        rng.integers(0, classes, n_train),
        rng.standard_normal((n_val, features)),
        rng.integers(0, classes, n_val),
        rng.standard_normal((n_test, features)),
        rng.integers(0, classes, n_test),
        num_classes=classes,
    )
    x = rng.standard_normal(problem.dx)
    y = 0.5 * rng.standard_normal(problem.dy)
    return problem, x, y, rng


KAPPAS = [10.0, 1e5]


# -- Synthetic: derivatives against finite differences -----------------------------------------


@pytest.mark.parametrize("kappa", KAPPAS)
def test_synthetic_gradients_match_finite_differences_of_f_and_g(kappa):
    problem, x, y, _ = synthetic_case(kappa)
    step = 1e-3
    assert relative_error(problem.grad_x_f(x, y), fd_gradient(lambda t: problem.f(t, y), x, step)) < FD_TOLERANCE
    assert relative_error(problem.grad_y_f(x, y), fd_gradient(lambda t: problem.f(x, t), y, step)) < FD_TOLERANCE
    assert relative_error(problem.grad_y_g(x, y), fd_gradient(lambda t: problem.g(x, t), y, step)) < FD_TOLERANCE


@pytest.mark.parametrize("kappa", KAPPAS)
def test_synthetic_hvp_matches_finite_differences_of_grad_y_g(kappa):
    problem, x, y, rng = synthetic_case(kappa)
    for _ in range(3):
        v = rng.standard_normal(problem.dy)
        expected = fd_directional(lambda t: problem.grad_y_g(x, t), y, v, 1e-3)
        assert relative_error(problem.hvp_yy_g(x, y, v), expected) < FD_TOLERANCE


@pytest.mark.parametrize("kappa", KAPPAS)
def test_synthetic_jvp_matches_finite_differences_of_grad_y_g_in_x(kappa):
    problem, x, y, rng = synthetic_case(kappa)
    # Column j of d(grad_y g)/dx is row j of J, so (J v)_j = v . d(grad_y g)/dx_j.
    mixed = np.column_stack([
        fd_directional(lambda t: problem.grad_y_g(t, y), x, e, 1e-3) for e in np.eye(problem.dx)
    ])
    for _ in range(3):
        v = rng.standard_normal(problem.dy)
        assert relative_error(problem.jvp_xy_g(x, y, v), mixed.T @ v) < FD_TOLERANCE


def test_synthetic_is_stable_for_large_products_x_times_y():
    problem, x, y, rng = synthetic_case(10.0)
    # max(x*y) = 1000 and another entry is large and negative: exp(x*y) without a shift
    # would overflow.
    x = 1000.0 * y / np.max(y * y)
    x[np.argsort(np.abs(y))[-2]] *= -1.0
    assert np.max(x * y) == pytest.approx(1000.0) and np.min(x * y) < -100.0
    v = rng.standard_normal(problem.dy)
    for value in (problem.g(x, y), problem.grad_y_g(x, y), problem.hvp_yy_g(x, y, v), problem.jvp_xy_g(x, y, v)):
        assert np.all(np.isfinite(value))
    expected = fd_directional(lambda t: problem.grad_y_g(x, t), y, v, 1e-5)
    assert relative_error(problem.hvp_yy_g(x, y, v), expected) < 1e-5


# -- Synthetic: structure -------------------------------------------------------------------------


def test_synthetic_data_has_the_documented_distributions_and_spectrum():
    problem = Synthetic(40, gamma=0.5, kappa=1e3, seed=1)
    assert problem.G.flags.c_contiguous and problem.G.dtype == np.float64
    np.testing.assert_array_equal(problem.G, problem.G.T)
    np.testing.assert_allclose(np.linalg.eigvalsh(problem.G), np.linspace(1.0, 1e3, 40), rtol=1e-9)
    assert np.all((-5 <= problem.a) & (problem.a <= 5))
    assert np.all((0.1 <= problem.c) & (problem.c <= 1.1))
    assert np.all((0 <= problem.d) & (problem.d <= 0.5))


def test_synthetic_same_seed_gives_same_problem_and_other_seed_differs():
    first, second, other = Synthetic(20, seed=7), Synthetic(20, seed=7), Synthetic(20, seed=8)
    np.testing.assert_array_equal(first.G, second.G)
    np.testing.assert_array_equal(first.a, second.a)
    assert not np.allclose(first.a, other.a)


@pytest.mark.parametrize("kappa", KAPPAS)
def test_synthetic_hessian_is_symmetric(kappa):
    problem, x, y, rng = synthetic_case(kappa, n=20)
    v, w = rng.standard_normal(problem.dy), rng.standard_normal(problem.dy)
    left, right = v @ problem.hvp_yy_g(x, y, w), w @ problem.hvp_yy_g(x, y, v)
    assert abs(left - right) <= 1e-12 * kappa * np.linalg.norm(v) * np.linalg.norm(w)
    dense = dense_from_products(lambda e: problem.hvp_yy_g(x, y, e), problem.dy)
    assert np.linalg.norm(dense - dense.T) <= 1e-13 * np.linalg.norm(dense)


@pytest.mark.parametrize("kappa", KAPPAS)
def test_synthetic_hessian_is_positive_definite_with_bound_one_minus_gamma(kappa):
    problem, x, y, _ = synthetic_case(kappa, n=20)
    dense = dense_from_products(lambda e: problem.hvp_yy_g(x, y, e), problem.dy)
    eigenvalues = np.linalg.eigvalsh(0.5 * (dense + dense.T))
    assert eigenvalues.min() > 0.0
    assert eigenvalues.min() >= (1.0 - problem.gamma) - 1e-9 * kappa


def test_synthetic_true_hypergradient_matches_dense_computation():
    problem = Synthetic(30, seed=5)
    x, y0 = problem.initial_point(11)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tol must actually be reached at this size
        grad_phi, y_star, v_star = problem.true_hypergradient(x, y0)
    assert np.linalg.norm(problem.grad_y_g(x, y_star)) < 1e-10
    hessian = dense_from_products(lambda e: problem.hvp_yy_g(x, y_star, e), problem.dy)
    mixed = dense_from_products(lambda e: problem.jvp_xy_g(x, y_star, e), problem.dy)
    b = problem.grad_y_f(x, y_star)
    v_dense = np.linalg.solve(hessian, b)
    assert relative_error(v_star, v_dense) < 1e-8
    expected = problem.grad_x_f(x, y_star) - mixed @ v_dense
    assert relative_error(grad_phi, expected) < 1e-8
    assert problem.residual(x, y_star, v_star) <= 1e-9 * np.linalg.norm(b)


def test_synthetic_true_hypergradient_is_independent_of_the_starting_y():
    problem = Synthetic(30, seed=5)
    x, y0 = problem.initial_point(11)
    from_given, _, _ = problem.true_hypergradient(x, y0)
    from_zero, _, _ = problem.true_hypergradient(x)
    assert relative_error(from_zero, from_given) < 1e-7


def test_synthetic_residual_is_the_norm_of_a_v_minus_b():
    problem, x, y, rng = synthetic_case(1e5)
    v = rng.standard_normal(problem.dy)
    hessian = dense_from_products(lambda e: problem.hvp_yy_g(x, y, e), problem.dy)
    expected = np.linalg.norm(hessian @ v - problem.grad_y_f(x, y))
    assert abs(problem.residual(x, y, v) - expected) <= 1e-10 * expected


def test_synthetic_initial_point_is_reproducible_standard_normal():
    problem = Synthetic(400, kappa=10.0)
    x0, y0 = problem.initial_point(4)
    again = problem.initial_point(4)
    np.testing.assert_array_equal(x0, again[0])
    np.testing.assert_array_equal(y0, again[1])
    assert not np.array_equal(x0, problem.initial_point(5)[0])
    both = np.concatenate([x0, y0])
    assert abs(both.mean()) < 0.15 and abs(both.std() - 1.0) < 0.1


def test_synthetic_rejects_wrong_shapes():
    problem = Synthetic(5)
    with pytest.raises(ValueError):
        problem.grad_y_g(np.zeros(5), np.zeros(4))
    with pytest.raises(ValueError):
        problem.hvp_yy_g(np.zeros(5), np.zeros(5), np.zeros((5, 1)))


# -- HyperCleaning: derivatives against finite differences ---------------------------------------


def test_hypercleaning_gradients_match_finite_differences_of_f_and_g():
    problem, x, y, _ = small_cleaning_problem()
    step = 1e-3
    assert relative_error(problem.grad_y_g(x, y), fd_gradient(lambda t: problem.g(x, t), y, step)) < FD_TOLERANCE
    assert relative_error(problem.grad_y_f(x, y), fd_gradient(lambda t: problem.f(x, t), y, step)) < FD_TOLERANCE
    np.testing.assert_array_equal(problem.grad_x_f(x, y), np.zeros(problem.dx))
    assert np.max(np.abs(fd_gradient(lambda t: problem.f(t, y), x, step))) == 0.0


def test_hypercleaning_hvp_matches_finite_differences_of_grad_y_g():
    problem, x, y, rng = small_cleaning_problem()
    for _ in range(3):
        v = rng.standard_normal(problem.dy)
        expected = fd_directional(lambda t: problem.grad_y_g(x, t), y, v, 1e-3)
        assert relative_error(problem.hvp_yy_g(x, y, v), expected) < FD_TOLERANCE


def test_hypercleaning_jvp_matches_finite_differences_of_grad_y_g_in_x():
    problem, x, y, rng = small_cleaning_problem()
    mixed = np.column_stack([
        fd_directional(lambda t: problem.grad_y_g(t, y), x, e, 1e-3) for e in np.eye(problem.dx)
    ])
    for _ in range(3):
        v = rng.standard_normal(problem.dy)
        assert relative_error(problem.jvp_xy_g(x, y, v), mixed.T @ v) < FD_TOLERANCE


def test_hypercleaning_hessian_is_symmetric_positive_definite():
    problem, x, y, _ = small_cleaning_problem()
    dense = dense_from_products(lambda e: problem.hvp_yy_g(x, y, e), problem.dy)
    assert np.linalg.norm(dense - dense.T) <= 1e-13 * np.linalg.norm(dense)
    # The cross-entropy part is positive semidefinite; the regulariser adds 2 reg.
    assert np.linalg.eigvalsh(0.5 * (dense + dense.T)).min() >= 2.0 * problem.reg - 1e-12


def test_hypercleaning_y_layout_is_rows_of_weights_then_bias():
    problem, x, y, _ = small_cleaning_problem()
    # With only class 1's bias set, every sample's logits are (0, 7, 0).
    y = np.zeros(problem.dy)
    p = problem.num_features
    y[1 * (p + 1) + p] = 7.0
    log_normaliser = np.log(np.exp(7.0) + 2.0)
    expected = np.mean(np.where(problem.val_labels == 1, log_normaliser - 7.0, log_normaliser))
    assert abs(problem.validation_loss(y) - expected) < 1e-12


def test_hypercleaning_values_at_the_initial_point():
    problem, _, _, _ = small_cleaning_problem()
    x0, y0 = problem.initial_point(0)
    assert not x0.any() and not y0.any()
    # Uniform predictions: every cross-entropy is log C.
    assert abs(problem.g(x0, y0) - 0.5 * np.log(3.0)) < 1e-14
    assert abs(problem.f(x0, y0) - np.log(3.0)) < 1e-14
    assert abs(problem.test_loss(y0) - np.log(3.0)) < 1e-14


def test_hypercleaning_is_stable_for_large_logits_and_weights():
    problem, _, _, rng = small_cleaning_problem()
    x = 800.0 * rng.standard_normal(problem.dx)
    y = 300.0 * rng.standard_normal(problem.dy)
    v = rng.standard_normal(problem.dy)
    for value in (problem.g(x, y), problem.f(x, y), problem.grad_y_g(x, y), problem.grad_y_f(x, y),
                  problem.hvp_yy_g(x, y, v), problem.jvp_xy_g(x, y, v)):
        assert np.all(np.isfinite(value))


# -- both problems: calling conventions -------------------------------------------------------------


def all_results(problem, x, y, v):
    return [
        problem.grad_y_g(x, y), problem.grad_x_f(x, y), problem.grad_y_f(x, y),
        problem.hvp_yy_g(x, y, v), problem.jvp_xy_g(x, y, v),
    ]


@pytest.mark.parametrize("make", [lambda: synthetic_case(1e5)[:3], lambda: small_cleaning_problem()[:3]],
                         ids=["synthetic", "hypercleaning"])
def test_methods_leave_inputs_unchanged_and_return_fresh_arrays(make):
    problem, x, y = make()
    v = np.linspace(-1.0, 1.0, problem.dy)
    copies = [x.copy(), y.copy(), v.copy()]
    first = all_results(problem, x, y, v)
    problem.f(x, y)
    problem.g(x, y)
    for original, kept in zip((x, y, v), copies):
        np.testing.assert_array_equal(original, kept)
    second = all_results(problem, x, y, v)
    shapes = [problem.dy, problem.dx, problem.dy, problem.dy, problem.dx]
    for a, b, size in zip(first, second, shapes):
        assert a.shape == (size,) and a.dtype == np.float64
        assert not np.shares_memory(a, b)
        for argument in (x, y, v):
            assert not np.shares_memory(a, argument)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


# -- HyperCleaning: corruption, reports, data sources -------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.5, 0.8, 1.0])
def test_corruption_changes_exactly_the_fraction_never_to_the_same_class(fraction):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 1001)
    original = labels.copy()
    corrupted, mask = HyperCleaning.corrupt_labels(labels, fraction, 10, np.random.default_rng(2))
    np.testing.assert_array_equal(labels, original)
    assert np.count_nonzero(mask) == round(fraction * labels.size)
    np.testing.assert_array_equal(mask, corrupted != labels)
    assert np.all((0 <= corrupted) & (corrupted < 10))


def test_corruption_draws_the_new_class_uniformly_among_the_others():
    labels = np.zeros(20000, dtype=np.int64)
    corrupted, _ = HyperCleaning.corrupt_labels(labels, 1.0, 5, np.random.default_rng(3))
    counts = np.bincount(corrupted, minlength=5)
    assert counts[0] == 0
    # Each other class expects 5000; four standard deviations is about 245.
    assert np.all(np.abs(counts[1:] - 5000) < 250)


def test_cleaning_report_counts_flagged_corrupted_and_clean_samples():
    problem, _, _, _ = small_cleaning_problem()
    mask = np.zeros(problem.dx, dtype=bool)
    mask[:5] = True
    x = np.ones(problem.dx)
    x[[0, 1, 2, 10, 11]] = -1.0  # three corrupted and two clean samples flagged
    report = problem.cleaning_report(x, mask)
    assert report["num_corrupted"] == 5 and report["num_clean"] == problem.dx - 5
    assert report["corrupted_flagged"] == 3 and report["clean_flagged"] == 2
    assert report["num_flagged"] == 5
    assert report["precision"] == pytest.approx(0.6) and report["recall"] == pytest.approx(0.6)


def write_idx(path, array):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as stream:
        stream.write(header + array.tobytes())


def write_mnist_like(directory, suffix, rng):
    train_images = rng.integers(0, 256, (30, 5, 4))
    train_labels = rng.integers(0, 10, 30)
    test_images = rng.integers(0, 256, (14, 5, 4))
    test_labels = rng.integers(0, 10, 14)
    write_idx(directory / f"train-images-idx3-ubyte{suffix}", train_images)
    write_idx(directory / f"train-labels-idx1-ubyte{suffix}", train_labels)
    write_idx(directory / f"t10k-images-idx3-ubyte{suffix}", test_images)
    write_idx(directory / f"t10k-labels-idx1-ubyte{suffix}", test_labels)
    return train_images, train_labels, test_images, test_labels


@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["plain", "gzip"])
def test_from_idx_round_trips_idx_files(tmp_path, suffix):
    train_images, train_labels, test_images, test_labels = write_mnist_like(
        tmp_path, suffix, np.random.default_rng(4)
    )
    problem = HyperCleaning.from_idx(tmp_path, corruption=0.5, seed=1, train=12, val=10, test=9)
    assert problem.num_features == 20 and problem.dx == 12 and problem.dy == 10 * 21
    source = train_images.reshape(30, 20) / 255.0
    rows = problem.train_features
    val_rows = problem.val_features
    # Every train and validation sample is a distinct row of the training file.
    found = [int(np.flatnonzero((source == row).all(axis=1))[0]) for row in np.vstack([rows, val_rows])]
    assert len(set(found)) == 22
    np.testing.assert_array_equal(problem.clean_train_labels, train_labels[found[:12]])
    np.testing.assert_array_equal(problem.val_labels, train_labels[found[12:]])
    assert np.count_nonzero(problem.corrupted_mask) == 6
    np.testing.assert_array_equal(problem.corrupted_mask, problem.train_labels != problem.clean_train_labels)
    np.testing.assert_array_equal(problem.test_features, test_images[:9].reshape(9, 20) / 255.0)
    np.testing.assert_array_equal(problem.test_labels, test_labels[:9])


def test_from_idx_rejects_a_bad_magic_number(tmp_path):
    write_mnist_like(tmp_path, "", np.random.default_rng(5))
    path = tmp_path / "train-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[0] = 0x12
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="magic"):
        HyperCleaning.from_idx(tmp_path, train=12, val=10, test=9)


def test_from_idx_rejects_a_wrong_data_type_code(tmp_path):
    write_mnist_like(tmp_path, "", np.random.default_rng(5))
    path = tmp_path / "t10k-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[2] = 0x0D  # float32
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="data type"):
        HyperCleaning.from_idx(tmp_path, train=12, val=10, test=9)


def test_from_idx_rejects_a_truncated_file(tmp_path):
    write_mnist_like(tmp_path, ".gz", np.random.default_rng(6))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "rb") as stream:
        raw = stream.read()
    with gzip.open(path, "wb") as stream:
        stream.write(raw[:-7])
    with pytest.raises(ValueError, match="holds"):
        HyperCleaning.from_idx(tmp_path, train=12, val=10, test=9)


def test_from_idx_rejects_more_samples_than_the_files_hold(tmp_path):
    write_mnist_like(tmp_path, "", np.random.default_rng(7))
    with pytest.raises(ValueError):
        HyperCleaning.from_idx(tmp_path, train=20, val=20, test=9)
    with pytest.raises(ValueError):
        HyperCleaning.from_idx(tmp_path, train=12, val=10, test=15)


def test_from_idx_reports_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        HyperCleaning.from_idx(tmp_path)


def test_digits_splits_scales_and_corrupts_as_documented():
    pytest.importorskip("sklearn")
    problem = HyperCleaning.digits(corruption=0.5, seed=0)
    assert (problem.dx, problem.num_features, problem.num_classes) == (600, 64, 10)
    assert problem.val_features.shape[0] == 600 and problem.test_features.shape[0] == 597
    features = np.vstack([problem.train_features, problem.val_features, problem.test_features])
    assert features.min() >= 0.0 and features.max() <= 1.0
    # The splits partition the data set, so together they hold all of its distinct images.
    from sklearn.datasets import load_digits

    everything = load_digits().data / 16.0
    assert np.unique(features, axis=0).shape[0] == np.unique(everything, axis=0).shape[0]
    assert np.count_nonzero(problem.corrupted_mask) == 300
    np.testing.assert_array_equal(problem.corrupted_mask, problem.train_labels != problem.clean_train_labels)


def test_digits_oracle_weights_give_lower_validation_loss_than_uniform_weights():
    pytest.importorskip("sklearn")
    problem = HyperCleaning.digits(corruption=0.5, seed=0)
    results = {}
    for name, x in (("uniform", np.zeros(problem.dx)),
                    ("oracle", np.where(problem.corrupted_mask, -20.0, 20.0))):
        y = np.zeros(problem.dy)
        for _ in range(300):
            y -= problem.grad_y_g(x, y)
        results[name] = (problem.validation_loss(y), problem.test_accuracy(y))
    assert results["oracle"][0] < results["uniform"][0] - 0.3
    assert results["oracle"][1] > results["uniform"][1]
    assert problem.cleaning_report(np.where(problem.corrupted_mask, -20.0, 20.0))["recall"] == 1.0


def test_digits_without_scikit_learn_raises_import_error_naming_the_fix(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def refuse_sklearn(name, *args, **kwargs):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse_sklearn)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        HyperCleaning.digits()
