"""Defining your own bilevel problem for lancbio, notebook style.

A problem is any object with five methods taking and returning float64 numpy arrays.
Here: ridge regression whose per-feature regularisation weights exp(x) are tuned on a
validation set,

    g(x, y) = 0.5 ||X_tr y - t_tr||^2 / m + 0.5 sum_i exp(x_i) y_i^2     (inner: fit y)
    f(x, y) = 0.5 ||X_val y - t_val||^2 / m                              (outer: validate)

so A = grad^2_yy g = X_tr^T X_tr / m + diag(exp(x)) and the cross term is
grad^2_xy g v = exp(x) * y * v. Run `python3 examples/custom_problem.py` after
`pip install ./python`, or from a checkout after `make lib`:
`PYTHONPATH=python LANCBIO_LIBRARY=.build/release/liblancbio.so python3 examples/custom_problem.py`.
"""

import numpy as np

import lancbio


class RidgeWeights:
    def __init__(self, features=30, samples=200, seed=0):
        rng = np.random.default_rng(seed)
        w_true = rng.standard_normal(features) * (rng.random(features) < 0.3)
        self.Xtr = rng.standard_normal((samples, features))
        self.Xval = rng.standard_normal((samples, features))
        self.ttr = self.Xtr @ w_true + 0.5 * rng.standard_normal(samples)
        self.tval = self.Xval @ w_true + 0.5 * rng.standard_normal(samples)
        self.m = samples
        self.dx = self.dy = features

    # -- the five derivatives lancbio needs ------------------------------------------
    def grad_y_g(self, x, y):
        return self.Xtr.T @ (self.Xtr @ y - self.ttr) / self.m + np.exp(x) * y

    def grad_x_f(self, x, y):
        return np.zeros_like(x)          # f does not depend on x directly

    def grad_y_f(self, x, y):
        return self.Xval.T @ (self.Xval @ y - self.tval) / self.m

    def hvp_yy_g(self, x, y, v):
        return self.Xtr.T @ (self.Xtr @ v) / self.m + np.exp(x) * v

    def jvp_xy_g(self, x, y, v):
        return np.exp(x) * y * v

    # -- for reporting -------------------------------------------------------------
    def f(self, x, y):
        return 0.5 * np.sum((self.Xval @ y - self.tval) ** 2) / self.m

    def y_star(self, x):
        A = self.Xtr.T @ self.Xtr / self.m + np.diag(np.exp(x))
        return np.linalg.solve(A, self.Xtr.T @ self.ttr / self.m)

    def hypergradient(self, x):
        """The exact grad phi(x) by dense solves, to check lancbio's estimate."""
        y = self.y_star(x)
        A = self.Xtr.T @ self.Xtr / self.m + np.diag(np.exp(x))
        v = np.linalg.solve(A, self.grad_y_f(x, y))
        return self.grad_x_f(x, y) - self.jvp_xy_g(x, y, v)


def main(iterations=300, verbose=True):
    problem = RidgeWeights()
    x0 = np.zeros(problem.dx)
    y0 = np.zeros(problem.dy)
    opt = lancbio.Bilevel(problem, method="lancbio", x0=x0, y0=y0, lr_x=5.0, lr_y=0.3, inner_steps=5)
    history = opt.run(iterations=iterations, progress=False)
    start, end = np.linalg.norm(problem.hypergradient(x0)), np.linalg.norm(problem.hypergradient(opt.x))
    if verbose:
        print(f"validation loss {problem.f(x0, problem.y_star(x0)):.4f} -> {problem.f(opt.x, problem.y_star(opt.x)):.4f}")
        print(f"||grad phi|| {start:.3e} -> {end:.3e} after {len(history)} iterations, {history[-1]['hvps']} HVPs")
    return start, end


if __name__ == "__main__":
    main()
