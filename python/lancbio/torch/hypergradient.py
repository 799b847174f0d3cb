"""HyperGradient: the implicit-function-theorem hyper-gradient of a bilevel problem written
in PyTorch, with v from a persistent lancbio estimator.

    min_x  f(x, y*(x)),   y*(x) = argmin_y g(x, y)
    grad phi = grad_x f - (d^2 g / dx dy) v,   v ~ (d^2 g / dy^2)^{-1} grad_y f

y are the lower-level tensors (``params``, e.g. an nn.Module's parameters), x the
upper-level ones (``hparams``). Each :meth:`HyperGradient.compute` is one step of the
estimator, which keeps its state across calls: one call per outer iteration with
method="lancbio" is the dynamic Lanczos method of LancBiO. docs/torch.md gives the cost of
each product and the path of the vectors.
"""

from __future__ import annotations


from typing import NamedTuple

import numpy as np
import torch

from ..errors import InvalidArgumentError, NonFiniteInputError, NonFiniteResultError
from ..estimators import BY_NAME
from ._distributed import Group
from ._flat import NUMPY_DTYPES, Layout

__all__ = ["HyperGradient", "Curvature", "METHODS"]

#: The estimator of each method name: the estimators' own names, and "lancbio" for the
#: dynamic Lanczos estimator, as the bilevel methods call it.
METHODS = {"lancbio": BY_NAME["lanczos"], **BY_NAME}

_grad = torch.autograd.grad
_LINEAR = ("the Hessian of the inner loss is zero: grad_y g does not depend on the params (g is linear in them), "
           "so the lower level has no unique solution")


class Curvature(NamedTuple):
    """Estimates of the extreme eigenvalues of the lower-level Hessian (see
    :attr:`HyperGradient.curvature`)."""

    lambda_min: float
    lambda_max: float


def _tensors(tensors, name: str) -> list:
    """The list of tensors ``tensors`` (an iterable such as model.parameters(), or one tensor)."""
    if isinstance(tensors, torch.Tensor):
        tensors = [tensors]
    try:
        tensors = list(tensors)
    except TypeError:
        raise TypeError(f"{name} must be a tensor or an iterable of tensors, got {type(tensors).__name__}") from None
    if not tensors:
        raise ValueError(f"{name} is empty")
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}[{i}] must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in NUMPY_DTYPES:
            raise TypeError(f"{name}[{i}] has dtype {t.dtype}; lancbio.torch needs torch.float32 or torch.float64")
        if not t.requires_grad:
            raise ValueError(f"{name}[{i}] does not require grad; call .requires_grad_() on it")
    return tensors


def _scalar(loss, name: str) -> None:
    """Checks that ``loss`` is a scalar tensor with a graph."""
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"{name} must be a scalar torch.Tensor, got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(f"{name} must be a scalar (one element), got shape {tuple(loss.shape)}")
    if not loss.requires_grad:
        raise ValueError(f"{name} has no graph: compute it from the tensors with gradients enabled "
                         "(not under torch.no_grad() and not detached)")


def _unused(gradients, name: str, loss: str, why: str) -> None:
    missing = [i for i, g in enumerate(gradients) if g is None]
    if missing:
        raise ValueError(f"{name}{missing} not used by {loss}: {why}")


def _finite(tensors, what: str, error) -> None:
    for t in tensors:
        if t is None:
            continue
        # On the CPU numpy checks the tensor's own memory in a few microseconds, where
        # torch.isfinite(t).all() dispatches three operators: several times that, twice per
        # call (bench section 9 counts this against lancbio's own cost).
        if t.device.type == "cpu" and t.layout == torch.strided:
            finite = bool(np.isfinite(t.detach().numpy()).all())
        else:
            finite = bool(torch.isfinite(t).all())
        if not finite:
            raise error(f"{what} is not finite (NaN or infinity); nothing was changed", -3)


class HyperGradient:
    """Hyper-gradients of a bilevel problem from its losses, with a persistent estimator of v.

    Args:
        params: the lower-level tensors y (an iterable such as ``model.parameters()``, or
            one tensor): any shapes, one dtype (torch.float32 or torch.float64, which sets
            the estimator's precision) and one device, each requiring grad.
        hparams: the upper-level tensors x, of the same dtype and device, leaf tensors
            requiring grad (the hyper-gradient accumulates into their ``.grad``), none of
            them also in ``params``.
        method: the estimator of v, one of ``METHODS``: "lancbio" (or "lanczos": dynamic
            Lanczos), "subbio", "cg", "minres", "gd", "neumann", "random-neumann".
        process_group: a torch.distributed process group (e.g.
            ``torch.distributed.group.WORLD``) whose processes compute this hyper-gradient
            together, every one of them calling ``compute`` in step; default None (this
            process alone). See ``sharded`` and docs/torch.md ("Several processes").
        sharded: with a process group: False (data-parallel) when every process holds all
            the params and its share of the batch (the losses are per-process means;
            gradients, products and the hyper-gradient are averaged across processes);
            True when each process holds its own slice of the lower-level tensors (the
            losses are each process's contribution to sums; inner products and the
            hyper-gradient are summed across processes). The hparams are replicated in
            both.
        **options: the estimator's options with the names of the Python estimators
            (``m0``, ``m_max``, ``growth``, ``maxiter``, ``tol``, ``eta``, ``theta0``,
            ``steps``, ``terms``, ...); those left out take the library's defaults, and
            those an estimator requires (``maxiter`` for "cg", ``eta`` for "gd", ...) must
            be given. The library checks every value.

    Raises:
        TypeError, ValueError: unusable tensors (another dtype, mixed dtypes or devices, not
            requiring grad, a tensor in both lists), an unknown method or option.
        lancbio.InvalidArgumentError: an option value the library rejects.
    """

    # _staged: run the device path (host staging) on the CPU too; for the tests.
    def __init__(self, params, hparams, method: str = "lancbio", *, process_group=None, sharded: bool = False,
                 _staged: bool | None = None, **options):
        self._params = _tensors(params, "params")
        self._hparams = _tensors(hparams, "hparams")
        everything = self._params + self._hparams
        dtypes = {t.dtype for t in everything}
        if len(dtypes) > 1:
            raise TypeError(f"params and hparams mix dtypes {sorted(map(str, dtypes))}; convert them to one "
                            "(model.double() or model.float(), and the hparams alike)")
        devices = {t.device for t in everything}
        if len(devices) > 1:
            raise ValueError(f"params and hparams lie on several devices {sorted(map(str, devices))}; move them to one")
        ids = {}
        for name, tensors in (("params", self._params), ("hparams", self._hparams)):
            for i, t in enumerate(tensors):
                if id(t) in ids:
                    raise ValueError(f"{name}[{i}] is also {ids[id(t)]}: each tensor may appear once, "
                                     "in params or in hparams")
                ids[id(t)] = f"{name}[{i}]"
        for i, h in enumerate(self._hparams):
            if not h.is_leaf:
                raise ValueError(f"hparams[{i}] is not a leaf tensor: .grad accumulates only into leaves")
        if not isinstance(method, str) or method not in METHODS:
            raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
        for name in ("n", "dtype", "v0", "comm"):
            if name in options:
                raise TypeError(f"HyperGradient sets {name} itself (from the params); it is not an option")
        if process_group is None:
            if sharded is not False:
                raise ValueError("sharded=True needs a process_group: the processes that hold the other slices")
            self._group = None
        else:
            self._group = Group(process_group, sharded)
        self._method = method
        self._layout = Layout(self._params, staged=_staged)
        cls = METHODS[method]
        if self._group is not None and self._group.sharded:
            options = dict(options, comm=self._group.comm)
        try:
            self._estimator = cls(self._layout.n, dtype=NUMPY_DTYPES[self._layout.dtype], **options)
        except TypeError as error:
            if isinstance(error, InvalidArgumentError):
                raise
            raise TypeError(f"HyperGradient(method={method!r}) options: {error} (the options of {cls.__name__}: "
                            f"see help(lancbio.{cls.__name__}))") from None
        self._b, self._b_numpy = self._layout.host()
        self._product, self._product_numpy = self._layout.host()
        self._v, self._v_numpy = self._layout.host()
        # On the CPU v's per-parameter tensors are views of its host buffer, made once.
        self._v_pieces = None if self._layout.staged else self._layout.to_device(self._v)
        # The curvature estimate, from the methods with a projected system.
        self._curvature = None
        self._tracks_curvature = cls in (BY_NAME["lanczos"], BY_NAME["subbio"])

    # -- the hyper-gradient -----------------------------------------------------------
    def compute(self, inner_loss, outer_loss, hessian_loss=None) -> tuple:
        """One outer iteration's hyper-gradient: one estimator step, then the cross term.

        The products: one backward of ``outer_loss`` gives grad_y f and grad_x f; one
        backward of ``inner_loss`` with ``create_graph=True`` gives the graph of grad_y g;
        each Hessian product the estimator asks for is a vector-Jacobian product on that
        graph, and the cross term (d^2 g / dx dy) v one more, with respect to the hparams.

        Args:
            inner_loss: g(x, y), a scalar tensor with its graph, built from the params and
                hparams (every hparam must enter it: otherwise no hyper-gradient exists).
            outer_loss: f(x, y), a scalar tensor with its graph; hparams it does not use
                have a zero direct term.
            hessian_loss: another sample of g (a mini-batch other than inner_loss's) for the
                Hessian products; default inner_loss. The cross term always uses
                inner_loss.

        Returns:
            A tuple with the hyper-gradient of each hparam (same shape, dtype and device),
            also accumulated into its ``.grad`` as ``backward()`` would (set when None,
            added otherwise), so that a torch.optim optimizer steps the upper level.

        Raises:
            TypeError, ValueError: a loss that is not a scalar tensor or has no graph, a
                param not used by the inner (or Hessian) loss, an hparam not used by the
                inner loss.
            lancbio.NonFiniteInputError, NonFiniteProductError: NaN or infinity in a
                gradient or a product; NonFiniteResultError: in the cross term.
            Any exception raised inside autograd, with its own traceback.
            Every failure before the estimator's step completes (all of the above except
            an error of the cross term) leaves the estimator as it was; no failure changes
            any ``.grad``. The cross term is computed after the step: if it fails, the
            estimator keeps its step (``hvp_count`` and ``info`` show it).
        """
        group = self._group
        if group is None:
            b_ready = self._right_hand_side(inner_loss, outer_loss, hessian_loss)
            return self._finish(self._step(*b_ready))
        # Across processes every process makes the same collectives whatever fails
        # locally (see _distributed): a local failure contributes NaN, and is raised once
        # the collective step has failed everywhere.
        failure = None
        try:
            b_ready = self._right_hand_side(inner_loss, outer_loss, hessian_loss)
        except BaseException as error:  # noqa: BLE001 - raised below, after the collectives
            failure, b_ready = error, None
            self._layout.gather(self._nan(self._params), self._b, self._average)
        try:
            if b_ready is None:
                b_ready = (None, None, None, self._cancelled_rows)
            return self._finish(self._step(*b_ready, failure=failure))
        except BaseException:
            if failure is not None:
                raise failure from None
            raise

    def _right_hand_side(self, inner_loss, outer_loss, hessian_loss):
        """grad_x f, the graph of grad_y g, the Hessian's outputs and their rows; b =
        grad_y f in its buffer (averaged across a data-parallel group)."""
        _scalar(inner_loss, "inner_loss")
        _scalar(outer_loss, "outer_loss")
        if hessian_loss is not None:
            _scalar(hessian_loss, "hessian_loss")
        params, hparams, layout = self._params, self._hparams, self._layout
        k = len(params)
        # retain_graph throughout: the caller's graphs stay usable (the losses may share one).
        outer = _grad(outer_loss, params + hparams, retain_graph=True, allow_unused=True)
        gy_f, gx_f = outer[:k], outer[k:]
        _finite(gx_f, "grad_x f", NonFiniteInputError)
        inner = _grad(inner_loss, params + hparams, create_graph=True, allow_unused=True)
        gy_g = inner[:k]
        _unused(inner[k:], "hparams", "inner_loss", "g does not depend on them, so no hyper-gradient exists")
        _unused(gy_g, "params", "inner_loss",
                "their block of the Hessian is zero and the lower-level solution is not unique")
        if hessian_loss is None:
            gy_h = gy_g
        else:
            gy_h = _grad(hessian_loss, params, create_graph=True, allow_unused=True)
            _unused(gy_h, "params", "hessian_loss",
                    "their block of the Hessian is zero and the lower-level solution is not unique")
        # Gradients that do not require grad are constant in the params (their rows of the
        # Hessian are zero); the products leave them out.
        rows = [i for i, g in enumerate(gy_h) if g.requires_grad]
        if not rows:
            raise ValueError(_LINEAR)
        layout.gather(gy_f, self._b, self._average)
        return gx_f, gy_g, [gy_h[i] for i in rows], rows

    # Stands for the Hessian's rows after a local failure: the products are then NaN.
    _cancelled_rows = ()

    def _step(self, gx_f, gy_g, outputs, rows, failure=None):
        """The estimator's step on b (its buffer): v committed. With ``failure`` (this
        process failed before the step) every product is NaN and the step fails on every
        process."""
        params, layout = self._params, self._layout
        # One tensor's product is read in place, unless a data-parallel group averages it.
        single = len(params) == 1 and (self._group is None or self._group.sharded)
        estimator = self._estimator
        try:
            # begin inside: an interrupt right after it returns must still cancel the step.
            x = estimator.begin(self._b_numpy)
            while x is not None:
                product = None
                if failure is None:
                    try:
                        product = self._product_of(x, outputs, rows, single)
                    except BaseException as error:  # noqa: BLE001 - raised after the collectives
                        if self._group is None:
                            raise
                        failure = error
                if product is None:
                    layout.gather(self._nan(params), self._product, self._average)
                    product = self._product_numpy
                x = estimator.resume(product)
        except BaseException:
            estimator.cancel()  # no effect when the library already abandoned the step
            if failure is not None:
                raise failure from None  # this process's own, in place of the NaN it caused
            raise
        if failure is not None:
            # Not reached: NaN fails the step on every process. Kept so that a local
            # failure can never pass for a result.
            raise failure
        return gx_f, gy_g

    def _product_of(self, x, outputs, rows, single):
        """The Hessian product of the estimator's vector x, as the numpy array it reads
        (averaged across a data-parallel group)."""
        params, layout = self._params, self._layout
        directions = layout.request(x)
        products = _grad(outputs, params, grad_outputs=[directions[i] for i in rows], retain_graph=True,
                         allow_unused=True)
        if all(q is None for q in products):
            raise ValueError(_LINEAR)
        if single and products[0] is not None and not layout.staged:
            flat = products[0].reshape(-1)
            if flat.is_contiguous():
                return flat.numpy()
        layout.gather(products, self._product, self._average)
        return self._product_numpy

    def _finish(self, step) -> tuple:
        """After the committed step: the cross term and the hyper-gradient (combined across
        the group), accumulated into the hparams' .grad."""
        gx_f, gy_g = step
        hparams, layout, group = self._hparams, self._layout, self._group
        if self._tracks_curvature:
            self._note_curvature()
        failure = None
        try:
            self._estimator.read_v(self._v_numpy)
            v = self._v_pieces if self._v_pieces is not None else layout.to_device(self._v)
            cross_rows = [i for i, g in enumerate(gy_g) if g.requires_grad]
            if cross_rows:
                cross = _grad([gy_g[i] for i in cross_rows], hparams, grad_outputs=[v[i] for i in cross_rows],
                              retain_graph=True, allow_unused=True)
            else:
                cross = (None,) * len(hparams)
            if group is None:
                _finite(cross, "the cross term (d^2 g / dx dy) v", NonFiniteResultError)
            grads = []
            for h, direct, c in zip(hparams, gx_f, cross):
                if direct is None:
                    g = torch.zeros_like(h) if c is None else -c
                else:
                    g = direct if c is None else direct - c
                grads.append(g.detach())
        except BaseException as error:  # noqa: BLE001 - raised after the collective
            if group is None:
                raise
            failure, grads = error, self._nan(hparams)
        if group is not None:
            flat = torch.cat([g.reshape(-1) for g in grads])
            group.combine(flat)
            grads = [piece.view_as(h) for piece, h in zip(flat.split([h.numel() for h in hparams]), hparams)]
            if failure is not None:
                raise failure
            _finite(grads, "the hyper-gradient (grad_x f minus the cross term, combined across processes)",
                    NonFiniteResultError)
        for h, g in zip(hparams, grads):
            if h.grad is None:
                h.grad = g.clone()
            else:
                h.grad.add_(g)
        return tuple(grads)

    def _average(self, flat: torch.Tensor) -> None:
        """A data-parallel group's mean of a gathered vector, in place (nothing otherwise)."""
        group = self._group
        if group is not None and not group.sharded:
            group.average(flat)

    def _nan(self, tensors) -> list:
        """NaN in place of this process's tensors, shaped like ``tensors``: what a process
        contributes to a collective when its own computation failed."""
        return [torch.full_like(t, float("nan"), requires_grad=False).detach() for t in tensors]

    # -- state ----------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the estimator's state after creation (v = 0, counters restarted, no
        curvature estimate)."""
        self._estimator.reset()
        self._curvature = None

    @property
    def v(self) -> tuple:
        """The current estimate of v, as new tensors shaped like the params (their device)."""
        self._estimator.read_v(self._v_numpy)
        return tuple(t.clone() for t in self._layout.to_device(self._v))

    @property
    def curvature(self) -> Curvature | None:
        """Estimates of the extreme eigenvalues of the lower-level Hessian d^2 g / dy^2, from
        the Ritz values of the estimator's projected systems ("lancbio"/"lanczos": the
        Lanczos tridiagonal; "subbio": its two-dimensional system); None for the other
        methods, before the first step and after reset.

        Ritz values lie inside the spectrum (lambda_min <= ritz_min, ritz_max <= lambda_max
        for a fixed Hessian) and tighten as the Krylov space grows; these are the extremes
        seen over the steps since creation or reset, so a step size c / lambda_max from them
        is the most conservative one the run has justified. Early in a run, or while a
        stochastic Hessian changes from call to call, they can lie well inside the true
        spectrum.
        """
        return self._curvature

    def _note_curvature(self) -> None:
        """Widens the curvature estimate by the Ritz values of the step just taken."""
        info = self._estimator.info
        if info is not None and info.dimension > 0:
            low, high = info.ritz_min, info.ritz_max
            if self._curvature is not None:
                low, high = min(low, self._curvature.lambda_min), max(high, self._curvature.lambda_max)
            self._curvature = Curvature(low, high)

    @property
    def info(self):
        """The last step's :class:`lancbio.StepInfo` (None before the first step or after reset)."""
        return self._estimator.info

    @property
    def hvp_count(self) -> int:
        """Hessian-vector products since creation or the last reset (the cross terms not counted)."""
        return self._estimator.hvp_count

    @property
    def estimator(self):
        """The lancbio estimator of v (its options, ``period``, ``restarts``, ...)."""
        return self._estimator

    @property
    def n(self) -> int:
        """The number of lower-level scalars (the estimator's dimension)."""
        return self._layout.n

    @property
    def method(self) -> str:
        return self._method

    def __repr__(self) -> str:
        return (f"<lancbio.torch.HyperGradient method={self._method!r} n={self._layout.n} "
                f"dtype={self._layout.dtype} device={self._layout.device} hvp_count={self.hvp_count}>")
