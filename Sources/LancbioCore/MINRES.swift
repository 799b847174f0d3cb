import RealModule

/// MINRES (Paige and Saunders 1975) warm-started from the committed estimate: minimises
/// ||b - A v|| over the Krylov space of the initial residual, so it handles symmetric
/// indefinite (and, in the least-squares sense, singular) A, which non-convex lower-level
/// problems produce.
///
/// One product for the initial residual, then one per iteration, up to `maxIterations`;
/// stops when the recurrence residual phibar <= tolerance * ||b|| or the Krylov space is
/// invariant.
final class MINRES<T: BinaryFloatingPoint>: StepMethod {
    typealias Options = ConjugateGradient<T>.Options
    static var name: String { "minres" }
    /// The product's buffer becomes the next Lanczos vector.
    static var readsProductInPlace: Bool { false }
    static func validate(_ o: Options) throws(EstimatorError) { try ConjugateGradient<T>.validate(o) }

    /// r1, r2, the Lanczos vector and the three search directions.
    static func storage(n: Int, options: Options) -> MethodStorage { MethodStorage(vectors: 6) }

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
    private var started = false
    private var iterations = 0
    private var beta = 0.0, oldBeta = 0.0, dbar = 0.0, epsilon = 0.0, phibar = 0.0
    private var cs = -1.0, sn = 0.0
    /// ||r0||: the recurrences run on r0 / ||r0|| so their magnitudes stay near 1 whatever
    /// the scale of b (subnormal to huge); updates and residuals are scaled back by it.
    private var residualScale = 1.0
    private var sawNegativeCurvature = false
    private var sawSingular = false

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
        started = false
        iterations = 0
        sawNegativeCurvature = false
        sawSingular = false
        return .product(of: ws.estimate)
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func resume(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> StepDemand<T> {
        info.products += 1
        let y = ws.productOutput
        let target = tolerance * input.rhsNorm
        if !started {
            started = true
            Kernels.subtract(input.rhs, y, into: r1, n)
            beta = Kernels.norm(r1, n)
            guard beta.isFinite else { throw input.productFailure("the initial residual b - A v", n) }
            residualScale = beta == 0 ? 1 : beta
            phibar = 1
            if beta <= target || beta == 0 {
                phibar = beta == 0 ? 0 : 1
                return finish(&info, converged: true)
            }
            if maxIterations == 0 { return finish(&info, converged: false) }
            Kernels.scale(r1, n, dividingBy: residualScale)
            beta = 1
            Kernels.copy(r1, to: r2, n)
            oldBeta = 0; dbar = 0; epsilon = 0; cs = -1; sn = 0
            Kernels.fill(w, n, with: 0); Kernels.fill(w2, n, with: 0)
            Kernels.scaledCopy(r2, dividingBy: beta, into: lanczosVector, n)
            return .product(of: lanczosVector)
        }
        iterations += 1
        // Lanczos: y <- A v - (beta / oldbeta) r1 - (alpha / beta) r2.
        if iterations >= 2 { Kernels.axpy(-beta / oldBeta, r1, y, n) }
        let alpha = Kernels.dot(lanczosVector, y, n)
        guard alpha.isFinite else { throw input.productFailure("the Lanczos coefficient v^T A v", n) }
        if alpha < 0 { sawNegativeCurvature = true }
        Kernels.axpy(-alpha / beta, r2, y, n)
        swap(&r1, &r2)
        Kernels.copy(y, to: r2, n)
        oldBeta = beta
        beta = Kernels.norm(r2, n)
        guard beta.isFinite else { throw .nonFiniteResult("MINRES overflowed") }
        // Apply the previous rotation, then compute and apply the new one.
        let oldEpsilon = epsilon
        let delta = cs * dbar + sn * alpha
        let gbar = sn * dbar - cs * alpha
        epsilon = sn * beta
        dbar = -cs * beta
        var gamma = Double.hypot(gbar, beta)
        if gamma == 0 {
            sawSingular = true
            gamma = Double.ulpOfOne
        }
        cs = gbar / gamma
        sn = beta / gamma
        let phi = cs * phibar
        phibar = sn * phibar
        // w_new = (v - oldEpsilon w1 - delta w2) / gamma, after shifting (w1, w2) <- (w2, w).
        swap(&w1, &w2)  // w1 <- old w2
        swap(&w2, &w)   // w2 <- old w, w <- old w1 (overwritten next)
        for i in 0..<n {
            w[i] = T(Double(lanczosVector[i]) - oldEpsilon * Double(w1[i]) - delta * Double(w2[i]))
        }
        Kernels.scale(w, n, dividingBy: gamma)
        Kernels.axpy(phi * residualScale, w, ws.pending, n)
        guard Kernels.allFinite(ws.pending, n) else { throw .nonFiniteResult("MINRES overflowed") }

        // In iteration 1 oldBeta is ||r0||, the scale of b rather than of A: compare with
        // alpha alone then.
        let scaleOfA = iterations >= 2 ? Swift.max(alpha.magnitude, oldBeta) : alpha.magnitude
        let invariant = !(beta > 16 * Double(T.ulpOfOne) * scaleOfA)
        if phibar * residualScale <= target { return finish(&info, converged: true) }
        if invariant || iterations >= maxIterations {
            info.breakdown = invariant
            return finish(&info, converged: false)
        }
        Kernels.scaledCopy(r2, dividingBy: beta, into: lanczosVector, n)
        return .product(of: lanczosVector)
    }

    private func finish(_ info: inout StepInfo, converged: Bool) -> StepDemand<T> {
        info.iterations = iterations
        info.residual = phibar * residualScale
        info.residualKind = .recurrence
        info.singularFallback = sawSingular
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
