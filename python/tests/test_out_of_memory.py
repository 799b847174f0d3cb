"""Storage the system refuses raises MemoryError (lancbio.OutOfMemoryError) with the
library's message, for estimators, bilevel optimizers and one-shot solves, and the
process goes on: checked in a subprocess whose address space is limited with
resource.setrlimit(RLIMIT_AS), where a crash would show as a failed child."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PYTHON_DIR = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists() or sys.platform != "linux",
                                reason="reads the mapped size from /proc (Linux)")

CHILD = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    import lancbio
    from lancbio import _ffi

    def mapped():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))

    class Problem:
        def grad_y_g(self, x, y): return y
        def grad_x_f(self, x, y): return x
        def grad_y_f(self, x, y): return y
        def hvp_yy_g(self, x, y, v): return v
        def jvp_xy_g(self, x, y, v): return np.zeros_like(x)

    n = 10**7          # every storage below is at least 6 n float32 values: 240 MB
    b = np.ones(n)     # the caller's arrays exist before the limit
    y0 = np.zeros(n)
    limit = mapped() + (128 << 20)   # room for the wrapper's own n-vector
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    attempts = {
        "DynamicLanczos": lambda: lancbio.DynamicLanczos(n),
        "CG": lambda: lancbio.CG(n, maxiter=5, dtype=np.float32),
        "solve": lambda: lancbio.solve(lambda q: q, b, method="cg"),
        "Bilevel": lambda: lancbio.Bilevel(Problem(), method="amigo-cg", x0=np.zeros(3), y0=y0, lr_x=0.1, lr_y=0.1),
    }
    report = {}
    for name, attempt in attempts.items():
        try:
            attempt()
            report[name] = "created"
        except MemoryError as error:
            report[name] = {"lancbio": isinstance(error, lancbio.OutOfMemoryError),
                            "status": getattr(error, "status", None),
                            "message": str(error), "library": _ffi.lib.lancbio_last_error().decode()}
    # Within the limit the library works as before: CG on a diagonal system is exact in n steps.
    d = np.arange(1.0, 51.0)
    with lancbio.CG(50, maxiter=50, tol=0) as small:
        v = small.step(lambda q: d * q, np.ones(50))
    report["after"] = float(np.max(np.abs(v - 1 / d)))
    print(json.dumps(report))
""")


def test_storage_beyond_the_address_space_limit_raises_memory_error_with_the_librarys_message():
    import lancbio

    env = dict(os.environ, LANCBIO_LIBRARY=str(lancbio.library_path), PYTHONPATH=str(PYTHON_DIR))
    child = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, f"the child failed ({child.returncode}): {child.stderr[-2000:]}"
    report = json.loads(child.stdout.strip().splitlines()[-1])
    for name in ("DynamicLanczos", "CG", "solve", "Bilevel"):
        failure = report[name]
        assert failure != "created", f"{name} of 10^7 was created under a 128 MiB limit"
        assert failure["lancbio"] and failure["status"] == -10, (name, failure)
        assert "memory" in failure["library"] and failure["library"] in failure["message"], (name, failure)
    assert report["after"] < 1e-10
