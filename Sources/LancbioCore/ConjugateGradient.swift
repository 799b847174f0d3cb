/// Conjugate gradients on A v = b warm-started from the committed estimate (AmIGO-CG).
///
/// One product for the initial residual, then one per iteration, up to `maxIterations`;
/// stops early when ||r|| <= tolerance * ||b||. Meeting p^T A p <= 0 ends the solve with
/// the last iterate and the `indefinite` flag (use MINRES for indefinite A).
///
/// CG is invariant under scaling of the residual, so the recurrences run on r and p scaled
/// by sigma = 1 / ||r0||: their squared norms then stay near 1 whatever the magnitude of b
/// (1e-300 or 1e+300), where the unscaled r^T r would underflow or overflow; and the
/// direction is stored scaled by a power of two near 1 / ||p||, so that p^T A p stays near
/// A's own scale as ||p|| shrinks with the residual.
///
/// The recurrence residual is compared with a bound on its rounding (docs/algorithms.md
/// section 5): below it, a convergence it claims is checked with one more product (and
/// denied, restarts the recurrence from the true residual), and any other residual it
/// reports is flagged `residualUncertain`.
final class ConjugateGradient<T: BinaryFloatingPoint>: StepMethod {
    typealias Options = (maxIterations: Int, tolerance: Double)
    static var name: String { "cg" }
    static var readsProductInPlace: Bool { true }

    static func validate(_ o: Options) throws(EstimatorError) {
        try OptionChecks.count(o.maxIterations, "max_iterations", atLeast: 0)
        try OptionChecks.tolerance(o.tolerance, "tolerance")
    }

    /// The recurrence's sums, at most three at a time.
    static func reductionValues(options: Options) -> Int? { 3 }

    /// The residual and the search direction.
    static func storage(n: Int, options: Options) -> MethodStorage { MethodStorage(vectors: 2) }

    private var allocations = OwnedAllocations()
    let n: Int
    let maxIterations: Int
    let tolerance: Double
    private let residual: UnsafeMutablePointer<T>
    /// d = tau p: the search direction p of the scaled recurrence times a power of two
    /// tau that keeps ||d|| near 1, so that d^T A d is A's Rayleigh quotient in size and
    /// does not underflow (A ~ 1e-300) or overflow with ||p|| (see `resume`). Powers of two
    /// scale exactly: the iterates are those of the unscaled recurrence, bit for bit.
    private let direction: UnsafeMutablePointer<T>
    private var tau = 1.0
    /// ||d||^2.
    private var directionSquares = 0.0
    /// ||sigma r||^2 with sigma = 1 / ||r0||.
    private var residualNormSquared = 0.0
    private var sigma = 1.0
    /// max d^T A d / d^T d over the directions: a lower estimate of ||A|| for the bound on
    /// the recurrence's rounding.
    private var operatorScale = 0.0
    /// sum_i ||step_i d_i|| since the recurrence (re)started, in units of sigma.
    private var updateGrowth = 0.0
    private var iterations = 0
    private var cycleIterations = 0
    /// What the next product is: A v of the pending estimate, whose residual is reported
    /// if it meets the tolerance or the budget is spent and (re)starts the recurrence
    /// otherwise; or A d.
    private enum Phase { case residual, iterate }
    private var phase = Phase.residual

    init(n: Int, options: Options) throws(EstimatorError) {
        self.n = n
        maxIterations = options.maxIterations
        tolerance = options.tolerance
        residual = try allocations.zeroed(n)
        direction = try allocations.zeroed(n)
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func begin(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> StepDemand<T> {
        Kernels.copy(ws.estimate, to: ws.pending, n)
        iterations = 0
        operatorScale = 0
        phase = .residual
        return .product(of: ws.estimate)
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func resume(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> StepDemand<T> {
        info.products += 1
        let ap = input.product
        if case .residual = phase { return try residualArrived(input, ws, &info) }
        // ap = A d: the step along p is rr / (p^T A p) in scaled terms, along d = tau p it
        // is tau rr / (d^T A d).
        let reduction = ws.reduction
        var curvature = Kernels.dot(direction, ap, n)
        if let reduction {
            // Across processes: p^T A p in one reduction, then ||r||^2 and ||v||^2 in another.
            reduction.values[0] = curvature
            try reduction.sum(1)
            curvature = reduction.values[0]
            guard curvature.isFinite else { throw try reduction.productFailure(input, "p^T A p", n) }
        }
        guard curvature.isFinite else { throw input.productFailure("p^T A p", n) }
        guard curvature > 0 else {
            info.indefinite = true
            info.residualUncertain = try !trusted(input, ws, nil)
            return finish(&info, converged: false)
        }
        operatorScale = Swift.max(operatorScale, curvature / directionSquares)
        let step = residualNormSquared * tau / curvature
        var (estimateFinite, estimateSquares) = Kernels.update(ws.pending, times: 1, plus: step / sigma,
                                                               times: direction, n)
        let previous = residualNormSquared
        residualNormSquared = Kernels.update(residual, times: 1, plus: -step, times: ap, n).sumOfSquares
        if let reduction {
            let values = reduction.values
            values[0] = Reduction.contribution(squares: residualNormSquared, of: residual, n)
            values[1] = estimateFinite ? Reduction.contribution(squares: estimateSquares, of: ws.pending, n) : 0
            values[2] = estimateFinite ? 0 : 1
            try reduction.sum(3)
            residualNormSquared = values[0]
            estimateSquares = values[1]
            estimateFinite = values[2] == 0
        }
        iterations += 1
        cycleIterations += 1
        guard residualNormSquared.isFinite, estimateFinite else {
            throw .nonFiniteResult("conjugate gradients overflowed")
        }
        updateGrowth += step.magnitude * directionSquares.squareRoot()
        if isConverged(input) {
            // A convergence the rounding could fake is checked: the truth decides.
            if try trusted(input, ws, estimateSquares) { return finish(&info, converged: true) }
            phase = .residual
            return .product(of: ws.pending)
        }
        if iterations >= maxIterations {
            info.residualUncertain = try !trusted(input, ws, estimateSquares)
            return finish(&info, converged: false)
        }
        // p <- r + (rr_new / rr_old) p, so d <- tau' (r + (ratio / tau) d) with tau' for
        // ||p_new||^2 = rr_new + ratio^2 ||p||^2 (r_new is orthogonal to p).
        let ratio = residualNormSquared / previous
        let directionNorm = Double.hypot(residualNormSquared.squareRoot(), ratio * directionSquares.squareRoot() / tau)
        let newTau = Self.powerOfTwo(reciprocalOf: directionNorm)
        let (directionFinite, squares) = Kernels.update(direction, times: newTau * ratio / tau, plus: newTau,
                                                        times: residual, n)
        if reduction != nil {
            // ||d||^2 from the recurrence, saving a reduction; an overflowed entry makes the
            // next p^T A p non-finite on every process, where they all stop.
            tau = newTau
            directionSquares = (newTau * directionNorm) * (newTau * directionNorm)
            return .product(of: direction)
        }
        guard directionFinite else { throw .nonFiniteResult("the CG search direction overflowed") }
        tau = newTau
        directionSquares = squares
        return .product(of: direction)
    }

    /// A v of the pending estimate arrived: r = b - A v is its exact residual. Reports it
    /// if it meets the tolerance or the budget is spent, or (re)starts the recurrence on
    /// sigma r.
    private func residualArrived(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo)
        throws(EstimatorError) -> StepDemand<T> {
        Kernels.subtract(input.rhs, input.product, into: residual, n)
        let initialNorm: Double
        if let reduction = ws.reduction {
            let (finite, squares) = Kernels.measure(residual, n)
            reduction.values[0] = finite ? Reduction.contribution(squares: squares, of: residual, n) : 0
            reduction.values[1] = finite ? 0 : 1
            try reduction.sum(2)
            guard reduction.values[1] == 0 else { throw try reduction.productFailure(input, "the residual b - A v", n) }
            initialNorm = try reduction.norm(squares: reduction.values[0], residual, n)
        } else {
            initialNorm = Kernels.norm(residual, n)
        }
        guard initialNorm.isFinite else { throw input.productFailure("the residual b - A v", n) }
        if initialNorm == 0 {
            residualNormSquared = 0
            sigma = 1
            return finish(&info, converged: true, kind: .exact)
        }
        // Capped: for a subnormal ||r0|| the reciprocal overflows; 2^1000 still brings the
        // scaled residual into the normal range.
        sigma = Swift.min(1 / initialNorm, 0x1p1000)
        Kernels.scale(residual, n, by: sigma)
        // Across processes ||sigma r||^2 follows from the reduced norm, saving a reduction.
        residualNormSquared = ws.reduction == nil ? Kernels.dot(residual, residual, n)
            : (initialNorm * sigma) * (initialNorm * sigma)
        let converged = isConverged(input)
        if converged || iterations >= maxIterations {
            return finish(&info, converged: converged, kind: .exact)
        }
        cycleIterations = 0
        updateGrowth = 0
        tau = 1
        directionSquares = residualNormSquared
        Kernels.copy(residual, to: direction, n)
        phase = .iterate
        return .product(of: direction)
    }

    /// Whether the recurrence residual is above the bound on its rounding: the updates of
    /// r and v each add about eps (||A|| ||step d|| + ||r||), which accumulate over the
    /// iterations (Greenbaum's analysis of the residual gap), plus eps ||b|| from r0.
    private func trusted(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ estimateSquares: Double?)
        throws(EstimatorError) -> Bool {
        let estimateNorm: Double
        if let reduction = ws.reduction {
            if let estimateSquares {
                estimateNorm = try reduction.norm(squares: estimateSquares, ws.pending, n)
            } else {
                estimateNorm = try reduction.norm(ws.pending, n)
            }
        } else {
            estimateNorm = estimateSquares.flatMap { Kernels.norm(fromSumOfSquares: $0) } ?? Kernels.norm(ws.pending, n)
        }
        let gap = Double(T.ulpOfOne) * Double(cycleIterations)
            * (input.rhsNorm + operatorScale * (estimateNorm + updateGrowth / sigma))
        return residualNormSquared.squareRoot() / sigma > gap
    }

    /// 2^-e for the exponent e of x, clamped to 2^+-1000 (1 for zero or non-finite x).
    private static func powerOfTwo(reciprocalOf x: Double) -> Double {
        guard x.isFinite, x > 0 else { return 1 }
        return Double(sign: .plus, exponent: Swift.max(-1000, Swift.min(1000, -Int(x.exponent))), significand: 1)
    }

    /// ||r|| <= tolerance ||b||, compared in scaled terms.
    private func isConverged(_ input: StepInput<T>) -> Bool {
        residualNormSquared.squareRoot() <= tolerance * input.rhsNorm * sigma
    }

    private func finish(_ info: inout StepInfo, converged: Bool, kind: ResidualKind = .recurrence) -> StepDemand<T> {
        info.iterations = iterations
        info.residual = residualNormSquared.squareRoot() / sigma
        info.residualKind = kind
        info.settleOutcome(budgetReached: !converged)
        return .done
    }

    func commit(_ ws: StepWorkspace<T>) {}

    // Each step starts from the estimate: CG carries nothing else between steps.
    func save(to archive: inout StateWriter) {}
    func restore(from archive: inout StateReader) throws(EstimatorError) -> StateInstallation { {} }
}
