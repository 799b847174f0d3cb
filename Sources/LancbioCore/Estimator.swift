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
/// The method itself is a `StepMethod` (chosen by `EstimatorMethod`'s table); this class
/// owns the state machine around it, the same for every method: the check of b, the
/// request and product buffers, commit and rollback, and the counters.
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
    private let engine: any StepMethod<T>
    private let readsProductInPlace: Bool
    private let reductionValues: Int?
    private var state = State.idle
    private var pendingInfo = StepInfo()
    /// With reverse reductions: the worker that runs begin/resume so that a reduction can
    /// hand control back to the caller, and the call in flight.
    private var reverse: ReverseCalls?
    /// Diagnostics of the last completed step.
    public private(set) var lastInfo = StepInfo()
    /// Products used since creation or the last reset.
    public private(set) var totalProducts = 0
    /// Steps completed since creation or the last reset.
    public private(set) var steps = 0

    /// Where the estimator is between calls.
    private enum State {
        /// No step in progress.
        case idle
        /// A step waits for a product (`begin`/`resume` returned `.needsProduct`).
        case stepping(Step)
        /// The product closure of `step` or `stepDeferred` is running on `input` (which may
        /// be the caller's b, valid for that call): calls into this estimator from inside
        /// it must not change the state under the step.
        case inProductCallback(Step, input: UnsafePointer<T>)
        /// A deferred step finished; its estimate waits for `commitDeferred` or `cancel`.
        case awaitingCommit
    }

    /// A step in progress: scalars and storage the estimator owns, never a caller's pointer.
    private struct Step {
        /// ||b||.
        var rhsNorm: Double
        /// The vector the method asked to multiply (in method or workspace storage), or nil
        /// for the step's b.
        var request: UnsafePointer<T>?
        /// Whether a finished step waits for `commitDeferred`.
        var deferred: Bool
    }

    /// What a reverse-communication call asks of the caller next.
    public enum Progress: Equatable {
        /// Write A * `productInput` into `productOutput`, then call `resume()`.
        case needsProduct
        /// The step is complete; the new estimate is committed.
        case finished(StepInfo)
        /// With reverse reductions (`setReverseReduction`): replace the values of
        /// `pendingReductionValues` by their sums over all processes and pass them to
        /// `resumeReduction`. (No payload: a case with one would make this a multi-payload
        /// enum whose tag shares bytes with StepInfo's, which memcheck cannot follow.)
        case needsReduction
    }

    /// Creates an estimator of dimension `n` (>= 1) with the estimate v = 0, allocating
    /// all its storage (`requiredBytes`).
    /// - Throws: `.invalidArgument` for n < 1, storage beyond `requiredBytes`' limit, or
    ///   options out of range; `.outOfMemory` when the system refuses an allocation, with
    ///   everything allocated before it released.
    ///
    /// Besides that storage, creation makes about ten small Swift objects (this one, the
    /// workspace, the method, their pass schedulers and closures: 1 to 2 KB in all), whose
    /// allocation the Swift runtime cannot report as an error: a host that must survive an
    /// exhausted system keeps some headroom beyond `requiredBytes` (the C layer's probe
    /// does).
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public init(n: Int, method: EstimatorMethod) throws(EstimatorError) {
        guard n >= 1 else { throw .invalidArgument("n must be >= 1 (got \(n))") }
        let implementation = method.implementation(T.self)
        try implementation.validate()
        guard Self.requiredBytes(n: n, method: method) != nil else {
            throw .invalidArgument("n = \(n) is too large for this method's storage")
        }
        self.n = n
        self.method = method
        ws = try StepWorkspace(n: n)
        vectorPasses = try VectorPasses(n: n)
        engine = try implementation.make(n)
        readsProductInPlace = implementation.readsProductInPlace
        reductionValues = implementation.reductionValues
    }

    // MARK: Vectors sliced across processes

    /// Makes every vector of this estimator (b, v, the products) this process's slice of a
    /// vector held across processes, with `hook` summing values over all of them; nil goes
    /// back to one process. n is then the local length (slices may differ).
    ///
    /// Every inner product and norm of a step is a local partial sum, fused with the
    /// step's others into as few hook calls as the algebra allows (`StepInfo.reductions`;
    /// docs/algorithms.md section 13), and every decision is made from reduced values, so
    /// all processes take the same branches and hold bitwise the same scalars. With a
    /// hook, `step`, `begin`/`resume` and `setEstimate` are collective: every process
    /// makes the same calls. A product that throws on one process makes every process's
    /// step fail at its next reduction (that process rethrows its own error, the others
    /// `.collectiveFailure`), each estimator as before the step; in reverse communication
    /// a process whose product failed writes NaN into it and resumes, so that every
    /// process fails with `.nonFiniteProduct` or `.nonFiniteResult`.
    ///
    /// Collective itself: its one reduction sums the slices' lengths (a Krylov space has at
    /// most that many dimensions). Allocates the buffer of the reduced values (a few
    /// Doubles; 2 (m_max + 1) + 5 for dynamic Lanczos: its values, b's two and the failure count).
    /// - Throws: `.invalidArgument` for a method without support for it (SubBiO, MINRES),
    ///   `.invalidState` during a step, `.outOfMemory`; the estimator is then unchanged.
    public func setReduction(_ hook: ReductionHook?) throws(EstimatorError) {
        try rejectReentry("setReduction")
        guard case .idle = state else { throw .invalidState("a step is in progress: finish or cancel it first") }
        guard let hook else {
            ws.reduction = nil
            dropReverseCalls()
            engine.dimensionChanged(total: n)
            return
        }
        let reduction = try makeReduction(hook)
        // The total dimension, which bounds a Krylov space: the first collective call.
        reduction.values[0] = Double(n)
        try reduction.sum(1)
        let total = reduction.values[0]
        guard total >= Double(n), total < 0x1p53 else { throw .invalidArgument("the reduction of the slices' lengths gave \(total)") }
        install(reduction, totalDimension: Int(total))
    }

    /// `setReduction`'s local half: the reduction this method needs, not yet installed.
    /// For a caller that sums the slices' lengths in a reduction of its own (a one-shot
    /// solve, whose budget depends on the total) and installs it with `install`.
    /// - Throws: `.invalidArgument` (SubBiO, MINRES), `.outOfMemory`.
    func makeReduction(_ hook: @escaping ReductionHook) throws(EstimatorError) -> Reduction {
        guard let values = reductionValues else {
            throw .invalidArgument("the \(method.name) method does not support vectors sliced across processes (a reduction)")
        }
        return try Reduction(hook: hook, capacity: values)
    }

    /// Installs a reduction from `makeReduction`; `totalDimension` is the sum of every
    /// process's n. Between steps only.
    func install(_ reduction: Reduction, totalDimension: Int) {
        ws.reduction = reduction
        dropReverseCalls()
        engine.dimensionChanged(total: totalDimension)
    }

    /// Ends reverse reductions (no call is suspended: the caller is between steps).
    private func dropReverseCalls() {
        reverse?.calls.shutDown()
        reverse = nil
    }

    /// Whether a reduction hook is set.
    public var hasReduction: Bool { ws.reduction != nil }

    /// Slices the vectors across processes as `setReduction` does, but with the
    /// reductions handed back to the caller (reverse communication, for a collective that
    /// cannot be called from inside the library: an asynchronous all-reduce, a GPU
    /// stream): `begin` and `resume` may return `.needsReduction`; the caller then
    /// sums `pendingReductionValues` over all processes and passes the sums to
    /// `resumeReduction`, which continues the step (and may again need a product or a
    /// reduction). The reductions are the same, in the same order, as with a hook.
    /// `totalDimension` is the sum of the slices' lengths (which a hook would have reduced).
    /// The callback-driven `step` is refused in this mode, and `setEstimate` checks v on
    /// this process only (call it alike everywhere). Cancel a pending reduction before
    /// releasing the estimator (its suspended call holds it). Starts a worker thread, on which
    /// begin and resume then run (the caller waits, so one thread runs at a time).
    /// - Throws: as `setReduction`; `.outOfMemory` when the thread cannot be started.
    public func setReverseReduction(totalDimension total: Int) throws(EstimatorError) {
        try rejectReentry("setReverseReduction")
        guard case .idle = state else { throw .invalidState("a step is in progress: finish or cancel it first") }
        guard total >= n, total < 1 << 53 else {
            throw .invalidArgument("the total dimension \(total) must be at least n = \(n) (the sum of the slices' lengths)")
        }
        let calls = try ReverseCalls(calls: SuspendableCalls())
        let reduction: Reduction
        do {
            reduction = try makeReduction { values in
                calls.count = values.count
                calls.values = values.baseAddress
                return calls.calls.suspend()
            }
        } catch {
            calls.calls.shutDown()
            throw error
        }
        install(reduction, totalDimension: total)  // ends the reverse calls before these
        reverse = calls
    }

    /// The values a pending reduction (`.needsReduction`) asks to be summed over all
    /// processes: copied into `destination`, which must hold them all; returns their count.
    /// - Throws: `.invalidState` when no reduction is pending, `.invalidArgument` for a
    ///   destination too small.
    public func pendingReductionValues(into destination: UnsafeMutableBufferPointer<Double>) throws(EstimatorError) -> Int {
        guard let reverse, reverse.calls.isSuspended, let values = reverse.values else {
            throw .invalidState("no reduction is pending")
        }
        guard !reverse.calls.inForkedChild else { throw Self.leftInParent }
        guard destination.count >= reverse.count, let d = destination.baseAddress else {
            throw .invalidArgument("the buffer holds \(destination.count) values; the reduction has \(reverse.count)")
        }
        d.update(from: values, count: reverse.count)
        return reverse.count
    }

    /// Continues the step with the sums over all processes of the pending reduction's
    /// values (as many as `pendingReductionValues` gave).
    /// - Throws: as `resume()`; `.invalidState` when no reduction is pending,
    ///   `.invalidArgument` for a wrong count (the reduction stays pending).
    public func resumeReduction(sums: UnsafeBufferPointer<Double>) throws(EstimatorError) -> Progress {
        guard let reverse, reverse.calls.isSuspended, let values = reverse.values else {
            throw .invalidState("no reduction is pending")
        }
        guard !reverse.calls.inForkedChild else { throw Self.leftInParent }
        guard sums.count == reverse.count, let p = sums.baseAddress else {
            throw .invalidArgument("the reduction has \(reverse.count) values, got \(sums.count)")
        }
        values.update(from: p, count: reverse.count)
        return try settle(reverse, reverse.calls.resume(aborting: false))
    }

    /// A forked child's pending reduction: the rest of its call is on the parent's worker.
    private static var leftInParent: EstimatorError {
        .invalidState("the pending reduction's step stayed with the parent process (a fork): cancel it here")
    }

    /// Whether a reduction is pending (`.needsReduction` was returned and not yet resumed).
    public var reductionPending: Bool { reverse?.calls.isSuspended ?? false }

    /// Runs `call` on the worker; its outcome, or the pending reduction it stopped at.
    private func reversed(_ reverse: ReverseCalls,
                          _ call: @escaping () throws(EstimatorError) -> Progress) throws(EstimatorError) -> Progress {
        reverse.result = nil
        if reverse.calls.inForkedChild {
            // A forked child has no copy of the parent's worker: this process gets its own.
            reverse.calls = try SuspendableCalls()
        }
        let outcome = reverse.calls.run { reverse.result = Result { () throws(EstimatorError) in try call() } }
        return try settle(reverse, outcome)
    }

    private func settle(_ reverse: ReverseCalls, _ outcome: SuspendableCalls.Outcome) throws(EstimatorError) -> Progress {
        switch outcome {
        case .suspended:
            return .needsReduction
        case .finished:
            let result = reverse.result
            reverse.result = nil
            guard let result else { throw .invalidState("the reverse call finished without a result") }
            return try result.get()
        }
    }

    /// The worker of reverse reductions and the state of the call on it.
    private final class ReverseCalls {
        var calls: SuspendableCalls
        /// The reduction the suspended call waits for: its buffer and count.
        var values: UnsafeMutablePointer<Double>?
        var count = 0
        var result: Result<Progress, EstimatorError>?

        init(calls: SuspendableCalls) { self.calls = calls }

        /// In a forked child: the suspended call is gone with the parent's worker.
        func forget() {
            calls.forgetSuspended()
            result = nil
        }
    }

    /// Reached only with no reduction pending: a suspended call's frames on the worker hold
    /// this estimator (`cancel` first, as lancbio_estimator_destroy does).
    deinit {
        reverse?.calls.shutDown()
    }

    /// Bytes the estimator's creation asks the system for, exactly: the vectors of n
    /// values (the workspace's four, the method's; the Lanczos basis dominates with m_max
    /// + 1 of them) and the small buffers (the projected system, per-chunk sums, scratch).
    /// nil when that overflows or exceeds 2^46 bytes. Each buffer costs up to one 64-byte
    /// line more (its alignment) and the allocator's own bookkeeping, and the few objects
    /// of `init` come on top.
    /// Hosts that must not abort on allocation failure can try this much first.
    ///
    /// Options the estimator would reject count as 0 bytes: creation then fails with the
    /// precise reason rather than an allocation error. Caller-controlled sizes are never
    /// multiplied unchecked, here least of all, since hosts call this before creating.
    public static func requiredBytes(n: Int, method: EstimatorMethod) -> Int? {
        let implementation = method.implementation(T.self)
        guard n >= 1, (try? implementation.validate()) != nil else { return 0 }
        let storage = implementation.storage(n)
        let (elements, overflow) = n.multipliedReportingOverflow(by: storage.vectors + StepWorkspace<T>.vectors)
        guard !overflow, elements <= (1 << 46) / MemoryLayout<T>.stride else { return nil }
        return elements * MemoryLayout<T>.stride + storage.bytes + VectorPasses<T>.storageBytes
    }

    // MARK: Estimate and state

    /// Whether a reverse-communication step has begun and not yet finished or been cancelled.
    public var isStepInProgress: Bool {
        if case .idle = state { false } else { true }
    }

    /// Lanczos only: the current subspace dimension j and period m (0 for other methods).
    public var lanczosDimension: Int { engine.progress.dimension }
    public var lanczosPeriod: Int { engine.progress.period }
    public var restarts: Int { engine.progress.restarts }

    /// Copies the committed estimate v (count n) into `destination`.
    public func copyEstimate(into destination: UnsafeMutableBufferPointer<T>) throws(EstimatorError) {
        let d = try checkedCount(destination, "the destination")
        Kernels.copy(ws.estimate, to: d, n)
    }

    /// Replaces the committed estimate (a warm start). Lanczos restarts from it at the next step.
    /// - Throws: `.invalidArgument` (wrong count), `.nonFiniteInput`, `.invalidState` during a step.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public func setEstimate(_ v: UnsafeBufferPointer<T>) throws(EstimatorError) {
        try rejectReentry("setEstimate")
        guard case .idle = state else { throw .invalidState("a step is in progress: finish or cancel it first") }
        let p = try checkedCount(v, "the estimate")
        let finite = Kernels.allFinite(p, n)
        // With reverse reductions the check is this process's own: a reduction here would
        // need a step's worker to hand it back (docs/algorithms.md section 13).
        if let reduction = ws.reduction, reverse == nil {
            reduction.localFailure = false
            guard try reduction.allAgree(finite) else {
                throw .nonFiniteInput("the estimate contains NaN or infinity (on some process)")
            }
        }
        guard finite else { throw .nonFiniteInput("the estimate contains NaN or infinity") }
        Kernels.copy(p, to: ws.pending, n)
        ws.commitEstimate()
        engine.estimateReplaced()
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
        engine.reset()
    }

    // MARK: Reverse communication

    /// The vector whose product the step needs; valid while `begin`/`resume` last returned
    /// `.needsProduct`, and inside the product closure of `step` (the closure's input).
    /// Read it, do not keep it.
    public var productInput: UnsafeBufferPointer<T> {
        UnsafeBufferPointer(start: request(rhs: UnsafePointer(ws.rhsCopy)), count: n)
    }

    /// Copies `productInput` into `destination` (count n), on both cores at large n.
    public func copyProductInput(into destination: UnsafeMutableBufferPointer<T>) throws(EstimatorError) {
        let d = try checkedCount(destination, "the destination")
        vectorPasses.copy(request(rhs: UnsafePointer(ws.rhsCopy)), into: d)
    }

    /// Where the caller writes A * `productInput` (count n). Owned by the estimator.
    public var productOutput: UnsafeMutableBufferPointer<T> { UnsafeMutableBufferPointer(start: ws.productOutput, count: n) }

    /// Starts a step with right-hand side b (count n, copied).
    /// - Throws: `.invalidArgument`, `.nonFiniteInput`, `.invalidState` if a step is in progress.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public func begin(rhs b: UnsafeBufferPointer<T>) throws(EstimatorError) -> Progress {
        try rejectReentry("begin")
        if let reverse {
            // b is copied before the first reduction (accept), so the caller's buffer is
            // not read after a suspended call returns.
            return try reversed(reverse) { [unowned(unsafe) self] () throws(EstimatorError) in
                let rhsNorm = try accept(rhs: b, copying: true)
                return try start(rhs: UnsafePointer(ws.rhsCopy), rhsNorm: rhsNorm, deferred: false)
            }
        }
        let rhsNorm = try accept(rhs: b, copying: true)
        return try start(rhs: UnsafePointer(ws.rhsCopy), rhsNorm: rhsNorm, deferred: false)
    }

    /// Continues the step after the caller wrote A * `productInput` into `productOutput`.
    /// - Throws: `.nonFiniteProduct` or `.nonFiniteResult` (the step is abandoned and the
    ///   state is as before `begin`), `.invalidState` if no step is in progress.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public func resume() throws(EstimatorError) -> Progress {
        try rejectReentry("resume")
        if let reverse {
            return try reversed(reverse) { [unowned(unsafe) self] () throws(EstimatorError) in
                try advance(rhs: UnsafePointer(ws.rhsCopy), product: UnsafePointer(ws.productOutput))
            }
        }
        return try advance(rhs: UnsafePointer(ws.rhsCopy), product: UnsafePointer(ws.productOutput))
    }

    /// `resume()` with the product A * `productInput` read from `product` (count n) rather
    /// than from `productOutput`: methods that only read the product use it in place,
    /// saving the copy. `product` is not kept after the call.
    /// - Throws: as `resume()`, and `.invalidArgument` for a wrong count.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public func resume(product: UnsafeBufferPointer<T>) throws(EstimatorError) -> Progress {
        try rejectReentry("resume")
        _ = try stepAwaitingProduct()
        let p = try checkedCount(product, "the product")
        // With reverse reductions the method may go on reading the product after this call
        // returned (suspended): it must be in the estimator's own buffer.
        guard readsProductInPlace && reverse == nil else {
            // The method updates the product in place: it must be in its own buffer.
            Kernels.copy(p, to: ws.productOutput, n)
            return try resume()
        }
        return try advance(rhs: UnsafePointer(ws.rhsCopy), product: p)
    }

    /// Abandons a step in progress; the estimator is as before `begin`. No effect otherwise,
    /// nor from inside the step's own product closure.
    public func cancel() {
        if let reverse, reverse.calls.isSuspended {
            if reverse.calls.inForkedChild {
                // The worker, and the rest of its call, stayed in the parent process.
                reverse.forget()
            } else {
                // The pending reduction fails, so the method abandons the step on the worker.
                _ = reverse.calls.resume(aborting: true)
                reverse.result = nil
            }
        }
        switch state {
        case .idle, .inProductCallback: return
        case .stepping, .awaitingCommit:
            state = .idle
            ws.reduction?.clearRhsCheck()
            engine.abandon()
        }
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
        let d = try checkedCount(destination, "the destination")
        try rejectReentry("step")
        _ = try drive(rhs: b, deferred: false, product: product)
        Kernels.copy(ws.estimate, to: d, n)
        return lastInfo
    }

    // MARK: Deferred commit (for callers whose own step can still fail afterwards)

    /// `step` without the commit: the finished step's estimate is readable through
    /// `pendingEstimate` until `commitDeferred()` publishes it or `cancel()` discards it.
    /// b (count n) is read in place for the whole call. Returns the step's info, its
    /// total products counting the step.
    func stepDeferred(
        rhs b: UnsafeBufferPointer<T>,
        product: (UnsafeBufferPointer<T>, UnsafeMutableBufferPointer<T>) throws -> Void
    ) throws -> StepInfo {
        try rejectReentry("step")
        guard case .finished(let info) = try drive(rhs: b, deferred: true, product: product) else {
            throw EstimatorError.invalidState("the deferred step did not finish")
        }
        return info
    }

    /// The estimate of a finished deferred step.
    var pendingEstimate: UnsafePointer<T> { UnsafePointer(ws.pending) }

    func commitDeferred() {
        guard case .awaitingCommit = state else { return }
        commit()
    }

    // MARK: The state machine

    private func rejectReentry(_ call: String) throws(EstimatorError) {
        if let reverse, reverse.calls.isSuspended {
            throw .invalidState("\(call) was called while a reduction is pending: pass its sums to resumeReduction, or cancel")
        }
        guard case .inProductCallback = state else { return }
        throw .invalidState("\(call) was called from inside this estimator's own product callback")
    }

    private func checkedCount(_ buffer: UnsafeBufferPointer<T>, _ what: String) throws(EstimatorError) -> UnsafePointer<T> {
        guard buffer.count == n, let p = buffer.baseAddress else {
            throw .invalidArgument("\(what) must hold n = \(n) values (got \(buffer.count))")
        }
        return p
    }

    private func checkedCount(_ buffer: UnsafeMutableBufferPointer<T>, _ what: String) throws(EstimatorError)
        -> UnsafeMutablePointer<T> {
        UnsafeMutablePointer(mutating: try checkedCount(UnsafeBufferPointer(buffer), what))
    }

    /// The step waiting for a product, or `.invalidState`.
    private func stepAwaitingProduct() throws(EstimatorError) -> Step {
        guard case .stepping(let step) = state else { throw .invalidState("no step is in progress: call begin first") }
        return step
    }

    /// The vector to multiply, given the step's b.
    private func request(rhs: UnsafePointer<T>) -> UnsafePointer<T> {
        switch state {
        case .stepping(let step): step.request ?? rhs
        case .inProductCallback(_, let input): input
        case .idle, .awaitingCommit: UnsafePointer(ws.estimate)
        }
    }

    /// Checks b (count n: finite, ||b|| finite) and returns ||b||; with `copying`, b is
    /// also copied into the workspace in the same pass.
    private func accept(rhs b: UnsafeBufferPointer<T>, copying: Bool) throws(EstimatorError) -> Double {
        guard case .idle = state else { throw .invalidState("a step is already in progress: resume or cancel it first") }
        let p = try checkedCount(b, "b")
        // rhsCopy belongs to no committed state, so it may be written before b is accepted.
        let measured = vectorPasses.measure(p, copyingInto: copying ? ws.rhsCopy : nil)
        // The copy when there is one: with reverse reductions this call may return (at b's
        // reduction) before the norm is computed, and the caller's b is not read after that.
        if let reduction = ws.reduction {
            return try acceptAcrossProcesses(measured, copying ? UnsafePointer(ws.rhsCopy) : p, reduction)
        }
        guard measured.allFinite else { throw .nonFiniteInput("b contains NaN or infinity") }
        let bNorm = Kernels.norm(fromSumOfSquares: measured.sumOfSquares) ?? Kernels.norm(p, n)
        guard bNorm.isFinite else { throw .nonFiniteInput("||b|| overflows") }
        return bNorm
    }

    /// `accept`'s checks on the reduced values: ||b||^2 and the count of processes whose
    /// slice is not finite, in a reduction of their own, or, for a method whose step
    /// `defersRhsCheck`, riding on the step's first reduction (the returned norm is then
    /// NaN: the method reads `Reduction.rhsNorm()` if it needs it).
    private func acceptAcrossProcesses(_ measured: (allFinite: Bool, sumOfSquares: Double), _ b: UnsafePointer<T>,
                                       _ reduction: Reduction) throws(EstimatorError) -> Double {
        reduction.calls = 0
        reduction.localFailure = false
        reduction.clearRhsCheck()
        if engine.defersRhsCheck {
            let squares = measured.allFinite ? Reduction.contribution(squares: measured.sumOfSquares, of: b, n) : 0
            let local = measured.allFinite ? (Kernels.norm(fromSumOfSquares: measured.sumOfSquares) ?? Kernels.norm(b, n)) : 0
            reduction.deferRhsCheck(squares: squares, localNorm: local, finite: measured.allFinite)
            return .nan
        }
        reduction.values[0] = measured.allFinite ? Reduction.contribution(squares: measured.sumOfSquares, of: b, n) : 0
        reduction.values[1] = measured.allFinite ? 0 : 1
        try reduction.sum(2)
        guard reduction.values[1] == 0 else { throw .nonFiniteInput("b contains NaN or infinity (on some process)") }
        let bNorm = try reduction.norm(squares: reduction.values[0], b, n)
        guard bNorm.isFinite else { throw .nonFiniteInput("||b|| overflows") }
        return bNorm
    }

    /// Begins a step on b (valid and unchanged until the step ends).
    private func start(rhs: UnsafePointer<T>, rhsNorm: Double, deferred: Bool) throws(EstimatorError) -> Progress {
        pendingInfo = StepInfo()
        state = .stepping(Step(rhsNorm: rhsNorm, request: nil, deferred: deferred))
        let input = StepInput(rhs: rhs, rhsNorm: rhsNorm, product: UnsafePointer(ws.productOutput))
        return try transition { () throws(EstimatorError) in try engine.begin(input, ws, &pendingInfo) }
    }

    /// Hands the method the product of the last request.
    private func advance(rhs: UnsafePointer<T>, product: UnsafePointer<T>) throws(EstimatorError) -> Progress {
        let step = try stepAwaitingProduct()
        let input = StepInput(rhs: rhs, rhsNorm: step.rhsNorm, product: product)
        return try transition { () throws(EstimatorError) in try engine.resume(input, ws, &pendingInfo) }
    }

    /// Runs one call of the method; records its request, or commits (or, deferred, holds)
    /// a finished step; abandons the step on error.
    @inline(__always)
    private func transition(_ call: () throws(EstimatorError) -> StepDemand<T>) throws(EstimatorError) -> Progress {
        guard case .stepping(var step) = state else { throw .invalidState("no step is in progress") }
        let demand: StepDemand<T>
        do {
            demand = try call()
        } catch {
            cancel()
            throw error
        }
        switch demand {
        case .product(let vector):
            step.request = vector
        case .productOfRhs:
            step.request = nil
        case .done:
            if let reduction = ws.reduction {
                // Every method reduces after each product, so a failed one never gets here.
                guard !reduction.localFailure else {
                    cancel()
                    throw .invalidState("a step finished without reducing after a failed product")
                }
                // A step that never needed ||b|| still checks that it does not overflow
                // (its first reduction has summed it; this adds no call but on overflow).
                do {
                    _ = try reduction.rhsNorm()
                } catch {
                    cancel()
                    throw error
                }
                pendingInfo.reductions = reduction.calls
            }
            guard step.deferred else {
                commit()
                return .finished(lastInfo)
            }
            state = .awaitingCommit
            var info = pendingInfo
            info.totalProducts = totalProducts + info.products
            return .finished(info)
        }
        state = .stepping(step)
        return .needsProduct
    }

    /// Runs a whole step on the caller's b, read in place, with products from `product`.
    private func drive(
        rhs b: UnsafeBufferPointer<T>, deferred: Bool,
        product: (UnsafeBufferPointer<T>, UnsafeMutableBufferPointer<T>) throws -> Void
    ) throws -> Progress {
        guard reverse == nil else {
            throw EstimatorError.invalidState("with reverse reductions, steps run by begin and resume (the reductions come back to the caller)")
        }
        let rhsNorm = try accept(rhs: b, copying: false)
        let rhs = b.baseAddress!  // accepted: n values
        var progress = try start(rhs: rhs, rhsNorm: rhsNorm, deferred: deferred)
        // Across processes, a failed product is kept until the next reduction tells every
        // process (see `Reduction`); this one goes on with a zero product until then.
        var failure: (any Error)? = nil
        while progress == .needsProduct {
            guard case .stepping(let step) = state else { break }
            let input = step.request ?? rhs
            if failure == nil {
                state = .inProductCallback(step, input: input)
                do {
                    try product(UnsafeBufferPointer(start: input, count: n), productOutput)
                } catch {
                    state = .stepping(step)
                    guard let reduction = ws.reduction else {
                        cancel()
                        throw error
                    }
                    failure = error
                    reduction.localFailure = true
                }
                state = .stepping(step)
            }
            if failure != nil { Kernels.fill(ws.productOutput, n, with: 0) }
            do {
                progress = try advance(rhs: rhs, product: UnsafePointer(ws.productOutput))
            } catch {
                throw failure ?? error
            }
        }
        return progress
    }

    // MARK: Checkpoint (the public calls are in Estimator+Checkpoint.swift)

    /// Rejects a checkpoint call during a step: only committed state is saved or replaced.
    func checkNoStep(_ call: String) throws(EstimatorError) {
        try rejectReentry(call)
        guard case .idle = state else {
            throw .invalidState("\(call) needs the estimator between steps: finish or cancel the step in progress first")
        }
    }

    /// Appends the committed state: the counters, the last step's info, the estimate and
    /// the method's state. No step is in progress.
    func archiveState(to w: inout StateWriter) {
        w.integer(steps)
        w.integer(totalProducts)
        lastInfo.archive(to: &w)
        w.vector(ws.estimate, count: n)
        engine.save(to: &w)
    }

    /// Decodes and checks what `archiveState` wrote for this estimator's n, method and T;
    /// returns what installs it (which cannot fail). Changes nothing itself.
    func unarchiveState(from r: inout StateReader) throws(EstimatorError) -> StateInstallation {
        let steps = try r.count("the step count")
        let totalProducts = try r.count("the total products")
        let info = try StepInfo.unarchive(from: &r)
        // The counters and the last info agree in every state a run reaches.
        guard info.totalProducts == totalProducts, steps > 0 || info == StepInfo() else {
            throw .invalidCheckpoint("the step counters and the last step's info disagree")
        }
        let estimate = try r.vector(T.self, count: n, "the estimate")
        let method = try engine.restore(from: &r)
        return { [self] in
            self.steps = steps
            self.totalProducts = totalProducts
            lastInfo = info
            pendingInfo = StepInfo()
            StateReader.install(estimate, into: ws.estimate, count: n)
            method()
        }
    }

    private func commit() {
        engine.commit(ws)
        ws.commitEstimate()
        state = .idle
        steps += 1
        totalProducts += pendingInfo.products
        pendingInfo.totalProducts = totalProducts
        pendingInfo.restarts = engine.progress.restarts
        lastInfo = pendingInfo
    }
}
