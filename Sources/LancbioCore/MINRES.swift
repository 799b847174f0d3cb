import RealModule

/// MINRES (Paige and Saunders 1975) warm-started from the committed estimate: minimises
/// ||b - A v|| over the Krylov space of the initial residual, so it handles symmetric
/// indefinite (and, in the least-squares sense, singular) A, which non-convex lower-level
/// problems produce.
///
/// One product for the initial residual, then one per iteration, up to `maxIterations`;
/// stops when the recurrence residual phibar <= tolerance * ||b||, when the Krylov space is
/// invariant, or when A is singular to working precision on it. The recurrence residual
/// is compared with a bound on its rounding (docs/algorithms.md section 9): below it, a
/// convergence it claims is checked with one more product (and denied, restarts the
/// recurrence from the true residual), and any other residual it reports is flagged
/// `residualUncertain`.
final class MINRES<T: BinaryFloatingPoint>: StepMethod {
    typealias Options = ConjugateGradient<T>.Options
    static var name: String { "minres" }
    /// The product's buffer becomes the next Lanczos vector.
    static var readsProductInPlace: Bool { false }
    static func validate(_ o: Options) throws(EstimatorError) { try ConjugateGradient<T>.validate(o) }

    /// r1, r2, the Lanczos vector and the three search directions.
    static func storage(n: Int, options: Options) -> MethodStorage { MethodStorage(vectors: 6) }

    /// Breakdown and singularity thresholds, in units of the storage's eps times A's scale:
    /// the invariance test's, and twice it for gamma, which is >= beta.
    private static var invarianceFactor: Double { 16 }

    private var allocations = OwnedAllocations()
    let n: Int
    let maxIterations: Int
    let tolerance: Double
    // The three-term Lanczos vectors r1, r2, the normalised vector v (the product input),
    // and the search directions w, w1, w2 (rotated by pointer).
    private var r1: UnsafeMutablePointer<T>
    private var r2: UnsafeMutablePointer<T>
    private let lanczosVector: UnsafeMutablePointer<T>
    private var w: UnsafeMutablePointer<T>
    private var w1: UnsafeMutablePointer<T>
    private var w2: UnsafeMutablePointer<T>

    /// What the next product is: A times the pending estimate, whose residual b - A v is
    /// reported if it meets the tolerance or the budget is spent and (re)starts the
    /// recurrence otherwise; or A times the Lanczos vector.
    private enum Phase { case residual, iterate }
    private var phase = Phase.residual
    /// Iterations of this step, over all restarts of the recurrence.
    private var iterations = 0
    /// Iterations since the recurrence last (re)started.
    private var cycleIterations = 0
    private var beta = 0.0, oldBeta = 0.0, dbar = 0.0, epsilon = 0.0, phibar = 0.0
    private var cs = -1.0, sn = 0.0
    /// ||r0|| of the current recurrence: it runs on r0 / ||r0|| so its magnitudes stay
    /// near 1 whatever the scale of b (subnormal to huge); updates and residuals are
    /// scaled back by it.
    private var residualScale = 1.0
    /// ||b - A v|| at the step's start: a breakdown is exact only if it removed this.
    private var startResidual = 0.0
    /// max_k ||A v_k|| over the Lanczos vectors: a lower estimate of ||A||, the scale of
    /// the invariance and singularity tests (in A's units, as the vectors are unit).
    private var operatorScale = 0.0
    /// sum_i |phi_i| ||w_i|| of the current recurrence (units of r0): the growth through
    /// which rounding in the search directions reaches the estimate.
    private var directionGrowth = 0.0
    /// The bound on the rounding of the last reported recurrence residual (units of b).
    private var gap = 0.0
    /// ||v|| of the pending estimate after the last update (0 before the first).
    private var estimateNorm = 0.0
    private var sawNegativeCurvature = false
    private var sawSingular = false
    private var sawInvariant = false

    /// The pointers rotate during a solve; `allocations` keeps and frees the originals.
    init(n: Int, options: Options) throws(EstimatorError) {
        self.n = n
        maxIterations = options.maxIterations
        tolerance = options.tolerance
        r1 = try allocations.zeroed(n); r2 = try allocations.zeroed(n); lanczosVector = try allocations.zeroed(n)
        w = try allocations.zeroed(n); w1 = try allocations.zeroed(n); w2 = try allocations.zeroed(n)
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func begin(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> StepDemand<T> {
        Kernels.copy(ws.estimate, to: ws.pending, n)
        phase = .residual
        iterations = 0
        operatorScale = 0
        startResidual = -1
        sawNegativeCurvature = false
        sawSingular = false
        sawInvariant = false
        return .product(of: ws.estimate)
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func resume(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> StepDemand<T> {
        info.products += 1
        switch phase {
        case .residual:
            return try residualArrived(input, ws, &info)
        case .iterate:
            return try iterate(input, ws, &info)
        }
    }

    /// y = A v for the pending v: r = b - y is its exact residual. Reports it, or starts
    /// the recurrence on r / ||r||.
    private func residualArrived(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo)
        throws(EstimatorError) -> StepDemand<T> {
        let target = tolerance * input.rhsNorm
        Kernels.subtract(input.rhs, ws.productOutput, into: r1, n)
        let rho = Kernels.norm(r1, n)
        guard rho.isFinite else { throw input.productFailure("the residual b - A v", n) }
        if startResidual < 0 { startResidual = rho }
        if rho <= target || rho == 0 {
            return finish(&info, residual: rho, kind: .exact, converged: true)
        }
        if iterations >= maxIterations {
            return finish(&info, residual: rho, kind: .exact, converged: false)
        }
        residualScale = rho
        Kernels.scale(r1, n, dividingBy: residualScale)
        beta = 1
        phibar = 1
        Kernels.copy(r1, to: r2, n)
        oldBeta = 0; dbar = 0; epsilon = 0; cs = -1; sn = 0
        cycleIterations = 0
        directionGrowth = 0
        gap = 0
        if iterations == 0 { estimateNorm = 0 }
        Kernels.fill(w, n, with: 0); Kernels.fill(w2, n, with: 0)
        Kernels.copy(r2, to: lanczosVector, n)
        phase = .iterate
        return .product(of: lanczosVector)
    }

    /// y = A v_k for the Lanczos vector: one MINRES iteration.
    private func iterate(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo)
        throws(EstimatorError) -> StepDemand<T> {
        let y = ws.productOutput
        let target = tolerance * input.rhsNorm
        let eps = Double(T.ulpOfOne)
        iterations += 1
        cycleIterations += 1
        // Lanczos: y <- A v - (beta / oldbeta) r1 - (alpha / beta) r2.
        if cycleIterations >= 2 { Kernels.axpy(-beta / oldBeta, r1, y, n) }
        let alpha = Kernels.dot(lanczosVector, y, n)
        guard alpha.isFinite else { throw input.productFailure("the Lanczos coefficient v^T A v", n) }
        if alpha < 0 { sawNegativeCurvature = true }
        Kernels.axpy(-alpha / beta, r2, y, n)
        swap(&r1, &r2)
        Kernels.copy(y, to: r2, n)
        oldBeta = beta
        beta = Kernels.norm(r2, n)
        guard beta.isFinite else { throw .nonFiniteResult("MINRES overflowed") }
        // ||A v_k||^2 = beta_k^2 + alpha_k^2 + beta_{k+1}^2 in exact arithmetic; in the first
        // iteration beta_k is ||r0|| (1 here), the scale of b rather than of A. The scale is
        // kept over the step: a vector in A's null space has ||A v|| ~ 0, and judged by its
        // own scale alone it would look like any other.
        let previousCoupling = cycleIterations >= 2 ? oldBeta : 0
        operatorScale = Swift.max(operatorScale, Double.hypot(Double.hypot(alpha, previousCoupling), beta))
        let threshold = Self.invarianceFactor * eps * operatorScale
        let invariant = !(beta > threshold)
        // Apply the previous rotation, then compute and apply the new one.
        let oldEpsilon = epsilon
        let delta = cs * dbar + sn * alpha
        let gbar = sn * dbar - cs * alpha
        epsilon = sn * beta
        dbar = -cs * beta
        let gamma = Double.hypot(gbar, beta)
        // gamma_k is the last diagonal entry of R in the QR factors of the (k+1) x k
        // Lanczos matrix, whose singular values are >= sigma_min(A): a gamma at rounding
        // level means A is singular to working precision on the Krylov space (and beta,
        // <= gamma, says the space is invariant). The new direction then holds nothing but
        // rounding, amplified by 1 / gamma: it is not taken, the residual stays the
        // least-squares minimum of the space explored, and the iteration stops. (MINRES-QLP
        // and scipy's Acond test stop on the same condition.)
        if !(gamma > 2 * threshold) {
            sawSingular = true
            sawInvariant = true
            return finishRecurrence(&info, converged: false)
        }
        cs = gbar / gamma
        sn = beta / gamma
        let phi = cs * phibar
        // w_new = (v - oldEpsilon w1 - delta w2) / gamma, after shifting (w1, w2) <- (w2, w).
        swap(&w1, &w2)  // w1 <- old w2
        swap(&w2, &w)   // w2 <- old w, w <- old w1 (overwritten next)
        let squares = Kernels.lanczosResidual(y: lanczosVector, q: w1, alpha: oldEpsilon, previous: w2, beta: delta,
                                              into: w, n)
        Kernels.scale(w, n, dividingBy: gamma)
        let stepGrowth = phi.magnitude * (squares.squareRoot() / gamma)
        // The product of the update phi w carries a rounding error of about
        // eps ||A|| |phi| ||w||. Where that reaches the residual, or exceeds what the update
        // gains, phibar (1 - sn), while moving v by more than its size, the update is noise:
        // the Lanczos process has lost its accuracy in the direction it explores, as when b
        // has a part outside A's range and the rest of the space is exhausted (w grows like
        // 1 / gamma, and v with it, along A's null space, where the residual cannot see
        // it). It is refused, and the iteration stops at the least-squares residual of the
        // space explored. (A plateau of indefinite A also gains little, but by a short step.)
        let cost = eps * operatorScale * stepGrowth
        let large = stepGrowth * residualScale > estimateNorm
        if !(4 * cost <= phibar) || (large && !(cost <= phibar * (1 - sn))) {
            sawSingular = true
            return finishRecurrence(&info, converged: false)
        }
        phibar = sn * phibar
        directionGrowth += stepGrowth
        let (finite, estimateSquares) = Kernels.update(ws.pending, times: 1, plus: phi * residualScale, times: w, n)
        guard finite else { throw .nonFiniteResult("MINRES overflowed") }

        let residual = phibar * residualScale
        estimateNorm = Kernels.norm(fromSumOfSquares: estimateSquares) ?? Kernels.norm(ws.pending, n)
        // The recurrence equals ||b - A v|| up to the rounding of r0, of the Lanczos
        // relation (eps ||A|| times the coefficients of v in the basis), of the search
        // directions (eps times their growth), and the loss of orthogonality of the basis,
        // which grows with the iterations: while it is above that bound it is honest.
        gap = eps * Double(cycleIterations)
            * (input.rhsNorm + operatorScale * (estimateNorm + residualScale * directionGrowth))
        if residual <= target {
            // A convergence the rounding could fake is checked: the truth decides.
            if residual > gap { return finishRecurrence(&info, converged: true) }
            phase = .residual
            return .product(of: ws.pending)
        }
        if invariant || iterations >= maxIterations {
            sawInvariant = sawInvariant || invariant
            return finishRecurrence(&info, converged: false)
        }
        Kernels.scaledCopy(r2, dividingBy: beta, into: lanczosVector, n)
        return .product(of: lanczosVector)
    }

    /// Reports the recurrence residual phibar ||r0||, flagged when it is not above the bound
    /// on its rounding.
    private func finishRecurrence(_ info: inout StepInfo, converged: Bool) -> StepDemand<T> {
        let residual = phibar * residualScale
        info.residualUncertain = !(residual > gap)
        return finish(&info, residual: residual, kind: .recurrence, converged: converged)
    }

    private func finish(_ info: inout StepInfo, residual: Double, kind: ResidualKind, converged: Bool) -> StepDemand<T> {
        info.iterations = iterations
        info.residual = residual
        info.residualKind = kind
        info.breakdown = sawInvariant && !converged
        // An invariant space with A nonsingular on it contains the solution: a breakdown
        // that left more than rounding of the start's residual met a b outside A's range
        // there, and the estimate is a least-squares solution, not an exact one.
        let exact = residual <= Double(T.ulpOfOne).squareRoot() * startResidual
        info.singularFallback = sawSingular || (info.breakdown && !exact)
        info.settleOutcome(budgetReached: !converged && !info.breakdown)
        // MINRES is built for indefinite A: report it, but it is no caveat on the result.
        info.indefinite = sawNegativeCurvature
        return .done
    }

    func commit(_ ws: StepWorkspace<T>) {}

    // Each step starts from the estimate: MINRES carries nothing else between steps.
    func save(to archive: inout StateWriter) {}
    func restore(from archive: inout StateReader) throws(EstimatorError) -> StateInstallation { {} }
}
