// The checkpoint records of the value types: a method with its options, the outer-loop
// options, and the two kinds of step diagnostics. Each record is a fixed sequence of
// `StateArchive` fields; decoding checks every field's range and never allocates.

extension EstimatorMethod {
    /// The method's code in checkpoints. Written into saved files: never renumbered.
    private var archiveCode: UInt64 {
        switch self {
        case .dynamicLanczos: 1
        case .subbio: 2
        case .conjugateGradient: 3
        case .minres: 4
        case .gradientDescent: 5
        case .neumann: 6
        case .randomNeumann: 7
        }
    }

    /// The code, then the options in declaration order.
    func archive(to w: inout StateWriter) {
        w.word(archiveCode)
        switch self {
        case .dynamicLanczos(let o):
            w.integer(o.initialPeriod); w.integer(o.maxPeriod); w.real(o.growth); w.integer(o.growEvery)
            w.integer(Int(o.variant.rawValue)); w.flag(o.reorthogonalize); w.real(o.orthogonalityTolerance)
            w.flag(o.exactResidual)
        case .subbio(let theta0):
            w.real(theta0)
        case .conjugateGradient(let k, let tol), .minres(let k, let tol):
            w.integer(k); w.real(tol)
        case .gradientDescent(let eta, let k), .neumann(let eta, let k):
            w.real(eta); w.integer(k)
        case .randomNeumann(let eta, let k, let seed):
            w.real(eta); w.integer(k); w.word(seed)
        }
    }

    /// The options by their C names, for messages.
    var optionSummary: String {
        switch self {
        case .dynamicLanczos(let o):
            "m0 = \(o.initialPeriod), m_max = \(o.maxPeriod), growth = \(o.growth), grow_every = \(o.growEvery), "
                + "variant = \(o.variant == .plain ? "plain" : "residual"), reorthogonalize = \(o.reorthogonalize), orthogonality_tolerance = \(o.orthogonalityTolerance), "
                + "exact_residual = \(o.exactResidual)"
        case .subbio(let theta0): "theta0 = \(theta0)"
        case .conjugateGradient(let k, let tol), .minres(let k, let tol): "max_iterations = \(k), tolerance = \(tol)"
        case .gradientDescent(let eta, let k), .neumann(let eta, let k): "step_size = \(eta), steps = \(k)"
        case .randomNeumann(let eta, let k, let seed): "step_size = \(eta), steps = \(k), seed = \(seed)"
        }
    }

    /// Reads what `archive` wrote; the options must pass the method's own checks.
    static func unarchive(from r: inout StateReader) throws(EstimatorError) -> EstimatorMethod {
        func integer(_ what: String) throws(EstimatorError) -> Int { try r.integer(what, in: Int.min...Int.max) }
        let method: EstimatorMethod
        switch try r.word("the method") {
        case 1:
            let m0 = try integer("m0"), mMax = try integer("m_max"), growth = try r.real("growth")
            let growEvery = try integer("grow_every")
            guard let variant = LanczosVariant(rawValue: Int32(try r.integer("variant", in: 0...1))) else {
                throw .invalidCheckpoint("unknown Lanczos variant")
            }
            let reorthogonalize = try r.flag("reorthogonalize")
            let tolerance = try r.real("orthogonality_tolerance", finite: false)
            let exactResidual = try r.flag("exact_residual")
            method = .dynamicLanczos(LanczosOptions(initialPeriod: m0, maxPeriod: mMax, growth: growth, growEvery: growEvery,
                                                    variant: variant, reorthogonalize: reorthogonalize,
                                                    orthogonalityTolerance: tolerance, exactResidual: exactResidual))
        case 2:
            method = .subbio(theta0: try r.real("theta0"))
        case 3:
            method = .conjugateGradient(maxIterations: try integer("max_iterations"), tolerance: try r.real("tolerance"))
        case 4:
            method = .minres(maxIterations: try integer("max_iterations"), tolerance: try r.real("tolerance"))
        case 5:
            method = .gradientDescent(stepSize: try r.real("step_size"), steps: try integer("steps"))
        case 6:
            method = .neumann(stepSize: try r.real("step_size"), terms: try integer("steps"))
        case 7:
            method = .randomNeumann(stepSize: try r.real("step_size"), maxTerms: try integer("steps"), seed: try r.word("seed"))
        case let code:
            throw .invalidCheckpoint("unknown method code \(code)")
        }
        do {
            try method.validate()
        } catch {
            throw .invalidCheckpoint("the recorded \(method.name) options are invalid: \(error.message)")
        }
        return method
    }
}

extension BilevelOptions {
    func archive(to w: inout StateWriter) {
        w.real(lrX); w.real(lrY); w.real(lrXDecay); w.real(lrXMin); w.real(lrYDecay); w.real(lrYMin)
        w.integer(innerSteps)
        w.integer(lrYAuto ? 1 : 0)
    }

    static func unarchive(from r: inout StateReader) throws(EstimatorError) -> BilevelOptions {
        let options = BilevelOptions(
            lrX: try r.real("lr_x"), lrY: try r.real("lr_y"), lrXDecay: try r.real("lr_x_decay"),
            lrXMin: try r.real("lr_x_min"), lrYDecay: try r.real("lr_y_decay"), lrYMin: try r.real("lr_y_min"),
            innerSteps: try r.integer("inner_steps", in: Int.min...Int.max),
            lrYAuto: try r.integer("lr_y_auto", in: 0...1) == 1)
        do {
            try options.validate()
        } catch {
            throw .invalidCheckpoint("the recorded bilevel options are invalid: \(error.message)")
        }
        return options
    }
}

extension StepInfo {
    func archive(to w: inout StateWriter) {
        w.integer(Int(outcome.rawValue)); w.integer(products); w.integer(totalProducts); w.integer(iterations)
        w.integer(dimension); w.integer(period); w.flag(restarted); w.integer(restarts)
        w.real(residual); w.integer(Int(residualKind.rawValue)); w.real(ritzMin); w.real(ritzMax)
        w.flag(breakdown); w.flag(indefinite); w.flag(singularFallback); w.flag(zeroResidual)
        w.real(orthogonalityLoss); w.flag(orthogonalityRestart); w.flag(residualUncertain)
    }

    /// Diagnostics as a step reports them: counts >= 0, no NaN (an overflowed residual or
    /// Ritz value may be infinite).
    static func unarchive(from r: inout StateReader) throws(EstimatorError) -> StepInfo {
        var info = StepInfo()
        guard let outcome = StepOutcome(rawValue: Int32(try r.integer("the step outcome", in: 0...127))) else {
            throw .invalidCheckpoint("unknown step outcome")
        }
        info.outcome = outcome
        info.products = try r.count("the step's products")
        info.totalProducts = try r.count("the total products")
        info.iterations = try r.count("the step's iterations")
        info.dimension = try r.count("the step's dimension")
        info.period = try r.count("the step's period")
        info.restarted = try r.flag("restarted")
        info.restarts = try r.count("the step's restarts")
        info.residual = try r.real("the residual", finite: false)
        guard let kind = ResidualKind(rawValue: Int32(try r.integer("the residual kind", in: 0...127))) else {
            throw .invalidCheckpoint("unknown residual kind")
        }
        info.residualKind = kind
        info.ritzMin = try r.real("ritz_min", finite: false)
        info.ritzMax = try r.real("ritz_max", finite: false)
        info.breakdown = try r.flag("breakdown")
        info.indefinite = try r.flag("indefinite")
        info.singularFallback = try r.flag("singular_fallback")
        info.zeroResidual = try r.flag("zero_residual")
        info.orthogonalityLoss = try r.real("orthogonality_loss", finite: false)
        info.orthogonalityRestart = try r.flag("orthogonality_restart")
        info.residualUncertain = try r.flag("residual_uncertain")
        guard info.residual >= 0, info.orthogonalityLoss >= 0 else {
            throw .invalidCheckpoint("a residual or orthogonality loss is negative")
        }
        return info
    }
}

extension BilevelStepInfo {
    func archive(to w: inout StateWriter) {
        w.integer(iteration); w.integer(products); w.integer(totalProducts); w.integer(gradientEvaluations)
        w.integer(crossProducts); w.real(hypergradientNorm); w.real(lrX); w.real(lrY); w.real(curvature)
        estimator.archive(to: &w)
    }

    static func unarchive(from r: inout StateReader) throws(EstimatorError) -> BilevelStepInfo {
        var info = BilevelStepInfo()
        info.iteration = try r.count("the iteration")
        info.products = try r.count("the iteration's products")
        info.totalProducts = try r.count("the iteration's total products")
        info.gradientEvaluations = try r.count("the gradient evaluations")
        info.crossProducts = try r.count("the cross products")
        info.hypergradientNorm = try r.real("the hyper-gradient norm")
        info.lrX = try r.real("lr_x")
        info.lrY = try r.real("lr_y")
        info.curvature = try r.real("the curvature estimate")
        info.estimator = try StepInfo.unarchive(from: &r)
        guard info.hypergradientNorm >= 0 else { throw .invalidCheckpoint("the hyper-gradient norm is negative") }
        return info
    }
}
