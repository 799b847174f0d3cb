import CLancbio
import LancbioCore

// The checkpoint functions of include/lancbio.h: the caller's bytes checked and handed to
// the core, which validates the checkpoint itself; the size protocol of the save calls.

@c @implementation
public func lancbio_estimator_save(
    _ h: OpaquePointer?, _ buffer: UnsafeMutableRawPointer?, _ capacity: Int64, _ size: UnsafeMutablePointer<Int64>?
) -> Int32 {
    withHandle(h) { handle throws(CFailure) in
        try save(buffer, capacity, size) { () throws(EstimatorError) in
            switch handle.storage {
            case .float64(let e): try e.checkpointSize()
            case .float32(let e): try e.checkpointSize()
            }
        } write: { destination throws(EstimatorError) in
            switch handle.storage {
            case .float64(let e): try e.save(into: destination)
            case .float32(let e): try e.save(into: destination)
            }
        }
    }
}

@c @implementation
public func lancbio_estimator_restore(
    _ buffer: UnsafeRawPointer?, _ size: Int64, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    ThreadLastError.call { () throws(CFailure) -> Int32 in
        guard let out else { throw CFailure.null("out") }
        out.pointee = nil
        let checkpoint = try validated(buffer, size)
        guard checkpoint.kind == .estimator else {
            throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT,
                           "the checkpoint is a bilevel optimizer's: restore it with lancbio_bilevel_restore")
        }
        let storage: EstimatorHandle.Storage
        if checkpoint.holds(Double.self) {
            storage = .float64(try restoredEstimator(checkpoint))
        } else if checkpoint.holds(Float.self) {
            storage = .float32(try restoredEstimator(checkpoint))
        } else {
            throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "the checkpoint holds \(checkpoint.scalarName) values, which the C ABI has no handles for")
        }
        out.pointee = try register(EstimatorHandle(storage: storage, methodCode: EstimatorMethodCode.code(of: checkpoint.method)))
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_estimator_load(_ h: OpaquePointer?, _ buffer: UnsafeRawPointer?, _ size: Int64) -> Int32 {
    withHandle(h) { handle throws(CFailure) in
        let stepping = switch handle.storage {
        case .float64(let e): e.isStepInProgress
        case .float32(let e): e.isStepInProgress
        }
        // Refused before the bytes are read: the call could not succeed whatever they are.
        guard !stepping else { throw loadDuringStep }
        let checkpoint = try validated(buffer, size)
        switch handle.storage {
        case .float64(let e): try load(checkpoint, into: e, handle)
        case .float32(let e): try load(checkpoint, into: e, handle)
        }
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_bilevel_save(
    _ h: OpaquePointer?, _ buffer: UnsafeMutableRawPointer?, _ capacity: Int64, _ size: UnsafeMutablePointer<Int64>?
) -> Int32 {
    withHandle(h, as: BilevelHandle.self) { handle throws(CFailure) in
        try save(buffer, capacity, size) { () throws(EstimatorError) in
            try handle.optimizer.checkpointSize()
        } write: { destination throws(EstimatorError) in
            try handle.optimizer.save(into: destination)
        }
    }
}

@c @implementation
public func lancbio_bilevel_restore(
    _ buffer: UnsafeRawPointer?, _ size: Int64, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    ThreadLastError.call { () throws(CFailure) -> Int32 in
        guard let out else { throw CFailure.null("out") }
        out.pointee = nil
        let checkpoint = try validated(buffer, size)
        guard let configuration = checkpoint.bilevel else {
            throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT,
                           "the checkpoint is an estimator's: restore it with lancbio_estimator_restore")
        }
        guard checkpoint.holds(Double.self) else {
            throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT,
                           "the checkpoint holds \(checkpoint.scalarName) values; bilevel optimizers are float64 in the C ABI")
        }
        try probeBilevelStorage(dx: configuration.dx, dy: checkpoint.n, method: checkpoint.method)
        let optimizer = try checked { () throws(EstimatorError) in try BilevelOptimizer<Double>(restoring: checkpoint) }
        out.pointee = try register(BilevelHandle(optimizer: optimizer))
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_bilevel_load(_ h: OpaquePointer?, _ buffer: UnsafeRawPointer?, _ size: Int64) -> Int32 {
    withHandle(h, as: BilevelHandle.self) { handle throws(CFailure) in
        guard !handle.optimizer.isStepping else { throw loadDuringStep }
        let checkpoint = try validated(buffer, size)
        guard checkpoint.holds(Double.self) || checkpoint.bilevel == nil else {
            throw CFailure(LANCBIO_ERR_WRONG_PRECISION,
                           "the checkpoint holds \(checkpoint.scalarName) values; this optimizer is float64")
        }
        try checked { () throws(EstimatorError) in try handle.optimizer.load(checkpoint) }
        return LANCBIO_OK
    }
}

private let loadDuringStep = CFailure(
    LANCBIO_ERR_INVALID_STATE, "load needs the handle between steps: finish or cancel the step in progress first")

/// The save protocol shared by both kinds: a NULL buffer with capacity 0 asks for the
/// size; a buffer too small gets the size and LANCBIO_ERR_BUFFER_TOO_SMALL.
private func save(_ buffer: UnsafeMutableRawPointer?, _ capacity: Int64, _ size: UnsafeMutablePointer<Int64>?,
                  measure: () throws(EstimatorError) -> Int,
                  write: (UnsafeMutableRawBufferPointer) throws(EstimatorError) -> Int) throws(CFailure) -> Int32 {
    guard let size else { throw CFailure.null("size") }
    guard capacity >= 0 else { throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "capacity = \(capacity) must be >= 0") }
    guard buffer != nil || capacity == 0 else {
        throw CFailure(LANCBIO_ERR_NULL_POINTER, "buffer is NULL with capacity = \(capacity) (a size query passes NULL and 0)")
    }
    let needed = try checked(measure)
    guard let buffer else {
        size.pointee = Int64(needed)
        return LANCBIO_OK
    }
    guard capacity >= Int64(needed) else {
        size.pointee = Int64(needed)
        throw CFailure(LANCBIO_ERR_BUFFER_TOO_SMALL,
                       "the buffer holds \(capacity) bytes and the checkpoint needs \(needed) (written to *size); nothing was written")
    }
    let written = try checked { () throws(EstimatorError) in try write(UnsafeMutableRawBufferPointer(start: buffer, count: needed)) }
    size.pointee = Int64(written)
    return LANCBIO_OK
}

/// The caller's bytes as a checkpoint whose header, size and checksum have been checked.
private func validated(_ buffer: UnsafeRawPointer?, _ size: Int64) throws(CFailure) -> Checkpoint {
    guard let buffer else { throw CFailure.null("buffer") }
    guard size >= 0 else { throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "size = \(size) must be >= 0") }
    return try checked { () throws(EstimatorError) in
        try Checkpoint(validating: UnsafeRawBufferPointer(start: buffer, count: Int(size)))
    }
}

/// A new core estimator from a checkpoint, its storage probed first (as at creation).
private func restoredEstimator<T: BinaryFloatingPoint>(_ checkpoint: Checkpoint) throws(CFailure) -> Estimator<T> {
    try ensureAllocatable(Estimator<T>.requiredBytes(n: checkpoint.n, method: checkpoint.method))
    return try checked { () throws(EstimatorError) in try Estimator<T>(restoring: checkpoint) }
}

/// Loads into a handle's estimator; another precision is the handle's WRONG_PRECISION.
private func load<T: HandleScalar>(_ checkpoint: Checkpoint, into estimator: Estimator<T>,
                                   _ handle: EstimatorHandle) throws(CFailure) {
    guard checkpoint.holds(T.self) || checkpoint.kind != .estimator else {
        throw CFailure(LANCBIO_ERR_WRONG_PRECISION,
                       "the checkpoint holds \(checkpoint.scalarName) values; this handle is \(T.precisionName)")
    }
    try checked { () throws(EstimatorError) in try estimator.load(checkpoint) }
}
