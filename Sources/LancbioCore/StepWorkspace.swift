/// Buffers shared by an estimator and its method: the committed estimate, the estimate
/// being computed, the right-hand side of the step, and the product buffers exchanged
/// with the caller. Allocated once; steps allocate nothing.
final class StepWorkspace<T: BinaryFloatingPoint> {
    let n: Int
    /// The committed estimate v_k (the warm start and the anchor of the next restart).
    private(set) var estimate: UnsafeMutablePointer<T>
    /// v_{k+1} while a step is in progress; swapped with `estimate` on commit.
    private(set) var pending: UnsafeMutablePointer<T>
    /// b of the step in progress: `rhsCopy` for reverse communication, whose caller's b
    /// is gone after `begin`; the caller's own b while `Estimator.step` runs (valid and
    /// unchanged for the whole call), which saves the copy and its memory.
    var rhs: UnsafePointer<T>
    let rhsCopy: UnsafeMutablePointer<T>
    /// Where the caller writes A * productInput.
    let productOutput: UnsafeMutablePointer<T>
    /// Where methods that only read the product find it: `productOutput`, or during
    /// `Estimator.resume(product:)` the caller's buffer (read-only, valid for that call).
    var product: UnsafePointer<T>
    /// The vector whose product the method needs next; points into method or workspace
    /// storage, stable for the life of the estimator.
    var productInput: UnsafePointer<T>
    /// ||b|| of the step in progress.
    var rhsNorm = 0.0

    init(n: Int) {
        self.n = n
        estimate = .allocate(zeroed: n)
        pending = .allocate(zeroed: n)
        rhsCopy = .allocate(zeroed: n)
        rhs = UnsafePointer(rhsCopy)
        productOutput = .allocate(zeroed: n)
        productInput = UnsafePointer(estimate)
        product = UnsafePointer(productOutput)
    }

    deinit {
        estimate.deallocateZeroed(); pending.deallocateZeroed(); rhsCopy.deallocateZeroed()
        productOutput.deallocateZeroed()
    }

    func commitEstimate() { swap(&estimate, &pending) }

    /// The error for a non-finite value derived from the last product: the operator's
    /// fault if the product itself holds NaN or infinity, else an overflow of our own
    /// arithmetic. Only called on that failure path, so the extra pass costs nothing.
    func productFailure(_ what: String) -> EstimatorError {
        Kernels.allFinite(product, n)
            ? .nonFiniteResult("\(what) overflowed")
            : .nonFiniteProduct("the operator returned NaN or infinity (\(what))")
    }
}

extension UnsafeMutablePointer where Pointee: BinaryFloatingPoint {
    /// A new buffer of `count` zeros, its first value on a 64-byte cache line (see
    /// `LineAlignedMemory`); release it with `deallocateZeroed()`.
    ///
    /// From calloc in release builds: large buffers arrive as fresh zero pages from the
    /// system, which take no memory until first written. A buffer a caller never uses (the
    /// product buffer of a host that only uses reverse communication, basis columns beyond
    /// the longest cycle so far) then costs address space only.
    static func allocate(zeroed count: Int) -> UnsafeMutablePointer<Pointee> {
        let count = Swift.max(count, 1)
        let (bytes, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<Pointee>.stride)
        guard !overflow, let start = LineAlignedMemory.allocate(bytes) else {
            // Creation checks that the storage can be allocated before allocating it, so
            // this is reached only when the system runs out of memory in between.
            fatalError("out of memory allocating \(count) values")
        }
        return start.bindMemory(to: Pointee.self, capacity: count)
    }

    func deallocateZeroed() { LineAlignedMemory.release(UnsafeMutableRawPointer(self)) }
}

/// The reverse-communication contract every method implements. A step is `begin`,
/// then `resume` after each product the method asked for, until one returns false; the
/// estimator then calls `commit`. `abandon` forgets a step in progress: methods write
/// only to storage that the committed state does not use until `commit`, so abandoning
/// needs no undo.
protocol StepMethod: AnyObject {
    associatedtype Scalar: BinaryFloatingPoint
    /// Returns true when `ws.productInput` needs a product; false when the step is done
    /// (`ws.pending` holds the estimate and `info` is filled).
    func begin(_ ws: StepWorkspace<Scalar>, _ info: inout StepInfo) throws(EstimatorError) -> Bool
    /// `ws.productOutput` holds A * `ws.productInput`. Same return convention as `begin`.
    func resume(_ ws: StepWorkspace<Scalar>, _ info: inout StepInfo) throws(EstimatorError) -> Bool
    /// Publishes the step; runs before the workspace swaps in the new estimate, so
    /// `ws.estimate` is still v_k.
    func commit(_ ws: StepWorkspace<Scalar>)
    func abandon()
    /// Back to the state right after creation.
    func reset()
    /// The committed estimate was replaced by the caller.
    func estimateReplaced()
}

extension StepMethod {
    func estimateReplaced() {}
}
