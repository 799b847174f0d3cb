import CLancbio
import LancbioCore

// The precision-generic bodies of the estimator entry points. Each export looks its
// handle up, then calls one of these with its concrete scalar type.

/// Runs a call on the live handle of type H at `h`.
func withHandle<H: HandleState>(_ h: OpaquePointer?, as type: H.Type,
                                _ body: (H) throws(CFailure) -> Int32) -> Int32 {
    guard let handle = lookUp(h, as: H.self) else { return LANCBIO_ERR_INVALID_HANDLE }
    // Held for the whole call: a callback that destroys its own handle must not free it
    // while the step still runs (destroy only unregisters; this reference is the last).
    return withExtendedLifetime(handle) {
        handle.call { () throws(CFailure) -> Int32 in try body(handle) }
    }
}

/// Runs a call on the live estimator handle at `h`.
func withHandle(_ h: OpaquePointer?, _ body: (EstimatorHandle) throws(CFailure) -> Int32) -> Int32 {
    withHandle(h, as: EstimatorHandle.self, body)
}

/// A caller buffer of exactly the handle's dimension.
func callerBuffer<T>(_ p: UnsafePointer<T>?, _ n: Int64, of handle: EstimatorHandle, _ name: String) throws(CFailure)
    -> UnsafeBufferPointer<T> {
    guard let p else { throw CFailure.null(name) }
    guard n == Int64(handle.n) else {
        throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "n = \(n) does not match the estimator's dimension \(handle.n)")
    }
    return UnsafeBufferPointer(start: p, count: handle.n)
}

func callerBuffer<T>(_ p: UnsafeMutablePointer<T>?, _ n: Int64, of handle: EstimatorHandle, _ name: String) throws(CFailure)
    -> UnsafeMutableBufferPointer<T> {
    let b = try callerBuffer(UnsafePointer(p), n, of: handle, name)
    return UnsafeMutableBufferPointer(mutating: b)
}

func checked<R>(_ body: () throws(EstimatorError) -> R) throws(CFailure) -> R {
    do { return try body() } catch { throw CFailure(error) }
}

/// One callback-driven step.
func step<T: HandleScalar>(
    _ handle: EstimatorHandle, _ b: UnsafePointer<T>?, _ v: UnsafeMutablePointer<T>?, _ n: Int64,
    _ info: UnsafeMutablePointer<lancbio_step_info_t>?,
    product: (UnsafePointer<T>, UnsafeMutablePointer<T>) -> Int32
) throws(CFailure) -> Int32 {
    let estimator = try T.estimator(in: handle)
    let rhs = try callerBuffer(b, n, of: handle, "b")
    let destination = try callerBuffer(v, n, of: handle, "v")
    if let info { try checkWritableStruct(info, name: "info") }
    let result = try withProductCallback(abandoned: "the step was abandoned and the estimator is unchanged",
                                         onAbort: { handle.callbackStatus = $0 }) {
        try estimator.step(rhs: rhs, into: destination) { input, output in
            try CallbackAbort.call(writing: output.baseAddress!) { product(input.baseAddress!, output.baseAddress!) }
        }
    }
    if let info { writeVersionedStruct(lancbio_step_info_t(result), to: info) }
    return result.outcome.status
}

/// Runs a core call whose products come from a C callback (forwarded with
/// `CallbackAbort.call`): a non-zero code from the callback, or an output it left
/// unwritten, aborts the call (the code, 0 for an unwritten output, reported through
/// `onAbort`, then LANCBIO_ERR_CALLBACK saying what was `abandoned`), and a core error
/// becomes its status.
func withProductCallback<R>(abandoned: String, onAbort: (Int32) -> Void = { _ in },
                            _ body: () throws -> R) throws(CFailure) -> R {
    do {
        return try body()
    } catch let error as EstimatorError {
        throw CFailure(error)
    } catch let abort as CallbackAbort {
        onAbort(abort.code)
        throw CFailure(LANCBIO_ERR_CALLBACK, "the product callback \(abort.outcome); \(abandoned)")
    } catch {
        throw CFailure(LANCBIO_ERR_INVALID_STATE, "unexpected error: \(error)")
    }
}

/// Reverse communication: begin a step.
func begin<T: HandleScalar>(
    _ handle: EstimatorHandle, _ b: UnsafePointer<T>?, _ request: UnsafeMutablePointer<T>?, _ n: Int64
) throws(CFailure) -> Int32 {
    let estimator = try T.estimator(in: handle)
    let rhs = try callerBuffer(b, n, of: handle, "b")
    let requestBuffer = try callerBuffer(request, n, of: handle, "request")
    let progress = try checked { () throws(EstimatorError) in try estimator.begin(rhs: rhs) }
    return deliver(progress, estimator, requestBuffer)
}

/// Reverse communication: supply a product and continue.
func resume<T: HandleScalar>(
    _ handle: EstimatorHandle, _ product: UnsafePointer<T>?, _ request: UnsafeMutablePointer<T>?, _ n: Int64
) throws(CFailure) -> Int32 {
    let estimator = try T.estimator(in: handle)
    guard estimator.isStepInProgress else {
        throw CFailure(LANCBIO_ERR_INVALID_STATE, "no step is in progress: call begin first")
    }
    let productBuffer = try callerBuffer(product, n, of: handle, "product")
    let requestBuffer = try callerBuffer(request, n, of: handle, "request")
    let progress = try checked { () throws(EstimatorError) in try estimator.resume(product: productBuffer) }
    return deliver(progress, estimator, requestBuffer)
}

private func deliver<T>(_ progress: Estimator<T>.Progress, _ estimator: Estimator<T>,
                        _ request: UnsafeMutableBufferPointer<T>) -> Int32 {
    switch progress {
    case .needsProduct:
        // The request buffer was checked to hold n values.
        try? estimator.copyProductInput(into: request)
        return LANCBIO_NEED_PRODUCT
    case .finished(let info):
        return info.outcome.status
    case .needsReduction:
        return LANCBIO_NEED_REDUCTION
    }
}

/// Reverse reductions: the sums of the pending reduction, and continue.
func resumeReduction<T: HandleScalar>(
    _ handle: EstimatorHandle, _ sums: UnsafePointer<Double>?, _ count: Int64,
    _ request: UnsafeMutablePointer<T>?, _ n: Int64
) throws(CFailure) -> Int32 {
    let estimator = try T.estimator(in: handle)
    guard let sums else { throw CFailure.null("sums") }
    guard count >= 0, count <= Int64(Int32.max) else {
        throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "count = \(count) is out of range")
    }
    let requestBuffer = try callerBuffer(request, n, of: handle, "request")
    let progress = try checked { () throws(EstimatorError) in
        try estimator.resumeReduction(sums: UnsafeBufferPointer(start: sums, count: Int(count)))
    }
    return deliver(progress, estimator, requestBuffer)
}

func getEstimate<T: HandleScalar>(_ handle: EstimatorHandle, _ v: UnsafeMutablePointer<T>?, _ n: Int64) throws(CFailure) -> Int32 {
    let estimator = try T.estimator(in: handle)
    let destination = try callerBuffer(v, n, of: handle, "v")
    try checked { () throws(EstimatorError) in try estimator.copyEstimate(into: destination) }
    return LANCBIO_OK
}

func setEstimate<T: HandleScalar>(_ handle: EstimatorHandle, _ v: UnsafePointer<T>?, _ n: Int64) throws(CFailure) -> Int32 {
    let estimator = try T.estimator(in: handle)
    let source = try callerBuffer(v, n, of: handle, "v")
    try checked { () throws(EstimatorError) in try estimator.setEstimate(source) }
    return LANCBIO_OK
}

/// A dimension a caller passed (n, dx, dy): >= 1 and small enough that every size derived
/// from it is checked arithmetic on Int.
func checkDimension(_ value: Int64, _ name: String) throws(CFailure) {
    let limit = Int64(Int32.max) * 64
    guard value >= 1, value <= limit else {
        throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "\(name) = \(value) must be in 1...\(limit)")
    }
}

/// A new core estimator, its storage probed first so that running out of memory is a
/// status rather than an abort.
func makeEstimator<T: BinaryFloatingPoint>(n: Int, method: EstimatorMethod) throws(CFailure) -> Estimator<T> {
    try ensureAllocatable(Estimator<T>.requiredBytes(n: n, method: method))
    return try checked { () throws(EstimatorError) in try Estimator<T>(n: n, method: method) }
}
