"""Dynamic Lanczos on a vector sliced across MPI processes: each rank holds rows lo:hi of
a tridiagonal operator and the same slice of b and v; the estimator's sums go through
comm.Allreduce. Run with mpirun (any process count); rank 0 prints the residual."""

import numpy as np
from mpi4py import MPI

import lancbio

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
n = 10_000
lo, hi = rank * n // size, (rank + 1) * n // size


def product(x):
    """Rows lo:hi of tridiag(-1, 2.1, -1) times x: one neighbour value from each side."""
    up, down = (rank - 1) % size, (rank + 1) % size
    left = comm.sendrecv(x[-1], dest=down, source=up)  # x[lo - 1], held by the rank above
    right = comm.sendrecv(x[0], dest=up, source=down)  # x[hi], held by the rank below
    y = 2.1 * x
    y[1:] -= x[:-1]
    y[:-1] -= x[1:]
    if rank > 0:
        y[0] -= left
    if rank < size - 1:
        y[-1] -= right
    return y


b = np.ones(hi - lo)
est = lancbio.DynamicLanczos(hi - lo, m0=50, m_max=50, comm=comm)
for k in range(50):
    v = est.step(product, b)
r = product(v) - b
residual = np.sqrt(comm.allreduce(float(r @ r)))
if rank == 0:
    print(f"{size} processes: ||A v - b|| = {residual:.1e}, {est.info.reductions} reductions per step")
