import CLancbio
import LancbioCore

/// What a `lancbio_bilevel_t *` points to.
final class BilevelHandle: HandleState {
    let optimizer: BilevelOptimizer<Double>

    /// - Throws: LANCBIO_ERR_OUT_OF_MEMORY (the optimizer is then released with it).
    init(optimizer: BilevelOptimizer<Double>) throws(CFailure) {
        self.optimizer = optimizer
        try super.init()
    }
}

extension lancbio_bilevel_options_t {
    static var defaults: lancbio_bilevel_options_t {
        var o = lancbio_bilevel_options_t()
        o.struct_size = Int64(MemoryLayout<lancbio_bilevel_options_t>.size)
        o.inner_steps = 5
        return o
    }

    func core() throws(CFailure) -> BilevelOptions {
        guard lr_x != 0, lr_y != 0 || lr_y_auto != 0 else {
            throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "options.lr_x and options.lr_y must be set (> 0)")
        }
        guard inner_steps >= 0, inner_steps <= Int64(Int32.max) else {
            throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "options.inner_steps = \(inner_steps) is out of range")
        }
        return BilevelOptions(lrX: lr_x, lrY: lr_y, lrXDecay: lr_x_decay, lrXMin: lr_x_min,
                              lrYDecay: lr_y_decay, lrYMin: lr_y_min, innerSteps: Int(inner_steps),
                              lrYAuto: lr_y_auto != 0)
    }
}

extension lancbio_bilevel_info_t {
    init(_ info: BilevelStepInfo) {
        self.init()
        struct_size = Int64(MemoryLayout<lancbio_bilevel_info_t>.size)
        iteration = Int64(info.iteration)
        products = Int64(info.products)
        total_products = Int64(info.totalProducts)
        gradient_evaluations = Int64(info.gradientEvaluations)
        cross_products = Int64(info.crossProducts)
        hypergradient_norm = info.hypergradientNorm
        lr_x = info.lrX
        lr_y = info.lrY
        curvature = info.curvature
        estimator_status = info.estimator.outcome.status
    }
}

/// A callback of the problem returned non-zero, or returned 0 without writing its output.
struct ProblemCallbackAbort: Error {
    let callback: StaticString
    let code: Int32
    let unwritten: Bool

    /// What the callback did, for messages (see `CallbackAbort.outcome`).
    var outcome: String { unwritten ? "returned 0 without writing its output" : "returned \(code)" }
}

/// The callbacks of a caller's problem, checked non-NULL.
struct ProblemCallbacks {
    let gradYG: lancbio_gradient_f64_t
    let gradXF: lancbio_gradient_f64_t
    let gradYF: lancbio_gradient_f64_t
    let hvp: lancbio_product_f64_t
    let jvp: lancbio_product_f64_t
    let userData: UnsafeMutableRawPointer?

    init(_ p: lancbio_problem_f64_t) throws(CFailure) {
        guard let gradYG = p.grad_y_g else { throw CFailure.null("problem.grad_y_g") }
        guard let gradXF = p.grad_x_f else { throw CFailure.null("problem.grad_x_f") }
        guard let gradYF = p.grad_y_f else { throw CFailure.null("problem.grad_y_f") }
        guard let hvp = p.hvp_yy_g else { throw CFailure.null("problem.hvp_yy_g") }
        guard let jvp = p.jvp_xy_g else { throw CFailure.null("problem.jvp_xy_g") }
        (self.gradYG, self.gradXF, self.gradYF, self.hvp, self.jvp, userData) = (gradYG, gradXF, gradYF, hvp, jvp, p.user_data)
    }

    /// Calls a gradient callback; a non-zero return, or an output left unwritten (see
    /// `CallbackOutputMarker`), aborts the iteration.
    @inline(__always)
    func call(_ f: lancbio_gradient_f64_t, _ name: StaticString, _ x: UnsafeBufferPointer<Double>,
              _ y: UnsafeBufferPointer<Double>, _ out: UnsafeMutableBufferPointer<Double>) throws {
        let (code, unwritten) = CallbackOutputMarker.leftUnwritten(out.baseAddress!) {
            f(x.baseAddress, Int64(x.count), y.baseAddress, Int64(y.count), out.baseAddress, userData)
        }
        if code != 0 || unwritten { throw ProblemCallbackAbort(callback: name, code: code, unwritten: unwritten) }
    }

    /// Calls a product callback; a non-zero return, or an output left unwritten, aborts
    /// the iteration.
    @inline(__always)
    func call(_ f: lancbio_product_f64_t, _ name: StaticString, _ x: UnsafeBufferPointer<Double>,
              _ y: UnsafeBufferPointer<Double>, _ v: UnsafeBufferPointer<Double>,
              _ out: UnsafeMutableBufferPointer<Double>) throws {
        let (code, unwritten) = CallbackOutputMarker.leftUnwritten(out.baseAddress!) {
            f(x.baseAddress, Int64(x.count), y.baseAddress, Int64(y.count), v.baseAddress, out.baseAddress, userData)
        }
        if code != 0 || unwritten { throw ProblemCallbackAbort(callback: name, code: code, unwritten: unwritten) }
    }
}
