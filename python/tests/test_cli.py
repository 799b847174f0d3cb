"""The command line (python3 -m lancbio {demo,hyperclean}): smoke runs at tiny sizes, help
texts, rejection of bad arguments and divergence handling."""

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PYTHON_DIR = Path(__file__).resolve().parents[1]
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None


def run_cli(*args, cwd=None, timeout=60):
    """``python3 -m lancbio ARGS`` in a fresh interpreter (the real entry point, exit codes
    included), with this checkout's package first on the path."""
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "lancbio", *args], cwd=cwd or PYTHON_DIR, env=env,
                          capture_output=True, text=True, timeout=timeout)


def table_rows(stdout):
    """{method: row cells} of the table printed after the dashed rule."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("---"))
    rows = {}
    for line in lines[start + 1:]:
        cells = line.split()
        if not cells or not cells[1].isdigit():
            break
        rows[cells[0]] = cells
    return rows


def is_png(path):
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- smoke runs --------------------------------------------------------------------------

def test_demo_smoke_writes_table_and_figure(tmp_path):
    figure = tmp_path / "demo.png"
    result = run_cli("demo", "--n", "50", "--seconds", "0.3", "--methods", "lancbio,amigo-cg",
                     "--output", str(figure))
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert set(rows) == {"lancbio", "amigo-cg"}
    for cells in rows.values():
        iterations, hvps, seconds, grad_phi, residual = cells[1:6]
        assert int(iterations) > 0 and int(hvps) > 0
        assert 0.3 <= float(seconds) < 5
        assert math.isfinite(float(grad_phi)) and math.isfinite(float(residual))
        assert cells[-1] == "ok"
    # Progress names the running method and the exact hyper-gradient.
    assert "lancbio" in result.stderr and "||grad phi||" in result.stderr
    if HAS_MATPLOTLIB:
        assert is_png(figure)
        assert f"figure: {figure}" in result.stdout
    else:
        assert "figure" in result.stderr and "skipped" in result.stderr


def test_demo_quiet_prints_only_the_table(tmp_path):
    result = run_cli("demo", "--n", "30", "--seconds", "0.05", "--methods", "soba", "--quiet",
                     "--output", str(tmp_path / "q.png"))
    assert result.returncode == 0, result.stderr
    assert "iteration" not in result.stderr
    assert set(table_rows(result.stdout)) == {"soba"}


@pytest.mark.skipif(not HAS_SKLEARN, reason="scikit-learn is not installed")
def test_hyperclean_smoke(tmp_path):
    figure = tmp_path / "clean.png"
    result = run_cli("hyperclean", "--seconds", "0.2", "--methods", "lancbio,soba", "--corruption", "0.5",
                     "--output", str(figure))
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert set(rows) == {"lancbio", "soba"}
    for cells in rows.values():
        loss, accuracy, corrupted, clean = cells[4:8]
        assert 0 < float(loss) < 2.31          # below log(10), the loss at y = 0
        assert 0.0 <= float(accuracy) <= 1.0
        assert 0 <= int(corrupted) <= 300 and 0 <= int(clean) <= 300
    if HAS_MATPLOTLIB:
        assert is_png(figure)


def test_demo_without_matplotlib_skips_the_figure(tmp_path, monkeypatch, capsys):
    from lancbio.cli import demo

    # A None entry makes "import matplotlib" raise ImportError, as when it is absent.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    figure = tmp_path / "none.png"
    assert demo.main(["--n", "20", "--seconds", "0.02", "--methods", "lancbio", "--quiet",
                      "--output", str(figure)]) == 0
    captured = capsys.readouterr()
    assert not figure.exists()
    assert "matplotlib is not installed" in captured.err
    assert "lancbio" in captured.out


# -- help and bad arguments ----------------------------------------------------------------

@pytest.mark.parametrize("command, options", [
    ([], ["demo", "hyperclean"]),
    (["demo"], ["--n", "--kappa", "--gamma", "--seconds", "--methods", "--seed", "--output",
                "--threads", "--quiet"]),
    (["hyperclean"], ["--corruption", "--seconds", "--methods", "--seed", "--output", "--lr-x",
                      "--lr-y", "--quiet", "--backend", "--model", "--batch"]),
])
def test_help_documents_every_option(command, options, capsys):
    from lancbio.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in options:
        assert option in text


def test_help_through_the_real_entry_point():
    for command in ("demo", "hyperclean"):
        result = run_cli(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage: python3 -m lancbio " + command in result.stdout


@pytest.mark.parametrize("argv, message", [
    (["demo", "--methods", "lancbio,newton"], "unknown method(s) newton"),
    (["demo", "--seconds", "-1"], "must be > 0"),
    (["demo", "--seconds", "0"], "must be > 0"),
    (["demo", "--seconds", "nan"], "must be finite"),
    (["demo", "--n", "0"], "must be >= 1"),
    (["demo", "--kappa", "0.5"], "must be >= 1"),
    (["demo", "--gamma", "1.5"], "must be < 1"),
    (["demo", "--threads", "two"], "not a valid int"),
    (["demo", "--methods", ","], "at least one method"),
    (["hyperclean", "--methods", "sgd"], "unknown method(s) sgd"),
    (["hyperclean", "--seconds", "-0.5"], "must be > 0"),
    (["hyperclean", "--corruption", "1.2"], "must be in [0, 1]"),
    (["hyperclean", "--lr-x", "-3"], "must be > 0"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_invalid_arguments_exit_nonzero_with_a_message(argv, message, capsys):
    from lancbio.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code not in (0, None)
    assert message in capsys.readouterr().err


def test_invalid_arguments_through_the_real_entry_point():
    result = run_cli("demo", "--methods", "lancbio,bogus")
    assert result.returncode == 2
    assert "unknown method(s) bogus" in result.stderr
    result = run_cli("hyperclean", "--seconds", "-2")
    assert result.returncode == 2
    assert "--seconds" in result.stderr and "must be > 0" in result.stderr


def test_method_list_accepts_all_and_drops_duplicates():
    from lancbio import METHODS
    from lancbio.cli import method_list

    assert method_list("all") == list(METHODS)
    assert method_list(" SOBA, lancbio,soba ") == ["soba", "lancbio"]


def test_thread_limit_is_restored_after_the_run():
    from lancbio.cli import limit_threads

    before = os.environ.get("OPENBLAS_NUM_THREADS")
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = list
    pools = [(pool.get("user_api"), pool.get("num_threads")) for pool in threadpool_info()]
    with limit_threads(1) as description:
        assert "1 BLAS thread" in description or "not changed" in description
        assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
        assert all(pool.get("num_threads") == 1 for pool in threadpool_info())
    assert os.environ.get("OPENBLAS_NUM_THREADS") == before
    assert [(pool.get("user_api"), pool.get("num_threads")) for pool in threadpool_info()] == pools


def test_command_line_sets_blas_threads_with_threadpoolctl():
    pytest.importorskip("threadpoolctl")
    result = run_cli("demo", "--n", "40", "--seconds", "0.05", "--methods", "soba", "--output", os.devnull)
    assert result.returncode == 0, result.stderr
    assert "1 BLAS thread(s) (threadpoolctl)" in result.stderr


def test_command_line_without_threadpoolctl_restarts_with_the_thread_variables_set(tmp_path):
    # numpy is loaded before the command runs, so without threadpoolctl only a new
    # interpreter, started with the variables set, gets one BLAS thread.
    (tmp_path / "threadpoolctl.py").write_text("raise ImportError('hidden by the test')\n")
    env = {name: value for name, value in os.environ.items() if not name.endswith("_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(PYTHON_DIR), os.environ.get("PYTHONPATH", "")])
    probe = tmp_path / "probe.py"
    # The demo's own code path, with a report of the BLAS pools numpy really runs (read
    # through the real threadpoolctl, imported from its own location after the run).
    real = Path(__import__("threadpoolctl").__file__).parent if importlib.util.find_spec("threadpoolctl") else None
    probe.write_text(
        "import os, sys\n"
        "from lancbio.__main__ import main\n"
        "status = main()\n"
        "print('THREAD VARIABLE', os.environ.get('OPENBLAS_NUM_THREADS'))\n"
        f"real = {str(real)!r}\n"
        "if real != 'None':\n"
        "    sys.path.insert(0, real)\n"
        "    sys.modules.pop('threadpoolctl', None)\n"
        "    import threadpoolctl\n"
        "    print('POOLS', sorted({p['num_threads'] for p in threadpoolctl.threadpool_info()}))\n"
        "sys.exit(status)\n")
    result = subprocess.run([sys.executable, str(probe), "demo", "--n", "40", "--seconds", "0.05",
                             "--methods", "soba", "--output", os.devnull],
                            cwd=PYTHON_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "not changed" not in result.stderr
    assert "1 BLAS thread(s) (environment" in result.stderr
    assert result.stderr.count("synthetic problem n = 40") == 1   # one run, not one per restart
    assert "THREAD VARIABLE 1" in result.stdout   # the interpreter that ran was started with it
    if real is not None:
        assert "POOLS [1]" in result.stdout


# -- divergence -----------------------------------------------------------------------------

class _Quadratic:
    """g = 0.5 ||y||^2 - x.y, f = 0.5 ||y||^2; its HVP turns NaN after ``healthy`` calls."""

    dx = dy = 3

    def __init__(self, healthy):
        self.calls = 0
        self.healthy = healthy

    def grad_y_g(self, x, y):
        return y - x

    def grad_x_f(self, x, y):
        return np.zeros(3)

    def grad_y_f(self, x, y):
        return y.copy()

    def hvp_yy_g(self, x, y, v):
        self.calls += 1
        return v * (math.nan if self.calls > self.healthy else 1.0)

    def jvp_xy_g(self, x, y, v):
        return -v


def test_a_diverging_method_is_reported_not_fatal():
    from lancbio.cli import run_method

    problem = _Quadratic(healthy=20)
    evaluated = []

    def evaluate(optimizer):
        evaluated.append(optimizer.x)
        return {"norm": float(np.linalg.norm(optimizer.x))}

    run = run_method(problem, "soba", np.ones(3), np.zeros(3), {"lr_x": 0.1, "lr_y": 0.5}, 5.0,
                     evaluate, {"norm": math.sqrt(3)}, lambda point: "", quiet=True)
    # SOBA makes one HVP per iteration: iterations 1..20 succeed, the 21st fails.
    assert run.diverged_at == 21
    assert run.iterations == 20
    assert run.status == "diverged at iteration 21"
    assert "NaN" in run.error or "non-finite" in run.error.lower()
    # The last good iterate was evaluated, so the table has its final values.
    assert run.points[-1]["iteration"] == 20
    assert math.isfinite(run.final("norm"))


def test_checkpoints_are_increasing_dense_early_and_end_at_the_budget():
    from lancbio.cli import checkpoint_times

    times = checkpoint_times(5.0)
    assert times == sorted(times) and len(set(times)) == len(times)
    assert times[-1] == 5.0
    assert times[0] < 0.05
    assert sum(t <= 0.5 for t in times) >= 6


# -- the benchmark is not part of the package ------------------------------------------------

def test_bench_is_no_command_of_the_installed_package(capsys):
    from lancbio.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--quick"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err
    assert importlib.util.find_spec("lancbio.bench") is None
