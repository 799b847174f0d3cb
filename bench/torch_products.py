"""Hessian-vector products in PyTorch, two ways, on the hyper-cleaning models (docs/torch.md):

- reverse-over-reverse, as lancbio.torch computes them: one backward of g with
  create_graph=True per outer iteration, then each product a vector-Jacobian product on
  that graph of grad_y g;
- forward-over-reverse with torch.func: jvp(grad(g)) per product, re-running g's
  forward and backward in dual numbers each time.

Prints the time of an outer iteration with k products for each (median of repeats).
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


if __name__ == "__main__":
    main()
