import CLancbio
import LancbioCore

/// A failed C call: its status and message.
struct CFailure: Error {
    let status: Int32
    let message: String

    init(_ status: Int32, _ message: String) {
        self.status = status
        self.message = message
    }

    init(_ error: EstimatorError) {
        switch error {
        case .invalidArgument(let m): self.init(LANCBIO_ERR_INVALID_ARGUMENT, m)
        case .nonFiniteInput(let m): self.init(LANCBIO_ERR_NON_FINITE_INPUT, m)
        case .nonFiniteProduct(let m): self.init(LANCBIO_ERR_NON_FINITE_PRODUCT, m)
        case .nonFiniteResult(let m): self.init(LANCBIO_ERR_NON_FINITE_RESULT, m)
        case .invalidState(let m): self.init(LANCBIO_ERR_INVALID_STATE, m)
        case .outOfMemory: self.init(LANCBIO_ERR_OUT_OF_MEMORY, error.message)
        case .invalidCheckpoint(let m): self.init(LANCBIO_ERR_INVALID_CHECKPOINT, m)
        case .collectiveFailure(let m): self.init(LANCBIO_ERR_CALLBACK, m)
        }
    }

    static func null(_ what: String) -> CFailure { CFailure(LANCBIO_ERR_NULL_POINTER, "\(what) is NULL") }
}

/// A product callback returned non-zero, or returned 0 without writing its output.
struct CallbackAbort: Error {
    let code: Int32
    var unwritten = false

    /// Runs `callback`, which must write `out`, and throws for a non-zero return code or
    /// an output left unwritten (see `CallbackOutputMarker`).
    @inline(__always)
    static func call<T: BinaryFloatingPoint>(writing out: UnsafeMutablePointer<T>, _ callback: () -> Int32) throws {
        let (code, unwritten) = CallbackOutputMarker.leftUnwritten(out, callback)
        if code != 0 || unwritten { throw CallbackAbort(code: code, unwritten: unwritten) }
    }

    /// What the callback did, for messages: "returned 7", "returned 0 without writing its output".
    var outcome: String { unwritten ? "returned 0 without writing its output" : "returned \(code)" }
}

/// Static text for each status code, as `lancbio_status_string` returns it.
func statusDescription(_ status: Int32) -> StaticString {
    switch status {
    case LANCBIO_OK: "success"
    case LANCBIO_BUDGET_REACHED: "iteration budget reached before the tolerance (result usable)"
    case LANCBIO_BREAKDOWN: "Krylov breakdown or zero residual: the estimate is exact for this operator"
    case LANCBIO_INDEFINITE: "negative or zero curvature: the operator is not positive definite on the subspace"
    case LANCBIO_SINGULAR: "singular projected system: least-squares solution used"
    case LANCBIO_NEED_PRODUCT: "a product A x is needed: compute it and resume"
    case LANCBIO_NEED_REDUCTION: "a reduction is needed: sum the values over all processes and resume_reduction"
    case LANCBIO_ERR_INVALID_ARGUMENT: "invalid argument"
    case LANCBIO_ERR_NULL_POINTER: "NULL pointer"
    case LANCBIO_ERR_NON_FINITE_INPUT: "input contains NaN or infinity"
    case LANCBIO_ERR_NON_FINITE_PRODUCT: "the operator returned NaN or infinity"
    case LANCBIO_ERR_NON_FINITE_RESULT: "the result overflowed"
    case LANCBIO_ERR_CALLBACK: "the callback reported an error"
    case LANCBIO_ERR_WRONG_PRECISION: "the handle has the other precision"
    case LANCBIO_ERR_INVALID_STATE: "the call does not fit the handle's state"
    case LANCBIO_ERR_INVALID_HANDLE: "NULL, unknown or destroyed handle"
    case LANCBIO_ERR_OUT_OF_MEMORY: "out of memory: the storage could not be allocated"
    case LANCBIO_ERR_BUFFER_TOO_SMALL: "the buffer is too small: the size needed is in *size"
    case LANCBIO_ERR_INVALID_CHECKPOINT: "not a valid checkpoint (truncated, corrupted, or another version or byte order)"
    default: "unknown status"
    }
}

extension StepOutcome {
    var status: Int32 { rawValue }
}
