import RealModule

/// Step sizes and inner steps of the bilevel outer loop (docs/algorithms.md section 2).
///
/// At outer iteration k = 1, 2, ...: lambda_k = max(lrXMin, lrX / k^lrXDecay) and
/// theta_k = max(lrYMin, lrY / k^lrYDecay), or with `lrYAuto` theta_k =
/// `autoStepScale` / (the optimizer's estimate of lambda_max of grad^2_yy g).
public struct BilevelOptions: Equatable, Sendable {
    /// c in theta = c / lambda_max with `lrYAuto`: the step 1 / L of gradient descent on an
    /// L-smooth function, half the largest step that converges on a quadratic.
    public static let autoStepScale = 1.0
    /// lambda > 0: the x step (units of x per unit of hyper-gradient).
    public var lrX: Double
    /// theta > 0: the inner y step on grad_y g.
    public var lrY: Double
    /// b >= 0: polynomial decay exponent of lambda (0: constant).
    public var lrXDecay = 0.0
    /// lambda_min >= 0: floor of the decayed lambda.
    public var lrXMin = 0.0
    /// a >= 0: polynomial decay exponent of theta.
    public var lrYDecay = 0.0
    /// theta_min >= 0: floor of the decayed theta.
    public var lrYMin = 0.0
    /// T >= 0: inner gradient steps on y per outer iteration (warm-started).
    public var innerSteps = 5
    /// theta from the curvature the estimator measures instead of lrY (which, with its
    /// decay and floor, is then ignored and may be 0): see `BilevelOptimizer.curvature`.
    /// Needs an estimator that reports Ritz values (dynamic Lanczos, SubBiO).
    public var lrYAuto = false

    /// lambda_k = max(lrXMin, lrX / k^lrXDecay) and theta_k likewise (each constant when
    /// its decay is 0), for outer iteration k >= 1: the schedule every outer loop follows
    /// (with `lrYAuto` theta comes from the curvature instead; see
    /// `BilevelOptimizer.stepSizes`).
    public func scheduledStepSizes(iteration k: Int) -> (lrX: Double, lrY: Double) {
        func decayed(_ base: Double, _ exponent: Double, _ floor: Double) -> Double {
            guard exponent > 0 else { return base }
            return Swift.max(floor, base / Double.pow(Double(k), exponent))
        }
        return (decayed(lrX, lrXDecay, lrXMin), decayed(lrY, lrYDecay, lrYMin))
    }

    public init(lrX: Double, lrY: Double, lrXDecay: Double = 0, lrXMin: Double = 0,
                lrYDecay: Double = 0, lrYMin: Double = 0, innerSteps: Int = 5, lrYAuto: Bool = false) {
        self.lrX = lrX
        self.lrY = lrY
        self.lrXDecay = lrXDecay
        self.lrXMin = lrXMin
        self.lrYDecay = lrYDecay
        self.lrYMin = lrYMin
        self.innerSteps = innerSteps
        self.lrYAuto = lrYAuto
    }

    public func validate() throws(EstimatorError) {
        guard lrX.isFinite && lrX > 0 else { throw .invalidArgument("lr_x must be finite and > 0 (got \(lrX))") }
        guard lrY.isFinite && (lrY > 0 || lrYAuto && lrY == 0) else {
            throw .invalidArgument("lr_y must be finite and > 0\(lrYAuto ? " or 0 (ignored with lr_y_auto)" : "") (got \(lrY))")
        }
        for (value, name) in [(lrXDecay, "lr_x_decay"), (lrXMin, "lr_x_min"), (lrYDecay, "lr_y_decay"), (lrYMin, "lr_y_min")]
        where !(value.isFinite && value >= 0) {
            throw .invalidArgument("\(name) must be finite and >= 0 (got \(value))")
        }
        guard innerSteps >= 0, innerSteps <= 1 << 30 else {
            throw .invalidArgument("inner_steps must be in 0...\(1 << 30) (got \(innerSteps))")
        }
    }
}

/// The derivatives of a bilevel problem min_x f(x, y*(x)), y*(x) = argmin_y g(x, y), as
/// closures that write into `out` (which they must fill completely). x has dx values,
/// y has dy. Buffers are valid only during the call. A closure that throws aborts the
/// outer step, which then leaves x, y and the optimizer unchanged.
public struct BilevelProblem<T: BinaryFloatingPoint> {
    public typealias Gradient = (_ x: UnsafeBufferPointer<T>, _ y: UnsafeBufferPointer<T>,
                                 _ out: UnsafeMutableBufferPointer<T>) throws -> Void
    public typealias Product = (_ x: UnsafeBufferPointer<T>, _ y: UnsafeBufferPointer<T>, _ v: UnsafeBufferPointer<T>,
                                _ out: UnsafeMutableBufferPointer<T>) throws -> Void
    /// grad_y g(x, y): dy values.
    public var gradYG: Gradient
    /// grad_x f(x, y): dx values.
    public var gradXF: Gradient
    /// grad_y f(x, y): dy values.
    public var gradYF: Gradient
    /// grad^2_yy g(x, y) v: dy values (v has dy).
    public var hvpYY: Product
    /// grad^2_xy g(x, y) v: dx values (v has dy).
    public var jvpXY: Product

    public init(gradYG: @escaping Gradient, gradXF: @escaping Gradient, gradYF: @escaping Gradient,
                hvpYY: @escaping Product, jvpXY: @escaping Product) {
        self.gradYG = gradYG
        self.gradXF = gradXF
        self.gradYF = gradYF
        self.hvpYY = hvpYY
        self.jvpXY = jvpXY
    }
}

/// Diagnostics of one outer iteration.
public struct BilevelStepInfo: Equatable, Sendable {
    /// Outer iterations completed, including this one.
    public var iteration = 0
    /// HVPs (grad^2_yy g products) used by this iteration, and since creation or reset.
    public var products = 0
    public var totalProducts = 0
    /// Gradient evaluations this iteration: T of grad_y g, plus grad_y f and grad_x f.
    public var gradientEvaluations = 0
    /// Cross products J v this iteration (always 1).
    public var crossProducts = 0
    /// ||grad_x f - J v||: the norm of the hyper-gradient estimate.
    public var hypergradientNorm = 0.0
    /// The step sizes used: lambda_k and theta_k.
    public var lrX = 0.0
    public var lrY = 0.0
    /// With `lrYAuto`: the estimate of lambda_max(grad^2_yy g) after this iteration (the
    /// next theta is `BilevelOptions.autoStepScale` / curvature); 0 otherwise.
    public var curvature = 0.0
    /// The estimator's diagnostics for the v of this iteration.
    public var estimator = StepInfo()

    public init() {}
}
