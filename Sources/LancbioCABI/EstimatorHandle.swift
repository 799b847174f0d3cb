import CLancbio
import LancbioCore

/// The error state every handle carries: the last message and the code of the callback
/// that aborted the last call.
class HandleState {
    let message: ErrorMessage
    var callbackStatus: Int32 = 0

    /// - Throws: LANCBIO_ERR_OUT_OF_MEMORY when the message buffer cannot be allocated.
    init() throws(CFailure) {
        message = try ErrorMessage()
    }

    /// Runs `body` as one C call on this handle: clears the error state on entry, records
    /// the message of a failure, and turns it into a status.
    final func call(_ body: () throws(CFailure) -> Int32) -> Int32 {
        message.clear()
        callbackStatus = 0
        do {
            let status = try body()
            // A callback may have called back into this handle and failed there; the
            // message describes this call, which succeeded.
            message.clear()
            return status
        } catch {
            message.set(error.message)
            return error.status
        }
    }
}

/// The message of the handle at `h`, or a static text when there is no such handle.
func lastErrorMessage<H: HandleState>(_ h: OpaquePointer?, as type: H.Type) -> UnsafePointer<CChar> {
    guard let handle = lookUp(h, as: H.self) else {
        return UnsafeRawPointer(statusDescription(LANCBIO_ERR_INVALID_HANDLE).utf8Start).assumingMemoryBound(to: CChar.self)
    }
    return UnsafePointer(handle.message.buffer)
}

/// What a `lancbio_estimator_t *` points to: the core estimator in its precision.
final class EstimatorHandle: HandleState {
    enum Storage {
        case float64(Estimator<Double>)
        case float32(Estimator<Float>)
    }

    let storage: Storage
    let methodCode: Int32

    /// - Throws: LANCBIO_ERR_OUT_OF_MEMORY (the estimator is then released with it).
    init(storage: Storage, methodCode: Int32) throws(CFailure) {
        self.storage = storage
        self.methodCode = methodCode
        try super.init()
    }

    var n: Int {
        switch storage {
        case .float64(let e): e.n
        case .float32(let e): e.n
        }
    }

    var precisionCode: Int32 {
        switch storage {
        case .float64: LANCBIO_FLOAT64
        case .float32: LANCBIO_FLOAT32
        }
    }

    var lastInfo: StepInfo {
        switch storage {
        case .float64(let e): e.lastInfo
        case .float32(let e): e.lastInfo
        }
    }

}

/// The scalar types a handle can hold, with access to the estimator of that precision.
protocol HandleScalar: BinaryFloatingPoint {
    static var precisionName: String { get }
    static func estimator(in handle: EstimatorHandle) throws(CFailure) -> Estimator<Self>
}

extension Double: HandleScalar {
    static var precisionName: String { "float64" }
    static func estimator(in handle: EstimatorHandle) throws(CFailure) -> Estimator<Double> {
        guard case .float64(let e) = handle.storage else { throw wrongPrecision(handle, expected: "float64") }
        return e
    }
}

extension Float: HandleScalar {
    static var precisionName: String { "float32" }
    static func estimator(in handle: EstimatorHandle) throws(CFailure) -> Estimator<Float> {
        guard case .float32(let e) = handle.storage else { throw wrongPrecision(handle, expected: "float32") }
        return e
    }
}

private func wrongPrecision(_ handle: EstimatorHandle, expected: String) -> CFailure {
    let actual = handle.precisionCode == LANCBIO_FLOAT64 ? "float64" : "float32"
    let suffix = actual == "float64" ? "_f64" : "_f32"
    return CFailure(LANCBIO_ERR_WRONG_PRECISION,
                    "this handle holds \(actual) vectors but a \(expected) function was called; use the \(suffix) functions")
}
