import RealModule

/// LancBiO's dynamic Lanczos estimator (docs/algorithms.md section 3) as a resumable step.
///
/// Each step performs one Lanczos step with the operator of that step, so the Krylov
/// basis is built across outer iterations while the operator drifts; every `period`
/// steps the basis restarts from the current estimate. Storage: the basis, n x (m_max + 1)
/// values of T, plus two n-vectors (the anchor and its product), all allocated at creation.
///
/// Atomicity: a step writes only to the basis column after the committed ones and to
/// scalars marked pending; `commit` publishes them. A restart step also overwrites the
/// first two basis columns and the anchor product in place: they belong to the cycle it
/// ends, and a restart that fails leaves the state that makes the next step restart again
/// (the schedule and `mustRestart` are unchanged), so nothing reads them before they are
/// rewritten.
final class DynamicLanczos<T: BinaryFloatingPoint>: StepMethod {
    static var name: String { "lanczos" }
    static var readsProductInPlace: Bool { true }
    static func validate(_ options: LanczosOptions) throws(EstimatorError) { try options.validate() }

    /// The basis (m_max + 1 columns), the anchor and its product; the coefficients (3 (m_max
    /// + 1) Doubles), the projected system ((m_max + 1)^2 + 8 (m_max + 1) Doubles: its
    /// least-squares fallback needs the full eigenvector matrix), and the passes' per-chunk
    /// sums and scratch.
    static func storage(n: Int, options: LanczosOptions) -> MethodStorage {
        let c = options.maxPeriod + 1   // validated: at most 4097
        return MethodStorage(vectors: c + 2,
                             bytes: 3 * c * MemoryLayout<Double>.stride + ProjectedSystem.storageBytes(capacity: c)
                                 + BasisPasses<T>.storageBytes(n: n, capacity: c))
    }

    /// The fused reduction sums ||q_{j+1}||^2, ||r||^2, Q^T r and Q^T q_{j+1}.
    static func reductionValues(options: LanczosOptions) -> Int? { 2 * (options.maxPeriod + 1) + 2 }

    private var allocations = OwnedAllocations()
    let n: Int
    let options: LanczosOptions
    /// The dimension of A across processes (n on one): a cycle ends there.
    private var totalDimension: Int

    // Committed state.
    /// Column-major n x (m_max + 1): q_1 ... q_j, then the pending q_{j+1}.
    private let basis: UnsafeMutablePointer<T>
    /// alpha_1 ... alpha_j.
    private let alpha: UnsafeMutablePointer<Double>
    /// beta_1 ... beta_j; beta_i couples q_i and q_{i+1}.
    private let beta: UnsafeMutablePointer<Double>
    /// The anchor vbar of the residual variant, and w = A vbar from its restart.
    private let anchor: UnsafeMutablePointer<T>
    private let anchorProduct: UnsafeMutablePointer<T>
    /// j: Lanczos steps in the current cycle.
    private(set) var dimension = 0
    /// m: the restart period in force.
    private(set) var period: Int
    /// k: steps taken since creation or reset.
    private(set) var steps = 0
    private(set) var restarts = 0
    /// Set at creation, after a breakdown or a zero residual, and when the caller replaces
    /// the estimate: the next step restarts whatever the schedule says.
    private var mustRestart = true
    /// Ritz values of the committed T_j: bounds for the next step's, which extends it.
    private var committedRitz: (min: Double, max: Double)? = nil
    private var pendingRitz = (min: 0.0, max: 0.0)
    /// The largest ||A q|| (and, at a residual-variant restart, ||A vbar|| / ||vbar||)
    /// seen in the current cycle and in the one before: lower estimates of ||A||, the scale
    /// of the breakdown and singularity tests. A basis vector in A's (near) null space has
    /// ||A q|| at rounding level, and judged by its own scale it would look like any other.
    private var cycleScale = 0.0
    private var priorCycleScale = 0.0
    private var pendingCycleScale = 0.0
    /// ||vbar|| of the cycle (0 for the plain variant), which a drift of A acts on.
    private var anchorNorm = 0.0
    private var pendingAnchorNorm = 0.0

    // Scratch written only by a step in progress.
    private let projected: ProjectedSystem
    private let reorthogonalization: UnsafeMutablePointer<Double>
    private let passes: BasisPasses<T>

    private enum Phase { case idle, anchorProduct, basisProduct, residualProduct, done }
    private var phase = Phase.idle
    private var pendingPeriod = 0
    private var pendingRestart = false
    private var pendingZeroResidual = false
    /// ||r0|| (or ||b|| for the plain variant) of a pending restart: T's first right-hand side.
    private var pendingStartNorm = 0.0
    private var pendingAlpha = 0.0
    private var pendingBeta = 0.0
    private var pendingBreakdown = false
    private var pendingOrthogonalityLoss = false

    init(n: Int, options: LanczosOptions) throws(EstimatorError) {
        self.n = n
        self.options = options
        totalDimension = n
        period = options.initialPeriod
        let columns = options.maxPeriod + 1
        // The estimator checked that n * columns values fit the address space.
        basis = try allocations.zeroed(n * columns)
        alpha = try allocations.zeroed(columns)
        beta = try allocations.zeroed(columns)
        anchor = try allocations.zeroed(n)
        anchorProduct = try allocations.zeroed(n)
        projected = try ProjectedSystem(capacity: columns)
        reorthogonalization = try allocations.zeroed(columns)
        passes = try BasisPasses(n: n, capacity: columns)
    }

    var progress: MethodProgress { MethodProgress(dimension: dimension, period: period, restarts: restarts) }

    /// Only a plain restart needs ||b|| before its first reduction (q_1 = b / ||b||); the
    /// residual variant's anchor reduction and every other step's alpha carry b's check.
    var defersRhsCheck: Bool {
        schedule(steps: steps, period: period, dimension: dimension, mustRestart: mustRestart).restart == false
            || options.variant == .residual
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func begin(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> StepDemand<T> {
        let (m, restart) = schedule(steps: steps, period: period, dimension: dimension, mustRestart: mustRestart)
        pendingPeriod = m
        pendingRestart = restart
        pendingZeroResidual = false
        pendingOrthogonalityLoss = false
        info.period = m
        info.restarted = pendingRestart
        guard pendingRestart else {
            phase = .basisProduct
            return .product(of: basis + dimension * n)
        }
        switch options.variant {
        case .residual:
            phase = .anchorProduct
            return .product(of: ws.estimate)
        case .plain:
            guard input.rhsNorm > 0 else {
                finishWithoutBasis(ws, &info, estimate: nil)
                return .done
            }
            pendingStartNorm = input.rhsNorm
            Kernels.scaledCopy(input.rhs, dividingBy: input.rhsNorm, into: basis, n)
            phase = .basisProduct
            return .product(of: basis)
        }
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func resume(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> StepDemand<T> {
        info.products += 1
        switch phase {
        case .anchorProduct:
            return try anchorProductArrived(input, ws, &info)
        case .basisProduct:
            return try basisProductArrived(input, ws, &info)
        case .residualProduct:
            // A v_{k+1} for `exactResidual`: the residual of the estimate itself.
            let residual: Double
            if let reduction = ws.reduction {
                let local = Kernels.distance(input.product, input.rhs, n)
                reduction.values[0] = Reduction.contribution(localNorm: local)
                try reduction.sum(1)
                residual = try reduction.norm(squares: reduction.values[0], localNorm: local)
                guard residual.isFinite else { throw try reduction.productFailure(input, "the residual check A v", n) }
            } else {
                residual = Kernels.distance(input.product, input.rhs, n)
            }
            guard residual.isFinite else { throw input.productFailure("the residual check A v", n) }
            info.residual = residual
            info.residualKind = .exact
            info.residualUncertain = false
            phase = .done
            return .done
        case .idle, .done:
            throw .invalidState("no product was requested")
        }
    }

    /// The period and whether the step after `steps` steps restarts (docs/algorithms.md
    /// section 3.4), from the committed position.
    @inline(__always)
    private func schedule(steps: Int, period: Int, dimension: Int, mustRestart: Bool) -> (period: Int, restart: Bool) {
        let k = steps + 1
        var m = period
        if k > 1 && (k - 1) % options.growEvery == 0 {
            m = min(Int((Double(m) * options.growth).rounded(.up)), options.maxPeriod)
        }
        // A Krylov space of A (n x n) has at most n dimensions: past that, without
        // re-orthogonalisation, the basis only gathers rounding errors. Cycles end at n.
        return (m, mustRestart || dimension >= min(m, totalDimension))
    }

    /// w' = A v_k arrived: form r0 = b - w' and the first basis vector.
    private func anchorProductArrived(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo)
        throws(EstimatorError) -> StepDemand<T> {
        let (productFinite, productSquares) = Kernels.copyMeasuring(input.product, into: anchorProduct, n)
        let productNorm: Double, rho: Double, rhsNorm: Double
        if let reduction = ws.reduction {
            // ||A v||, ||v|| and ||b - A v|| in one reduction, with the product's finiteness.
            Kernels.subtract(input.rhs, anchorProduct, into: basis, n)
            let values = reduction.values
            values[0] = productFinite ? Reduction.contribution(squares: productSquares, of: anchorProduct, n) : 0
            values[1] = productFinite ? 0 : 1
            values[2] = Reduction.contribution(squares: Kernels.measure(ws.estimate, n).sumOfSquares, of: ws.estimate, n)
            values[3] = productFinite ? Reduction.contribution(squares: Kernels.measure(basis, n).sumOfSquares, of: basis, n) : 0
            try reduction.sum(4)
            guard values[1] == 0 else {
                throw .nonFiniteProduct("the operator returned NaN or infinity (the anchor product A v, on some process)")
            }
            let (product, estimate, residual) = (values[0], values[2], values[3])
            productNorm = try reduction.norm(squares: product, anchorProduct, n)
            guard productNorm.isFinite else { throw .nonFiniteProduct("the anchor product A v overflowed") }
            pendingAnchorNorm = try reduction.norm(squares: estimate, ws.estimate, n)
            rho = try reduction.norm(squares: residual, basis, n)
            rhsNorm = try reduction.rhsNorm() ?? input.rhsNorm  // b's check rode on this reduction
        } else {
            guard productFinite else { throw input.productFailure("the anchor product A v", n) }
            productNorm = Kernels.norm(fromSumOfSquares: productSquares) ?? Kernels.norm(anchorProduct, n)
            guard productNorm.isFinite else { throw input.productFailure("the anchor product A v", n) }
            pendingAnchorNorm = Kernels.norm(ws.estimate, n)
            Kernels.subtract(input.rhs, anchorProduct, into: basis, n)
            rho = Kernels.norm(basis, n)
            rhsNorm = input.rhsNorm
        }
        pendingCycleScale = pendingAnchorNorm > 0 ? productNorm / pendingAnchorNorm : 0
        guard rho.isFinite else { throw .nonFiniteResult("b - A v overflowed") }
        // b == A v to working precision: v already solves this system.
        if rho <= Double(T.ulpOfOne) * (rhsNorm + productNorm) {
            finishWithoutBasis(ws, &info, estimate: ws.estimate)
            return .done
        }
        pendingStartNorm = rho
        Kernels.scale(basis, n, dividingBy: rho)
        phase = .basisProduct
        return .product(of: basis)
    }

    /// The operator scale of this cycle with the step's coefficients, and whether the new
    /// vector's norm beta is a breakdown against it: an invariant subspace, A q_j lying (to
    /// working precision) in the span of the basis. ||A q_j||^2 = alpha^2 + beta_{j-1}^2 +
    /// beta_j^2 in exact arithmetic; the scale is the largest such norm of this cycle and
    /// the last (see `cycleScale`). One decision for the local and the sliced step.
    @inline(__always)
    private func noteScale(alpha a: Double, betaPrevious: Double, beta b: Double) -> (scale: Double, breakdown: Bool) {
        if pendingRestart {
            if options.variant == .plain { pendingCycleScale = 0; pendingAnchorNorm = 0 }
        } else {
            pendingCycleScale = cycleScale
        }
        pendingCycleScale = max(pendingCycleScale, Double.hypot(Double.hypot(a, betaPrevious), b))
        let scale = max(pendingCycleScale, pendingRestart ? cycleScale : priorCycleScale)
        return (scale, !(b > 16 * Double(T.ulpOfOne) * scale))
    }

    /// A q_j arrived: one Lanczos step, the projected solve, and the estimate.
    private func basisProductArrived(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo)
        throws(EstimatorError) -> StepDemand<T> {
        if let reduction = ws.reduction { return try basisProductArrived(input, ws, &info, across: reduction) }
        let y = input.product
        let column = pendingRestart ? 0 : dimension
        let q = UnsafePointer(basis + column * n)
        let previous: UnsafePointer<T>? = column > 0 ? UnsafePointer(basis + (column - 1) * n) : nil
        let betaPrevious = column > 0 ? beta[column - 1] : 0
        let next = basis + (column + 1) * n

        let a = passes.lanczosCoefficient(q: q, y: y, previous: previous, beta: betaPrevious)
        // Any NaN or infinity in y makes alpha non-finite (inf * 0 and inf - inf are NaN).
        guard a.isFinite else { throw input.productFailure("the Lanczos coefficient q^T A q", n) }
        let squares = passes.lanczosResidual(y: y, q: q, alpha: a, previous: previous, beta: betaPrevious,
                                             into: next)
        let b: Double
        if options.reorthogonalize {
            reorthogonalize(next, column: column, q: q)
            b = Kernels.norm(next, n)
        } else {
            b = Kernels.norm(fromSumOfSquares: squares) ?? Kernels.norm(next, n)
        }
        guard b.isFinite else { throw .nonFiniteResult("the Lanczos vector A q - alpha q - beta p overflowed") }
        let (scale, breakdown) = noteScale(alpha: a, betaPrevious: betaPrevious, beta: b)
        // The orthogonality check measures Q^T q_{j+1} in the projection's pass over the
        // basis, which also normalises q_{j+1} block by block: no pass of its own.
        let checkOrthogonality = !pendingRestart && !breakdown && !options.reorthogonalize
            && options.orthogonalityTolerance.isFinite
        let reciprocal = 1 / b
        let normaliseInPass = checkOrthogonality && reciprocal.isFinite
        if !breakdown && !checkOrthogonality { Kernels.scale(next, n, dividingBy: b) }

        let j = column + 1
        let d = projected.diagonal, e = projected.offDiagonal, s = projected.solution
        if column > 0 {
            d.update(from: alpha, count: column)
            e.update(from: beta, count: column)
        }
        d[column] = a
        let anchorBase: UnsafePointer<T>? = options.variant == .residual
            ? UnsafePointer(pendingRestart ? ws.estimate : anchor) : nil
        // ||r||^2 of this step's r = b - w (b for the plain variant): with ||Q^T r||, the part
        // of r outside the basis, which the estimate leaves out.
        var rhsSquares = 0.0
        if pendingRestart {
            s[0] = pendingStartNorm
        } else {
            // r = b - w (residual variant) or b, formed block by block inside the pass.
            let w: UnsafePointer<T>? = options.variant == .residual ? UnsafePointer(anchorProduct) : nil
            if checkOrthogonality {
                rhsSquares = passes.project(basis, columns: j, rhs: input.rhs, minus: w, coefficients: s,
                                            and: next, scalingBy: normaliseInPass ? reciprocal : 1,
                                            zCoefficients: reorthogonalization)
                if !normaliseInPass {
                    // 1 / b overflows (b subnormal): the products were taken against the
                    // unnormalised vector, so scale them and it by division instead.
                    Kernels.scale(next, n, dividingBy: b)
                    for i in 0..<j { reorthogonalization[i] /= b }
                }
                var loss = 0.0
                for i in 0..<j { loss = max(loss, reorthogonalization[i].magnitude) }
                info.orthogonalityLoss = loss
                pendingOrthogonalityLoss = !(loss <= options.orthogonalityTolerance)
                info.orthogonalityRestart = pendingOrthogonalityLoss
            } else {
                rhsSquares = passes.project(basis, columns: j, rhs: input.rhs, minus: w, coefficients: s,
                                            and: nil, scalingBy: 1, zCoefficients: reorthogonalization)
            }
        }
        return try finishStep(input, ws, &info, column: column, alpha: a, beta: b, breakdown: breakdown, scale: scale,
                              checkedOrthogonality: checkOrthogonality, rhsSquares: rhsSquares, anchorBase: anchorBase)
    }

    /// The Lanczos step on slices across processes: the same step as `basisProductArrived`
    /// with its sums reduced, alpha in one reduction, then ||q_{j+1}||^2, ||r||^2, Q^T r
    /// and Q^T q_{j+1} (of the unnormalised q_{j+1}, divided by beta afterwards) in a
    /// second; with `reorthogonalize`, its two projections add one each. Every branch is
    /// taken on reduced values.
    private func basisProductArrived(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo,
                                     across reduction: Reduction) throws(EstimatorError) -> StepDemand<T> {
        let y = input.product
        let column = pendingRestart ? 0 : dimension
        let q = UnsafePointer(basis + column * n)
        let previous: UnsafePointer<T>? = column > 0 ? UnsafePointer(basis + (column - 1) * n) : nil
        let betaPrevious = column > 0 ? beta[column - 1] : 0
        let next = basis + (column + 1) * n
        let values = reduction.values

        values[0] = passes.lanczosCoefficient(q: q, y: y, previous: previous, beta: betaPrevious)
        try reduction.sum(1)
        let a = values[0]
        guard a.isFinite else { throw try reduction.productFailure(input, "the Lanczos coefficient q^T A q", n) }
        var squares = passes.lanczosResidual(y: y, q: q, alpha: a, previous: previous, beta: betaPrevious, into: next)
        if options.reorthogonalize {
            try reorthogonalize(next, column: column, q: q, across: reduction)
            squares = Kernels.measure(next, n).sumOfSquares
        }
        let j = column + 1
        let s = projected.solution
        let measureOrthogonality = !pendingRestart && !options.reorthogonalize && options.orthogonalityTolerance.isFinite
        let w: UnsafePointer<T>? = options.variant == .residual ? UnsafePointer(anchorProduct) : nil
        values[0] = Reduction.contribution(squares: squares, of: next, n)
        var count = 1
        if !pendingRestart {
            values[1] = passes.project(basis, columns: j, rhs: input.rhs, minus: w, coefficients: s,
                                       and: measureOrthogonality ? next : nil, scalingBy: 1,
                                       zCoefficients: reorthogonalization)
            (values + 2).update(from: s, count: j)
            if measureOrthogonality { (values + 2 + j).update(from: reorthogonalization, count: j) }
            count = measureOrthogonality ? 2 + 2 * j : 2 + j
        }
        try reduction.sum(count)
        let rhsSquares = pendingRestart ? 0 : values[1]
        if !pendingRestart {
            s.update(from: values + 2, count: j)
            if measureOrthogonality { reorthogonalization.update(from: values + 2 + j, count: j) }
        }
        let b = try reduction.norm(squares: values[0], next, n)
        guard b.isFinite else { throw .nonFiniteResult("the Lanczos vector A q - alpha q - beta p overflowed") }
        let (scale, breakdown) = noteScale(alpha: a, betaPrevious: betaPrevious, beta: b)
        let checkOrthogonality = measureOrthogonality && !breakdown
        if !breakdown { Kernels.scale(next, n, dividingBy: b) }
        if checkOrthogonality {
            var loss = 0.0
            for i in 0..<j {
                reorthogonalization[i] /= b
                loss = max(loss, reorthogonalization[i].magnitude)
            }
            info.orthogonalityLoss = loss
            pendingOrthogonalityLoss = !(loss <= options.orthogonalityTolerance)
            info.orthogonalityRestart = pendingOrthogonalityLoss
        }
        let d = projected.diagonal, e = projected.offDiagonal
        if column > 0 {
            d.update(from: alpha, count: column)
            e.update(from: beta, count: column)
        }
        d[column] = a
        if pendingRestart { s[0] = pendingStartNorm }
        let anchorBase: UnsafePointer<T>? = options.variant == .residual
            ? UnsafePointer(pendingRestart ? ws.estimate : anchor) : nil
        return try finishStep(input, ws, &info, column: column, alpha: a, beta: b, breakdown: breakdown, scale: scale,
                              checkedOrthogonality: checkOrthogonality, rhsSquares: rhsSquares, anchorBase: anchorBase)
    }

    /// The projected solve, the estimate and the step's info, once T_j's last column and
    /// its right-hand side (in `projected`) are known.
    private func finishStep(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo, column: Int,
                            alpha a: Double, beta b: Double, breakdown: Bool, scale: Double,
                            checkedOrthogonality checkOrthogonality: Bool, rhsSquares: Double,
                            anchorBase: UnsafePointer<T>?) throws(EstimatorError) -> StepDemand<T> {
        let j = column + 1
        let s = projected.solution
        var projectionSquares = 0.0
        for i in 0..<j { projectionSquares += s[i] * s[i] }
        // T's entries hold to about eps ||A|| of the storage: an eigenvalue below the
        // breakdown threshold is rounding (see `ProjectedSystem.solve`).
        let report = projected.solve(dimension: j, ritzBounds: pendingRestart ? nil : committedRitz,
                                     singularityFloor: 16 * Double(T.ulpOfOne) * scale)
        pendingRitz = (report.ritzMin, report.ritzMax)
        guard report.solved else {
            throw .nonFiniteResult("the projected tridiagonal system could not be solved")
        }
        if ws.reduction != nil {
            // The basis columns have unit norm over all processes, so no entry of v = vbar +
            // Q s exceeds ||vbar|| + sum |s_i| on any process: that bound, from reduced
            // values, decides an overflow for all of them.
            var bound = pendingRestart ? pendingAnchorNorm : anchorNorm
            for i in 0..<j { bound += s[i].magnitude }
            guard bound < Double(T.greatestFiniteMagnitude) / 4 else {
                throw .nonFiniteResult("the Lanczos estimate may overflow")
            }
        }
        let finite = passes.combine(basis, columns: j, coefficients: s, base: anchorBase, into: ws.pending)
        guard finite else { throw .nonFiniteResult("the Lanczos estimate overflowed") }

        pendingAlpha = a
        pendingBeta = breakdown ? 0 : b
        pendingBreakdown = breakdown
        info.iterations = 1
        info.dimension = j
        // beta_j |e_j^T s| is the residual of the Galerkin solution T s = c; a least-squares
        // s leaves T s - c besides, orthogonal to it.
        let estimate = Double.hypot((breakdown ? 0 : b) * s[j - 1].magnitude, report.leastSquaresResidual)
        info.residual = estimate
        info.residualKind = .estimate
        // The Lanczos relation and the anchor product hold to about eps ||A|| each, which the
        // coefficients of v = vbar + Q s multiply: an estimate below that is rounding.
        let anchorNormInUse = pendingRestart ? pendingAnchorNorm : anchorNorm
        let rounding = Double(T.ulpOfOne) * scale * (Kernels.norm(s, j) + anchorNormInUse)
        info.residualUncertain = !(estimate > rounding)
        if !pendingRestart && !info.residualUncertain {
            info.residualUncertain = estimateIsUncertain(estimate, rhsSquares: rhsSquares,
                                                          projectionSquares: projectionSquares, dimension: j,
                                                          loss: checkOrthogonality ? info.orthogonalityLoss : nil,
                                                          drift: checkOrthogonality
                                                              ? b * reorthogonalization[column - 1].magnitude : nil)
        }
        info.ritzMin = report.ritzMin
        info.ritzMax = report.ritzMax
        info.breakdown = breakdown
        info.indefinite = report.indefinite
        info.singularFallback = report.singular
        info.settleOutcome()
        if options.exactResidual {
            phase = .residualProduct
            return .product(of: ws.pending)
        }
        phase = .done
        return .done
    }

    /// Whether the cheap checks find a part of the residual larger than the estimate
    /// beta_j |e_j^T s| (docs/algorithms.md section 3.6):
    /// - r outside the basis, sqrt(||r||^2 - ||Q^T r||^2) (b moved since the restart):
    ///   above twice the estimate and above what the loss of orthogonality makes of that
    ///   difference, sqrt(j max(loss, eps)) ||r||;
    /// - the non-orthogonality of the basis, j loss ||r||, above the estimate (when the
    ///   loss was measured);
    /// - the drift of A acting on the anchor, (A_k - A_restart) vbar, which no product of
    ///   this step sees: `drift` = beta_j |q_{j-1}^T q_{j+1}| = |q_{j-1}^T (A_k - A_{k-1}) q_j|
    ///   samples the drift of one step (for a fixed A the three-term recurrence keeps that
    ///   product at rounding level, unlike the loss against older vectors, which also grows
    ///   as Ritz values converge), so j drift ||vbar|| above the estimate.
    private func estimateIsUncertain(_ estimate: Double, rhsSquares: Double, projectionSquares: Double,
                                     dimension j: Int, loss: Double?, drift: Double?) -> Bool {
        guard rhsSquares.isFinite, projectionSquares.isFinite else { return false }
        let rhsNorm = rhsSquares.squareRoot()
        let outside = max(rhsSquares - projectionSquares, 0).squareRoot()
        let floor = (Double(j) * max(loss ?? 0, Double(T.ulpOfOne))).squareRoot() * rhsNorm
        if outside > 2 * estimate && outside > floor { return true }
        guard let loss, let drift else { return false }
        return Double(j) * loss * rhsNorm > estimate || Double(j) * drift * anchorNorm > estimate
    }

    /// Re-orthogonalise `next` against q_1 ... q_j (classical Gram-Schmidt, twice).
    private func reorthogonalize(_ next: UnsafeMutablePointer<T>, column: Int, q: UnsafePointer<T>) {
        for _ in 0..<2 {
            if pendingRestart {
                let c = Kernels.dot(q, UnsafePointer(next), n)
                Kernels.axpy(-c, q, next, n)
            } else {
                passes.project(basis, columns: column + 1, rhs: UnsafePointer(next), minus: nil,
                               coefficients: reorthogonalization, and: nil, scalingBy: 1,
                               zCoefficients: reorthogonalization)
                for i in 0...column { reorthogonalization[i] = -reorthogonalization[i] }
                _ = passes.combine(basis, columns: column + 1, coefficients: reorthogonalization,
                                   base: UnsafePointer(next), into: next)
            }
        }
    }

    /// `reorthogonalize` with each projection reduced (one reduction per pass).
    private func reorthogonalize(_ next: UnsafeMutablePointer<T>, column: Int, q: UnsafePointer<T>,
                                 across reduction: Reduction) throws(EstimatorError) {
        let values = reduction.values
        for _ in 0..<2 {
            if pendingRestart {
                values[0] = Kernels.dot(q, UnsafePointer(next), n)
                try reduction.sum(1)
                Kernels.axpy(-values[0], q, next, n)
            } else {
                passes.project(basis, columns: column + 1, rhs: UnsafePointer(next), minus: nil,
                               coefficients: values, and: nil, scalingBy: 1, zCoefficients: reorthogonalization)
                try reduction.sum(column + 1)
                for i in 0...column { reorthogonalization[i] = -values[i] }
                _ = passes.combine(basis, columns: column + 1, coefficients: reorthogonalization,
                                   base: UnsafePointer(next), into: next)
            }
        }
    }

    /// The restart found nothing to solve: the estimate stays (residual variant) or is
    /// zero (plain variant with b == 0); no basis vector is created.
    private func finishWithoutBasis(_ ws: StepWorkspace<T>, _ info: inout StepInfo, estimate: UnsafeMutablePointer<T>?) {
        if let estimate { Kernels.copy(estimate, to: ws.pending, n) } else { Kernels.fill(ws.pending, n, with: 0) }
        pendingZeroResidual = true
        info.zeroResidual = true
        info.dimension = 0
        info.residual = 0
        info.residualKind = .exact
        info.settleOutcome()
        phase = .done
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func commit(_ ws: StepWorkspace<T>) {
        steps += 1
        period = pendingPeriod
        phase = .idle
        if pendingRestart { restarts += 1 }
        if pendingZeroResidual {
            dimension = 0
            mustRestart = true
            committedRitz = nil
            return
        }
        if pendingRestart {
            if options.variant == .residual { Kernels.copy(ws.estimate, to: anchor, n) }
            dimension = 1
            priorCycleScale = cycleScale
            anchorNorm = pendingAnchorNorm
        } else {
            dimension += 1
        }
        cycleScale = pendingCycleScale
        alpha[dimension - 1] = pendingAlpha
        beta[dimension - 1] = pendingBeta
        mustRestart = pendingBreakdown || pendingOrthogonalityLoss
        committedRitz = pendingRitz
    }

    func abandon() { phase = .idle }

    func reset() {
        committedRitz = nil
        cycleScale = 0
        priorCycleScale = 0
        anchorNorm = 0
        dimension = 0
        period = options.initialPeriod
        steps = 0
        restarts = 0
        mustRestart = true
        phase = .idle
    }

    func estimateReplaced() { mustRestart = true }

    func dimensionChanged(total: Int) { totalDimension = total }

    /// The schedule's position and the cycle's operator scale; then, unless the next step
    /// restarts (and so reads none of it), the cycle: the previous cycle's scale and ||vbar||,
    /// alpha, beta and the Ritz bounds of T_j, q_1 ... q_{j+1}, and for the
    /// residual variant the anchor and its product. A checkpoint taken when the next step
    /// restarts carries no vector beyond the estimate.
    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func save(to archive: inout StateWriter) {
        archive.integer(steps)
        archive.integer(period)
        archive.integer(dimension)
        archive.integer(restarts)
        archive.flag(mustRestart)
        // The scale of the cycle is the floor of the next one's breakdown test.
        archive.real(cycleScale)
        guard !schedule(steps: steps, period: period, dimension: dimension, mustRestart: mustRestart).restart else { return }
        archive.real(priorCycleScale)
        archive.real(anchorNorm)
        archive.reals(alpha, count: dimension)
        archive.reals(beta, count: dimension)
        archive.flag(committedRitz != nil)
        archive.real(committedRitz?.min ?? 0)
        archive.real(committedRitz?.max ?? 0)
        archive.vector(basis, count: n * (dimension + 1))
        if options.variant == .residual {
            archive.vector(anchor, count: n)
            archive.vector(anchorProduct, count: n)
        }
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func restore(from archive: inout StateReader) throws(EstimatorError) -> StateInstallation {
        let steps = try archive.count("the Lanczos step count")
        let period = try archive.integer("the period", in: options.initialPeriod...options.maxPeriod)
        let dimension = try archive.integer("the subspace dimension", in: 0...min(options.maxPeriod, totalDimension))
        let restarts = try archive.integer("the restart count", in: 0...steps)
        let mustRestart = try archive.flag("the restart flag")
        let scale = try archive.real("the cycle's operator scale")
        guard scale >= 0 else { throw .invalidCheckpoint("the cycle's operator scale is negative") }
        // Dimension 0 (before the first step, after a zero residual) always comes with the
        // flag: a step without a restart would extend a cycle that does not exist.
        guard dimension > 0 || mustRestart else {
            throw .invalidCheckpoint("the Lanczos state has no cycle but does not restart")
        }
        let position = { [self] in
            self.steps = steps
            self.period = period
            self.dimension = dimension
            self.restarts = restarts
            self.mustRestart = mustRestart
            cycleScale = scale
            priorCycleScale = 0
            anchorNorm = 0
            committedRitz = nil
            phase = .idle
        }
        guard !schedule(steps: steps, period: period, dimension: dimension, mustRestart: mustRestart).restart else {
            return position
        }
        let priorScale = try archive.real("the previous cycle's operator scale")
        let vbarNorm = try archive.real("||vbar||")
        guard priorScale >= 0, vbarNorm >= 0 else {
            throw .invalidCheckpoint("an operator scale or ||vbar|| is negative")
        }
        let alphas = try archive.vector(Double.self, count: dimension, "alpha")
        let betas = try archive.vector(Double.self, count: dimension, "beta")
        let hasRitz = try archive.flag("the Ritz bounds flag")
        let ritz = (min: try archive.real("the lower Ritz bound"), max: try archive.real("the upper Ritz bound"))
        let columns = try archive.vector(T.self, count: n * (dimension + 1), "the Lanczos basis")
        let anchors = options.variant == .residual
            ? (try archive.vector(T.self, count: n, "the anchor"), try archive.vector(T.self, count: n, "the anchor product"))
            : nil
        return { [self] in
            position()
            priorCycleScale = priorScale
            anchorNorm = vbarNorm
            StateReader.install(alphas, into: alpha, count: dimension)
            StateReader.install(betas, into: beta, count: dimension)
            committedRitz = hasRitz ? ritz : nil
            StateReader.install(columns, into: basis, count: n * (dimension + 1))
            if let (vbar, w) = anchors {
                StateReader.install(vbar, into: anchor, count: n)
                StateReader.install(w, into: anchorProduct, count: n)
            }
        }
    }
}
