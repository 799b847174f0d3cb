import CLancbio
import LancbioCore

// The estimator functions of include/lancbio.h. `@c @implementation` makes any drift
// between these signatures and the header a build error.

@c @implementation
public func lancbio_estimator_options_init(_ options: UnsafeMutablePointer<lancbio_estimator_options_t>?, _ method: Int32) -> Int32 {
    ThreadLastError.call { () throws(CFailure) -> Int32 in
        guard let options else { throw CFailure.null("options") }
        guard EstimatorMethodCode.isKnown(method) else {
            throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "method = \(method) is not a LANCBIO_METHOD_*")
        }
        options.pointee = .defaults(method: method)
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_estimator_create(
    _ n: Int64, _ options: UnsafePointer<lancbio_estimator_options_t>?, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    ThreadLastError.call { () throws(CFailure) -> Int32 in
        guard let out else { throw CFailure.null("out") }
        out.pointee = nil
        guard let options else { throw CFailure.null("options") }
        try checkDimension(n, "n")
        let o = try lancbio_estimator_options_t.read(options)
        let method = try o.method()
        let storage: EstimatorHandle.Storage
        switch o.precision {
        case LANCBIO_FLOAT64: storage = .float64(try makeEstimator(n: Int(n), method: method))
        case LANCBIO_FLOAT32: storage = .float32(try makeEstimator(n: Int(n), method: method))
        default: throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "options.precision = \(o.precision) is not LANCBIO_FLOAT64 or LANCBIO_FLOAT32")
        }
        out.pointee = try register(EstimatorHandle(storage: storage, methodCode: o.method))
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_estimator_destroy(_ h: OpaquePointer?) {
    // A step suspended at a reverse reduction holds the estimator from its worker thread:
    // abandoned first, so that the estimator and the thread end with the handle.
    if let handle = lookUp(h, as: EstimatorHandle.self) {
        switch handle.storage {
        case .float64(let e): if e.reductionPending { e.cancel() }
        case .float32(let e): if e.reductionPending { e.cancel() }
        }
    }
    unregister(h, as: EstimatorHandle.self)
}

@c @implementation
public func lancbio_estimator_reset(_ h: OpaquePointer?) -> Int32 {
    withHandle(h) { handle throws(CFailure) in
        try checked { () throws(EstimatorError) in
            switch handle.storage {
            case .float64(let e): try e.reset()
            case .float32(let e): try e.reset()
            }
        }
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_estimator_last_error(_ h: OpaquePointer?) -> UnsafePointer<CChar>? {
    lastErrorMessage(h, as: EstimatorHandle.self)
}

@c @implementation
public func lancbio_estimator_callback_status(_ h: OpaquePointer?) -> Int32 {
    lookUp(h, as: EstimatorHandle.self)?.callbackStatus ?? 0
}

@c @implementation
public func lancbio_estimator_set_reduction(
    _ h: OpaquePointer?, _ reduce: lancbio_reduce_t?, _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    withHandle(h) { handle throws(CFailure) in
        let hook: ReductionHook? = reduce.map { reduce in
            // Weak: the estimator the handle owns keeps the hook.
            { [weak handle] values in
                let code = reduce(values.baseAddress, Int64(values.count), userData)
                if code != 0 { handle?.callbackStatus = code }
                return code == 0
            }
        }
        try checked { () throws(EstimatorError) in
            switch handle.storage {
            case .float64(let e): try e.setReduction(hook)
            case .float32(let e): try e.setReduction(hook)
            }
        }
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_estimator_set_reverse_reduction(_ h: OpaquePointer?, _ totalN: Int64) -> Int32 {
    withHandle(h) { handle throws(CFailure) in
        guard totalN >= 1, totalN < 1 << 53 else {
            throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "total_n = \(totalN) must be in n...2^53")
        }
        try checked { () throws(EstimatorError) in
            switch handle.storage {
            case .float64(let e): try e.setReverseReduction(totalDimension: Int(totalN))
            case .float32(let e): try e.setReverseReduction(totalDimension: Int(totalN))
            }
        }
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_estimator_reduction_values(
    _ h: OpaquePointer?, _ values: UnsafeMutablePointer<Double>?, _ capacity: Int64, _ count: UnsafeMutablePointer<Int64>?
) -> Int32 {
    withHandle(h) { handle throws(CFailure) in
        guard let values else { throw CFailure.null("values") }
        guard let count else { throw CFailure.null("count") }
        guard capacity >= 0, capacity <= Int64(Int32.max) else {
            throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "capacity = \(capacity) is out of range")
        }
        let destination = UnsafeMutableBufferPointer(start: values, count: Int(capacity))
        let copied = try checked { () throws(EstimatorError) -> Int in
            switch handle.storage {
            case .float64(let e): try e.pendingReductionValues(into: destination)
            case .float32(let e): try e.pendingReductionValues(into: destination)
            }
        }
        count.pointee = Int64(copied)
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_estimator_resume_reduction_f64(
    _ h: OpaquePointer?, _ sums: UnsafePointer<Double>?, _ count: Int64, _ request: UnsafeMutablePointer<Double>?,
    _ n: Int64
) -> Int32 {
    withHandle(h) { handle throws(CFailure) in try resumeReduction(handle, sums, count, request, n) }
}

@c @implementation
public func lancbio_estimator_resume_reduction_f32(
    _ h: OpaquePointer?, _ sums: UnsafePointer<Double>?, _ count: Int64, _ request: UnsafeMutablePointer<Float>?,
    _ n: Int64
) -> Int32 {
    withHandle(h) { handle throws(CFailure) in try resumeReduction(handle, sums, count, request, n) }
}

@c @implementation
public func lancbio_estimator_properties(
    _ h: OpaquePointer?, _ n: UnsafeMutablePointer<Int64>?, _ method: UnsafeMutablePointer<Int32>?,
    _ precision: UnsafeMutablePointer<Int32>?
) -> Int32 {
    withHandle(h) { handle throws(CFailure) in
        n?.pointee = Int64(handle.n)
        method?.pointee = handle.methodCode
        precision?.pointee = handle.precisionCode
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_estimator_info(_ h: OpaquePointer?, _ info: UnsafeMutablePointer<lancbio_step_info_t>?) -> Int32 {
    withHandle(h) { handle throws(CFailure) in
        guard let info else { throw CFailure.null("info") }
        try checkWritableStruct(info, name: "info")
        writeVersionedStruct(lancbio_step_info_t(handle.lastInfo), to: info)
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_estimator_step_f64(
    _ h: OpaquePointer?, _ hvp: lancbio_hvp_f64_t?, _ userData: UnsafeMutableRawPointer?,
    _ b: UnsafePointer<Double>?, _ v: UnsafeMutablePointer<Double>?, _ n: Int64,
    _ info: UnsafeMutablePointer<lancbio_step_info_t>?
) -> Int32 {
    withHandle(h) { handle throws(CFailure) in
        guard let hvp else { throw CFailure.null("hvp") }
        return try step(handle, b, v, n, info) { input, output in hvp(input, output, n, userData) }
    }
}

@c @implementation
public func lancbio_estimator_step_f32(
    _ h: OpaquePointer?, _ hvp: lancbio_hvp_f32_t?, _ userData: UnsafeMutableRawPointer?,
    _ b: UnsafePointer<Float>?, _ v: UnsafeMutablePointer<Float>?, _ n: Int64,
    _ info: UnsafeMutablePointer<lancbio_step_info_t>?
) -> Int32 {
    withHandle(h) { handle throws(CFailure) in
        guard let hvp else { throw CFailure.null("hvp") }
        return try step(handle, b, v, n, info) { input, output in hvp(input, output, n, userData) }
    }
}

@c @implementation
public func lancbio_estimator_begin_f64(
    _ h: OpaquePointer?, _ b: UnsafePointer<Double>?, _ request: UnsafeMutablePointer<Double>?, _ n: Int64
) -> Int32 {
    withHandle(h) { handle throws(CFailure) in try begin(handle, b, request, n) }
}

@c @implementation
public func lancbio_estimator_begin_f32(
    _ h: OpaquePointer?, _ b: UnsafePointer<Float>?, _ request: UnsafeMutablePointer<Float>?, _ n: Int64
) -> Int32 {
    withHandle(h) { handle throws(CFailure) in try begin(handle, b, request, n) }
}

@c @implementation
public func lancbio_estimator_resume_f64(
    _ h: OpaquePointer?, _ product: UnsafePointer<Double>?, _ request: UnsafeMutablePointer<Double>?, _ n: Int64
) -> Int32 {
    withHandle(h) { handle throws(CFailure) in try resume(handle, product, request, n) }
}

@c @implementation
public func lancbio_estimator_resume_f32(
    _ h: OpaquePointer?, _ product: UnsafePointer<Float>?, _ request: UnsafeMutablePointer<Float>?, _ n: Int64
) -> Int32 {
    withHandle(h) { handle throws(CFailure) in try resume(handle, product, request, n) }
}

@c @implementation
public func lancbio_estimator_cancel(_ h: OpaquePointer?) -> Int32 {
    withHandle(h) { handle throws(CFailure) in
        switch handle.storage {
        case .float64(let e): e.cancel()
        case .float32(let e): e.cancel()
        }
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_estimator_get_v_f64(_ h: OpaquePointer?, _ v: UnsafeMutablePointer<Double>?, _ n: Int64) -> Int32 {
    withHandle(h) { handle throws(CFailure) in try getEstimate(handle, v, n) }
}

@c @implementation
public func lancbio_estimator_get_v_f32(_ h: OpaquePointer?, _ v: UnsafeMutablePointer<Float>?, _ n: Int64) -> Int32 {
    withHandle(h) { handle throws(CFailure) in try getEstimate(handle, v, n) }
}

@c @implementation
public func lancbio_estimator_set_v_f64(_ h: OpaquePointer?, _ v: UnsafePointer<Double>?, _ n: Int64) -> Int32 {
    withHandle(h) { handle throws(CFailure) in try setEstimate(handle, v, n) }
}

@c @implementation
public func lancbio_estimator_set_v_f32(_ h: OpaquePointer?, _ v: UnsafePointer<Float>?, _ n: Int64) -> Int32 {
    withHandle(h) { handle throws(CFailure) in try setEstimate(handle, v, n) }
}
