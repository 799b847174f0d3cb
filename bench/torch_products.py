"""Hessian-vector products in PyTorch, two ways, on the hyper-cleaning models (docs/torch.md):

- reverse-over-reverse, as lancbio.torch computes them: one backward of g with
  create_graph=True per outer iteration, then each product a vector-Jacobian product on
  that graph of grad_y g;
- forward-over-reverse with torch.func: jvp(grad(g)) per product, re-running g's
  forward and backward in dual numbers each time.

Prints the time of an outer iteration with k products for each (median of repeats), then
the time of HyperGradient.compute per outer iteration split into autograd and the rest
(lancbio's step, the copies into its buffers and the checks).
Run: python3 bench/torch_products.py [--threads N]
"""

import argparse
import statistics
import time

import torch
from torch.func import functional_call, grad, jvp


def models(samples: int):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(samples, 784, generator=gen)
    labels = torch.randint(0, 10, (samples,), generator=gen)
    weights = torch.randn(samples, generator=gen, requires_grad=True)
    linear = torch.nn.Linear(784, 10)
    mlp = torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.Tanh(), torch.nn.Linear(64, 10))
    return X, labels, weights, {"linear": linear, "mlp": mlp}


def inner(model, params, X, labels, weights):
    losses = torch.nn.functional.cross_entropy(functional_call(model, params, (X,)), labels, reduction="none")
    penalty = sum((p * p).sum() for p in params.values())
    return (torch.sigmoid(weights) * losses).mean() + 0.005 * penalty


def median_time(fn, repeats=15):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--samples", type=int, default=5000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    X, labels, weights, all_models = models(args.samples)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.samples} samples")
    print(f"{'model':8} {'n':>6} {'k':>3} {'reverse-over-reverse':>21} {'forward-over-reverse':>21}")
    for name, model in all_models.items():
        params = {k: p.detach().requires_grad_() for k, p in model.named_parameters()}
        n = sum(p.numel() for p in params.values())
        vectors = {k: torch.randn_like(p) for k, p in params.items()}
        detached = {k: p.detach() for k, p in params.items()}

        def g_of(p):
            return inner(model, p, X, labels, weights)

        for k in (1, 2, 10):
            def reverse():
                gy = torch.autograd.grad(g_of(params), list(params.values()), create_graph=True)
                for _ in range(k):
                    torch.autograd.grad(gy, list(params.values()), grad_outputs=list(vectors.values()),
                                        retain_graph=True)

            def forward():
                for _ in range(k):
                    jvp(grad(g_of), (detached,), (vectors,))

            print(f"{name:8} {n:>6} {k:>3} {median_time(reverse) * 1e3:>18.2f} ms {median_time(forward) * 1e3:>18.2f} ms")

    print()
    overhead(all_models, X, labels, weights)


def overhead(all_models, X, labels, weights, iterations=40):
    import lancbio.torch.hypergradient as adapter
    from lancbio.torch import HyperGradient

    real = adapter._grad
    inside = [0.0]

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            inside[0] += time.perf_counter() - start

    print(f"{'model':8} {'method':8} {'compute':>10} {'autograd':>10} {'the rest':>10} {'share':>6}")
    for name, model in all_models.items():
        Xv, labels_v = X[:1000], labels[:1000]
        for method, options in (("lancbio", dict(m0=5, m_max=10)), ("cg", dict(maxiter=5))):
            hg = HyperGradient(model.parameters(), [weights], method=method, **options)
            params = dict(model.named_parameters())
            adapter._grad = timed
            try:
                total = 0.0
                for k in range(iterations + 5):
                    g = inner(model, params, X, labels, weights)
                    f = torch.nn.functional.cross_entropy(model(Xv), labels_v)
                    if k == 5:
                        total, inside[0] = 0.0, 0.0
                    start = time.perf_counter()
                    hg.compute(g, f)
                    total += time.perf_counter() - start
                weights.grad = None
            finally:
                adapter._grad = real
            rest = total - inside[0]
            print(f"{name:8} {method:8} {total / iterations * 1e3:>7.2f} ms {inside[0] / iterations * 1e3:>7.2f} ms "
                  f"{rest / iterations * 1e3:>7.3f} ms {rest / total:>6.1%}")


if __name__ == "__main__":
    main()
