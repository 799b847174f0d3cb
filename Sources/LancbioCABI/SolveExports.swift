import CLancbio
import LancbioCore

// The one-shot solves of include/lancbio.h: checks and conversions around `OneShotSolve`.

@c @implementation
public func lancbio_solve_f64(
    _ options: UnsafePointer<lancbio_estimator_options_t>?, _ hvp: lancbio_hvp_f64_t?, _ userData: UnsafeMutableRawPointer?,
    _ b: UnsafePointer<Double>?, _ x: UnsafeMutablePointer<Double>?, _ n: Int64, _ tolerance: Double,
    _ maxIterations: Int64, _ result: UnsafeMutablePointer<lancbio_solve_result_t>?,
    _ lastStep: UnsafeMutablePointer<lancbio_step_info_t>?
) -> Int32 {
    ThreadLastError.call { () throws(CFailure) -> Int32 in
        guard let hvp else { throw CFailure.null("hvp") }
        return try solve(options, precision: LANCBIO_FLOAT64, b, x, n, tolerance, maxIterations, result, lastStep) {
            input, output in hvp(input, output, n, userData)
        }
    }
}

@c @implementation
public func lancbio_solve_f32(
    _ options: UnsafePointer<lancbio_estimator_options_t>?, _ hvp: lancbio_hvp_f32_t?, _ userData: UnsafeMutableRawPointer?,
    _ b: UnsafePointer<Float>?, _ x: UnsafeMutablePointer<Float>?, _ n: Int64, _ tolerance: Double,
    _ maxIterations: Int64, _ result: UnsafeMutablePointer<lancbio_solve_result_t>?,
    _ lastStep: UnsafeMutablePointer<lancbio_step_info_t>?
) -> Int32 {
    ThreadLastError.call { () throws(CFailure) -> Int32 in
        guard let hvp else { throw CFailure.null("hvp") }
        return try solve(options, precision: LANCBIO_FLOAT32, b, x, n, tolerance, maxIterations, result, lastStep) {
            input, output in hvp(input, output, n, userData)
        }
    }
}

@c @implementation
public func lancbio_solve_reduced_f64(
    _ options: UnsafePointer<lancbio_estimator_options_t>?, _ hvp: lancbio_hvp_f64_t?, _ userData: UnsafeMutableRawPointer?,
    _ reduce: lancbio_reduce_t?, _ reduceData: UnsafeMutableRawPointer?,
    _ b: UnsafePointer<Double>?, _ x: UnsafeMutablePointer<Double>?, _ n: Int64, _ tolerance: Double,
    _ maxIterations: Int64, _ result: UnsafeMutablePointer<lancbio_solve_result_t>?,
    _ lastStep: UnsafeMutablePointer<lancbio_step_info_t>?
) -> Int32 {
    ThreadLastError.call { () throws(CFailure) -> Int32 in
        guard let hvp else { throw CFailure.null("hvp") }
        guard let reduce else { throw CFailure.null("reduce") }
        return try solve(options, precision: LANCBIO_FLOAT64, b, x, n, tolerance, maxIterations, result, lastStep,
                         reduction: ReductionCallback(reduce, reduceData)) {
            input, output in hvp(input, output, n, userData)
        }
    }
}

@c @implementation
public func lancbio_solve_reduced_f32(
    _ options: UnsafePointer<lancbio_estimator_options_t>?, _ hvp: lancbio_hvp_f32_t?, _ userData: UnsafeMutableRawPointer?,
    _ reduce: lancbio_reduce_t?, _ reduceData: UnsafeMutableRawPointer?,
    _ b: UnsafePointer<Float>?, _ x: UnsafeMutablePointer<Float>?, _ n: Int64, _ tolerance: Double,
    _ maxIterations: Int64, _ result: UnsafeMutablePointer<lancbio_solve_result_t>?,
    _ lastStep: UnsafeMutablePointer<lancbio_step_info_t>?
) -> Int32 {
    ThreadLastError.call { () throws(CFailure) -> Int32 in
        guard let hvp else { throw CFailure.null("hvp") }
        guard let reduce else { throw CFailure.null("reduce") }
        return try solve(options, precision: LANCBIO_FLOAT32, b, x, n, tolerance, maxIterations, result, lastStep,
                         reduction: ReductionCallback(reduce, reduceData)) {
            input, output in hvp(input, output, n, userData)
        }
    }
}

/// The reduction callback of a solve, keeping the code it returned when it failed (for
/// the message: a solve has no handle to keep it in).
private final class ReductionCallback {
    let reduce: lancbio_reduce_t
    let userData: UnsafeMutableRawPointer?
    private(set) var failedWith: Int32 = 0

    init(_ reduce: @escaping lancbio_reduce_t, _ userData: UnsafeMutableRawPointer?) {
        self.reduce = reduce
        self.userData = userData
    }

    var hook: ReductionHook {
        { [self] values in
            let code = reduce(values.baseAddress, Int64(values.count), userData)
            if code != 0 { failedWith = code }
            return code == 0
        }
    }
}

private func solve<T: BinaryFloatingPoint>(
    _ options: UnsafePointer<lancbio_estimator_options_t>?, precision: Int32,
    _ b: UnsafePointer<T>?, _ x: UnsafeMutablePointer<T>?, _ n: Int64, _ tolerance: Double, _ maxIterations: Int64,
    _ result: UnsafeMutablePointer<lancbio_solve_result_t>?, _ lastStep: UnsafeMutablePointer<lancbio_step_info_t>?,
    reduction: ReductionCallback? = nil,
    product: (UnsafePointer<T>, UnsafeMutablePointer<T>) -> Int32
) throws(CFailure) -> Int32 {
    guard let options else { throw CFailure.null("options") }
    guard let b else { throw CFailure.null("b") }
    guard let x else { throw CFailure.null("x") }
    try checkDimension(n, "n")
    let o = try lancbio_estimator_options_t.read(options)
    guard o.precision == precision else {
        throw CFailure(LANCBIO_ERR_WRONG_PRECISION, precision == LANCBIO_FLOAT64
            ? "options.precision is not LANCBIO_FLOAT64: use lancbio_solve_f32 or set it"
            : "options.precision is not LANCBIO_FLOAT32: use lancbio_solve_f64 or set it")
    }
    guard maxIterations >= 0, maxIterations <= Int64(Int32.max) else {
        throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "max_iterations = \(maxIterations) must be 0 (the default, 10 n) or in 1...2^30")
    }
    if let result { try checkWritableStruct(result, name: "result") }
    if let lastStep { try checkWritableStruct(lastStep, name: "last_step") }
    let method = try o.method()
    let plan = try checked { () throws(EstimatorError) in
        try OneShotSolve<T>(n: Int(n), method: method, tolerance: tolerance,
                            maxIterations: maxIterations == 0 ? nil : Int(maxIterations))
    }
    // Across processes a local refusal must not leave the others waiting: the solve
    // reports it at its first reduction instead of a probe failing here alone.
    if reduction == nil { try ensureAllocatable(plan.requiredBytes) }
    let report: SolveReport
    do {
        report = try withProductCallback(abandoned: "the solve was abandoned and x is unchanged") {
            try plan.run(rhs: UnsafeBufferPointer(start: b, count: Int(n)),
                         solution: UnsafeMutableBufferPointer(start: x, count: Int(n)), reduction: reduction?.hook) {
                input, output in
                try CallbackAbort.call(writing: output.baseAddress!) { product(input.baseAddress!, output.baseAddress!) }
            }
        }
    } catch {
        if let code = reduction?.failedWith, code != 0 {
            throw CFailure(LANCBIO_ERR_CALLBACK, "the reduction callback returned \(code); the solve was abandoned and x is unchanged")
        }
        throw error
    }
    if let result {
        var r = lancbio_solve_result_t()
        r.struct_size = Int64(MemoryLayout<lancbio_solve_result_t>.size)
        r.converged = report.converged ? 1 : 0
        r.products = Int64(report.products)
        r.iterations = Int64(report.iterations)
        r.residual = report.residual
        r.rhs_norm = report.rhsNorm
        r.reductions = Int64(report.reductions)
        writeVersionedStruct(r, to: result)
    }
    if let lastStep { writeVersionedStruct(lancbio_step_info_t(report.lastStep), to: lastStep) }
    if report.converged { return LANCBIO_OK }
    switch report.lastStep.outcome {
    case .indefinite, .singular: return report.lastStep.outcome.status
    case .success, .budgetReached, .breakdown: return LANCBIO_BUDGET_REACHED
    }
}
