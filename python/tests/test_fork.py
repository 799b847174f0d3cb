"""A process forked while other threads are inside library calls can use the library.

ctypes releases the GIL during a foreign call, so threads stepping, creating and
destroying estimators may be inside liblancbio when the main thread forks; the child has
only the forking thread, and whatever the others held at that moment would stay held.
(With the GIL such a thread is rarely inside the library's handle registry at the fork:
Tests/c/test_fork.c, whose threads call it without pause, is the sharper test.)"""

import os
import signal
import threading
import time

import numpy as np
import pytest

import lancbio

FORKS = 100
N = 6
# A child that deadlocks is killed by its alarm after this many seconds.
CHILD_SECONDS = 20

D = np.arange(1.0, N + 1)


def solve_round(b):
    """Creates an estimator, solves diag(1..N) v = b in one step, destroys it; True when v is
    the exact solution."""
    with lancbio.CG(N, maxiter=N) as est:
        v = est.step(lambda x: D * x, b)
        v_again = est.v
    return np.allclose(v, b / D, rtol=1e-12, atol=0) and np.array_equal(v, v_again)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_children_forked_while_threads_step_and_create_can_create_step_and_destroy_estimators():
    stop = threading.Event()
    rounds = [0]
    wrong = []

    def stepper():
        b = np.ones(N)
        while not stop.is_set():
            if not solve_round(b):
                wrong.append(rounds[0])
            rounds[0] += 1

    def creator():
        # Mostly creations and destructions: the handle registry's own calls.
        while not stop.is_set():
            lancbio.CG(1, maxiter=1).close()

    threads = [threading.Thread(target=f, daemon=True) for f in (stepper, creator)]
    for thread in threads:
        thread.start()
    failures = []
    try:
        while rounds[0] < 10:
            time.sleep(0.001)
        for k in range(FORKS):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child reports through its exit status
                code = 1
                try:
                    signal.alarm(CHILD_SECONDS)
                    code = 0 if solve_round(np.arange(N) + 1.0 + k) else 2
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            if status != 0:
                failures.append((k, os.waitstatus_to_exitcode(status)))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not failures, (f"{len(failures)} of {FORKS} children failed (negative: killed by that signal; "
                          f"2: wrong result): {failures[:10]}")
    assert not wrong, f"the stepping thread got wrong results in rounds {wrong[:10]}"
    assert rounds[0] > FORKS, "the stepping thread hardly ran while the process forked"
