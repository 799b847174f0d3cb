import RealModule

/// The bilevel outer loop shared by every method (docs/algorithms.md section 2), around one
/// estimator of v = A^{-1} b:
///
///     y <- y - theta_k grad_y g(x_k, y)   (T times, warm-started)
///     b = grad_y f(x_k, y),  v = estimator step with A = grad^2_yy g(x_k, y)
///     x <- x - lambda_k (grad_x f(x_k, y) - grad^2_xy g(x_k, y) v)
///
/// The method (LancBiO, SubBiO, AmIGO, SOBA, stocBiO, TTSA, BSA) is the estimator's
/// method plus these options. Each step updates the caller's x and y in place, and only
/// when the whole iteration succeeded: any thrown error (a closure throwing, NaN or
/// infinity from a closure, overflow) leaves x, y, the estimator and the counters as they
/// were. Allocates only at creation.
public final class BilevelOptimizer<T: BinaryFloatingPoint> {
    public let dx: Int
    public let dy: Int
    public let options: BilevelOptions
    /// The estimator of v; its committed estimate is the v of the last iteration.
    public let estimator: Estimator<T>
    /// Outer iterations completed since creation or reset.
    public private(set) var iterations = 0
    public private(set) var lastInfo = BilevelStepInfo()
    private var totalProducts = 0
    /// With `options.lrYAuto`: the estimate of lambda_max(grad^2_yy g) behind theta, 0 until
    /// the first iteration measured one (see `step`). Otherwise 0.
    public var curvature: Double { lastInfo.curvature }
    /// Set during `step`: a derivative closure that calls back into this optimizer must
    /// not change the state under the step.
    private var stepping = false
    /// With y sliced across processes (`setReduction`): the sums of the x side (the
    /// hyper-gradient's contributions) and the processes' agreement, dx values and two flags.
    private var reduction: Reduction?

    private var allocations = OwnedAllocations()
    // Scratch: the candidate y, the inner gradient, b, grad_x f, J v and the hyper-gradient;
    // with lrYAuto also the previous inner iterate and its gradient (calloc'd pages: they
    // take memory only when written).
    private let yNew: UnsafeMutablePointer<T>
    private var gradient: UnsafeMutablePointer<T>
    private let yPrevious: UnsafeMutablePointer<T>
    private var previousGradient: UnsafeMutablePointer<T>
    private let rhs: UnsafeMutablePointer<T>
    private let xGradient: UnsafeMutablePointer<T>
    private let crossProduct: UnsafeMutablePointer<T>
    private let hypergradientBuffer: UnsafeMutablePointer<T>

    /// - Throws: `.invalidArgument` for dx, dy < 1 or options out of range, `.outOfMemory`
    ///   when the system refuses an allocation (everything allocated before it released).
    ///   Allocates `requiredBytes(dx:dy:method:)`.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public init(dx: Int, dy: Int, options: BilevelOptions, method: EstimatorMethod) throws(EstimatorError) {
        guard dx >= 1, dy >= 1 else { throw .invalidArgument("dx and dy must be >= 1 (got dx = \(dx), dy = \(dy))") }
        guard dx <= 1 << 40, dy <= 1 << 40 else { throw .invalidArgument("dx = \(dx), dy = \(dy) are too large") }
        try options.validate()
        if options.lrYAuto {
            switch method {
            case .dynamicLanczos, .subbio: break
            default:
                throw .invalidArgument("lr_y_auto needs the curvature estimates (Ritz values) of the dynamic Lanczos "
                                       + "or SubBiO estimator")
            }
        }
        estimator = try Estimator<T>(n: dy, method: method)
        self.dx = dx
        self.dy = dy
        self.options = options
        yNew = try allocations.zeroed(dy)
        gradient = try allocations.zeroed(dy)
        yPrevious = try allocations.zeroed(dy)
        previousGradient = try allocations.zeroed(dy)
        rhs = try allocations.zeroed(dy)
        xGradient = try allocations.zeroed(dx)
        crossProduct = try allocations.zeroed(dx)
        hypergradientBuffer = try allocations.zeroed(dx)
    }

    /// Bytes creation asks the system for, exactly (see `Estimator.requiredBytes`): the
    /// estimator's, three vectors of dx values and five of dy. nil when that overflows or
    /// exceeds the estimator's limit; 0 for options the estimator rejects.
    public static func requiredBytes(dx: Int, dy: Int, method: EstimatorMethod) -> Int? {
        guard let estimator = Estimator<T>.requiredBytes(n: dy, method: method) else { return nil }
        guard estimator > 0, dx >= 1 else { return 0 }
        let (dyValues, dyOverflow) = dy.multipliedReportingOverflow(by: 5)
        let (dxValues, dxOverflow) = dx.multipliedReportingOverflow(by: 3)
        let (values, sumOverflow) = dxValues.addingReportingOverflow(dyValues)
        let overflow = dyOverflow || dxOverflow || sumOverflow
        let (scratch, scratchOverflow) = values.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        let (total, totalOverflow) = estimator.addingReportingOverflow(scratch)
        return overflow || scratchOverflow || totalOverflow ? nil : total
    }

    /// The hyper-gradient estimate grad_x f - J v of the last iteration (dx values).
    public var hypergradient: UnsafeBufferPointer<T> { UnsafeBufferPointer(start: hypergradientBuffer, count: dx) }

    /// lambda_k and theta_k for outer iteration k (1-based); with `lrYAuto`, theta for the
    /// current `curvature` (0 before the first estimate).
    public func stepSizes(iteration k: Int) -> (lrX: Double, lrY: Double) {
        let scheduled = options.scheduledStepSizes(iteration: k)
        return (scheduled.lrX, options.lrYAuto ? Self.autoStep(curvature) : scheduled.lrY)
    }

    private static func autoStep(_ curvature: Double) -> Double {
        curvature > 0 ? BilevelOptions.autoStepScale / curvature : 0
    }

    /// Back to the state after creation: v = 0, counters zero, the estimator reset.
    /// - Throws: `.invalidState` when called from inside one of this optimizer's closures.
    public func reset() throws(EstimatorError) {
        try rejectReentry("reset")
        try estimator.reset()
        iterations = 0
        totalProducts = 0
        lastInfo = BilevelStepInfo()
        Kernels.fill(hypergradientBuffer, dx, with: 0)
    }

    /// One outer iteration on the caller's x (dx values) and y (dy values), updated in place.
    /// - Throws: whatever a closure throws (rethrown unchanged), or `EstimatorError`
    ///   (`.nonFiniteInput` for x or y, `.nonFiniteProduct` naming the closure that
    ///   returned NaN or infinity, `.nonFiniteResult` on overflow). Either way nothing changed.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public func step(x: UnsafeMutableBufferPointer<T>, y: UnsafeMutableBufferPointer<T>,
                     problem: BilevelProblem<T>) throws -> BilevelStepInfo {
        try step(x: x, y: y, gradYG: problem.gradYG, gradXF: problem.gradXF, gradYF: problem.gradYF,
                 hvpYY: problem.hvpYY, jvpXY: problem.jvpXY)
    }

    /// One outer iteration with the derivatives passed directly (see `BilevelProblem` for
    /// their meaning). The closures do not escape, so a caller that builds them at the call
    /// site allocates nothing per iteration.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public func step(
        x: UnsafeMutableBufferPointer<T>, y: UnsafeMutableBufferPointer<T>,
        gradYG: BilevelProblem<T>.Gradient, gradXF: BilevelProblem<T>.Gradient, gradYF: BilevelProblem<T>.Gradient,
        hvpYY: BilevelProblem<T>.Product, jvpXY: BilevelProblem<T>.Product
    ) throws -> BilevelStepInfo {
        try rejectReentry("step")
        stepping = true
        defer { stepping = false }
        guard x.count == dx, y.count == dy, let xp = x.baseAddress, let yp = y.baseAddress else {
            throw EstimatorError.invalidArgument("x must hold dx = \(dx) and y dy = \(dy) values (got \(x.count) and \(y.count))")
        }
        let k = iterations + 1
        if let reduction {
            let (lambda, theta) = stepSizes(iteration: k)
            return try stepAcrossProcesses(reduction, xp, yp, k, lambda, theta, gradYG, gradXF, gradYF, hvpYY, jvpXY)
        }
        guard Kernels.allFinite(xp, dx) else { throw EstimatorError.nonFiniteInput("x contains NaN or infinity") }
        guard Kernels.allFinite(yp, dy) else { throw EstimatorError.nonFiniteInput("y contains NaN or infinity") }
        var (lambda, theta) = stepSizes(iteration: k)
        let xBuffer = UnsafeBufferPointer(x)
        let yCandidate = UnsafeBufferPointer(start: yNew, count: dy)

        // 1. Inner steps on y, into the candidate.
        Kernels.copy(yp, to: yNew, dy)
        var curvature = self.curvature
        var evaluations = 0
        if !options.lrYAuto {
            // One pass per inner step: the update reports whether the new y is finite, which
            // it is only if the gradient was too (y - theta g is NaN or infinite wherever g
            // is); the gradient is read again only to name the culprit.
            for _ in 0..<options.innerSteps {
                try gradYG(xBuffer, yCandidate, UnsafeMutableBufferPointer(start: gradient, count: dy))
                try innerUpdate(theta)
            }
            evaluations = options.innerSteps
        } else if curvature > 0 {
            (theta, curvature) = try autoInnerSteps(xBuffer, gradYG, curvature)
            evaluations = options.innerSteps
        }
        // else: no estimate yet, so y stays; this iteration's estimator step measures one.

        // 2. b and grad_x f at the new y.
        try evaluate("grad_y f", rhs, dy) { try gradYF(xBuffer, yCandidate, $0) }
        try evaluate("grad_x f", xGradient, dx) { try gradXF(xBuffer, yCandidate, $0) }

        // 3. v, held uncommitted until the whole iteration has succeeded.
        let estimatorInfo: StepInfo
        do {
            estimatorInfo = try estimator.stepDeferred(rhs: UnsafeBufferPointer(start: rhs, count: dy)) { input, output in
                try hvpYY(xBuffer, yCandidate, input, output)
            }
            let v = UnsafeBufferPointer(start: estimator.pendingEstimate, count: dy)
            try evaluate("grad_xy g v", crossProduct, dx) { try jvpXY(xBuffer, yCandidate, v, $0) }
        } catch {
            estimator.cancel()
            throw error
        }

        // 4. The hyper-gradient and the x step; check before touching the caller's buffers.
        // The candidate hyper-gradient overwrites grad_x f; it is published only on commit.
        let candidate = xGradient
        Kernels.subtract(xGradient, crossProduct, into: candidate, dx)
        let hypergradientNorm = Kernels.norm(candidate, dx)
        // Checked in T: a Double that is finite can still overflow Float on the store.
        guard hypergradientNorm.isFinite && Kernels.axpyStaysFinite(-lambda, candidate, UnsafePointer(xp), dx) else {
            estimator.cancel()
            throw EstimatorError.nonFiniteResult("the hyper-gradient step overflowed")
        }

        if options.lrYAuto {
            // Ritz values lie inside the spectrum of the operator they came from: each is a
            // lower bound of its lambda_max, so the largest seen is kept.
            let ritz = estimatorInfo.ritzMax
            if ritz.isFinite && ritz > curvature { curvature = ritz }
        }

        return commit(k, xp, yp, candidate, hypergradientNorm, lambda, theta, curvature, estimatorInfo, evaluations)
    }

    /// Publishes a successful iteration: v, x (the step along the hyper-gradient
    /// `candidate`), y, the counters and the info. Nothing here can fail.
    private func commit(_ k: Int, _ xp: UnsafeMutablePointer<T>, _ yp: UnsafeMutablePointer<T>,
                        _ candidate: UnsafePointer<T>, _ hypergradientNorm: Double, _ lambda: Double, _ theta: Double,
                        _ curvature: Double, _ estimatorInfo: StepInfo, _ evaluations: Int) -> BilevelStepInfo {
        estimator.commitDeferred()
        Kernels.copy(candidate, to: hypergradientBuffer, dx)
        Kernels.axpy(-lambda, hypergradientBuffer, xp, dx)
        Kernels.copy(yNew, to: yp, dy)
        iterations = k
        totalProducts += estimatorInfo.products
        var info = BilevelStepInfo()
        info.iteration = k
        info.products = estimatorInfo.products
        info.totalProducts = totalProducts
        info.gradientEvaluations = evaluations + 2
        info.crossProducts = 1
        info.hypergradientNorm = hypergradientNorm
        info.lrX = lambda
        info.lrY = theta
        info.curvature = curvature
        info.estimator = estimator.lastInfo
        lastInfo = info
        return info
    }

    /// `step` with y sliced across processes (`setReduction`). Every process makes the
    /// same derivative calls in the same order whatever fails locally (their own
    /// communication stays matched; after a local failure their results are ignored), and
    /// the failure is shared in one agreement before the estimator's step and in the x
    /// side's sum after it, so every process abandons the same iteration.
    private func stepAcrossProcesses(
        _ reduction: Reduction, _ xp: UnsafeMutablePointer<T>, _ yp: UnsafeMutablePointer<T>, _ k: Int,
        _ lambda: Double, _ theta: Double,
        _ gradYG: BilevelProblem<T>.Gradient, _ gradXF: BilevelProblem<T>.Gradient, _ gradYF: BilevelProblem<T>.Gradient,
        _ hvpYY: BilevelProblem<T>.Product, _ jvpXY: BilevelProblem<T>.Product
    ) throws -> BilevelStepInfo {
        let xBuffer = UnsafeBufferPointer(start: UnsafePointer(xp), count: dx)
        let yCandidate = UnsafeBufferPointer(start: UnsafePointer(yNew), count: dy)
        var failure: (any Error)? = nil
        func attempt(_ body: () throws -> Void) {
            do { try body() } catch { if failure == nil { failure = error } }
        }
        // x is replicated but checked on every process alike; y is this process's slice.
        if !Kernels.allFinite(xp, dx) { failure = EstimatorError.nonFiniteInput("x contains NaN or infinity") }
        if failure == nil && !Kernels.allFinite(yp, dy) { failure = EstimatorError.nonFiniteInput("y contains NaN or infinity") }
        Kernels.copy(yp, to: yNew, dy)
        for _ in 0..<options.innerSteps {
            attempt { try gradYG(xBuffer, yCandidate, UnsafeMutableBufferPointer(start: gradient, count: dy)) }
            if failure == nil { attempt { try innerUpdate(theta) } }
        }
        attempt { try evaluate("grad_y f", rhs, dy) { try gradYF(xBuffer, yCandidate, $0) } }
        attempt { try evaluate("grad_x f", xGradient, dx) { try gradXF(xBuffer, yCandidate, $0) } }
        reduction.localFailure = false
        guard try reduction.allAgree(failure == nil) else {
            throw failure ?? EstimatorError.collectiveFailure("a derivative failed on another process; the iteration was abandoned")
        }

        let estimatorInfo: StepInfo
        do {
            estimatorInfo = try estimator.stepDeferred(rhs: UnsafeBufferPointer(start: rhs, count: dy)) { input, output in
                try hvpYY(xBuffer, yCandidate, input, output)
            }
        } catch {
            estimator.cancel()
            throw error
        }
        // The hyper-gradient's contributions grad_x f - J v, summed across processes.
        let v = UnsafeBufferPointer(start: estimator.pendingEstimate, count: dy)
        attempt { try evaluate("grad_xy g v", crossProduct, dx) { try jvpXY(xBuffer, yCandidate, v, $0) } }
        let candidate = xGradient
        let values = reduction.values
        if failure == nil {
            Kernels.subtract(xGradient, crossProduct, into: candidate, dx)
            for i in 0..<dx { values[i] = Double(candidate[i]) }
        } else {
            for i in 0..<dx { values[i] = 0 }
        }
        reduction.localFailure = failure != nil
        do {
            try reduction.sum(dx)
        } catch {
            estimator.cancel()
            throw failure ?? error
        }
        for i in 0..<dx { candidate[i] = T(values[i]) }
        let hypergradientNorm = Kernels.norm(candidate, dx)
        guard hypergradientNorm.isFinite && Kernels.axpyStaysFinite(-lambda, candidate, UnsafePointer(xp), dx) else {
            estimator.cancel()
            throw EstimatorError.nonFiniteResult("the hyper-gradient step overflowed (the sum across processes)")
        }
        return commit(k, xp, yp, candidate, hypergradientNorm, lambda, theta, 0, estimatorInfo, options.innerSteps)
    }

    /// y_new -= theta g (the gradient buffer), rejecting a non-finite gradient or result.
    @inline(__always)
    private func innerUpdate(_ theta: Double) throws {
        guard Kernels.update(yNew, times: 1, plus: -theta, times: gradient, dy).allFinite else {
            guard Kernels.allFinite(gradient, dy) else {
                throw EstimatorError.nonFiniteProduct("grad_y g returned NaN or infinity")
            }
            throw EstimatorError.nonFiniteResult("the inner y steps overflowed")
        }
    }

    /// The inner steps of `lrYAuto`, theta = c / curvature, guarded against a curvature
    /// estimate below lambda_max (Ritz values approach it from below). On a quadratic,
    /// y <- y - theta g maps g to (I - theta A) g, whose norm cannot grow while
    /// theta < 2 / lambda_max; a gradient that grew therefore shows lambda_max > 2 / theta
    /// (up to the function's departure from its quadratic model). That step is undone, the
    /// estimate raised to 2 / theta and the step retaken with the new theta; each retake
    /// spends one of the T evaluations. Returns the last theta and the raised curvature,
    /// which the caller commits only with the iteration.
    private func autoInnerSteps(_ x: UnsafeBufferPointer<T>, _ gradYG: BilevelProblem<T>.Gradient,
                                _ start: Double) throws -> (theta: Double, curvature: Double) {
        var curvature = start
        var theta = Self.autoStep(curvature)
        var previousNorm = -1.0  // no previous gradient
        for _ in 0..<options.innerSteps {
            try gradYG(x, UnsafeBufferPointer(start: yNew, count: dy), UnsafeMutableBufferPointer(start: gradient, count: dy))
            let norm = Kernels.norm(gradient, dy)
            guard norm.isFinite else { throw EstimatorError.nonFiniteProduct("grad_y g returned NaN or infinity") }
            if previousNorm >= 0 && norm > previousNorm {
                // Back to the previous iterate and its gradient, with a smaller step.
                Kernels.copy(yPrevious, to: yNew, dy)
                swap(&gradient, &previousGradient)
                curvature = Swift.max(curvature, 2 / theta)
                theta = Self.autoStep(curvature)
            } else {
                Kernels.copy(yNew, to: yPrevious, dy)
                previousNorm = norm
            }
            try innerUpdate(theta)
            swap(&gradient, &previousGradient)
        }
        return (theta, curvature)
    }

    private func rejectReentry(_ call: String) throws(EstimatorError) {
        guard !stepping else {
            throw .invalidState("\(call) was called from inside this optimizer's own step (a problem callback)")
        }
    }

    /// Replaces v (a warm start for the next iteration).
    /// - Throws: as `Estimator.setEstimate`, and `.invalidState` from inside a step.
    public func setEstimate(_ v: UnsafeBufferPointer<T>) throws(EstimatorError) {
        try rejectReentry("setEstimate")
        try estimator.setEstimate(v)
    }

    /// Slices y across processes, x replicated (docs/algorithms.md section 13): dy, y, v
    /// and the problem's y-side results are this process's slice; grad_x f and J v are its
    /// contributions, which every iteration sums across processes in one call of `hook`,
    /// besides the estimator's own reductions (`Estimator.setReduction`). Every process
    /// must make the same calls in the same order (this one reduces too). A derivative that
    /// throws or returns NaN on one process fails the iteration on every process, each
    /// optimizer as before it: that process throws its own error, the others
    /// `.collectiveFailure` (or the estimator's error for a non-finite b). nil removes
    /// the hook.
    /// - Throws: `.invalidArgument` for `lrYAuto` (its guard decides per inner step) or an
    ///   estimator method without reductions; as `Estimator.setReduction`; `.invalidState`
    ///   from inside a step. On an error nothing changes.
    public func setReduction(_ hook: ReductionHook?) throws(EstimatorError) {
        try rejectReentry("setReduction")
        guard let hook else {
            try estimator.setReduction(nil)
            reduction = nil
            return
        }
        guard !options.lrYAuto else {
            throw .invalidArgument("lr_y_auto does not support y sliced across processes (its guard decides at each inner step)")
        }
        let sums = try Reduction(hook: hook, capacity: dx + 2)
        try estimator.setReduction(hook)
        reduction = sums
    }

    /// Whether y is sliced across processes (`setReduction`).
    public var hasReduction: Bool { reduction != nil }

    // MARK: Checkpoint (the public calls are in BilevelOptimizer+Checkpoint.swift)

    /// Whether one of this optimizer's derivative closures is running (a call from inside
    /// its step).
    public var isStepping: Bool { stepping }

    /// Rejects a checkpoint call from inside this optimizer's step.
    func checkNotStepping(_ call: String) throws(EstimatorError) { try rejectReentry(call) }

    /// Appends the outer loop's committed state: the iteration count, the total products,
    /// the last iteration's info (with the curvature estimate) and the hyper-gradient.
    func archiveState(to w: inout StateWriter) {
        w.integer(iterations)
        w.integer(totalProducts)
        lastInfo.archive(to: &w)
        w.vector(hypergradientBuffer, count: dx)
    }

    /// Decodes and checks what `archiveState` wrote; returns what installs it.
    func unarchiveState(from r: inout StateReader) throws(EstimatorError) -> StateInstallation {
        let iterations = try r.count("the iteration count")
        let totalProducts = try r.count("the total products")
        let info = try BilevelStepInfo.unarchive(from: &r)
        guard info.curvature >= 0, options.lrYAuto || info.curvature == 0 else {
            throw .invalidCheckpoint("the curvature estimate \(info.curvature) is not one this optimizer can hold")
        }
        // The counters and the last info agree in every state a run reaches.
        guard info.iteration == iterations, info.totalProducts == totalProducts,
              iterations > 0 || info == BilevelStepInfo() else {
            throw .invalidCheckpoint("the iteration counters and the last iteration's info disagree")
        }
        let hypergradient = try r.vector(T.self, count: dx, "the hyper-gradient")
        return { [self] in
            self.iterations = iterations
            self.totalProducts = totalProducts
            lastInfo = info
            StateReader.install(hypergradient, into: hypergradientBuffer, count: dx)
        }
    }

    /// Runs `body` to fill `out` and rejects non-finite values, naming the derivative.
    @inline(__always)
    private func evaluate(_ name: String, _ out: UnsafeMutablePointer<T>, _ count: Int,
                          _ body: (UnsafeMutableBufferPointer<T>) throws -> Void) throws {
        try body(UnsafeMutableBufferPointer(start: out, count: count))
        guard Kernels.allFinite(out, count) else {
            throw EstimatorError.nonFiniteProduct("\(name) returned NaN or infinity")
        }
    }
}
