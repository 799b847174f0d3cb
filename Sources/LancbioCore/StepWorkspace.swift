/// Buffers shared by an estimator and its method: the committed estimate, the estimate
/// being computed, the estimator's own copy of b, and the product buffer the caller writes.
/// Allocated once; steps allocate nothing. It holds only storage it owns: what a step is
/// given (b, a caller's product) reaches the method as a `StepInput` for one call.
final class StepWorkspace<T: BinaryFloatingPoint> {
    /// Vectors of n values the workspace holds: the four below.
    static var vectors: Int { 4 }

    private var allocations = OwnedAllocations()
    let n: Int
    /// The committed estimate v_k (the warm start and the anchor of the next restart).
    private(set) var estimate: UnsafeMutablePointer<T>
    /// v_{k+1} while a step is in progress; swapped with `estimate` on commit.
    private(set) var pending: UnsafeMutablePointer<T>
    /// b of a reverse-communication step, whose caller's b is gone after `begin`; also
    /// scratch for a method during a step that reads the caller's b in place.
    let rhsCopy: UnsafeMutablePointer<T>
    /// Where the caller writes A * (the vector the method asked for).
    let productOutput: UnsafeMutablePointer<T>
    /// The sums across processes when the vectors are slices (nil: one process, and every
    /// method runs its single-process code unchanged).
    var reduction: Reduction?

    /// - Throws: `.outOfMemory`, with nothing left allocated.
    init(n: Int) throws(EstimatorError) {
        self.n = n
        estimate = try allocations.zeroed(n)
        pending = try allocations.zeroed(n)
        rhsCopy = try allocations.zeroed(n)
        productOutput = try allocations.zeroed(n)
    }

    func commitEstimate() { swap(&estimate, &pending) }
}

/// What one call of a method's `begin` or `resume` is given, as values for that call
/// only: the step's b (the estimator's copy, or the caller's own b during `step`), its
/// norm, and the product the method asked for (in `productOutput`, or during
/// `Estimator.resume(product:)` the caller's buffer, read-only).
struct StepInput<T: BinaryFloatingPoint> {
    let rhs: UnsafePointer<T>
    /// ||b||, finite.
    let rhsNorm: Double
    /// A * (the requested vector); meaningless in `begin`.
    let product: UnsafePointer<T>

    /// The error for a non-finite value derived from the product: the operator's fault if
    /// the product itself holds NaN or infinity, else an overflow of our own arithmetic.
    /// Only called on that failure path, so the extra pass costs nothing.
    func productFailure(_ what: String, _ n: Int) -> EstimatorError {
        Kernels.allFinite(product, n)
            ? .nonFiniteResult("\(what) overflowed")
            : .nonFiniteProduct("the operator returned NaN or infinity (\(what))")
    }
}
