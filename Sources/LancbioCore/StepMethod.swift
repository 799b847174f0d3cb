/// The contract every estimator method implements, and all the estimator needs to know of
/// one: its name, the validation and storage of its options, and one resumable step.
///
/// A step is `begin`, then `resume` after each product the method asked for, until one
/// returns `.done`; the estimator then calls `commit`. `abandon` forgets a step in
/// progress: methods write only to storage that the committed state does not use until
/// `commit`, so abandoning needs no undo.
///
/// The estimator holds its method as `any StepMethod<T>`. A call through the protocol
/// reaches the generic implementation, which runs its kernels unspecialised (about 75x
/// slower) unless it carries `@_specialize` for Double and Float: every conformer marks
/// `begin`, `resume` and a `commit` that does vector work so (the runtime check then jumps
/// to the specialised copy), and its private helpers are specialised with them.
protocol StepMethod<Scalar>: AnyObject {
    associatedtype Scalar: BinaryFloatingPoint
    /// The method's own options (the parameters of its `EstimatorMethod` case).
    associatedtype Options

    /// Short lowercase name, as the C and Python layers spell it.
    static var name: String { get }
    /// Rejects options out of range with a message naming the option and its valid range.
    static func validate(_ options: Options) throws(EstimatorError)
    /// Storage the method allocates at creation for dimension n, beyond the workspace's.
    static func storage(n: Int, options: Options) -> MethodStorage
    /// Whether `resume` only reads `StepInput.product`, so that a caller's product buffer
    /// can be read in place; false when it uses `productOutput` as scratch.
    static var readsProductInPlace: Bool { get }
    /// The most values one of the method's reductions sums when the vectors are slices
    /// across processes (`Estimator.setReduction`), or nil when the method does not
    /// support them.
    static func reductionValues(options: Options) -> Int?

    /// Allocates the method's storage; `options` are valid.
    /// - Throws: `.outOfMemory`, with nothing left allocated (see `OwnedAllocations`).
    init(n: Int, options: Options) throws(EstimatorError)

    /// Starts a step: asks for a product, or finishes at once (`ws.pending` then holds the
    /// estimate and `info` is filled).
    func begin(_ input: StepInput<Scalar>, _ ws: StepWorkspace<Scalar>, _ info: inout StepInfo)
        throws(EstimatorError) -> StepDemand<Scalar>
    /// `input.product` holds A * (the vector last asked for). Same result as `begin`.
    func resume(_ input: StepInput<Scalar>, _ ws: StepWorkspace<Scalar>, _ info: inout StepInfo)
        throws(EstimatorError) -> StepDemand<Scalar>
    /// Publishes the step; runs before the workspace swaps in the new estimate, so
    /// `ws.estimate` is still v_k.
    func commit(_ ws: StepWorkspace<Scalar>)
    func abandon()
    /// Back to the state right after creation.
    func reset()
    /// The committed estimate was replaced by the caller.
    func estimateReplaced()
    /// The dimension of A became `total`: the sum of the slices' lengths across processes,
    /// or n again on one process.
    func dimensionChanged(total: Int)
    /// Subspace dimension, period and restarts of a Krylov method (zeros for the others).
    var progress: MethodProgress { get }
    /// Whether the next step, across processes, can leave b's check (its finiteness and
    /// ||b||) to ride on its first reduction (`Reduction.deferRhsCheck`): true when `begin`
    /// and everything before that reduction do without `StepInput.rhsNorm`, which is then
    /// NaN; the method reads the reduced norm from `Reduction.rhsNorm` if it needs it.
    var defersRhsCheck: Bool { get }

    /// Appends the method's committed state to a checkpoint: everything a later step
    /// reads besides the estimate (which the estimator saves) and the options (which the
    /// checkpoint's configuration holds). Called between steps only. Every method states
    /// its own, even when it is nothing, so that a new method cannot inherit a silent
    /// "no state".
    func save(to archive: inout StateWriter)
    /// Decodes and checks what `save` wrote, for this method's options and n; returns what
    /// installs it. Changes nothing itself, so that a rejected checkpoint leaves the
    /// method as it was. The installation runs at once (it may read the checkpoint's bytes)
    /// and cannot fail.
    func restore(from archive: inout StateReader) throws(EstimatorError) -> StateInstallation
}

/// The second half of a restore: installs state that was decoded and checked.
typealias StateInstallation = () -> Void

extension StepMethod {
    static func reductionValues(options: Options) -> Int? { nil }
    func abandon() {}
    func reset() {}
    func estimateReplaced() {}
    func dimensionChanged(total: Int) {}
    var progress: MethodProgress { MethodProgress() }
    var defersRhsCheck: Bool { false }
}

/// What a method asks for after `begin` or `resume`.
enum StepDemand<T: BinaryFloatingPoint> {
    /// The product of a vector in the method's or the workspace's storage.
    case product(of: UnsafePointer<T>)
    /// The product of the step's b (which may be the caller's buffer, so the method names
    /// it rather than pointing at it).
    case productOfRhs
    /// The step is complete.
    case done
}

/// A Krylov method's position in its schedule, for the step info and the estimator's
/// properties.
struct MethodProgress {
    var dimension = 0
    var period = 0
    var restarts = 0
}

/// Storage a method allocates at creation: n-vectors of the estimator's scalar, plus the
/// bytes of its small buffers (projected systems, per-chunk sums, scratch), exactly what
/// its init asks for.
struct MethodStorage {
    var vectors: Int
    var bytes: Int = 0
}
