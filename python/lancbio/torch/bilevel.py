"""Bilevel: the outer loop of :class:`lancbio.Bilevel` on PyTorch tensors, around a
:class:`HyperGradient`.

The same methods with the same paper settings (``lancbio.METHODS``) and the same
iteration (docs/algorithms.md section 2): at outer iteration k = 1, 2, ..., T inner steps
``y <- y - theta_k grad_y g(x, y)``, then one HyperGradient.compute at (x, y') and
``x <- x - lambda_k h``, with lambda_k = max(lr_x_min, lr_x / k^lr_x_decay) when
lr_x_decay > 0 (else lr_x), and theta_k likewise. The losses are callables, evaluated
afresh wherever the iteration needs them, so each may draw a new mini-batch.
"""

from __future__ import annotations

import ctypes

import torch

from .. import _options
from .._ffi import lib
from .._handle import check
from ..bilevel import METHODS as _BILEVEL_METHODS
from ..estimators import BY_NAME
from ..history import History, record_run
from .hypergradient import HyperGradient

__all__ = ["Bilevel"]

# The estimator name of each bilevel method's estimator, and its name for v_steps (Q).
_ESTIMATOR_NAMES = {cls._method: name for name, cls in BY_NAME.items()}
_Q_NAMES = {"cg": "maxiter", "gd": "steps", "neumann": "terms", "random-neumann": "max_terms"}


class Bilevel:
    """An outer loop on tensors: ``step()`` is one outer iteration of ``method``.

    Args:
        params: the lower-level tensors y (e.g. ``model.parameters()``), updated in place.
        hparams: the upper-level leaf tensors x, updated in place.
        inner_loss: a callable returning g(x, y) as a scalar tensor with its graph.
        outer_loss: a callable returning f(x, y).
        method: one of ``lancbio.METHODS`` ("lancbio", "subbio", "amigo-cg", "amigo-gd",
            "soba", "stocbio", "ttsa", "bsa").
        hessian_loss: an optional callable giving g on another mini-batch for the Hessian
            products (see HyperGradient.compute).
        **options: those of :class:`lancbio.Bilevel` (lr_x and lr_y required; inner_steps,
            the decays and floors, v_steps, eta, theta0, seed, the Lanczos options), with
            the same defaults: the paper's where ``lancbio.METHODS`` sets them, else the
            library's.
    """

    def __init__(self, params, hparams, inner_loss, outer_loss, method: str = "lancbio", hessian_loss=None,
                 **options):
        if method not in _BILEVEL_METHODS:
            raise ValueError(f"unknown method {method!r}; valid: {', '.join(_BILEVEL_METHODS)}")
        spec = _BILEVEL_METHODS[method]
        allowed = set(_options.OUTER) | set(spec["options"])
        unknown = sorted(set(options) - allowed - {"seed"})
        if unknown:
            raise TypeError(f"options {unknown} do not apply to method {method!r}; it accepts {sorted(allowed)}")
        for required in ("lr_x", "lr_y"):
            if options.get(required) is None:
                raise ValueError(f"{required} is required (a step size > 0)")
        outer = _options.bilevel_options()
        _options.fill(outer, _options.OUTER, {name: options.get(name, spec.get(name)) for name in _options.OUTER})
        self._settings = _options.read(outer, _options.OUTER, _options.OUTER)
        # The library's schedule of lambda_k and theta_k (lancbio_bilevel_step_sizes), and
        # its check of these options, from the same structure.
        self._outer = outer
        self._lr_x, self._lr_y = ctypes.c_double(), ctypes.c_double()
        self._step_sizes(1)

        estimator = _ESTIMATOR_NAMES[spec["estimator"]]
        defaults = _options.read(_options.estimator_options(spec["estimator"]), _options.ESTIMATOR,
                                 ["maxiter", "steps"])
        values = {}
        for name in spec["options"]:
            value = options.get(name, spec.get(name))
            if name == "v_steps":
                q = _Q_NAMES[estimator]
                values[q] = value if value is not None else defaults["maxiter" if q == "maxiter" else "steps"]
            elif value is not None:
                values[name] = value
        for name in ("eta", "theta0"):
            if name in spec["options"] and values.get(name) is None:
                values[name] = self._settings["lr_y"]
        self._params = [p for p in params]
        self._hparams = [h for h in hparams]
        self._inner_loss, self._outer_loss, self._hessian_loss = inner_loss, outer_loss, hessian_loss
        self._method = method
        self.hypergradient = HyperGradient(self._params, self._hparams, method=estimator, **values)
        self._settings.update(values)
        self._iteration = 0

    def _step_sizes(self, k: int) -> tuple[float, float]:
        """lambda_k and theta_k from the library's schedule."""
        status = lib.lancbio_bilevel_step_sizes(ctypes.byref(self._outer), k, ctypes.byref(self._lr_x),
                                                ctypes.byref(self._lr_y))
        check(status, lib.lancbio_last_error() if status < 0 else None, "the outer loop's options")
        return self._lr_x.value, self._lr_y.value

    @property
    def settings(self) -> dict:
        """The outer-loop and estimator settings in force."""
        return dict(self._settings)

    @property
    def iteration(self) -> int:
        return self._iteration

    def step(self) -> dict:
        """One outer iteration; returns its record (iteration, hvps, lr_x, lr_y,
        hypergradient_norm). If it raises, x and y are as before it (the estimator too,
        unless the failure came after its step: see HyperGradient.compute)."""
        s = self._settings
        k = self._iteration + 1
        lr_x, lr_y = self._step_sizes(k)
        params, hparams = self._params, self._hparams
        saved = [p.detach().clone() for p in params]
        try:
            for _ in range(s["inner_steps"]):
                grads = torch.autograd.grad(self._inner_loss(), params, allow_unused=True)
                with torch.no_grad():
                    for p, g in zip(params, grads):
                        if g is not None:
                            p.sub_(g, alpha=lr_y)
            for h in hparams:
                h.grad = None
            hessian = self._hessian_loss() if self._hessian_loss is not None else None
            grads = self.hypergradient.compute(self._inner_loss(), self._outer_loss(), hessian_loss=hessian)
            for h in hparams:
                h.grad = None
            if not all(bool(torch.isfinite(g).all()) for g in grads):
                raise FloatingPointError("the hyper-gradient is not finite")
        except BaseException:
            with torch.no_grad():
                for p, value in zip(params, saved):
                    p.copy_(value)
            raise
        with torch.no_grad():
            for h, g in zip(hparams, grads):
                h.sub_(g, alpha=lr_x)
        self._iteration = k
        norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
        return {"iteration": k, "hvps": self.hypergradient.hvp_count, "lr_x": lr_x, "lr_y": lr_y,
                "hypergradient_norm": norm}

    def run(self, iterations: int | None = None, seconds: float | None = None, callback=None,
            progress: bool = True, progress_every: float = 2.0, label: str | None = None) -> History:
        """Steps until ``iterations`` more iterations or ``seconds`` of optimizer time,
        recording a :class:`lancbio.History` as :meth:`lancbio.Bilevel.run` does (the same
        loop): ``callback(optimizer, record)`` runs outside the timed region and may return
        a dict of extra fields or False to stop; ``progress`` prints a line to stderr about
        every ``progress_every`` seconds."""
        return record_run(self, self.step, iterations, seconds, callback, progress, progress_every,
                          label or self._method)

    def close(self) -> None:
        """Releases the estimator's native handle."""
        self.hypergradient.estimator.close()
