"""Run by test_mpi.py under mpirun (-np 2, 3): every estimator with ``comm=`` on uneven
slices against one estimator on the whole vector (on rank 0), the ranks' infos bitwise
equal, the reduction counts of docs/algorithms.md section 13, and a failing operator on
one rank failing the step on every rank with each estimator unchanged; the same for
``lancbio.solve(comm=)`` (each method against one process, MINRES refused, a failing
operator failing the solve on every rank). Prints "all checks passed" on rank 0; any failed check exits non-zero (mpirun then stops the others)."""

import importlib.util
import sys

import numpy as np

if importlib.util.find_spec("mpi4py") is None:  # test_mpi.py skips (or fails under CI) first
    sys.exit("mpi_worker.py needs mpi4py (pip install ./python[mpi])")
from mpi4py import MPI  # noqa: E402

import lancbio

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
N = 41
STEPS = 8

rng = np.random.default_rng(5)
q, _ = np.linalg.qr(rng.standard_normal((N, N)))
A = (q * np.geomspace(1.0, 30.0, N)) @ q.T
A = (A + A.T) / 2
B = [rng.standard_normal(N) * (1 + 0.05 * k) for k in range(STEPS)]
# Uneven slices: rank r holds about (r + 1) shares.
weights = np.arange(1, size + 1)
bounds = np.concatenate([[0], np.cumsum(np.floor(N * weights / weights.sum()).astype(int))])
bounds[-1] = N
lo, hi = int(bounds[rank]), int(bounds[rank + 1])


def check(condition, message):
    if not condition:
        print(f"rank {rank}: FAILED: {message}", flush=True)
        comm.Abort(1)


class Sliced:
    """Rows lo:hi of A times the vector whose slices the ranks hold."""

    def __init__(self):
        self.calls = 0
        self.fail_at = None

    def __call__(self, x):
        self.calls += 1
        full = np.concatenate(comm.allgather(np.array(x)))
        y = A[lo:hi] @ full
        if self.calls == self.fail_at:
            raise RuntimeError("operator failed on this rank")
        return y


METHODS = {
    "lanczos": lambda n, c: lancbio.DynamicLanczos(n, m0=4, m_max=8, comm=c),
    "lanczos-plain-exact": lambda n, c: lancbio.DynamicLanczos(n, m0=3, m_max=6, variant="plain",
                                                               exact_residual=True, comm=c),
    "cg": lambda n, c: lancbio.CG(n, 6, comm=c),
    "gd": lambda n, c: lancbio.GD(n, 0.03, steps=3, comm=c),
    "neumann": lambda n, c: lancbio.Neumann(n, 0.03, 4, comm=c),
    "random-neumann": lambda n, c: lancbio.RandomNeumann(n, 0.03, 4, seed=11, comm=c),
}


def expected_reductions(name, info):
    if name == "lanczos":
        # 2 per step, b's check riding on the first; a restart's anchor (the residual
        # variant) adds one.
        return 3 if info.restarted else 2
    if name == "cg":
        return 2 + 2 * info.iterations
    if name == "gd":
        return 1 + info.iterations
    if name == "neumann":
        return 2 + info.iterations
    return None


for name, make in METHODS.items():
    estimator = make(hi - lo, comm)
    op = Sliced()
    reference = make(N, None) if rank == 0 else None
    for k in range(STEPS):
        v = estimator.step(op, np.ascontiguousarray(B[k][lo:hi]))
        info = estimator.info
        slices = comm.gather(v, root=0)
        infos = comm.allgather(info)
        check(all(i == infos[0] for i in infos), f"{name} step {k}: the ranks' infos differ: {infos}")
        expected = expected_reductions(name, info)
        check(expected is None or info.reductions == expected,
              f"{name} step {k}: {info.reductions} reductions, expected {expected}")
        check(info.reductions > 0, f"{name} step {k}: no reduction counted")
        if rank == 0:
            whole = reference.step(A, B[k])
            joined = np.concatenate(slices)
            error = np.linalg.norm(joined - whole) / np.linalg.norm(whole)
            check(error <= 1e-12, f"{name} step {k}: the slices differ from one process by {error:.3g} relative")
            check(reference.info.products == info.products and reference.info.outcome == info.outcome,
                  f"{name} step {k}: products or outcome differ from one process")

# A failing operator on the last rank: every rank's step fails, each estimator unchanged,
# and the next step succeeds everywhere.
for name in ("lanczos", "cg", "gd", "neumann"):
    estimator = METHODS[name](hi - lo, comm)
    op = Sliced()
    for k in range(2):
        estimator.step(op, np.ascontiguousarray(B[k][lo:hi]))
    before, info_before = estimator.v, estimator.info
    if rank == size - 1:
        op.fail_at = op.calls + (1 if name == "lanczos" else 2)
    try:
        estimator.step(op, np.ascontiguousarray(B[2][lo:hi]))
        raised = None
    except Exception as exc:  # noqa: BLE001 - the check is on its type
        raised = exc
    if rank == size - 1:
        check(isinstance(raised, RuntimeError), f"{name}: the failing rank raised {raised!r}")
    else:
        check(isinstance(raised, lancbio.errors.NonFiniteProductError), f"{name}: rank {rank} raised {raised!r}")
    check(np.array_equal(estimator.v, before) and estimator.info == info_before,
          f"{name}: the failed step changed the estimator")
    op.fail_at = None
    estimator.step(op, np.ascontiguousarray(B[3][lo:hi]))
    infos = comm.allgather(estimator.info)
    check(all(i == infos[0] for i in infos), f"{name}: the ranks' infos differ after the failure")

# One-shot solves: each method on the slices against one process on the whole vector, the
# ranks' infos equal, the recurrence's reduction count (the setup's 1, 2 per step, 1 per check).
# The tolerance stops CG and Lanczos well before N steps: nearer N, their lost
# orthogonality amplifies rounding (the order of summation) far above 1e-12.
SOLVES = {"lanczos": {}, "lanczos-reorthogonalize": {"reorthogonalize": True}, "cg": {}, "gd": {"eta": 0.03},
          "neumann": {"eta": 0.03}}
X0 = 0.1 * np.cos(np.arange(N))
for name, options in SOLVES.items():
    method = name.split("-")[0]
    maxiter = 150 if method in ("gd", "neumann") else None
    for x0 in ((None,) if method == "neumann" else (None, X0)):
        local_x0 = None if x0 is None else np.ascontiguousarray(x0[lo:hi])
        v, info = lancbio.solve(Sliced(), np.ascontiguousarray(B[0][lo:hi]), method=method, x0=local_x0, tol=1e-3,
                                maxiter=maxiter, comm=comm, **options)
        infos = comm.allgather(info)
        check(all(i == infos[0] for i in infos), f"solve {name}: the ranks' infos differ: {infos}")
        check(info.reductions > 0, f"solve {name}: no reduction counted")
        if name == "lanczos":
            checks = info.products - info.iterations
            check(info.reductions == 1 + 2 * info.iterations + checks,
                  f"solve {name}: {info.reductions} reductions for {info.iterations} steps and {checks} checks")
        slices = comm.gather(v, root=0)
        if rank == 0:
            whole, reference = lancbio.solve(A, B[0], method=method, x0=x0, tol=1e-3, maxiter=maxiter, **options)
            error = np.linalg.norm(np.concatenate(slices) - whole) / np.linalg.norm(whole)
            check(error <= 1e-12, f"solve {name}: the slices differ from one process by {error:.3g} relative ({info} against {reference})")
            check(reference.products == info.products and reference.converged == info.converged
                  and reference.reductions == 0, f"solve {name}: {info} against one process's {reference}")

# MINRES refuses comm= on every rank; an operator failing on the last rank fails the solve
# on every rank (that one with its exception, the others CallbackError).
try:
    lancbio.solve(Sliced(), np.ascontiguousarray(B[0][lo:hi]), method="minres", comm=comm)
    raised = None
except Exception as exc:  # noqa: BLE001 - the check is on its type
    raised = exc
check(isinstance(raised, lancbio.errors.InvalidArgumentError), f"minres solve: rank {rank} raised {raised!r}")
for method in ("lanczos", "cg"):
    op = Sliced()
    if rank == size - 1:
        op.fail_at = 3
    x0 = np.ascontiguousarray(X0[lo:hi])
    kept = x0.copy()
    try:
        lancbio.solve(op, np.ascontiguousarray(B[1][lo:hi]), method=method, x0=x0, tol=1e-8, comm=comm)
        raised = None
    except Exception as exc:  # noqa: BLE001 - the check is on its type
        raised = exc
    expected = RuntimeError if rank == size - 1 else lancbio.errors.CallbackError
    check(isinstance(raised, expected), f"failing solve {method}: rank {rank} raised {raised!r}")
    check(np.array_equal(x0, kept), f"failing solve {method}: x0 changed")

comm.Barrier()
if rank == 0:
    print(f"all checks passed on {size} processes", flush=True)
sys.exit(0)
