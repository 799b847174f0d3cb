/// The reductions of a one-shot solve whose vectors are sliced across processes
/// (`OneShotSolve.run(rhs:solution:reduction:product:)`, docs/algorithms.md section 13):
/// the setup's sums, the recurrence's alpha and beta, each residual check's norm, and the
/// protocol that keeps a local failure from leaving the other processes waiting.
///
/// A local failure (a product that throws, an allocation the system refuses) is kept, and
/// this process goes on to the next reduction (with a zero product), which carries it:
/// every process then throws at the same call, this one its own error (`failure`), the
/// others `.collectiveFailure`. Likewise a non-finite x after the recurrence's update
/// (`solutionNonFinite`) rides on the next reduction, the next step's alpha or the check.
final class SolveCollective {
    private final class Count { var value = 0 }

    /// The hook, counting its calls.
    let hook: ReductionHook
    /// nil when the system refused its few Doubles: then `setup` fails, on every process.
    private let storage: Reduction?
    private let count = Count()
    /// This process's first local failure, rethrown by it when every process abandons.
    private(set) var failure: (any Error)?
    /// Set when this process's x became non-finite; told to all at the next reduction.
    var solutionNonFinite = false
    /// Set when this process's setup failed (`failure` holds why); told to all by
    /// `setup` or `agreeOnSetup`.
    private var setupFailed = false

    /// Hook calls so far, the rescaling passes included.
    var calls: Int { count.value }

    /// The reduced values' buffer, once `setup` has returned.
    var reduction: Reduction { storage! }

    /// Allocates the few Doubles of the reduced values; if the system refuses them, the
    /// failure waits for `setup`, like any of the setup's.
    init(hook: @escaping ReductionHook) {
        let count = count
        let counted: ReductionHook = { values in
            count.value += 1
            return hook(values)
        }
        self.hook = counted
        do {
            storage = try Reduction(hook: counted, capacity: Self.setupValues)
        } catch {
            storage = nil
            recordSetupFailure(error)
        }
    }

    /// The values of the setup's reduction, the failure slot `Reduction.sum` adds excluded.
    private static let setupValues = 6

    /// Keeps a failure of this process's setup, for the next `setup` or `agreeOnSetup`.
    func recordSetupFailure(_ error: any Error) {
        if failure == nil { failure = error }
        setupFailed = true
    }

    /// A product through `product`; if it throws, the error is kept, the output zeroed and
    /// the next reduction tells every process.
    func product<T>(
        _ product: (UnsafeBufferPointer<T>, UnsafeMutableBufferPointer<T>) throws -> Void,
        _ input: UnsafePointer<T>, _ output: UnsafeMutablePointer<T>, _ n: Int
    ) where T: BinaryFloatingPoint {
        do {
            try product(UnsafeBufferPointer(start: input, count: n), UnsafeMutableBufferPointer(start: output, count: n))
        } catch {
            if failure == nil { failure = error }
            reduction.localFailure = true
            Kernels.fill(output, n, with: 0)
        }
    }

    /// The setup's one reduction: the slices' lengths, ||b||^2 with b's finiteness, x0's
    /// finiteness, whether x0 = 0 on every process, and whether every setup succeeded.
    /// - Returns: the total dimension N, ||b|| and whether x0 = 0 everywhere.
    /// - Throws: `.collectiveFailure` (the hook, or another process's setup),
    ///   `.nonFiniteInput` (x0 or b on some process, or ||b|| overflows).
    func setup<T: BinaryFloatingPoint>(rhs b: UnsafePointer<T>, start x: UnsafePointer<T>, _ n: Int)
        throws(EstimatorError) -> (total: Int, rhsNorm: Double, startsAtZero: Bool) {
        guard let reduction = storage else {
            // No buffer: this process takes part in the reduction with one on the stack,
            // laid out as `Reduction.sum` sends it, to tell the others why it stops.
            withUnsafeTemporaryAllocation(of: Double.self, capacity: Self.setupValues + 1) { values in
                values.initialize(repeating: 0)
                values[0] = Double(n)
                values[5] = 1
                _ = hook(values)
            }
            throw failure as? EstimatorError ?? .outOfMemory(bytes: (Self.setupValues + 3) * MemoryLayout<Double>.stride)
        }
        let measured = Kernels.measure(b, n)
        let values = reduction.values
        values[0] = Double(n)
        values[1] = measured.allFinite ? Reduction.contribution(squares: measured.sumOfSquares, of: b, n) : 0
        values[2] = measured.allFinite ? 0 : 1
        values[3] = Kernels.allFinite(x, n) ? 0 : 1
        values[4] = Kernels.maxMagnitude(x, n) == 0 ? 0 : 1
        values[5] = setupFailed ? 1 : 0
        try reduction.sum(6)
        guard values[5] == 0 else { throw .collectiveFailure("the solve's setup failed on \(Int(values[5])) process(es)") }
        let total = values[0]
        guard total >= Double(n), total < 0x1p53 else {
            throw .invalidArgument("the reduction of the slices' lengths gave \(total)")
        }
        guard values[3] == 0 else { throw .nonFiniteInput("x0 contains NaN or infinity (on some process)") }
        guard values[2] == 0 else { throw .nonFiniteInput("b contains NaN or infinity (on some process)") }
        let startsAtZero = values[4] == 0
        let local = measured.allFinite ? (Kernels.norm(fromSumOfSquares: measured.sumOfSquares) ?? Kernels.norm(b, n)) : 0
        // The rescaling pass, if ||b||^2 is out of range, overwrites `values`: read them first.
        let rhsNorm = try reduction.norm(squares: values[1], localNorm: local)
        guard rhsNorm.isFinite else { throw .nonFiniteInput("||b|| overflows") }
        return (Int(total), rhsNorm, startsAtZero)
    }

    /// Whether every process's setup after `setup` (the estimator's creation) succeeded,
    /// in one reduction. - Throws: `.collectiveFailure`.
    func agreeOnSetup() throws(EstimatorError) {
        reduction.values[0] = setupFailed ? 1 : 0
        try reduction.sum(1)
        guard reduction.values[0] == 0 else {
            throw .collectiveFailure("the solve's setup failed on \(Int(reduction.values[0])) process(es)")
        }
    }

    /// The recurrence's alpha from this process's partial sum, with x's finiteness from
    /// the last update riding along. - Throws: `.collectiveFailure`, `.nonFiniteResult`.
    func coefficient(_ local: Double) throws(EstimatorError) -> Double {
        reduction.values[0] = local
        reduction.values[1] = solutionNonFinite ? 1 : 0
        try reduction.sum(2)
        guard reduction.values[1] == 0 else { throw .nonFiniteResult("the Lanczos solution overflowed (on some process)") }
        return reduction.values[0]
    }

    /// ||v|| across processes from this process's sum of squares of v (n values).
    func norm<T: BinaryFloatingPoint>(squares: Double, of v: UnsafePointer<T>, _ n: Int) throws(EstimatorError) -> Double {
        reduction.values[0] = Reduction.contribution(squares: squares, of: v, n)
        try reduction.sum(1)
        return try reduction.norm(squares: reduction.values[0], v, n)
    }

    /// A residual check's norm ||b - A x|| across processes, with the product's
    /// finiteness and x's riding along: `residual` holds this process's b - A x, and
    /// `productFinite` says whether its A x was finite.
    /// - Throws: `.collectiveFailure`, `.nonFiniteProduct`, `.nonFiniteResult`.
    func residualNorm<T: BinaryFloatingPoint>(_ residual: UnsafePointer<T>, productFinite: Bool, _ n: Int)
        throws(EstimatorError) -> Double {
        let squares = productFinite ? Kernels.measure(residual, n).sumOfSquares : 0
        reduction.values[0] = productFinite ? Reduction.contribution(squares: squares, of: residual, n) : 0
        reduction.values[1] = productFinite ? 0 : 1
        reduction.values[2] = solutionNonFinite ? 1 : 0
        try reduction.sum(3)
        // An x that overflowed makes its product non-finite too: the overflow is the cause.
        guard reduction.values[2] == 0 else { throw .nonFiniteResult("the Lanczos solution overflowed (on some process)") }
        guard reduction.values[1] == 0 else {
            throw .nonFiniteProduct("the operator returned NaN or infinity (the residual check A x, on some process)")
        }
        return try reduction.norm(squares: reduction.values[0], residual, n)
    }

    /// Whether a non-finite alpha came from the product (NaN or infinity on some process)
    /// or from overflow, decided alike everywhere in one more reduction.
    func productFailure<T: BinaryFloatingPoint>(_ y: UnsafePointer<T>, _ n: Int) throws(EstimatorError) -> EstimatorError {
        try reduction.allAgree(Kernels.allFinite(y, n))
            ? .nonFiniteResult("the Lanczos coefficient v^T A v overflowed")
            : .nonFiniteProduct("the operator returned NaN or infinity (A v, on some process)")
    }
}
