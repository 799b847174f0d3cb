"""The benchmark (make bench): --quick runs end to end and reports every
section, and its numpy reference implementations compute what the library computes
(which is what makes them valid references)."""

import math
import os
import time

import numpy as np
import pytest

from conftest import spd_matrix

from bench.scale import missing
from bench.sections import Config

MPI_MISSING = missing()
if MPI_MISSING and os.environ.get("CI") == "true":
    pytest.fail(f"CI=true but {', '.join(MPI_MISSING)} is missing (.ci/run installs them)", pytrace=False)
needs_mpi = pytest.mark.skipif(bool(MPI_MISSING), reason=f"needs {', '.join(MPI_MISSING)}")


def _drive(est, op, b):
    """One reverse-communication step of any implementation; returns its v."""
    request = est.begin(b)
    while request is not None:
        request = est.resume(np.array(op(request), dtype=b.dtype))
    return est.v


def test_quick_run_reports_every_section(tmp_path, capsys):
    import bench

    out = tmp_path / "report.md"
    started = time.perf_counter()
    assert bench.main(["--quick", "--output", str(out)]) == 0
    elapsed = time.perf_counter() - started
    text = capsys.readouterr().out
    for heading in ("## Machine", "## 1. LancBiO step", "## 2. CG and MINRES", "## 3. Python callback",
                    "## 4. Synthetic problem", "### 4b. The outer loop's own cost", "## 5. Float32 against Float64",
                    "## 6. Peak memory", "## 7. One-shot solves", "## 8. BLAS threads", "## 9. lancbio.torch against plain PyTorch",
                    "## 10. Vectors sliced across processes", "## Targets"):
        assert heading in text, heading
    sliced = text.split("## 10. Vectors sliced across processes", 1)[1].split("\n## ", 1)[0]
    if not MPI_MISSING:
        # The section ran every process count of --quick: 2 reductions per step, 3 at a restart.
        assert "section skipped" not in sliced
        assert sliced.count("| 2 (3 at a restart) |") == len(Config.make(True, None).scale_processes)
    # Every comparison computed the same numbers.
    assert "DIFFERENT" not in text
    assert "probe failed" not in text
    assert text.count(" ok") >= 4 + 2 + 1 + 2
    # Every target of the issue appears in the summary with a verdict.
    summary = text.split("## Targets", 1)[1]
    for target in ("5x faster than (a)", "never slower than (b)", "of the attainable time at every n <= 1e4",
                   "bandwidth bound",
                   "callback overhead", "float32", "peak memory", "memory flat",
                   "within 1.2x of CG's products", "within 1.2x of CG's time",
                   "own cost <= the numpy loop's on the synthetic problem",
                   "own cost <= 1/1.5 of the numpy loop's on the cheap problem",
                   "lancbio.torch's own cost <= 5% of the outer iteration",
                   "lancbio.torch's own cost below the plain-PyTorch estimator's"):
        line = next((l for l in summary.splitlines() if target in l), None)
        assert line is not None, target
        assert any(v in line for v in ("PASS", "FAIL", "SKIP")), line
    assert out.read_text() == text
    assert elapsed < 60  # the option promises < 20 s; generous for loaded CI machines


def test_sections_option_runs_only_those(capsys):
    import bench

    assert bench.main(["--quick", "--sections", "3", "--repeats", "1"]) == 0
    text = capsys.readouterr().out
    assert "## 3. Python callback" in text
    assert "## 1. LancBiO step" not in text and "## 6. Peak memory" not in text


def test_user_case_children_run_the_blas_threading_they_report(monkeypatch):
    # Section 8 compares numpy's default threading with one BLAS thread in subprocesses:
    # the default child must not inherit a limit from the bench's own environment.
    from bench.blas_threads import run_case

    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    one = run_case(60, 4, one_thread=True)
    assert one["threads"] == 1   # no BLAS worker, and no lancbio helper at this size
    default = run_case(60, 4, one_thread=False)
    if (os.cpu_count() or 1) > 1:
        assert default["threads"] > 1
    for case in (one, default):
        assert set(case["total"]) == {"lancbio", "numpy"}
        assert all(0 < case["inside"][k] < case["total"][k] for k in case["total"])


@pytest.mark.parametrize("argv", [["--sections", "11"], ["--sections", "0"], ["--sections", "x"], ["--repeats", "0"]])
def test_bad_options_are_rejected(argv):
    import bench

    with pytest.raises(SystemExit):
        bench.main(argv)


def test_sections_option_offers_exactly_the_sections_that_exist():
    import bench
    from bench.sections import SECTIONS

    assert sorted(SECTIONS) == list(bench.SECTION_NUMBERS)


@pytest.mark.parametrize("processes", [1, 2, 3, 4, 7])
def test_scale_slices_cover_the_vector_unevenly_within_ten_percent(processes):
    from bench.scale import UNEVEN, slices

    n = 10**6 + 3
    bounds = slices(n, processes)
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == n and len(sizes) == processes
    assert np.all(np.abs(sizes / (n / processes) - 1) <= UNEVEN + 1e-5)
    if processes > 1:
        assert np.all(np.diff(sizes) > 0)   # uneven, the last rank the largest


@needs_mpi
def test_scale_worker_times_each_step_and_counts_its_reductions():
    # Two ranks on an uneven vector: every timed step of every rank is split into parts
    # that add up, with the reduction calls docs/algorithms.md section 13 counts.
    from bench.scale import run_workers, summarize

    n, m, cycles = 6000, 5, 2
    run = run_workers(2, n, m, cycles)
    assert run["processes"] == 2
    assert sum(r["n_local"] for r in run["ranks"]) == n
    for rank in run["ranks"]:
        steps = rank["steps"]["comm"]
        assert len(steps) == m * cycles
        for step in steps:
            assert step["reductions"] == len(step["sizes"]) == (3 if step["restarted"] else 2)
            assert step["products"] == (2 if step["restarted"] else 1)
            assert 0 < step["reduce"] + step["product"] < step["total"]
            if not step["restarted"]:
                # alpha with ||b||^2 and b's finiteness; ||q||^2, ||r||^2, Q^T r and Q^T q
                # (j each): each with the count of failed products.
                assert step["sizes"] == [4, 2 * step["dimension"] + 3]
        assert set(rank["latency"]) >= {"4", str(2 * m + 3)}
        assert all(0 < t < 0.1 for t in rank["latency"].values())
        assert rank["bandwidth"] > 1e8
    summary = summarize(run)
    assert summary["samples"] == cycles and summary["n_local"][1] > summary["n_local"][0]
    assert summary["reductions"] == [2] and summary["restart_reductions"] == [3]


def test_scale_section_skips_without_mpi(monkeypatch):
    import bench.scale
    from bench.report import Report

    monkeypatch.setattr(bench.scale.shutil, "which", lambda name: None)
    report = Report(echo=False)
    bench.scale.section_scale(report, Config.make(True, 1), {})
    text = report.markdown()
    assert "## 10. Vectors sliced across processes" in text
    assert "mpirun" in text and "section skipped" in text


def test_thomas_solve_matches_dense_solve(rng):
    from bench.reference import thomas_solve, tridiagonal_solver

    n = 9
    d = rng.uniform(3, 4, n)
    e = rng.uniform(-1, 1, n - 1)
    r = rng.standard_normal(n)
    T = np.diag(d) + np.diag(e, 1) + np.diag(e, -1)
    expected = np.linalg.solve(T, r)
    np.testing.assert_allclose(thomas_solve(e, d, e, r), expected, rtol=1e-12)
    solve, _ = tridiagonal_solver()
    np.testing.assert_allclose(solve(e.copy(), d.copy(), r.copy()), expected, rtol=1e-12)
    np.testing.assert_allclose(solve(e[:0], d[:1], r[:1].copy()), r[:1] / d[0], rtol=1e-15)


@pytest.mark.parametrize("schedule", [dict(m0=1, m_max=6, growth=1.5, grow_every=2),
                                      dict(m0=5, m_max=5, growth=1.0, grow_every=1)])
def test_lanczos_references_agree_with_the_library(rng, schedule):
    import lancbio
    from bench.reference import CarefulLanczos, ResearchLanczos

    n = 60
    A0 = spd_matrix(rng, n, cond=20.0)
    drift = np.diag(rng.uniform(0, 1, n))
    b0, b1 = rng.standard_normal(n), rng.standard_normal(n)
    lib = lancbio.DynamicLanczos(n, **schedule)
    careful = CarefulLanczos(n, **schedule)
    research = ResearchLanczos(n, **schedule)
    for k in range(1, 41):
        A = A0 + 0.01 * math.sin(k) * drift  # a moving operator, as in a bilevel run
        b = b0 + 0.1 * math.cos(k) * b1
        v_lib = _drive(lib, A.__matmul__, b)
        v_careful = _drive(careful, A.__matmul__, b)
        v_research = _drive(research, A.__matmul__, b)
        assert careful.j == lib.dim and careful.period == lib.period
        np.testing.assert_allclose(v_careful, v_lib, rtol=0, atol=1e-10 * np.linalg.norm(v_lib))
        np.testing.assert_allclose(v_research, v_lib, rtol=0, atol=1e-10 * np.linalg.norm(v_lib))
    assert lib.restarts == careful.restarts > 1


def test_careful_reference_agrees_in_float32(rng):
    import lancbio
    from bench.reference import CarefulLanczos

    n = 200
    d = np.linspace(1.0, 10.0, n).astype(np.float32)
    b0 = rng.standard_normal(n).astype(np.float32)
    lib = lancbio.DynamicLanczos(n, m0=8, m_max=8, growth=1.0, dtype=np.float32)
    careful = CarefulLanczos(n, m0=8, m_max=8, growth=1.0, grow_every=1, dtype=np.float32)
    for k in range(1, 25):
        b = (b0 * np.float32(1 + 0.1 * math.sin(k))).astype(np.float32)
        v_lib = _drive(lib, d.__mul__, b)
        v_careful = _drive(careful, d.__mul__, b)
        assert v_careful.dtype == np.float32
        np.testing.assert_allclose(v_careful, v_lib, rtol=0, atol=1e-5 * np.linalg.norm(v_lib))


def test_careful_reference_handles_breakdown_like_the_library(rng):
    import lancbio
    from bench.reference import CarefulLanczos

    # Two distinct eigenvalues: the Krylov space is invariant after two steps.
    n = 30
    d = np.where(np.arange(n) % 2 == 0, 1.0, 3.0)
    lib = lancbio.DynamicLanczos(n, m0=5, m_max=5, growth=1.0)
    careful = CarefulLanczos(n, m0=5, m_max=5, growth=1.0, grow_every=1)
    b0 = rng.standard_normal(n)
    saw_breakdown = False
    for k in range(1, 16):
        b = b0 * (1 + 0.1 * math.sin(k))
        v_lib = _drive(lib, d.__mul__, b)
        v_careful = _drive(careful, d.__mul__, b)
        saw_breakdown |= lib.info.breakdown
        assert careful.j == lib.dim
        np.testing.assert_allclose(v_careful, v_lib, rtol=0, atol=1e-10 * np.linalg.norm(v_lib))
    assert saw_breakdown


def test_reference_outer_loop_agrees_with_bilevel():
    import lancbio
    from bench.reference import ReferenceBilevel
    from lancbio.problems import Synthetic

    problem = Synthetic(40, kappa=1e3, seed=3)
    x0, y0 = problem.initial_point(2)
    options = dict(lr_x=0.5, lr_y=1e-3, m0=1, m_max=8, growth=1.5, grow_every=3)
    bil = lancbio.Bilevel(problem, "lancbio", x0=x0, y0=y0, **options)
    ref = ReferenceBilevel(problem, x0, y0, **options)
    for _ in range(60):
        bil.step()
        ref.step()
    assert ref.est.restarts > 3
    np.testing.assert_allclose(ref.x, bil.x, rtol=0, atol=1e-10 * np.linalg.norm(bil.x))
    np.testing.assert_allclose(ref.y, bil.y, rtol=0, atol=1e-10 * np.linalg.norm(bil.y))
    np.testing.assert_allclose(ref.est.v, bil.v, rtol=0, atol=1e-10 * np.linalg.norm(bil.v))
    assert np.linalg.norm(bil.x - x0) > 1e-3  # the iterates really moved


def test_careful_reference_orthogonality_safeguard_restarts_early(rng):
    from bench.reference import CarefulLanczos

    # Well separated extreme eigenvalues: Ritz values converge fast and the basis loses
    # orthogonality within a 60-step cycle. Off (the default), cycles run to 60 steps;
    # with the library's tolerance, a cycle ends early. (When the check fires depends on
    # rounding, so it is not compared with the library step by step.)
    n = 200
    d = np.geomspace(1.0, 1e4, n)
    b0, b1 = rng.standard_normal(n), rng.standard_normal(n)
    plain = CarefulLanczos(n, m0=60, m_max=60, growth=1.0, grow_every=1)
    guarded = CarefulLanczos(n, m0=60, m_max=60, growth=1.0, grow_every=1, orthogonality_tol=1e-2)
    dims_plain, dims_guarded = [], []
    for k in range(1, 201):
        b = b0 + 0.1 * math.sin(k) * b1
        _drive(plain, d.__mul__, b)
        _drive(guarded, d.__mul__, b)
        dims_plain.append(plain.j)
        dims_guarded.append(guarded.j)
    assert max(dims_plain) == 60 and plain.orthogonality_restarts == 0
    assert guarded.orthogonality_restarts >= 1 and max(dims_guarded) < 60
    assert np.all(np.isfinite(guarded.v))


def test_torch_section_skips_without_torch_and_fails_under_ci(monkeypatch):
    # torch is optional: outside CI the section reports its targets as SKIP; CI must have it.
    import sys

    from bench.report import Report
    from bench.sections import Config
    from bench.torch_speed import section_torch

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    monkeypatch.delenv("CI", raising=False)
    report = Report(echo=False)
    section_torch(report, Config.make(True, 1), {})
    assert [t.verdict for t in report.targets] == ["SKIP", "SKIP"]
    assert "torch is not installed" in report.markdown()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(ImportError):
        section_torch(Report(echo=False), Config.make(True, 1), {})
