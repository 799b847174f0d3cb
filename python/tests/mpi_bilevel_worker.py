"""Run by test_mpi.py under mpirun (-np 2, 3): ``lancbio.Bilevel(comm=)`` with y on uneven
slices and x replicated against one process on the whole problem (rank 0), the ranks' x
and infos bitwise equal, and a problem method raising on one rank failing that iteration
on every rank with each optimizer unchanged. Prints "all bilevel checks passed" on rank 0."""

import importlib.util
import sys

import numpy as np

if importlib.util.find_spec("mpi4py") is None:  # test_mpi.py skips (or fails under CI) first
    sys.exit("mpi_bilevel_worker.py needs mpi4py (pip install ./python[mpi])")
from mpi4py import MPI  # noqa: E402

import lancbio  # noqa: E402

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
DX, DY = 5, 37
ITERATIONS = 12

rng = np.random.default_rng(11)
q, _ = np.linalg.qr(rng.standard_normal((DY, DY)))
A = (q * np.geomspace(1.0, 20.0, DY)) @ q.T
A = (A + A.T) / 2
Bx = rng.standard_normal((DY, DX))
c, d = rng.standard_normal(DY), rng.standard_normal(DY)
MU = 0.3
weights = np.arange(1, size + 1)
bounds = np.concatenate([[0], np.cumsum(np.floor(DY * weights / weights.sum()).astype(int))])
bounds[-1] = DY
lo, hi = int(bounds[rank]), int(bounds[rank + 1])


def check(condition, message):
    if not condition:
        print(f"rank {rank}: FAILED: {message}", flush=True)
        comm.Abort(1)


class Quadratic:
    """g = y^T A y / 2 - y^T (Bx x + c), f = ||y - d||^2 / 2 + MU ||x||^2 / 2, on rows
    rows of y (all of them on one process). With ``sliced``, A y gathers the slices."""

    def __init__(self, rows, sliced):
        self.rows, self.sliced = rows, sliced
        self.dx, self.dy = DX, rows.stop - rows.start
        self.fail_at = None
        self.calls = 0

    def _times_a(self, y):
        whole = np.concatenate(comm.allgather(y)) if self.sliced else y
        return A[self.rows] @ whole

    def grad_y_g(self, x, y):
        out = self._times_a(y) - Bx[self.rows] @ x - c[self.rows]  # the exchange runs first, on every rank
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("grad_y_g failed on this rank")
        return out

    def grad_x_f(self, x, y):
        # x's own term is replicated: one rank contributes it.
        return MU * x if (not self.sliced or rank == 0) else np.zeros(DX)

    def grad_y_f(self, x, y):
        return y - d[self.rows]

    def hvp_yy_g(self, x, y, v):
        return self._times_a(v)

    def jvp_xy_g(self, x, y, v):
        return -Bx[self.rows].T @ v


OPTIONS = dict(lr_x=0.2, lr_y=0.04, inner_steps=3, m0=3, m_max=6)
x0, y0 = np.full(DX, 0.1), np.zeros(DY)
sliced = lancbio.Bilevel(Quadratic(slice(lo, hi), True), "lancbio", x0=x0, y0=y0[lo:hi], comm=comm, **OPTIONS)
whole = lancbio.Bilevel(Quadratic(slice(0, DY), False), "lancbio", x0=x0, y0=y0, **OPTIONS) if rank == 0 else None
for k in range(ITERATIONS):
    info = sliced.step()
    xs, infos = comm.allgather(sliced.x), comm.allgather(info)
    check(all(np.array_equal(x, xs[0]) for x in xs), f"iteration {k}: the ranks' x differ")
    check(all(i == infos[0] for i in infos), f"iteration {k}: the ranks' infos differ")
    ys = comm.gather(sliced.y, root=0)
    if rank == 0:
        reference = whole.step()
        joined = np.concatenate([sliced.x] + ys)
        expected = np.concatenate([whole.x, whole.y])
        error = np.linalg.norm(joined - expected) / np.linalg.norm(expected)
        check(error <= 1e-12, f"iteration {k}: x, y differ from one process by {error:.3g} relative")
        check(abs(reference.hypergradient_norm - info.hypergradient_norm) <= 1e-12 * reference.hypergradient_norm,
              f"iteration {k}: the hyper-gradient norm differs from one process's")

# A problem method failing on the last rank: every rank's iteration fails, x, y and the
# optimizer unchanged, and the next iteration goes on alike everywhere.
problem = sliced._problem
x_before, y_before = sliced.x, sliced.y
if rank == size - 1:
    problem.fail_at = problem.calls + 2
try:
    sliced.step()
    raised = None
except Exception as exc:  # noqa: BLE001 - the check is on its type
    raised = exc
if rank == size - 1:
    check(isinstance(raised, RuntimeError) and "failed on this rank" in str(raised),
          f"the failing rank raised {raised!r}")
else:
    check(isinstance(raised, lancbio.errors.CallbackError), f"rank {rank} raised {raised!r}")
check(np.array_equal(sliced.x, x_before) and np.array_equal(sliced.y, y_before), "the failed iteration changed x or y")
problem.fail_at = None
info = sliced.step()
infos = comm.allgather(info)
check(all(i == infos[0] for i in infos) and info.iteration == ITERATIONS + 1,
      f"the iteration after the failure differs between ranks: {infos}")

comm.Barrier()
if rank == 0:
    print(f"all bilevel checks passed on {size} processes", flush=True)
sys.exit(0)
