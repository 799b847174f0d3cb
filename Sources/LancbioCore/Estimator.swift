/// A stateful estimator of A^{-1} b for a sequence of operators A_k and right-hand sides
/// b_k (one step per outer iteration of a bilevel method), where A is available only
/// through products.
///
/// Two ways to supply products, both driving the same state machine:
/// - `step(rhs:into:product:)` calls a closure for each product;
/// - reverse communication, as ARPACK does it: `begin(rhs:)` returns `.needsProduct`, the
///   caller writes A * `productInput` into `productOutput` and calls `resume()`, until a
///   call returns `.finished`. Hosts that compute products on their own device or event
///   loop never have to re-enter from a callback.
///
/// Failure atomicity: any thrown error (bad input, a non-finite product, overflow, or the
/// product closure throwing) abandons the step and leaves the estimator exactly as it was
/// before `begin`/`step`, so the same step can be retried.
///
/// Threads: one thread at a time per estimator; independent estimators are independent.
public final class Estimator<T: BinaryFloatingPoint> {
    /// Dimension of A (n x n) and of b and v.
    public let n: Int
    public let method: EstimatorMethod
    private let ws: StepWorkspace<T>
    private let vectorPasses: VectorPasses<T>
    private let engine: Engine
    private var inProgress = false
    private var pendingInfo = StepInfo()
    /// Set by `beginDeferred`: a finished step waits for `commitDeferred` or `cancel`.
    private var deferringCommit = false
    private var awaitingCommit = false
    /// Set while `step` waits for its product closure: a closure that calls back into this
    /// estimator (reset, begin, setEstimate, step) must not change the state under it.
    private var insideProductCallback = false
    /// Diagnostics of the last completed step.
    public private(set) var lastInfo = StepInfo()
    /// Products used since creation or the last reset.
    public private(set) var totalProducts = 0
    /// Steps completed since creation or the last reset.
    public private(set) var steps = 0

    /// The method's concrete state machine. A closed enum rather than an existential so
    /// that every call is statically dispatched and specialised with T.
    private enum Engine {
        case lanczos(DynamicLanczos<T>)
        case subspace(SubspaceSolve<T>)
        case cg(ConjugateGradient<T>)
        case minres(MINRES<T>)
        case gradient(GradientSteps<T>)
        case neumann(NeumannSeries<T>)
        case randomNeumann(RandomNeumann<T>)
    }

    /// What a reverse-communication call asks of the caller next.
    public enum Progress: Equatable {
        /// Write A * `productInput` into `productOutput`, then call `resume()`.
        case needsProduct
        /// The step is complete; the new estimate is committed.
        case finished(StepInfo)
    }

    /// Creates an estimator of dimension `n` (>= 1) with the estimate v = 0.
    /// - Throws: `.invalidArgument` for n < 1, n too large to allocate, or options out of range.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public init(n: Int, method: EstimatorMethod) throws(EstimatorError) {
        guard n >= 1 else { throw .invalidArgument("n must be >= 1 (got \(n))") }
        try method.validate()
        guard Self.requiredBytes(n: n, method: method) != nil else {
            throw .invalidArgument("n = \(n) is too large for this method's storage")
        }
        self.n = n
        self.method = method
        ws = StepWorkspace(n: n)
        vectorPasses = VectorPasses(n: n)
        switch method {
        case .dynamicLanczos(let o): engine = .lanczos(DynamicLanczos(n: n, options: o))
        case .subspace(let theta0): engine = .subspace(SubspaceSolve(n: n, theta0: theta0))
        case .conjugateGradient(let k, let tol): engine = .cg(ConjugateGradient(n: n, maxIterations: k, tolerance: tol))
        case .minres(let k, let tol): engine = .minres(MINRES(n: n, maxIterations: k, tolerance: tol))
        case .gradientDescent(let eta, let k): engine = .gradient(GradientSteps(n: n, stepSize: eta, steps: k))
        case .neumann(let eta, let k): engine = .neumann(NeumannSeries(n: n, stepSize: eta, terms: k))
        case .randomNeumann(let eta, let k, let seed):
            engine = .randomNeumann(RandomNeumann(n: n, stepSize: eta, maxTerms: k, seed: seed))
        }
    }

    /// Bytes the estimator allocates at creation (vectors of n values, the Lanczos basis
    /// dominating with m_max + 1 of them, plus the small projected system), or nil when
    /// that overflows or exceeds 2^46 bytes.
    /// Hosts that must not abort on allocation failure can try this much first.
    ///
    /// Options the estimator would reject count as 0 bytes: creation then fails with the
    /// precise reason rather than an allocation error. Caller-controlled sizes are never
    /// multiplied unchecked, here least of all, since hosts call this before creating.
    public static func requiredBytes(n: Int, method: EstimatorMethod) -> Int? {
        guard n >= 1, (try? method.validate()) != nil else { return 0 }
        let vectors: Int
        switch method {
        case .dynamicLanczos(let o): vectors = o.maxPeriod + 1 + 2 + 4
        case .minres: vectors = 6 + 4
        case .subspace: vectors = 3 + 4
        case .conjugateGradient: vectors = 2 + 4
        case .neumann, .randomNeumann: vectors = 1 + 4
        case .gradientDescent: vectors = 4
        }
        let (elements, overflow) = n.multipliedReportingOverflow(by: vectors)
        guard !overflow, elements <= (1 << 46) / MemoryLayout<T>.stride else { return nil }
        // The small projected system: (m_max + 1)^2 + 9 (m_max + 1) doubles for Lanczos
        // (its least-squares fallback needs the full eigenvector matrix), a few for SubBiO.
        var small = 2 * 2 + 9 * 2
        if case .dynamicLanczos(let o) = method {
            let c = o.maxPeriod + 1   // validated: at most 4097
            // Plus the per-chunk sums and the two threads' scratch of the two-core passes.
            small = c * c + 9 * c + BasisSplit.chunks * 2 * c + 2 * BasisPasses<T>.scratchRows(n: n)
        }
        return elements * MemoryLayout<T>.stride + small * MemoryLayout<Double>.stride
    }

    // MARK: Estimate and state

    /// Whether a reverse-communication step has begun and not yet finished or been cancelled.
    public var isStepInProgress: Bool { inProgress }

    /// Lanczos only: the current subspace dimension j and period m (0 for other methods).
    public var lanczosDimension: Int { if case .lanczos(let l) = engine { l.dimension } else { 0 } }
    public var lanczosPeriod: Int { if case .lanczos(let l) = engine { l.period } else { 0 } }
    public var restarts: Int { if case .lanczos(let l) = engine { l.restarts } else { 0 } }

    /// Copies the committed estimate v (count n) into `destination`.
    public func copyEstimate(into destination: UnsafeMutableBufferPointer<T>) throws(EstimatorError) {
        guard destination.count == n, let d = destination.baseAddress else {
            throw .invalidArgument("the destination must hold n = \(n) values (got \(destination.count))")
        }
        Kernels.copy(ws.estimate, to: d, n)
    }

    /// Replaces the committed estimate (a warm start). Lanczos restarts from it at the next step.
    /// - Throws: `.invalidArgument` (wrong count), `.nonFiniteInput`, `.invalidState` during a step.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public func setEstimate(_ v: UnsafeBufferPointer<T>) throws(EstimatorError) {
        try rejectReentry("setEstimate")
        guard !inProgress else { throw .invalidState("a step is in progress: finish or cancel it first") }
        guard v.count == n, let p = v.baseAddress else {
            throw .invalidArgument("the estimate must hold n = \(n) values (got \(v.count))")
        }
        guard Kernels.allFinite(p, n) else { throw .nonFiniteInput("the estimate contains NaN or infinity") }
        Kernels.copy(p, to: ws.pending, n)
        ws.commitEstimate()
        switch engine {
        case .lanczos(let m): m.estimateReplaced()
        case .subspace, .cg, .minres, .gradient, .neumann, .randomNeumann: break
        }
    }

    /// Back to the state right after creation: v = 0, counters zero, the Lanczos schedule
    /// and the random generator restarted. Cancels a step in progress.
    /// - Throws: `.invalidState` when called from inside a product closure of `step`.
    public func reset() throws(EstimatorError) {
        try rejectReentry("reset")
        cancel()
        Kernels.fill(ws.estimate, n, with: 0)
        lastInfo = StepInfo()
        totalProducts = 0
        steps = 0
        switch engine {
        case .lanczos(let m): m.reset()
        case .subspace(let m): m.reset()
        case .cg(let m): m.reset()
        case .minres(let m): m.reset()
        case .gradient(let m): m.reset()
        case .neumann(let m): m.reset()
        case .randomNeumann(let m): m.reset()
        }
    }

    // MARK: Reverse communication

    /// The vector whose product the step needs; valid while `begin`/`resume` last returned
    /// `.needsProduct`. Owned by the estimator: read it, do not keep it.
    public var productInput: UnsafeBufferPointer<T> { UnsafeBufferPointer(start: ws.productInput, count: n) }

    /// Copies `productInput` into `destination` (count n), on both cores at large n.
    public func copyProductInput(into destination: UnsafeMutableBufferPointer<T>) throws(EstimatorError) {
        guard destination.count == n, let d = destination.baseAddress else {
            throw .invalidArgument("the destination must hold n = \(n) values (got \(destination.count))")
        }
        vectorPasses.copy(ws.productInput, into: d)
    }

    /// Where the caller writes A * `productInput` (count n). Owned by the estimator.
    public var productOutput: UnsafeMutableBufferPointer<T> { UnsafeMutableBufferPointer(start: ws.productOutput, count: n) }

    /// Starts a step with right-hand side b (count n, copied).
    /// - Throws: `.invalidArgument`, `.nonFiniteInput`, `.invalidState` if a step is in progress.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public func begin(rhs b: UnsafeBufferPointer<T>) throws(EstimatorError) -> Progress {
        try rejectReentry("begin")
        return try start(rhs: b, deferred: false, copying: true)
    }

    private func rejectReentry(_ call: String) throws(EstimatorError) {
        guard !insideProductCallback else {
            throw .invalidState("\(call) was called from inside this estimator's own product callback")
        }
    }

    /// `copying` false: b stays valid and unchanged until the step ends (`step`, and the
    /// bilevel optimizer's own buffer), so the step reads it in place.
    private func start(rhs b: UnsafeBufferPointer<T>, deferred: Bool, copying: Bool) throws(EstimatorError) -> Progress {
        guard !inProgress else { throw .invalidState("a step is already in progress: resume or cancel it first") }
        guard b.count == n, let p = b.baseAddress else {
            throw .invalidArgument("b must hold n = \(n) values (got \(b.count))")
        }
        // rhsCopy belongs to no committed state, so it may be written before b is accepted.
        let measured = vectorPasses.measure(p, copyingInto: copying ? ws.rhsCopy : nil)
        guard measured.allFinite else { throw .nonFiniteInput("b contains NaN or infinity") }
        let bNorm = Kernels.norm(fromSumOfSquares: measured.sumOfSquares) ?? Kernels.norm(p, n)
        guard bNorm.isFinite else { throw .nonFiniteInput("||b|| overflows") }
        ws.rhs = copying ? UnsafePointer(ws.rhsCopy) : p
        ws.rhsNorm = bNorm
        pendingInfo = StepInfo()
        inProgress = true
        deferringCommit = deferred
        awaitingCommit = false
        return try advance { (ws, info) throws(EstimatorError) in
            switch engine {
            case .lanczos(let m): try m.begin(ws, &info)
            case .subspace(let m): try m.begin(ws, &info)
            case .cg(let m): try m.begin(ws, &info)
            case .minres(let m): try m.begin(ws, &info)
            case .gradient(let m): try m.begin(ws, &info)
            case .neumann(let m): try m.begin(ws, &info)
            case .randomNeumann(let m): try m.begin(ws, &info)
            }
        }
    }

    /// Continues the step after the caller wrote A * `productInput` into `productOutput`.
    /// - Throws: `.nonFiniteProduct` or `.nonFiniteResult` (the step is abandoned and the
    ///   state is as before `begin`), `.invalidState` if no step is in progress.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public func resume() throws(EstimatorError) -> Progress {
        try rejectReentry("resume")
        guard inProgress, !awaitingCommit else { throw .invalidState("no step is in progress: call begin first") }
        return try advance { (ws, info) throws(EstimatorError) in
            switch engine {
            case .lanczos(let m): try m.resume(ws, &info)
            case .subspace(let m): try m.resume(ws, &info)
            case .cg(let m): try m.resume(ws, &info)
            case .minres(let m): try m.resume(ws, &info)
            case .gradient(let m): try m.resume(ws, &info)
            case .neumann(let m): try m.resume(ws, &info)
            case .randomNeumann(let m): try m.resume(ws, &info)
            }
        }
    }

    /// `resume()` with the product A * `productInput` read from `product` (count n) rather
    /// than from `productOutput`: methods that only read the product use it in place,
    /// saving the copy. `product` is not kept after the call.
    /// - Throws: as `resume()`, and `.invalidArgument` for a wrong count.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public func resume(product: UnsafeBufferPointer<T>) throws(EstimatorError) -> Progress {
        try rejectReentry("resume")
        guard inProgress, !awaitingCommit else { throw .invalidState("no step is in progress: call begin first") }
        guard product.count == n, let p = product.baseAddress else {
            throw .invalidArgument("the product must hold n = \(n) values (got \(product.count))")
        }
        switch engine {
        case .lanczos, .cg: break
        case .subspace, .minres, .gradient, .neumann, .randomNeumann:
            // These update the product in place: it must be in their own buffer.
            Kernels.copy(p, to: ws.productOutput, n)
            return try resume()
        }
        ws.product = p
        defer { ws.product = UnsafePointer(ws.productOutput) }
        return try resume()
    }

    /// Abandons a step in progress; the estimator is as before `begin`. No effect otherwise.
    public func cancel() {
        guard inProgress, !insideProductCallback else { return }
        inProgress = false
        deferringCommit = false
        awaitingCommit = false
        ws.rhs = UnsafePointer(ws.rhsCopy)
        switch engine {
        case .lanczos(let m): m.abandon()
        case .subspace(let m): m.abandon()
        case .cg(let m): m.abandon()
        case .minres(let m): m.abandon()
        case .gradient(let m): m.abandon()
        case .neumann(let m): m.abandon()
        case .randomNeumann(let m): m.abandon()
        }
    }

    /// Runs one state-machine transition; commits on completion, rolls back on error.
    @inline(__always)
    private func advance(
        _ transition: (StepWorkspace<T>, inout StepInfo) throws(EstimatorError) -> Bool
    ) throws(EstimatorError) -> Progress {
        let needsProduct: Bool
        do {
            needsProduct = try transition(ws, &pendingInfo)
        } catch {
            cancel()
            throw error
        }
        if needsProduct { return .needsProduct }
        if deferringCommit {
            awaitingCommit = true
            var info = pendingInfo
            info.totalProducts = totalProducts + info.products
            return .finished(info)
        }
        commitStep()
        return .finished(lastInfo)
    }

    // MARK: Deferred commit (for callers whose own step can still fail afterwards)

    /// Like `begin`, but a finished step is not committed: its estimate is readable through
    /// `pendingEstimate` until `commitDeferred()` publishes it or `cancel()` discards it.
    func beginDeferred(rhs b: UnsafeBufferPointer<T>) throws(EstimatorError) -> Progress {
        try start(rhs: b, deferred: true, copying: false)
    }

    /// Runs a product closure of a deferred step: calls into this estimator from inside it
    /// are rejected, as they are for `step`.
    func duringProductCallback<R>(_ body: () throws -> R) rethrows -> R {
        insideProductCallback = true
        defer { insideProductCallback = false }
        return try body()
    }

    /// The estimate of a finished deferred step.
    var pendingEstimate: UnsafePointer<T> { UnsafePointer(ws.pending) }

    func commitDeferred() {
        guard awaitingCommit else { return }
        deferringCommit = false
        awaitingCommit = false
        commitStep()
        ws.rhs = UnsafePointer(ws.rhsCopy)
    }

    private func commitStep() {
        switch engine {
        case .lanczos(let m): m.commit(ws)
        case .subspace(let m): m.commit(ws)
        case .cg(let m): m.commit(ws)
        case .minres(let m): m.commit(ws)
        case .gradient(let m): m.commit(ws)
        case .neumann(let m): m.commit(ws)
        case .randomNeumann(let m): m.commit(ws)
        }
        ws.commitEstimate()
        inProgress = false
        steps += 1
        totalProducts += pendingInfo.products
        pendingInfo.totalProducts = totalProducts
        if case .lanczos(let m) = engine { pendingInfo.restarts = m.restarts }
        lastInfo = pendingInfo
    }

    // MARK: Callback driver

    /// One step with products supplied by `product(input, output)`, which must write
    /// A * input into output (both count n, not aliased, valid only during the call).
    /// The new estimate is committed and copied into `destination` (count n).
    ///
    /// - Throws: whatever `product` throws (rethrown unchanged after the step is rolled
    ///   back), or an `EstimatorError`. Either way the estimator is as before the call.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public func step(
        rhs b: UnsafeBufferPointer<T>, into destination: UnsafeMutableBufferPointer<T>,
        product: (UnsafeBufferPointer<T>, UnsafeMutableBufferPointer<T>) throws -> Void
    ) throws -> StepInfo {
        guard destination.count == n, destination.baseAddress != nil else {
            throw EstimatorError.invalidArgument("the destination must hold n = \(n) values (got \(destination.count))")
        }
        try rejectReentry("step")
        // The caller's b must not outlive the call in the workspace (SubBiO also asks for
        // its product: productInput may point at it).
        defer {
            if ws.productInput == ws.rhs && ws.rhs != UnsafePointer(ws.rhsCopy) {
                ws.productInput = UnsafePointer(ws.estimate)
            }
            ws.rhs = UnsafePointer(ws.rhsCopy)
        }
        var progress = try start(rhs: b, deferred: false, copying: false)
        while progress == .needsProduct {
            insideProductCallback = true
            do {
                try product(productInput, productOutput)
            } catch {
                insideProductCallback = false
                cancel()
                throw error
            }
            insideProductCallback = false
            progress = try resume()
        }
        Kernels.copy(ws.estimate, to: destination.baseAddress!, n)
        return lastInfo
    }
}
