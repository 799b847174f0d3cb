/// A one-shot solve of A x = b for a fixed symmetric A given by products, run to a
/// tolerance, and the answer checked with one more product.
///
/// - Lanczos: the short-recurrence (D-Lanczos) form of the Lanczos solution
///   (`LanczosRecurrenceSolve`): O(n) memory and one product per step, CG's algebra.
///   When its estimate meets the tolerance (or the run ends: an invariant space, a zero
///   pivot) the true residual is computed with one product; if the check fails, the
///   recurrence restarts from the current x on that residual, which costs nothing more,
///   until the products reach maxIterations. With `reorthogonalize` the basis is needed:
///   dynamic Lanczos with one fixed period m = min(maxIterations, n, m_max limit), checked
///   the same way. Either way the answer is the checked iterate with the smallest true
///   residual, or x0 = 0 itself when nothing beat ||b|| (on an ill-conditioned operator a
///   Galerkin iterate can be far worse than the start: CG's residual is not monotone).
/// - CG, MINRES: one step of maxIterations iterations at most, stopping at the tolerance.
/// - Gradient steps and the Neumann series: maxIterations steps or terms (the Neumann
///   series starts from zero, so x0 must be zero).
/// Every method ends with the true residual ||A x - b|| from one product, so `converged`
/// never rests on a recurrence that drifted from the truth.
///
/// Storage is allocated by `run`; `requiredBytes` says how much first.
public struct OneShotSolve<T: BinaryFloatingPoint> {
    /// What maxIterations counts when the caller does not say: 10 n.
    public static func defaultMaxIterations(n: Int) -> Int {
        let (budget, overflow) = n.multipliedReportingOverflow(by: 10)
        return overflow ? OptionChecks.maximumCount : min(budget, OptionChecks.maximumCount)
    }

    public let n: Int
    /// The estimator configuration the solve runs (the caller's method with its budget).
    public let method: EstimatorMethod
    public let tolerance: Double
    public let maxIterations: Int
    /// The caller's budget (nil for the default), resolved again for sliced vectors.
    private let requestedMaxIterations: Int?

    /// - Parameters:
    ///   - n: dimension, >= 1.
    ///   - method: `.dynamicLanczos` (the residual variant; with `reorthogonalize` the
    ///     stored-basis form with its orthogonality tolerance, the period the solve's;
    ///     `exactResidual` is ignored), `.conjugateGradient`, `.minres`
    ///     (their budget and tolerance are the solve's), `.gradientDescent` or `.neumann`
    ///     (their step size is used). SubBiO and the random Neumann series have no fixed
    ///     point to converge to and are rejected.
    ///   - tolerance: finite, >= 0: converged when ||A x - b|| <= tolerance ||b||.
    ///   - maxIterations: 1...2^30, or nil for `defaultMaxIterations(n:)`: Lanczos
    ///     products, CG or MINRES iterations, gradient steps or Neumann terms.
    /// - Throws: `.invalidArgument` naming what is out of range.
    public init(n: Int, method: EstimatorMethod, tolerance: Double, maxIterations: Int?) throws(EstimatorError) {
        guard n >= 1 else { throw .invalidArgument("n must be >= 1 (got \(n))") }
        try OptionChecks.tolerance(tolerance, "tolerance")
        let budget = maxIterations ?? Self.defaultMaxIterations(n: n)
        try OptionChecks.count(budget, "max_iterations", atLeast: 1)
        switch method {
        case .dynamicLanczos(var o):
            guard o.variant == .residual else {
                // A plain restart starts again from b alone: on a fixed operator each cycle
                // would repeat the last, and x0 would be ignored.
                throw .invalidArgument("a one-shot Lanczos solve needs the residual variant, which restarts from the current x")
            }
            let m = min(budget, n, LanczosOptions.maximumPeriod)
            o.initialPeriod = m
            o.maxPeriod = m
            o.growth = 1
            o.growEvery = LanczosOptions.defaults.growEvery  // unused with growth 1
            o.exactResidual = false  // the solve checks the true residual itself
            self.method = .dynamicLanczos(o)
        case .conjugateGradient: self.method = .conjugateGradient(maxIterations: budget, tolerance: tolerance)
        case .minres: self.method = .minres(maxIterations: budget, tolerance: tolerance)
        case .gradientDescent(let eta, _): self.method = .gradientDescent(stepSize: eta, steps: budget)
        case .neumann(let eta, _): self.method = .neumann(stepSize: eta, terms: budget)
        case .subbio, .randomNeumann:
            throw .invalidArgument("\(method.name) has no one-shot solve: use lanczos, cg, minres, gd or neumann")
        }
        try self.method.validate()
        self.n = n
        self.tolerance = tolerance
        self.maxIterations = budget
        requestedMaxIterations = maxIterations
    }

    /// n-vectors `run` allocates besides the estimator or the recurrence: the three of
    /// `CheckedIterates` (the candidate, the residual, the best checked iterate).
    private static var scratchVectors: Int { 3 }

    /// Whether the Lanczos solve runs the short recurrence (no stored basis).
    private var usesRecurrence: Bool {
        if case .dynamicLanczos(let o) = method { !o.reorthogonalize } else { false }
    }

    /// Bytes `run` allocates (the estimator, or the recurrence's vectors, and the scratch
    /// vectors), or nil when that overflows. The recurrence's do not depend on the budget.
    public var requiredBytes: Int? {
        let main = usesRecurrence
            ? LanczosRecurrenceSolve<T>.scratchVectors * MemoryLayout<T>.stride
            : 0
        let (vectorBytes, overflow) = n.multipliedReportingOverflow(by: Self.scratchVectors * MemoryLayout<T>.stride + main)
        guard !overflow else { return nil }
        if usesRecurrence { return vectorBytes }
        guard let estimator = Estimator<T>.requiredBytes(n: n, method: method) else { return nil }
        let (total, sumOverflow) = estimator.addingReportingOverflow(vectorBytes)
        return sumOverflow ? nil : total
    }

    /// Solves A x = b.
    /// - Parameters:
    ///   - b: n values, finite.
    ///   - x: n values: the initial guess on entry (all zero for the Neumann series), the
    ///     solution on return. Unchanged when the call throws.
    ///   - reduction: nil on one process. Otherwise b, x and the products are this
    ///     process's slices (n its local length; slices may differ) of vectors held
    ///     across processes, and `reduction` sums values over all of them: every norm and
    ///     inner product is reduced, every decision taken on reduced values, so every
    ///     process takes the same branches and the reports agree bitwise. The call is then
    ///     collective (every process makes it, with the same options), the default budget
    ///     is 10 N for the total dimension N, and the reorthogonalized Lanczos basis has
    ///     min(budget, N, m_max limit) columns of n values (`requiredBytes` counts the
    ///     local n). MINRES does not support it. The report counts the calls
    ///     (`SolveReport.reductions`, docs/algorithms.md section 13). A product that throws
    ///     (or an allocation refused) on one process fails the call on every process at the
    ///     next reduction: that process rethrows its own error, the others throw
    ///     `.collectiveFailure`; x is unchanged everywhere.
    ///   - product: writes A * input into output (both n values, not aliased, valid only
    ///     during the call).
    /// - Throws: whatever `product` throws, or an `EstimatorError` (`.outOfMemory` when
    ///   the system refuses an allocation: then nothing stays allocated and `product` was
    ///   not called; `.invalidArgument` for MINRES with a reduction).
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public func run(
        rhs b: UnsafeBufferPointer<T>, solution x: UnsafeMutableBufferPointer<T>, reduction hook: ReductionHook? = nil,
        product: (UnsafeBufferPointer<T>, UnsafeMutableBufferPointer<T>) throws -> Void
    ) throws -> SolveReport {
        guard b.count == n, x.count == n, let bp = b.baseAddress, let xp = x.baseAddress else {
            throw EstimatorError.invalidArgument("b and x must hold n = \(n) values (got \(b.count) and \(x.count))")
        }
        guard let hook else {
            guard Kernels.allFinite(xp, n) else { throw EstimatorError.nonFiniteInput("x0 contains NaN or infinity") }
            if usesRecurrence { return try runRecurrence(rhs: bp, solution: xp, collective: nil, product: product) }
            return try runEstimator(rhs: b, solution: x, collective: nil, product: product)
        }
        // Decided from the options alone, so every process refuses before any reduction.
        guard method.implementation(T.self).reductionValues != nil else {
            throw EstimatorError.invalidArgument(
                "the \(method.name) method does not support vectors sliced across processes (a reduction)")
        }
        let collective = SolveCollective(hook: hook)
        do {
            var report = usesRecurrence
                ? try runRecurrence(rhs: bp, solution: xp, collective: collective, product: product)
                : try runEstimator(rhs: b, solution: x, collective: collective, product: product)
            report.reductions = collective.calls
            return report
        } catch {
            throw collective.failure ?? error
        }
    }

    /// This solve's budget and method for the total dimension N of sliced vectors (the
    /// default budget and the Lanczos period depend on it).
    private func spanning(totalDimension: Int) throws(EstimatorError) -> OneShotSolve {
        try OneShotSolve(n: totalDimension, method: method, tolerance: tolerance, maxIterations: requestedMaxIterations)
    }

    private var methodAndBudget: (EstimatorMethod, Int) { (method, maxIterations) }

    /// Every method but the Lanczos recurrence: the estimator's steps, checked.
    private func runEstimator(
        rhs b: UnsafeBufferPointer<T>, solution x: UnsafeMutableBufferPointer<T>, collective: SolveCollective?,
        product: (UnsafeBufferPointer<T>, UnsafeMutableBufferPointer<T>) throws -> Void
    ) throws -> SolveReport {
        let bp = b.baseAddress!, xp = x.baseAddress!  // n values each
        let estimator: Estimator<T>, scratch: UnsafeMutablePointer<T>
        let bNorm: Double, startsAtZero: Bool
        var method = method, budget = maxIterations
        if let collective {
            // A local failure of the setup waits for a reduction that tells every process.
            let local = try? UnsafeMutablePointer<T>.allocate(zeroed: Self.scratchVectors * n)
            if local == nil {
                collective.recordSetupFailure(EstimatorError.outOfMemory(bytes: Self.scratchVectors * n * MemoryLayout<T>.stride))
            }
            var created: Estimator<T>? = nil
            let setup: (total: Int, rhsNorm: Double, startsAtZero: Bool)
            do {
                setup = try collective.setup(rhs: bp, start: xp, n)
                (method, budget) = try spanning(totalDimension: setup.total).methodAndBudget
                if case .neumann = method, !setup.startsAtZero {
                    throw EstimatorError.invalidArgument("the Neumann series starts from zero: x0 must be zero")
                }
                do {
                    let e = try Estimator<T>(n: n, method: method)
                    // x0 is finite on every process (the setup's reduction said so): set locally.
                    if case .neumann = method {} else { try e.setEstimate(UnsafeBufferPointer(x)) }
                    e.install(try e.makeReduction(collective.reduction.hook), totalDimension: setup.total)
                    created = e
                } catch {
                    collective.recordSetupFailure(error)
                }
                try collective.agreeOnSetup()
            } catch {
                local?.deallocateZeroed()
                throw error
            }
            estimator = created!
            scratch = local!
            (bNorm, startsAtZero) = (setup.rhsNorm, setup.startsAtZero)
        } else {
            estimator = try Estimator<T>(n: n, method: method)
            if case .neumann = method {
                guard Kernels.maxMagnitude(xp, n) == 0 else {
                    throw EstimatorError.invalidArgument("the Neumann series starts from zero: x0 must be zero")
                }
            } else {
                try estimator.setEstimate(UnsafeBufferPointer(x))
            }
            // x stays the caller's initial guess until the solve has succeeded.
            // (3 n cannot overflow: the estimator holds more than 3 n values.)
            scratch = try UnsafeMutablePointer<T>.allocate(zeroed: Self.scratchVectors * n)
            bNorm = Kernels.norm(bp, n)
            startsAtZero = Kernels.maxMagnitude(xp, n) == 0
        }
        defer { scratch.deallocateZeroed() }
        let threshold = tolerance * bNorm
        var iterates = CheckedIterates(n: n, rhs: bp, rhsNorm: bNorm, solution: xp, scratch: scratch,
                                       startsAtZero: startsAtZero, collective: collective)
        let candidate = UnsafeMutableBufferPointer(start: iterates.candidate, count: n)
        var report = SolveReport()
        report.rhsNorm = bNorm
        var last: Double
        if case .dynamicLanczos = method {
            // Check the truth only when the estimate says the tolerance is met (or the space
            // is invariant), and after the last step.
            var lastIsCurrent = false
            last = .infinity
            repeat {
                report.lastStep = try estimator.step(rhs: b, into: candidate, product: product)
                report.iterations += 1
                lastIsCurrent = false
                let step = report.lastStep
                if step.residual <= threshold || step.breakdown || step.zeroResidual {
                    last = try iterates.check(product)
                    lastIsCurrent = true
                    if last <= threshold { break }
                }
            } while report.lastStep.totalProducts + iterates.checks < budget
            if !lastIsCurrent { last = try iterates.check(product) }
        } else {
            report.lastStep = try estimator.step(rhs: b, into: candidate, product: product)
            report.iterations = report.lastStep.iterations
            last = try iterates.check(product)
        }
        report.residual = iterates.answer(lastResidual: last)
        report.converged = report.residual <= threshold
        report.products = report.lastStep.totalProducts + iterates.checks
        return report
    }

    /// The Lanczos solve by the short recurrence: runs of `LanczosRecurrenceSolve`, each
    /// checked with one product whose residual b - A x starts the next run.
    private func runRecurrence(
        rhs bp: UnsafePointer<T>, solution xp: UnsafeMutablePointer<T>, collective: SolveCollective?,
        product: (UnsafeBufferPointer<T>, UnsafeMutableBufferPointer<T>) throws -> Void
    ) throws -> SolveReport {
        let count = (Self.scratchVectors + LanczosRecurrenceSolve<T>.scratchVectors) * n
        let scratch: UnsafeMutablePointer<T>
        let bNorm: Double, startsAtZero: Bool, maxIterations: Int
        if let collective {
            let local = try? UnsafeMutablePointer<T>.allocate(zeroed: count)
            if local == nil { collective.recordSetupFailure(EstimatorError.outOfMemory(bytes: count * MemoryLayout<T>.stride)) }
            let setup: (total: Int, rhsNorm: Double, startsAtZero: Bool)
            do {
                setup = try collective.setup(rhs: bp, start: xp, n)
                maxIterations = try spanning(totalDimension: setup.total).maxIterations
            } catch {
                local?.deallocateZeroed()
                throw error
            }
            scratch = local!
            (bNorm, startsAtZero) = (setup.rhsNorm, setup.startsAtZero)
        } else {
            scratch = try UnsafeMutablePointer<T>.allocate(zeroed: count)
            bNorm = Kernels.norm(bp, n)
            startsAtZero = Kernels.maxMagnitude(xp, n) == 0
            maxIterations = self.maxIterations
        }
        defer { scratch.deallocateZeroed() }
        let recurrence = LanczosRecurrenceSolve<T>(n: n)
        let threshold = tolerance * bNorm
        var iterates = CheckedIterates(n: n, rhs: bp, rhsNorm: bNorm, solution: xp, scratch: scratch,
                                       startsAtZero: startsAtZero, collective: collective)
        var report = SolveReport()
        report.rhsNorm = bNorm
        // r0 = b - A x0: b itself, without a product, for x0 = 0.
        var last = iterates.startsAtZero ? bNorm : try iterates.check(product)
        var info = StepInfo()
        var steps = 0
        while last > threshold && steps + iterates.checks < maxIterations {
            let run = try recurrence.run(x: iterates.candidate, residual: iterates.residual, residualNorm: last,
                                         threshold: threshold, maxSteps: maxIterations - steps - iterates.checks,
                                         scratch: scratch + Self.scratchVectors * n, collective: collective,
                                         product: product)
            steps += run.steps
            info.breakdown = info.breakdown || run.breakdown
            info.indefinite = info.indefinite || run.indefinite
            info.dimension = run.steps
            info.residual = run.estimate
            last = try iterates.check(product)
            if last > threshold && steps + iterates.checks < maxIterations { info.restarts += 1 }
            if run.steps == 0 { break }
        }
        report.residual = iterates.answer(lastResidual: last)
        let used = steps + iterates.checks
        info.iterations = steps
        info.products = used
        info.totalProducts = used
        info.residualKind = .estimate
        info.settleOutcome(budgetReached: report.residual > threshold)
        report.lastStep = info
        report.iterations = steps
        report.products = used
        report.converged = report.residual <= threshold
        return report
    }
}

/// How a one-shot solve went.
public struct SolveReport: Equatable, Sendable {
    /// ||A x - b|| <= tolerance ||b|| held for the returned x.
    public var converged = false
    /// ||A x - b|| of the returned x, from one product (units of b).
    public var residual = 0.0
    /// ||b||.
    public var rhsNorm = 0.0
    /// Operator products used, the residual checks included.
    public var products = 0
    /// Lanczos steps, CG or MINRES iterations, gradient steps or Neumann terms.
    public var iterations = 0
    /// The info of the estimator's last step.
    public var lastStep = StepInfo()
    /// Calls of the reduction hook (0 without one), the setup's and the checks' included
    /// (docs/algorithms.md section 13).
    public var reductions = 0

    public init() {}
}
