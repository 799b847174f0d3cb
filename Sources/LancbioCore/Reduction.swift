/// Replaces `values` by their sums over all processes (an all-reduce with MPI_SUM); false
/// when the reduction failed. Every process calls it the same number of times with the
/// same counts, in the same order, because every decision that leads to a call is made
/// from values it returned (docs/algorithms.md section 13).
public typealias ReductionHook = (UnsafeMutableBufferPointer<Double>) -> Bool

/// The sums of one estimator's steps across processes, when each process holds a slice of
/// every vector: the hook, the buffer the methods fill with their local partial sums, and
/// the failure slot that lets a process whose product failed tell the others.
///
/// Every reduction carries one value more than the method's: the number of processes whose
/// step failed locally (a product callback that threw). A failing process does not leave
/// the step at once, which would leave the others waiting in their next reduction: it
/// goes on with a zero product to the next reduction of the step (every method reduces
/// after each product before asking for another), where all processes see the count and
/// abandon the step together.
///
/// Norms: a reduced sum of squares that overflows or underflows (`Kernels.norm(fromSumOfSquares:)`
/// rejects it, on every process alike) is recomputed in two more reductions: first each
/// process's own rescaled norm ||x_p|| summed at two scales, 2^-540 ||x_p|| and 2^540
/// ||x_p||, one of which is finite and not lost to underflow for any ||x_p|| in range, so
/// their sum gives a common scale s within a factor P of max_p ||x_p||; then
/// sum_p (||x_p|| / s)^2, whose terms are at most 1. The norm is s sqrt of it.
final class Reduction {
    private var allocations = OwnedAllocations()
    let hook: ReductionHook
    /// Values the methods fill, `capacity` of them plus the failure slot.
    let values: UnsafeMutablePointer<Double>
    let capacity: Int
    /// Hook calls of the step in progress.
    var calls = 0
    /// Set when this process's product failed: its reductions report the failure.
    var localFailure = false
    /// b's check, left to ride on the step's first reduction (`deferRhsCheck`): this
    /// process's contribution to ||b||^2, its own (rescaled) ||b_p|| and whether its slice
    /// is finite; nil once that reduction has summed it.
    private var deferredRhs: (squares: Double, localNorm: Double, finite: Bool)?
    /// The reduced ||b||^2 and this process's ||b_p|| once summed, until `rhsNorm` resolves them.
    private var summedRhs: (squares: Double, localNorm: Double)?
    /// ||b|| across processes once resolved.
    private var resolvedRhsNorm: Double?

    /// - Throws: `.outOfMemory`.
    init(hook: @escaping ReductionHook, capacity: Int) throws(EstimatorError) {
        self.hook = hook
        self.capacity = max(capacity, 4)
        // The failure slot, and b's two values when its check rides along.
        values = try allocations.zeroed(self.capacity + 3)
    }

    /// Sums values[0..<count] over all processes, in place (with b's deferred check, if
    /// one is waiting, in the same call).
    /// - Throws: `.collectiveFailure` when the hook fails or a process's product failed
    ///   (all processes throw at the same call); `.nonFiniteInput` when b's slice is not
    ///   finite on some process.
    func sum(_ count: Int) throws(EstimatorError) {
        var slot = count
        let rhs = deferredRhs
        if let rhs {
            values[slot] = rhs.finite ? rhs.squares : 0
            values[slot + 1] = rhs.finite ? 0 : 1
            slot += 2
        }
        values[slot] = localFailure ? 1 : 0
        calls += 1
        guard hook(UnsafeMutableBufferPointer(start: values, count: slot + 1)) else {
            throw .collectiveFailure("the reduction callback failed; the step was abandoned")
        }
        guard values[slot] == 0 else {
            throw .collectiveFailure("a product failed on \(Int(values[slot])) process(es); the step was abandoned")
        }
        if let rhs {
            deferredRhs = nil
            guard values[count + 1] == 0 else { throw .nonFiniteInput("b contains NaN or infinity (on some process)") }
            summedRhs = (values[count], rhs.localNorm)
        }
    }

    /// Starts a step whose b check rides on its first reduction: `squares` is this
    /// process's contribution to ||b||^2 (`contribution`), `localNorm` its ||b_p||.
    func deferRhsCheck(squares: Double, localNorm: Double, finite: Bool) {
        deferredRhs = (squares, localNorm, finite)
        summedRhs = nil
        resolvedRhsNorm = nil
    }

    /// Forgets a deferred check (a step that checks b at once, or one abandoned).
    func clearRhsCheck() {
        deferredRhs = nil
        summedRhs = nil
        resolvedRhsNorm = nil
    }

    /// ||b|| of a step whose check was deferred, once its first reduction has run (the
    /// rescaling pass, when the reduced sum is out of range, overwrites `values`: call it
    /// after reading them); nil when no check was deferred. Throws `.nonFiniteInput` when
    /// ||b|| overflows, alike on every process.
    func rhsNorm() throws(EstimatorError) -> Double? {
        if let norm = resolvedRhsNorm { return norm }
        if deferredRhs != nil {
            // No reduction ran yet: this one carries the check alone.
            try sum(0)
        }
        guard let summed = summedRhs else { return nil }
        let norm = try self.norm(squares: summed.squares, localNorm: summed.localNorm)
        guard norm.isFinite else { throw .nonFiniteInput("||b|| overflows") }
        summedRhs = nil
        resolvedRhsNorm = norm
        return norm
    }

    /// ||x|| over all processes from the reduced sum of squares `squares` (x is this
    /// process's slice of n values); the two-pass rescaling when `squares` is out of range.
    func norm<T: BinaryFloatingPoint>(squares: Double, _ x: UnsafePointer<T>, _ n: Int) throws(EstimatorError) -> Double {
        if let norm = Kernels.norm(fromSumOfSquares: squares) { return norm }
        return try norm(squares: squares, localNorm: Kernels.norm(x, n))
    }

    /// The same, given this process's own norm (computed with rescaling) rather than its slice.
    func norm(squares: Double, localNorm local: Double) throws(EstimatorError) -> Double {
        if let norm = Kernels.norm(fromSumOfSquares: squares) { return norm }
        if squares.isNaN || squares == 0 { return squares }
        values[0] = local * 0x1p-540
        values[1] = local * 0x1p540
        try sum(2)
        let scale = values[1].isFinite ? values[1] * 0x1p-540 : values[0] * 0x1p540
        guard scale > 0, scale.isFinite else { return scale }
        let ratio = local / scale
        values[0] = ratio * ratio
        try sum(1)
        return scale * values[0].squareRoot()
    }

    /// What this process adds to a reduced sum of squares: its own, except that a slice
    /// whose squares all underflowed to 0 adds the least positive Double, so that the sum
    /// is 0 only for a zero vector (whose norm needs no second pass) and otherwise falls
    /// below the safe range and takes the rescaling pass.
    static func contribution<T: BinaryFloatingPoint>(squares: Double, of x: UnsafePointer<T>, _ n: Int) -> Double {
        squares == 0 && Kernels.maxMagnitude(x, n) > 0 ? .leastNonzeroMagnitude : squares
    }

    /// The same for a slice whose norm `local` was computed with rescaling.
    static func contribution(localNorm local: Double) -> Double {
        let squares = local * local
        return squares == 0 && local > 0 ? .leastNonzeroMagnitude : squares
    }

    /// ||x|| over all processes, with its local sum of squares in one reduction.
    func norm<T: BinaryFloatingPoint>(_ x: UnsafePointer<T>, _ n: Int) throws(EstimatorError) -> Double {
        values[0] = Self.contribution(squares: Kernels.measure(x, n).sumOfSquares, of: x, n)
        try sum(1)
        return try norm(squares: values[0], x, n)
    }

    /// Whether every process's check passed, in one reduction.
    func allAgree(_ passed: Bool) throws(EstimatorError) -> Bool {
        values[0] = passed ? 0 : 1
        try sum(1)
        return values[0] == 0
    }

    /// `StepInput.productFailure` decided alike on every process: whether any process's
    /// product holds NaN or infinity, in one more reduction (on the failure path only).
    func productFailure<T>(_ input: StepInput<T>, _ what: String, _ n: Int) throws(EstimatorError) -> EstimatorError {
        try allAgree(Kernels.allFinite(input.product, n))
            ? .nonFiniteResult("\(what) overflowed")
            : .nonFiniteProduct("the operator returned NaN or infinity (\(what), on some process)")
    }
}
