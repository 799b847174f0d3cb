"""LancBiO's hyper-gradient in plain PyTorch, written in tensor ops the way research code
writes it: the reference that the benchmark times lancbio.torch.HyperGradient against.

The mathematics is that of docs/algorithms.md section 3 (the residual variant: the anchor
vbar and w = A vbar taken at a restart, one Lanczos step per outer iteration on that
iteration's Hessian, the restart schedule m <- min(ceil(m * growth), m_max) every
``grow_every`` steps, the projected system T_j s = c with c = rho e_1 on a restart step and
Q_j^T (b - w) otherwise, v = vbar + Q_j s) and of the library's orthogonality safeguard
(section 3.8: the next step restarts when max_i |q_i . q_(j+1)| > orthogonality_tol), with
the products HyperGradient takes: one backward of f, one graph of grad_y g, each Hessian
product a vector-Jacobian product on it and the cross term one more. So on the same losses
it computes what HyperGradient(method="lancbio") computes, to rounding
(bench/tests/test_torch_reference.py), and timing the two compares only the estimator's
own work.

Research-code style: the Krylov basis is a torch tensor of m_max + 1 rows (one per basis
vector, contiguous), T a dense torch matrix solved with torch.linalg.solve, the flat
vectors made with torch.cat and split into the parameters' shapes with views. Breakdown
(beta = 0) and a zero residual at a restart are not handled, as research code does not
handle them; the benchmark's problems never meet them.
"""

from __future__ import annotations

import math

import torch

__all__ = ["TorchLanczosHyperGradient"]

# Every autograd product goes through this name, so that the benchmark can time them.
_grad = torch.autograd.grad


class TorchLanczosHyperGradient:
    """The dynamic Lanczos hyper-gradient in tensor ops, with HyperGradient's ``compute``.

    Args:
        params: the lower-level tensors y (one dtype and device, requiring grad).
        hparams: the upper-level leaf tensors x.
        m0, m_max, growth, grow_every: the restart schedule (docs/algorithms.md 3.4).
        orthogonality_tol: the loss of orthogonality that makes the next step restart
            (math.inf: never, the paper's behaviour).
    """

    def __init__(self, params, hparams, m0=1, m_max=80, growth=1.1, grow_every=20, orthogonality_tol=1e-2):
        self.params = list(params)
        self.hparams = list(hparams)
        first = self.params[0]
        self.n = sum(p.numel() for p in self.params)
        self.m_max, self.growth, self.grow_every = m_max, growth, grow_every
        self.orthogonality_tol = orthogonality_tol
        self.period = m0
        self.steps = 0
        self.hvp_count = 0
        self.j = 0
        self.must_restart = True
        like = dict(dtype=first.dtype, device=first.device)
        self.Q = torch.zeros(m_max + 1, self.n, **like)
        self.T = torch.zeros(m_max, m_max, dtype=torch.float64, device=first.device)
        self.v = torch.zeros(self.n, **like)
        self.vbar = torch.zeros(self.n, **like)
        self.w = torch.zeros(self.n, **like)
        self.beta = 0.0
        self.rho = 0.0

    def _split(self, flat):
        pieces, offset = [], 0
        for p in self.params:
            pieces.append(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        return pieces

    def _hvp(self, gy, q):
        self.hvp_count += 1
        products = _grad(gy, self.params, grad_outputs=self._split(q), retain_graph=True)
        return torch.cat([p.reshape(-1) for p in products])

    def compute(self, inner_loss, outer_loss):
        """One outer iteration's hyper-gradient (see HyperGradient.compute); accumulates it
        into each hparam's ``.grad`` and returns it."""
        params, hparams, k = self.params, self.hparams, len(self.params)
        outer = _grad(outer_loss, params + hparams, retain_graph=True, allow_unused=True)
        b = torch.cat([g.reshape(-1) for g in outer[:k]])
        gy = _grad(inner_loss, params, create_graph=True)

        self.steps += 1
        if self.steps > 1 and (self.steps - 1) % self.grow_every == 0:
            self.period = min(int(math.ceil(self.period * self.growth)), self.m_max)
        restart = self.must_restart or self.j >= min(self.period, self.n)
        Q, T = self.Q, self.T
        if restart:
            self.vbar = self.v.clone()
            self.w = self._hvp(gy, self.v)
            r = b - self.w
            self.rho = float(torch.linalg.vector_norm(r))
            Q[0] = r / self.rho
            T.zero_()
            self.j, self.beta = 0, 0.0
        j = self.j
        u = self._hvp(gy, Q[j])
        if j > 0:
            u = u - self.beta * Q[j - 1]
        alpha = float(Q[j] @ u)
        omega = u - alpha * Q[j]
        beta = float(torch.linalg.vector_norm(omega))
        Q[j + 1] = omega / beta
        T[j, j] = alpha
        if j > 0:
            T[j - 1, j] = T[j, j - 1] = self.beta
        self.j = j = j + 1
        self.beta = beta
        if restart:
            c = torch.zeros(j, dtype=torch.float64, device=T.device)
            c[0] = self.rho
        else:
            c = (Q[:j] @ (b - self.w)).double()
        s = torch.linalg.solve(T[:j, :j], c)
        self.v = self.vbar + Q[:j].T @ s.to(Q.dtype)
        loss = float((Q[:j] @ Q[j]).abs().max()) if not restart else 0.0
        self.must_restart = loss > self.orthogonality_tol

        cross = _grad(gy, hparams, grad_outputs=self._split(self.v), retain_graph=True, allow_unused=True)
        grads = []
        for h, direct, c_term in zip(hparams, outer[k:], cross):
            g = torch.zeros_like(h) if direct is None else direct
            grads.append((g if c_term is None else g - c_term).detach())
        for h, g in zip(hparams, grads):
            if h.grad is None:
                h.grad = g.clone()
            else:
                h.grad.add_(g)
        return tuple(grads)
