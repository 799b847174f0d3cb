/// Conjugate gradients on A v = b warm-started from the committed estimate (AmIGO-CG).
///
/// One product for the initial residual, then one per iteration, up to `maxIterations`;
/// stops early when ||r|| <= tolerance * ||b||. Meeting p^T A p <= 0 ends the solve with
/// the last iterate and the `indefinite` flag (use MINRES for indefinite A).
///
/// CG is invariant under scaling of the residual, so the recurrences run on r and p scaled
/// by sigma = 1 / ||r0||: their squared norms then stay near 1 whatever the magnitude of b
/// (1e-300 or 1e+300), where the unscaled r^T r would underflow or overflow.
final class ConjugateGradient<T: BinaryFloatingPoint>: StepMethod {
    typealias Options = (maxIterations: Int, tolerance: Double)
    static var name: String { "cg" }
    static var readsProductInPlace: Bool { true }

    static func validate(_ o: Options) throws(EstimatorError) {
        try OptionChecks.count(o.maxIterations, "max_iterations", atLeast: 0)
        try OptionChecks.tolerance(o.tolerance, "tolerance")
    }

    /// The residual and the search direction.
    static func storage(n: Int, options: Options) -> MethodStorage { MethodStorage(vectors: 2) }

    private var allocations = OwnedAllocations()
    let n: Int
    let maxIterations: Int
    let tolerance: Double
    private let residual: UnsafeMutablePointer<T>
    private let direction: UnsafeMutablePointer<T>
    /// ||sigma r||^2 with sigma = 1 / ||r0||.
    private var residualNormSquared = 0.0
    private var sigma = 1.0
    private var iterations = 0
    private var started = false

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
        started = false
        return .product(of: ws.estimate)
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func resume(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> StepDemand<T> {
        info.products += 1
        let ap = input.product
        if !started {
            started = true
            Kernels.subtract(input.rhs, ap, into: residual, n)
            let initialNorm = Kernels.norm(residual, n)
            guard initialNorm.isFinite else { throw input.productFailure("the initial residual b - A v", n) }
            if initialNorm == 0 {
                residualNormSquared = 0
                sigma = 1
                return finish(&info, converged: true)
            }
            // Capped: for a subnormal ||r0|| the reciprocal overflows; 2^1000 still brings the
            // scaled residual into the normal range.
            sigma = Swift.min(1 / initialNorm, 0x1p1000)
            Kernels.scale(residual, n, by: sigma)
            residualNormSquared = Kernels.dot(residual, residual, n)
        } else {
            // ap = A (sigma p): the step along sigma p is rr / (p^T A p) in scaled terms.
            let curvature = Kernels.dot(direction, ap, n)
            guard curvature.isFinite else { throw input.productFailure("p^T A p", n) }
            guard curvature > 0 else {
                info.indefinite = true
                return finish(&info, converged: false)
            }
            let step = residualNormSquared / curvature
            let estimateFinite = Kernels.update(ws.pending, times: 1, plus: step / sigma, times: direction, n).allFinite
            let previous = residualNormSquared
            residualNormSquared = Kernels.update(residual, times: 1, plus: -step, times: ap, n).sumOfSquares
            iterations += 1
            guard residualNormSquared.isFinite, estimateFinite else {
                throw .nonFiniteResult("conjugate gradients overflowed")
            }
            if !isConverged(input) && iterations < maxIterations {
                // p <- r + (rr_new / rr_old) p
                let ratio = residualNormSquared / previous
                guard Kernels.update(direction, times: ratio, plus: 1, times: residual, n).allFinite else {
                    throw .nonFiniteResult("the CG search direction overflowed")
                }
                return .product(of: direction)
            }
        }
        let converged = isConverged(input)
        if converged || iterations >= maxIterations {
            return finish(&info, converged: converged)
        }
        Kernels.copy(residual, to: direction, n)
        return .product(of: direction)
    }

    /// ||r|| <= tolerance ||b||, compared in scaled terms.
    private func isConverged(_ input: StepInput<T>) -> Bool {
        residualNormSquared.squareRoot() <= tolerance * input.rhsNorm * sigma
    }

    private func finish(_ info: inout StepInfo, converged: Bool) -> StepDemand<T> {
        info.iterations = iterations
        info.residual = residualNormSquared.squareRoot() / sigma
        info.residualKind = .recurrence
        info.settleOutcome(budgetReached: !converged)
        return .done
    }

    func commit(_ ws: StepWorkspace<T>) {}

    // Each step starts from the estimate: CG carries nothing else between steps.
    func save(to archive: inout StateWriter) {}
    func restore(from archive: inout StateReader) throws(EstimatorError) -> StateInstallation { {} }
}
