import CLancbio
import LancbioCore

// The bilevel functions of include/lancbio.h.

@c @implementation
public func lancbio_bilevel_options_init(_ options: UnsafeMutablePointer<lancbio_bilevel_options_t>?) -> Int32 {
    ThreadLastError.call { () throws(CFailure) -> Int32 in
        guard let options else { throw CFailure.null("options") }
        options.pointee = .defaults
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_bilevel_create(
    _ dx: Int64, _ dy: Int64, _ options: UnsafePointer<lancbio_bilevel_options_t>?,
    _ estimator: UnsafePointer<lancbio_estimator_options_t>?, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
    ThreadLastError.call { () throws(CFailure) -> Int32 in
        guard let out else { throw CFailure.null("out") }
        out.pointee = nil
        guard let options else { throw CFailure.null("options") }
        guard let estimator else { throw CFailure.null("estimator") }
        try checkDimension(dx, "dx")
        try checkDimension(dy, "dy")
        var outer = lancbio_bilevel_options_t.defaults
        try readVersionedStruct(UnsafeRawPointer(options), into: &outer, name: "options")
        let inner = try lancbio_estimator_options_t.read(estimator)
        guard inner.precision == LANCBIO_FLOAT64 else {
            throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "bilevel optimizers are float64: estimator.precision must be LANCBIO_FLOAT64")
        }
        let method = try inner.method()
        let coreOptions = try outer.core()
        try probeBilevelStorage(dx: Int(dx), dy: Int(dy), method: method)
        let optimizer = try checked { () throws(EstimatorError) in
            try BilevelOptimizer<Double>(dx: Int(dx), dy: Int(dy), options: coreOptions, method: method)
        }
        out.pointee = try register(BilevelHandle(optimizer: optimizer))
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_bilevel_destroy(_ h: OpaquePointer?) {
    unregister(h, as: BilevelHandle.self)
}

@c @implementation
public func lancbio_bilevel_reset(_ h: OpaquePointer?) -> Int32 {
    withHandle(h, as: BilevelHandle.self) { handle throws(CFailure) in
        try checked { () throws(EstimatorError) in try handle.optimizer.reset() }
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_bilevel_last_error(_ h: OpaquePointer?) -> UnsafePointer<CChar>? {
    lastErrorMessage(h, as: BilevelHandle.self)
}

@c @implementation
public func lancbio_bilevel_callback_status(_ h: OpaquePointer?) -> Int32 {
    lookUp(h, as: BilevelHandle.self)?.callbackStatus ?? 0
}

@c @implementation
public func lancbio_bilevel_step_f64(
    _ h: OpaquePointer?, _ problem: UnsafePointer<lancbio_problem_f64_t>?,
    _ x: UnsafeMutablePointer<Double>?, _ dx: Int64, _ y: UnsafeMutablePointer<Double>?, _ dy: Int64,
    _ info: UnsafeMutablePointer<lancbio_bilevel_info_t>?
) -> Int32 {
    withHandle(h, as: BilevelHandle.self) { handle throws(CFailure) in
        let optimizer = handle.optimizer
        guard let problem else { throw CFailure.null("problem") }
        var callbacks = lancbio_problem_f64_t()
        try readVersionedStruct(UnsafeRawPointer(problem), into: &callbacks, name: "problem")
        guard let x else { throw CFailure.null("x") }
        guard let y else { throw CFailure.null("y") }
        guard dx == Int64(optimizer.dx), dy == Int64(optimizer.dy) else {
            throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT,
                           "dx = \(dx), dy = \(dy) do not match the optimizer's \(optimizer.dx), \(optimizer.dy)")
        }
        if let info { try checkWritableStruct(info, name: "info") }
        let c = try ProblemCallbacks(callbacks)
        let result: BilevelStepInfo
        do {
            // The closures are built here, at the call, so they do not escape and the
            // iteration allocates nothing.
            result = try optimizer.step(
                x: UnsafeMutableBufferPointer(start: x, count: optimizer.dx),
                y: UnsafeMutableBufferPointer(start: y, count: optimizer.dy),
                gradYG: { x, y, out in try c.call(c.gradYG, "grad_y_g", x, y, out) },
                gradXF: { x, y, out in try c.call(c.gradXF, "grad_x_f", x, y, out) },
                gradYF: { x, y, out in try c.call(c.gradYF, "grad_y_f", x, y, out) },
                hvpYY: { x, y, v, out in try c.call(c.hvp, "hvp_yy_g", x, y, v, out) },
                jvpXY: { x, y, v, out in try c.call(c.jvp, "jvp_xy_g", x, y, v, out) })
        } catch let error as EstimatorError {
            throw CFailure(error)
        } catch let abort as ProblemCallbackAbort {
            handle.callbackStatus = abort.code
            throw CFailure(LANCBIO_ERR_CALLBACK,
                           "the \(abort.callback) callback \(abort.outcome); the iteration was abandoned and x, y and the optimizer are unchanged")
        } catch {
            throw CFailure(LANCBIO_ERR_INVALID_STATE, "unexpected error: \(error)")
        }
        if let info { writeVersionedStruct(lancbio_bilevel_info_t(result), to: info) }
        return result.estimator.outcome.status
    }
}

@c @implementation
public func lancbio_bilevel_info(_ h: OpaquePointer?, _ info: UnsafeMutablePointer<lancbio_bilevel_info_t>?) -> Int32 {
    withHandle(h, as: BilevelHandle.self) { handle throws(CFailure) in
        guard let info else { throw CFailure.null("info") }
        try checkWritableStruct(info, name: "info")
        writeVersionedStruct(lancbio_bilevel_info_t(handle.optimizer.lastInfo), to: info)
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_bilevel_estimator_info(_ h: OpaquePointer?, _ info: UnsafeMutablePointer<lancbio_step_info_t>?) -> Int32 {
    withHandle(h, as: BilevelHandle.self) { handle throws(CFailure) in
        guard let info else { throw CFailure.null("info") }
        try checkWritableStruct(info, name: "info")
        writeVersionedStruct(lancbio_step_info_t(handle.optimizer.estimator.lastInfo), to: info)
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_bilevel_get_v_f64(_ h: OpaquePointer?, _ v: UnsafeMutablePointer<Double>?, _ dy: Int64) -> Int32 {
    withHandle(h, as: BilevelHandle.self) { handle throws(CFailure) in
        let destination = try dimensionChecked(v, dy, expected: handle.optimizer.dy, "v")
        try checked { () throws(EstimatorError) in try handle.optimizer.estimator.copyEstimate(into: destination) }
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_bilevel_set_v_f64(_ h: OpaquePointer?, _ v: UnsafePointer<Double>?, _ dy: Int64) -> Int32 {
    withHandle(h, as: BilevelHandle.self) { handle throws(CFailure) in
        let source = try dimensionChecked(UnsafeMutablePointer(mutating: v), dy, expected: handle.optimizer.dy, "v")
        try checked { () throws(EstimatorError) in try handle.optimizer.setEstimate(UnsafeBufferPointer(source)) }
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_bilevel_get_hypergradient_f64(_ h: OpaquePointer?, _ g: UnsafeMutablePointer<Double>?, _ dx: Int64) -> Int32 {
    withHandle(h, as: BilevelHandle.self) { handle throws(CFailure) in
        let destination = try dimensionChecked(g, dx, expected: handle.optimizer.dx, "g")
        _ = destination.update(fromContentsOf: handle.optimizer.hypergradient)
        return LANCBIO_OK
    }
}

/// Checks that a bilevel optimizer's storage can be allocated (the core's count of it).
func probeBilevelStorage(dx: Int, dy: Int, method: EstimatorMethod) throws(CFailure) {
    try ensureAllocatable(BilevelOptimizer<Double>.requiredBytes(dx: dx, dy: dy, method: method))
}

/// A caller buffer of `expected` values.
private func dimensionChecked(_ p: UnsafeMutablePointer<Double>?, _ count: Int64, expected: Int, _ name: String) throws(CFailure)
    -> UnsafeMutableBufferPointer<Double> {
    guard let p else { throw CFailure.null(name) }
    guard count == Int64(expected) else {
        throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "\(name) must hold \(expected) values (got \(count))")
    }
    return UnsafeMutableBufferPointer(start: p, count: expected)
}

@c @implementation
public func lancbio_bilevel_set_reduction(
    _ h: OpaquePointer?, _ reduce: lancbio_reduce_t?, _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    withHandle(h, as: BilevelHandle.self) { handle throws(CFailure) in
        let hook: ReductionHook? = reduce.map { reduce in
            // Weak: the optimizer the handle owns keeps the hook.
            { [weak handle] values in
                let code = reduce(values.baseAddress, Int64(values.count), userData)
                if code != 0 { handle?.callbackStatus = code }
                return code == 0
            }
        }
        try checked { () throws(EstimatorError) in try handle.optimizer.setReduction(hook) }
        return LANCBIO_OK
    }
}

@c @implementation
public func lancbio_bilevel_step_sizes(
    _ options: UnsafePointer<lancbio_bilevel_options_t>?, _ iteration: Int64,
    _ lrX: UnsafeMutablePointer<Double>?, _ lrY: UnsafeMutablePointer<Double>?
) -> Int32 {
    ThreadLastError.call { () throws(CFailure) -> Int32 in
        guard let options else { throw CFailure.null("options") }
        guard let lrX else { throw CFailure.null("lr_x") }
        guard let lrY else { throw CFailure.null("lr_y") }
        var o = lancbio_bilevel_options_t.defaults
        try readVersionedStruct(UnsafeRawPointer(options), into: &o, name: "options")
        let core = try o.core()
        try checked { () throws(EstimatorError) in try core.validate() }
        guard iteration >= 1 else { throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "iteration = \(iteration) must be >= 1") }
        let (x, y) = core.scheduledStepSizes(iteration: Int(iteration))
        lrX.pointee = x
        lrY.pointee = core.lrYAuto ? 0 : y
        return LANCBIO_OK
    }
}
