import CLancbio
import LancbioCore

/// What a `lancbio_bilevel_t *` points to.
final class BilevelHandle: HandleState {
    let optimizer: BilevelOptimizer<Double>

    init(optimizer: BilevelOptimizer<Double>) {
        self.optimizer = optimizer
    }
}

let bilevelOptionsStructSize = MemoryLayout<lancbio_bilevel_options_t>.size
let bilevelInfoStructSize = MemoryLayout<lancbio_bilevel_info_t>.size
let problemStructSize = MemoryLayout<lancbio_problem_f64_t>.size

/// Reads the first `known` bytes of a caller's struct that starts with an int64 struct_size,
/// into a value of type S; rejects a struct_size below `known`, and non-zero bytes beyond
/// it (fields of a newer header this library cannot honour).
func readVersionedStruct<S>(_ pointer: UnsafeRawPointer, as type: S.Type, into value: inout S, name: String) throws(CFailure) {
    let known = MemoryLayout<S>.size
    let size = pointer.loadUnaligned(as: Int64.self)
    guard size >= Int64(known), size <= 1 << 20 else {
        throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "\(name).struct_size is \(size), expected at least \(known) (sizeof the struct)")
    }
    for offset in known..<Int(size) where pointer.load(fromByteOffset: offset, as: UInt8.self) != 0 {
        throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT,
                       "\(name) has non-zero fields this library version does not know (byte \(offset)); it supports \(known) bytes")
    }
    withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: UnsafeRawBufferPointer(start: pointer, count: known)) }
}

extension lancbio_bilevel_options_t {
    static var defaults: lancbio_bilevel_options_t {
        var o = lancbio_bilevel_options_t()
        o.struct_size = Int64(bilevelOptionsStructSize)
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
        struct_size = Int64(bilevelInfoStructSize)
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

    static func checkWritable(_ pointer: UnsafeMutablePointer<lancbio_bilevel_info_t>) throws(CFailure) {
        let size = UnsafeRawPointer(pointer).loadUnaligned(as: Int64.self)
        guard size >= Int64(bilevelInfoStructSize) else {
            throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT,
                           "info.struct_size is \(size), expected at least \(bilevelInfoStructSize): set it to sizeof(lancbio_bilevel_info_t)")
        }
    }

    static func write(_ info: BilevelStepInfo, to pointer: UnsafeMutablePointer<lancbio_bilevel_info_t>) {
        let callerSize = pointer.pointee.struct_size
        var value = lancbio_bilevel_info_t(info)
        value.struct_size = callerSize
        withUnsafeBytes(of: &value) { UnsafeMutableRawPointer(pointer).copyMemory(from: $0.baseAddress!, byteCount: bilevelInfoStructSize) }
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
