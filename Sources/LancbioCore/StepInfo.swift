/// How a step ended. Every case returns a usable estimate; the raw values are the
/// non-negative status codes of the C ABI and are never renumbered.
public enum StepOutcome: Int32, Sendable, CaseIterable {
    /// The step completed normally (or an iterative solve met its tolerance).
    case success = 0
    /// An iterative solve used its whole iteration budget without meeting its tolerance.
    /// Not an error: truncated solves are what hyper-gradient estimators do.
    case budgetReached = 1
    /// The Krylov space became invariant (beta == 0) or the residual was already zero:
    /// the estimate is exact for this operator; the next step restarts.
    case breakdown = 2
    /// Negative or zero curvature was met (a Ritz value <= 0, or p^T A p <= 0 in CG):
    /// the operator is not positive definite on the explored subspace. The estimate is
    /// the solve of the (indefinite) projected system, or the last iterate before the
    /// negative direction.
    case indefinite = 3
    /// The projected system was singular to working precision: the estimate is a
    /// least-squares one (Lanczos: the minimum-norm least-squares solution of the projected
    /// system; MINRES: the last iterate before the direction that was rounding, or of an
    /// invariant space that left b - A v far from 0; the residual is then its minimum over
    /// the space explored, not 0).
    case singular = 4
}

/// What the residual figure in `StepInfo` means.
public enum ResidualKind: Int32, Sendable {
    /// No residual is available without another product (Neumann series).
    case unavailable = 0
    /// ||A v - b|| computed from products of this step: exact up to rounding.
    case exact = 1
    /// The recurrence residual of CG or MINRES: equals ||A v - b|| in exact arithmetic, and
    /// to rounding while above the bound on its rounding (`StepInfo.residualUncertain`
    /// says when it is not).
    case recurrence = 2
    /// beta_j |e_j^T s| of dynamic Lanczos. Exact for a fixed operator and b; only an
    /// estimate while they move between steps (see `StepInfo.residualUncertain` and
    /// `LanczosOptions.exactResidual`).
    case estimate = 3
    /// ||A v_prev - b|| at the iterate before the last gradient step.
    case previousIterate = 4
}

/// Per-step diagnostics. Counts are plain numbers; `residual`, `ritzMin` and `ritzMax` are
/// in the units of b and of A's eigenvalues respectively.
public struct StepInfo: Equatable, Sendable {
    /// How the step ended.
    public var outcome: StepOutcome = .success
    /// Operator products (HVPs) used by this step.
    public var products = 0
    /// Operator products used since creation or the last reset.
    public var totalProducts = 0
    /// Inner iterations of this step (CG, MINRES, gradient or Neumann terms; Lanczos: 1).
    public var iterations = 0
    /// Lanczos: current subspace dimension j. SubBiO: 1 or 2. Others: 0.
    public var dimension = 0
    /// Lanczos: restart period m in force. Others: 0.
    public var period = 0
    /// Lanczos: whether this step restarted the basis.
    public var restarted = false
    /// Lanczos: restarts since creation or the last reset.
    public var restarts = 0
    /// See `residualKind`.
    public var residual = 0.0
    public var residualKind: ResidualKind = .unavailable
    /// Extreme eigenvalues of the projected matrix (T_j for Lanczos, the 2 x 2 matrix for
    /// SubBiO): estimates of the extreme eigenvalues of A. Meaningful only when
    /// `dimension > 0`; 0 otherwise.
    public var ritzMin = 0.0
    public var ritzMax = 0.0
    /// The Krylov space became invariant in this step.
    public var breakdown = false
    /// The projected matrix or curvature was not positive (see `StepOutcome.indefinite`).
    public var indefinite = false
    /// The least-squares fallback replaced a singular solve.
    public var singularFallback = false
    /// The right-hand side was zero, or the residual at restart was zero to working
    /// precision (relative to ||b|| + ||A v||).
    public var zeroResidual = false
    /// Lanczos: max_i |q_i . q_{j+1}| measured this step (0 when not measured: restarts,
    /// re-orthogonalisation, or a disabled check).
    public var orthogonalityLoss = 0.0
    /// Lanczos: the loss exceeded the tolerance, so the next step restarts early.
    public var orthogonalityRestart = false
    /// The residual figure is likely too optimistic. CG and MINRES: their recurrence
    /// residual is below the bound on its rounding (docs/algorithms.md sections 5 and 9);
    /// Lanczos: a part of A v - b the step can measure without a product (rounding, b
    /// outside the basis, the basis' loss of orthogonality, A's drift) exceeds the estimate
    /// (section 3.6). Never set with an exact residual.
    public var residualUncertain = false
    /// Calls of the reduction hook this step made (0 without a hook; docs/algorithms.md
    /// section 13 gives the count of each method). Not saved in checkpoints.
    public var reductions = 0

    public init() {}

    /// The outcome that summarises the flags, most serious first.
    mutating func settleOutcome(budgetReached: Bool = false) {
        if singularFallback { outcome = .singular }
        else if indefinite { outcome = .indefinite }
        else if breakdown || zeroResidual { outcome = .breakdown }
        else if budgetReached { outcome = .budgetReached }
        else { outcome = .success }
    }
}
