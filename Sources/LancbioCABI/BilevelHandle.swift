import CLancbio
import LancbioCore

/// What a `lancbio_bilevel_t *` points to.
final class BilevelHandle: HandleState {
    let optimizer: BilevelOptimizer<Double>

    init(optimizer: BilevelOptimizer<Double>) {
        self.optimizer = optimizer
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
        guard lr_x != 0, lr_y != 0 else {
            throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "options.lr_x and options.lr_y must be set (> 0)")
        }
        guard inner_steps >= 0, inner_steps <= Int64(Int32.max) else {
            throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "options.inner_steps = \(inner_steps) is out of range")
        }
        return BilevelOptions(lrX: lr_x, lrY: lr_y, lrXDecay: lr_x_decay, lrXMin: lr_x_min,
                              lrYDecay: lr_y_decay, lrYMin: lr_y_min, innerSteps: Int(inner_steps))
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
        estimator_status = info.estimator.outcome.status
    }
}

/// A callback of the problem returned non-zero.
struct ProblemCallbackAbort: Error {
    let callback: String
    let code: Int32
}

extension lancbio_problem_f64_t {
    /// The core's view of the problem: closures that call the C callbacks with the
    /// dimensions and user_data, and throw on a non-zero return.
    func core(dx: Int, dy: Int) throws(CFailure) -> BilevelProblem<Double> {
        guard let gradYG = grad_y_g else { throw CFailure.null("problem.grad_y_g") }
        guard let gradXF = grad_x_f else { throw CFailure.null("problem.grad_x_f") }
        guard let gradYF = grad_y_f else { throw CFailure.null("problem.grad_y_f") }
        guard let hvp = hvp_yy_g else { throw CFailure.null("problem.hvp_yy_g") }
        guard let jvp = jvp_xy_g else { throw CFailure.null("problem.jvp_xy_g") }
        let userData = user_data
        let (nx, ny) = (Int64(dx), Int64(dy))
        func gradient(_ f: @escaping lancbio_gradient_f64_t, _ name: String) -> BilevelProblem<Double>.Gradient {
            { x, y, out in
                let code = f(x.baseAddress, nx, y.baseAddress, ny, out.baseAddress, userData)
                if code != 0 { throw ProblemCallbackAbort(callback: name, code: code) }
            }
        }
        func product(_ f: @escaping lancbio_product_f64_t, _ name: String) -> BilevelProblem<Double>.Product {
            { x, y, v, out in
                let code = f(x.baseAddress, nx, y.baseAddress, ny, v.baseAddress, out.baseAddress, userData)
                if code != 0 { throw ProblemCallbackAbort(callback: name, code: code) }
            }
        }
        return BilevelProblem(gradYG: gradient(gradYG, "grad_y_g"), gradXF: gradient(gradXF, "grad_x_f"),
                              gradYF: gradient(gradYF, "grad_y_f"), hvpYY: product(hvp, "hvp_yy_g"),
                              jvpXY: product(jvp, "jvp_xy_g"))
    }
}
