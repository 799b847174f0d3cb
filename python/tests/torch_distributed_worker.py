"""Run by test_torch_distributed.py under ``torchrun --nproc_per_node P`` (gloo, CPU): every
process checks lancbio.torch.HyperGradient(process_group=...) in both layouts against one
process on the whole problem, the processes' states against each other, and a failure on
one process. Prints "all checks passed on P processes" from rank 0 when every rank passed.

The problem is the ridge regression of test_torch_hypergradient.py (its hyper-gradient is
known in closed form): g(x, y) = ||X y - t||^2 / 2m + sum_i exp(x_i) y_i^2 / 2,
f(x, y) = ||Xv y - tv||^2 / 2m, y in two tensors (the layout of a weight and a bias).
"""

import gc
import importlib.util
import os
import sys
import warnings

import numpy as np

if importlib.util.find_spec("torch") is None:  # test_torch_distributed.py skips (or fails under CI) first
    sys.exit("torch_distributed_worker.py needs torch (pip install './python[torch]')")
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import lancbio  # noqa: E402
from lancbio.torch import HyperGradient  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)  # torch.distributed.nn's deprecation notice
from torch.distributed.nn.functional import all_reduce  # noqa: E402 - after the filter

F64 = torch.float64
D, M = 10, 120          # features (the length of y), samples (split across processes)
SPLIT = (4, 6)          # y as two tensors of these lengths
CALLS = 5
TOL = 1e-12


def failed(message):
    print(f"rank {dist.get_rank()}: FAIL {message}", flush=True)
    return 1


class Data:
    def __init__(self):
        rng = np.random.default_rng(7)
        self.X, self.Xv = rng.standard_normal((M, D)), rng.standard_normal((M, D))
        self.t, self.tv = rng.standard_normal(M), rng.standard_normal(M)
        self.x0 = 0.3 * rng.standard_normal(D)
        self.y0 = rng.standard_normal(D)
        # The lower-level iterates of the CALLS calls: y moves between calls, as in training.
        self.ys = [self.y0 + 0.1 * k * rng.standard_normal(D) for k in range(CALLS + 2)]

    def exact(self, x, y):
        """The implicit-function hyper-gradient at (x, y) (f has no direct term)."""
        A = self.X.T @ self.X / M + np.diag(np.exp(x))
        b = self.Xv.T @ (self.Xv @ y - self.tv) / M
        return -np.exp(x) * y * np.linalg.solve(A, b)


def tensors(values):
    return [torch.tensor(values[: SPLIT[0]], dtype=F64, requires_grad=True),
            torch.tensor(values[SPLIT[0]:], dtype=F64, requires_grad=True)]


def whole_losses(data, ys, x, rows=slice(None)):
    """The losses on the samples ``rows`` (their means): one process's share of the batch."""
    X, Xv = (torch.tensor(a[rows], dtype=F64) for a in (data.X, data.Xv))
    t, tv = (torch.tensor(a[rows], dtype=F64) for a in (data.t, data.tv))
    y = torch.cat(ys)
    m = X.shape[0]
    g = ((X @ y - t) ** 2).sum() / (2 * m) + 0.5 * (torch.exp(x) * y * y).sum()
    f = ((Xv @ y - tv) ** 2).sum() / (2 * m)
    return g, f


def run(hg, data, make_losses, place_y):
    """CALLS computes at the data's lower-level iterates; the hyper-gradients (numpy)."""
    results = []
    for k in range(CALLS):
        place_y(data.ys[k])
        g, f = make_losses()
        results.append(np.concatenate([t.detach().numpy().ravel() for t in hg.compute(g, f)]))
    return results


def reference(data, method, options):
    """One process on the whole problem."""
    x = torch.tensor(data.x0, dtype=F64, requires_grad=True)
    ys = tensors(data.y0)
    hg = HyperGradient(ys, [x], method=method, **options)

    def place(values):
        with torch.no_grad():
            ys[0].copy_(torch.tensor(values[: SPLIT[0]]))
            ys[1].copy_(torch.tensor(values[SPLIT[0]:]))

    return run(hg, data, lambda: whole_losses(data, ys, x), place), hg


def gathered(array):
    """Every process's copy of ``array`` (float64), in rank order."""
    tensor = torch.tensor(np.ascontiguousarray(array), dtype=F64)
    out = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(out, tensor)
    return [o.numpy() for o in out]


def check_data_parallel(data, method, options):
    rank, size = dist.get_rank(), dist.get_world_size()
    share = M // size
    rows = slice(rank * share, (rank + 1) * share)
    x = torch.tensor(data.x0, dtype=F64, requires_grad=True)
    ys = tensors(data.y0)
    hg = HyperGradient(ys, [x], method=method, process_group=dist.group.WORLD, **options)

    def place(values):
        with torch.no_grad():
            ys[0].copy_(torch.tensor(values[: SPLIT[0]]))
            ys[1].copy_(torch.tensor(values[SPLIT[0]:]))

    mine = run(hg, data, lambda: whole_losses(data, ys, x, rows), place)
    expected, single = reference(data, method, options)
    errors = 0
    for k, (a, b) in enumerate(zip(mine, expected)):
        if not np.linalg.norm(a - b) <= TOL * np.linalg.norm(b):
            errors += failed(f"data-parallel {method}: call {k} differs from one process by "
                             f"{np.linalg.norm(a - b) / np.linalg.norm(b):.2e}")
    v = np.concatenate([t.numpy().ravel() for t in hg.v])
    if any(not np.array_equal(other, v) for other in gathered(v)):
        errors += failed(f"data-parallel {method}: v differs between processes")
    if hg.hvp_count != single.hvp_count:
        errors += failed(f"data-parallel {method}: {hg.hvp_count} products against one process's {single.hvp_count}")
    accumulated = x.grad.numpy()
    if not np.allclose(accumulated, sum(mine), rtol=1e-12, atol=0):
        errors += failed(f"data-parallel {method}: .grad is not the sum of the returned hyper-gradients")
    if method == "lancbio" and options.get("m_max") == D:
        # At a fixed point, after D steps of a cycle of D the Krylov space is the whole
        # space: the exact value.
        place(data.ys[CALLS])
        for _ in range(D + 1):
            g, f = whole_losses(data, ys, x, rows)
            last = hg.compute(g, f)
        exact = data.exact(data.x0, data.ys[CALLS])
        got = last[0].detach().numpy()
        if not np.linalg.norm(got - exact) <= 1e-9 * np.linalg.norm(exact):
            errors += failed(f"data-parallel lancbio: not the closed form at a fixed point "
                             f"({np.linalg.norm(got - exact) / np.linalg.norm(exact):.2e})")
    return errors


def shard_bounds(size):
    """Uneven slices of y's D entries: process p holds [start, stop)."""
    weights = np.arange(1, size + 1)
    cuts = np.concatenate([[0], np.cumsum(weights)]) * D // weights.sum()
    return [(int(cuts[p]), int(cuts[p + 1])) for p in range(size)]


def check_sharded(data, method, options):
    rank, size = dist.get_rank(), dist.get_world_size()
    start, stop = shard_bounds(size)[rank]
    x = torch.tensor(data.x0, dtype=F64, requires_grad=True)
    y = torch.tensor(data.y0[start:stop], dtype=F64, requires_grad=True)
    X, Xv = (torch.tensor(a[:, start:stop], dtype=F64) for a in (data.X, data.Xv))
    t, tv = (torch.tensor(a, dtype=F64) for a in (data.t, data.tv))

    def losses():
        # The predictions need every slice: summed by an autograd-aware all-reduce. Each
        # process contributes 1/size of the replicated terms and its own penalty.
        prediction, validation = all_reduce(X @ y), all_reduce(Xv @ y)
        g = ((prediction - t) ** 2).sum() / (2 * M * size) + 0.5 * (torch.exp(x[start:stop]) * y * y).sum()
        f = ((validation - tv) ** 2).sum() / (2 * M * size)
        return g, f

    def place(values):
        with torch.no_grad():
            y.copy_(torch.tensor(values[start:stop]))

    hg = HyperGradient([y], [x], method=method, process_group=dist.group.WORLD, sharded=True, **options)
    mine = run(hg, data, losses, place)
    expected, single = reference(data, method, options)
    errors = 0
    for k, (a, b) in enumerate(zip(mine, expected)):
        if not np.linalg.norm(a - b) <= TOL * np.linalg.norm(b):
            errors += failed(f"sharded {method}: call {k} differs from one process by "
                             f"{np.linalg.norm(a - b) / np.linalg.norm(b):.2e}")
    v_single = np.concatenate([p.numpy().ravel() for p in single.v])[start:stop]
    v = hg.v[0].numpy()
    if not np.linalg.norm(v - v_single) <= TOL * np.linalg.norm(v_single):
        errors += failed(f"sharded {method}: this process's slice of v differs from one process's")
    if any(not np.array_equal(other, mine[-1]) for other in gathered(mine[-1])):
        errors += failed(f"sharded {method}: the hyper-gradient differs between processes")
    if hg.hvp_count != single.hvp_count:
        errors += failed(f"sharded {method}: {hg.hvp_count} products against one process's {single.hvp_count}")
    if hg.info.reductions <= 0:
        errors += failed(f"sharded {method}: the step info counts no reduction")
    return errors


class Gate(torch.autograd.Function):
    """The identity, whose backward raises while its countdown (over the backward passes
    through it) runs out: a failure placed in a chosen pass of autograd."""

    countdown = None

    @staticmethod
    def forward(ctx, y):
        return y.clone()

    @staticmethod
    def backward(ctx, grad):
        return Gate.fire(grad)

    @classmethod
    def fire(cls, grad):
        if cls.countdown is not None:
            cls.countdown -= 1
            if cls.countdown < 0:
                raise RuntimeError("boom on one process")
        return grad


class Gradients(Gate):
    """On y: its backward is in grad_y f's pass (the first of a call)."""

    countdown = None

    @staticmethod
    def backward(ctx, grad):
        return Gradients.fire(grad)


class Square(torch.autograd.Function):
    """y -> y^2 / 2, whose second derivative (Products.backward) is in every Hessian product."""

    @staticmethod
    def forward(ctx, y):
        ctx.save_for_backward(y)
        return y * y / 2

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return Products.apply(grad, y)


class Products(torch.autograd.Function):
    countdown = None

    @staticmethod
    def forward(ctx, grad, y):
        ctx.save_for_backward(grad, y)
        return grad * y

    @staticmethod
    def backward(ctx, out):
        grad, y = ctx.saved_tensors
        out = Gate.fire.__func__(Products, out)
        return out * y, out * grad


class Cross(Gate):
    """On x: its backward runs in grad_x g's pass and in the cross term's."""

    countdown = None

    @staticmethod
    def backward(ctx, grad):
        return Cross.fire(grad)


def check_failure(data, sharded):
    """A failure inside autograd on the last process (in the gradients, in a Hessian
    product, in the cross term; sharded: of a problem whose slices are separate, each
    process's g and f depending on its own slice): every process raises (the failing one its own exception),
    none waits in a collective, the estimators are unchanged (but for the cross term, which
    comes after the step), no .grad changes, and the next call agrees with a twin's that
    never failed."""
    rank, size = dist.get_rank(), dist.get_world_size()
    label = "sharded" if sharded else "data-parallel"
    if sharded:
        start, stop = shard_bounds(size)[rank]
        rows = slice(None)
    else:
        start, stop = 0, D
        share = M // size
        rows = slice(rank * share, (rank + 1) * share)
    X, Xv = (torch.tensor(a[rows, start:stop], dtype=F64) for a in (data.X, data.Xv))
    t, tv = (torch.tensor(a[rows], dtype=F64) for a in (data.t, data.tv))
    m = X.shape[0]
    scale = size if sharded else 1

    def losses(y, x):
        y = Gradients.apply(y)
        xg = Cross.apply(x)[start:stop]
        # No collective inside the losses here: a process that fails inside autograd skips
        # the rest of its backward pass, so the others would wait in one (docs/torch.md).
        prediction, validation = X @ y, Xv @ y
        g = (((prediction - t) ** 2).sum() / (2 * m * scale) + 0.5 * (torch.exp(xg) * y * y).sum()
             + Square.apply(y).sum())
        f = ((validation - tv) ** 2).sum() / (2 * m * scale)
        return g, f

    errors = 0
    # (the Function, its countdown, where): Cross's first pass is grad_x g's, its second the cross term's.
    for gate, countdown, where in ((Gradients, 0, "the gradients"), (Products, 0, "a Hessian product"),
                                   (Cross, 1, "the cross term")):
        pair = []
        for _ in range(2):
            x = torch.tensor(data.x0, dtype=F64, requires_grad=True)
            y = torch.tensor(data.y0[start:stop], dtype=F64, requires_grad=True)
            pair.append((x, y, HyperGradient([y], [x], method="lancbio", process_group=dist.group.WORLD,
                                             sharded=sharded, m0=4, m_max=4)))
        (x, y, hg), (x_twin, y_twin, twin) = pair
        for _ in range(2):
            for h, xx, yy in ((hg, x, y), (twin, x_twin, y_twin)):
                h.compute(*losses(yy, xx))
        products, grad = hg.hvp_count, x.grad.clone()
        gate.countdown = countdown if rank == size - 1 else None
        try:
            hg.compute(*losses(y, x))
        except RuntimeError as error:
            if rank != size - 1 or "boom on one process" not in str(error):
                errors += failed(f"{label}, failure in {where}: rank {rank} raised {error!r}")
        except lancbio.LancbioError as error:
            if rank == size - 1:
                errors += failed(f"{label}, failure in {where}: the failing rank raised {error!r}, not its own")
        else:
            errors += failed(f"{label}, failure in {where}: rank {rank} raised nothing")
        finally:
            gate.countdown = None
        if not torch.equal(x.grad, grad):
            errors += failed(f"{label}, failure in {where}: .grad changed")
        if where == "the cross term":
            twin.compute(*losses(y_twin, x_twin))  # the failed call's step was kept: the twin takes it too
        elif hg.hvp_count != products:
            errors += failed(f"{label}, failure in {where}: the estimator changed")
        a, b = hg.compute(*losses(y, x))[0], twin.compute(*losses(y_twin, x_twin))[0]
        if not torch.equal(a, b):
            errors += failed(f"{label}, failure in {where}: the next call differs from a twin's")
    return errors


def main():
    dist.init_process_group("gloo")
    data = Data()
    errors = 0
    cases = [("lancbio", dict(m0=D, m_max=D)), ("lancbio", dict(m0=3, m_max=6)), ("cg", dict(maxiter=D)),
             ("gd", dict(eta=0.2, steps=3)), ("neumann", dict(eta=0.2, terms=4))]
    for method, options in cases:
        errors += check_data_parallel(data, method, options)
        errors += check_sharded(data, method, options)
    errors += check_failure(data, sharded=False)
    errors += check_failure(data, sharded=True)
    total = torch.tensor([errors], dtype=F64)
    dist.all_reduce(total)
    if dist.get_rank() == 0 and total.item() == 0:
        print(f"all checks passed on {dist.get_world_size()} processes", flush=True)
    gc.collect()  # the HyperGradients and graphs that still refer to the group
    dist.barrier()  # no process tears the group down while another still uses it
    dist.destroy_process_group()
    return 0 if total.item() == 0 else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Past the checks and the group's teardown: skip interpreter finalization, where gloo's
    # worker threads can abort the process (a PyTorch shutdown race, not a check here).
    os._exit(code)
