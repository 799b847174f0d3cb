/// Why an estimator call failed. A failed call leaves the estimator exactly as it was
/// before the call (a step in progress is abandoned and rolled back).
public enum EstimatorError: Error, Equatable, Sendable {
    /// A size, option or argument is out of its documented range.
    case invalidArgument(String)
    /// The right-hand side or a supplied estimate contains NaN or infinity.
    case nonFiniteInput(String)
    /// A product returned by the operator contains NaN or infinity.
    case nonFiniteProduct(String)
    /// The computed estimate overflowed.
    case nonFiniteResult(String)
    /// The call does not fit the estimator's state (for example `resume` with no step
    /// in progress, or `begin` while one is).
    case invalidState(String)
    /// The system refused an allocation of `bytes` bytes (creation only: steps allocate
    /// nothing). What the failed creation had allocated is released. A byte count rather
    /// than a message: forming a string allocates, which is best left until that memory is
    /// back.
    case outOfMemory(bytes: Int)
    /// The bytes given to restore or load are not a checkpoint this library can read:
    /// truncated, corrupted (the checksum differs), of another format version or byte
    /// order, or inconsistent.
    case invalidCheckpoint(String)
    /// A reduction across processes failed (its hook reported an error), or a product
    /// failed on another process: every process abandons the step at the same reduction.
    case collectiveFailure(String)

    /// Human-readable explanation, suitable for an error message.
    public var message: String {
        switch self {
        case .invalidArgument(let m), .nonFiniteInput(let m), .nonFiniteProduct(let m),
             .nonFiniteResult(let m), .invalidState(let m), .invalidCheckpoint(let m),
             .collectiveFailure(let m):
            return m
        case .outOfMemory(let bytes):
            return "out of memory: an allocation of \(bytes) bytes failed (memory or address space is exhausted)"
        }
    }
}
