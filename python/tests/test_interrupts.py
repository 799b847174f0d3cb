"""Asynchronous exceptions (Ctrl-C, or a signal handler that raises) arriving at random
moments while estimators, optimizers and solves compute.

A thread fires one interrupt at a random delay after the main thread arms it, either
``_thread.interrupt_main()`` (what Ctrl-C does: the default SIGINT handler raises
KeyboardInterrupt) or SIGALRM sent to the main thread, whose handler raises ``Alarm``.
The main thread keeps stepping until the interrupt lands, disarms, and compares
everything against a twin stepped without interruption:

- every step that returned gave the twin's result, bit for bit;
- the interrupted object is exactly the twin before the interrupted step, or, when the
  interrupt came after the library committed that step, exactly the twin after it;
- the exception the caller gets is the one the handler raised, and nothing is printed
  (no "Exception ignored on calling ctypes callback function").

Each run is a subprocess (signal handlers, and a KeyboardInterrupt that escaped would end
the test session), bounded in time.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import lancbio

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def run_interrupted(code: str, *args) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(lancbio.__file__)),
                                                       TESTS_DIR]),
               LANCBIO_LIBRARY=lancbio.library_path)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"the subprocess died ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["stderr"] = result.stderr
    return report


HARNESS = """
    import _thread, json, random, signal, sys, threading, time
    import numpy as np
    import lancbio

    class Alarm(BaseException):
        pass

    def on_alarm(signum, frame):
        raise Alarm()

    signal.signal(signal.SIGALRM, on_alarm)
    SOURCE, SECONDS, MAX_DELAY = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    EXPECTED = Alarm if SOURCE == "alarm" else KeyboardInterrupt
    main_thread = threading.main_thread().ident
    lock = threading.Lock()
    armed = [False]
    stop = [False]

    def interrupter():
        rnd = random.Random(7)
        while not stop[0]:
            time.sleep(rnd.uniform(0.0, MAX_DELAY))
            with lock:
                if armed[0]:
                    armed[0] = False
                    if SOURCE == "alarm":
                        signal.pthread_kill(main_thread, signal.SIGALRM)
                    else:
                        _thread.interrupt_main()

    threading.Thread(target=interrupter, daemon=True).start()
    report = {"windows": 0, "interrupts": 0, "completed": 0, "unchanged": 0, "committed": 0,
              "mismatches": [], "wrong_exceptions": []}

    def window(body):
        '''Runs body() with one interrupt armed; returns whether it was interrupted. The
        interrupt may land in body, or late, while disarming: both count.'''
        interrupted = False
        try:
            with lock:
                armed[0] = True
            body()
        except EXPECTED:
            interrupted = True
        except BaseException as error:
            report["wrong_exceptions"].append(f"{type(error).__name__}: {error}"[:300])
            interrupted = True
        while True:  # disarm; a shot already fired is raised here
            try:
                with lock:
                    armed[0] = False
                time.sleep(0)
                time.sleep(0)
                break
            except EXPECTED:
                interrupted = True
        report["windows"] += 1
        report["interrupts"] += interrupted
        return interrupted
"""

ESTIMATORS = HARNESS + """
    from conftest import FACTORIES

    n, period = 16, 97
    rng = np.random.default_rng(3)
    d0, b0 = np.geomspace(1.0, 10.0, n), rng.standard_normal(n)
    # The operator and b change from step to step (step k uses entry k % period), so that
    # a step applied twice or lost shows.
    bs = [b0 + 0.1 * np.sin(k) for k in range(period)] * 2
    ds = [d0 * (1.0 + 0.05 * np.cos(k)) for k in range(period)]
    ops = [(lambda x, d=d: d * x) if k % 3 else np.diag(d) for k, d in enumerate(ds)] * 2
    deadline = time.perf_counter() + SECONDS

    def same(a, b):
        return bool(np.array_equal(a.v, b.v)) and a.info == b.info and a.hvp_count == b.hvp_count

    for method in sorted(FACTORIES):
        est, twin = FACTORIES[method](n), FACTORIES[method](n)
        k = 0  # steps committed by both
        stop_at = time.perf_counter() + (deadline - time.perf_counter()) / (len(FACTORIES) - sorted(FACTORIES).index(method))
        while time.perf_counter() < stop_at:
            results = []

            def body():
                while len(results) < 50:
                    j = k + len(results)
                    results.append(est.step(ops[j], bs[j]))

            interrupted = window(body)
            for v in results:
                expected = twin.step(ops[k], bs[k])
                if not np.array_equal(v, expected):
                    report["mismatches"].append(f"{method}: step {k} returned a wrong v")
                k = (k + 1) % period
            report["completed"] += len(results)
            if interrupted:
                if same(est, twin):
                    report["unchanged"] += 1
                else:
                    twin.step(ops[k], bs[k])
                    k = (k + 1) % period
                    if same(est, twin):
                        report["committed"] += 1
                    else:
                        report["mismatches"].append(f"{method}: after an interrupt at step {k - 1} the estimator is "
                                                    "neither as before nor as after it")
                        est, twin, k = FACTORIES[method](n), FACTORIES[method](n), 0
    stop[0] = True
    print(json.dumps(report))
"""

BILEVEL = HARNESS + """
    from test_bilevel import make

    method = sys.argv[4]
    deadline = time.perf_counter() + SECONDS

    def snapshot(o):
        return o.x.tobytes(), o.y.tobytes(), o.v.tobytes(), o.hypergradient.tobytes(), repr(o.info)

    opt, twin = make(method), make(method)
    while time.perf_counter() < deadline:
        results = []

        def body():
            while len(results) < 20:
                results.append(opt.step())

        interrupted = window(body)
        for info in results:
            if info != twin.step():
                report["mismatches"].append(f"iteration {info.iteration} differs from the twin's")
        report["completed"] += len(results)
        if interrupted:
            if snapshot(opt) == snapshot(twin):
                report["unchanged"] += 1
            else:
                twin.step()
                if snapshot(opt) == snapshot(twin):
                    report["committed"] += 1
                else:
                    report["mismatches"].append("after an interrupt the optimizer is neither as before nor as after "
                                                f"iteration {twin.info.iteration}")
                    opt, twin = make(method), make(method)
        if twin.info is not None and twin.info.iteration > 300:
            opt, twin = make(method), make(method)
    stop[0] = True
    print(json.dumps(report))
"""

SOLVE = HARNESS + """
    method = sys.argv[4]
    n = 16
    rng = np.random.default_rng(4)
    d, b = np.geomspace(1.0, 10.0, n), rng.standard_normal(n)
    x0 = rng.standard_normal(n)
    x0_before = x0.copy()
    options = {"eta": 0.09} if method in ("gd", "neumann") else {}
    solve = lambda: lancbio.solve(lambda x: d * x, b, method=method,
                                  x0=None if method == "neumann" else x0, tol=1e-10, maxiter=200, **options)
    reference = solve()
    deadline = time.perf_counter() + SECONDS
    while time.perf_counter() < deadline:
        results = []

        def body():
            while len(results) < 20:
                results.append(solve())

        window(body)
        for x, info in results:
            if not np.array_equal(x, reference[0]) or info != reference[1]:
                report["mismatches"].append("a completed solve returned a wrong x")
        report["completed"] += len(results)
        if not np.array_equal(x0, x0_before):
            report["mismatches"].append("x0 changed")
    stop[0] = True
    print(json.dumps(report))
"""


def check(report):
    assert report["interrupts"] >= 20, report  # enough landed to mean something
    assert report["completed"] >= 20, report
    assert report["wrong_exceptions"] == [], report["wrong_exceptions"][:5]
    assert report["mismatches"] == [], report["mismatches"][:5]
    assert "Exception ignored" not in report["stderr"], report["stderr"][-2000:]


@pytest.mark.parametrize("source", ["interrupt_main", "alarm"])
def test_interrupted_estimator_steps_leave_the_estimator_before_or_after_the_step_never_between(source):
    check(run_interrupted(ESTIMATORS, source, 5.0, 0.0003))


@pytest.mark.parametrize("method", ["lancbio", "amigo-cg"])
@pytest.mark.parametrize("source", ["interrupt_main", "alarm"])
def test_interrupted_bilevel_steps_leave_the_optimizer_before_or_after_the_step_never_between(source, method):
    check(run_interrupted(BILEVEL, source, 2.0, 0.001, method))


@pytest.mark.parametrize("method", ["lanczos", "cg"])
@pytest.mark.parametrize("source", ["interrupt_main", "alarm"])
def test_interrupted_solves_raise_and_completed_solves_are_exact(source, method):
    check(run_interrupted(SOLVE, source, 1.5, 0.0005, method))
