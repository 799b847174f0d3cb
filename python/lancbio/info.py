"""Diagnostics of one estimator step (the Python mirror of ``lancbio_step_info_t``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StepInfo", "OUTCOMES", "RESIDUAL_KINDS"]

#: Names of the non-negative step statuses LANCBIO_OK .. LANCBIO_SINGULAR, by code.
OUTCOMES = {0: "success", 1: "budget_reached", 2: "breakdown", 3: "indefinite", 4: "singular"}

#: Names of the LANCBIO_RESIDUAL_* kinds, by code.
RESIDUAL_KINDS = {0: "unavailable", 1: "exact", 2: "recurrence", 3: "estimate", 4: "previous_iterate"}


@dataclass(frozen=True)
class StepInfo:
    """What one step did.

    Attributes:
        status: the step's status code, 0..4 (int).
        outcome: its name: "success", "budget_reached", "breakdown", "indefinite" or
            "singular". Every outcome comes with a usable estimate.
        products: operator products (HVPs) used by this step.
        total_products: products since creation or the last reset.
        iterations: inner iterations of this step (Lanczos: 1).
        dimension: Lanczos subspace dimension j; SubBiO 1 or 2; otherwise 0.
        period: Lanczos restart period m in force; otherwise 0.
        restarts: Lanczos restarts since creation or reset; otherwise 0.
        restarted: whether this step restarted the Lanczos basis.
        breakdown: the Krylov space became invariant.
        indefinite: non-positive curvature was met.
        singular_fallback: a least-squares solve replaced a singular projected solve.
        zero_residual: b was zero, or the residual at a restart zero to working precision.
        residual: a residual norm in the units of b; ``residual_kind`` says which.
        residual_kind: "unavailable" (Neumann), "exact" (||A v - b|| from this step's
            products), "recurrence" (CG/MINRES recurrence; a convergence it claims below
            the bound on its rounding is checked, "exact"), "estimate" (Lanczos
            beta_j |e_j^T s|, exact only for a fixed operator and b; see
            ``residual_uncertain``) or "previous_iterate" (||A v - b|| before the last
            gradient step).
        ritz_min, ritz_max: extreme eigenvalues of the projected matrix, in the units of
            A's eigenvalues (0 when ``dimension`` is 0).
        orthogonality_loss: Lanczos: max_i |q_i . q_{j+1}| measured this step (0 when not
            measured).
        orthogonality_restart: Lanczos: that loss exceeded the tolerance, so the next step
            restarts early.
        residual_uncertain: the residual is likely too optimistic: a CG/MINRES
            "recurrence" below the bound on its rounding, or a part of A v - b a Lanczos
            step measures (rounding, b outside the basis, loss of orthogonality, the
            operator's drift) above the "estimate" (``exact_residual=True`` gives the true
            figure). Never set for "exact".
        reductions: calls of the reduction (``comm=``) this step made; 0 on one process
            (docs/algorithms.md section 13 gives each method's count).
    """

    status: int
    outcome: str
    products: int
    total_products: int
    iterations: int
    dimension: int
    period: int
    restarts: int
    restarted: bool
    breakdown: bool
    indefinite: bool
    singular_fallback: bool
    zero_residual: bool
    residual: float
    residual_kind: str
    ritz_min: float
    ritz_max: float
    orthogonality_loss: float = 0.0
    orthogonality_restart: bool = False
    residual_uncertain: bool = False
    reductions: int = 0

    @classmethod
    def _from_struct(cls, s) -> "StepInfo":
        """Converts a filled ``lancbio_step_info_t`` ctypes structure."""
        return cls(
            status=s.status,
            outcome=OUTCOMES.get(s.status, f"unknown({s.status})"),
            products=s.products,
            total_products=s.total_products,
            iterations=s.iterations,
            dimension=s.dimension,
            period=s.period,
            restarts=s.restarts,
            restarted=bool(s.restarted),
            breakdown=bool(s.breakdown),
            indefinite=bool(s.indefinite),
            singular_fallback=bool(s.singular_fallback),
            zero_residual=bool(s.zero_residual),
            residual=s.residual,
            residual_kind=RESIDUAL_KINDS.get(s.residual_kind, f"unknown({s.residual_kind})"),
            ritz_min=s.ritz_min,
            ritz_max=s.ritz_max,
            orthogonality_loss=s.orthogonality_loss,
            orthogonality_restart=bool(s.orthogonality_restart),
            residual_uncertain=bool(s.residual_uncertain),
            reductions=s.reductions,
        )
