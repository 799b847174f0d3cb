import CLancbio
import LancbioCore

/// The C side of the method table: the LANCBIO_METHOD_* codes, which
/// `lancbio_estimator_options_t.method()` maps to the core's `EstimatorMethod` cases.
enum EstimatorMethodCode {
    static let all: [Int32] = [
        LANCBIO_METHOD_LANCZOS, LANCBIO_METHOD_SUBBIO, LANCBIO_METHOD_CG, LANCBIO_METHOD_MINRES,
        LANCBIO_METHOD_GD, LANCBIO_METHOD_NEUMANN, LANCBIO_METHOD_RANDOM_NEUMANN,
    ]

    static func isKnown(_ code: Int32) -> Bool { all.contains(code) }

    /// The code of a core method: what `lancbio_estimator_properties` reports for a
    /// handle restored from a checkpoint.
    static func code(of method: EstimatorMethod) -> Int32 {
        switch method {
        case .dynamicLanczos: LANCBIO_METHOD_LANCZOS
        case .subbio: LANCBIO_METHOD_SUBBIO
        case .conjugateGradient: LANCBIO_METHOD_CG
        case .minres: LANCBIO_METHOD_MINRES
        case .gradientDescent: LANCBIO_METHOD_GD
        case .neumann: LANCBIO_METHOD_NEUMANN
        case .randomNeumann: LANCBIO_METHOD_RANDOM_NEUMANN
        }
    }
}

extension lancbio_estimator_options_t {
    /// The defaults of `method`, the only defaults there are (Python's "library default"
    /// reads them through `lancbio_estimator_options_init`): the paper's Lanczos schedule
    /// as the core defines it; the step sizes (theta0, step_size) are 0 because they
    /// depend on A's spectrum and must be set.
    static func defaults(method: Int32) -> lancbio_estimator_options_t {
        let lanczos = LanczosOptions.defaults
        var o = lancbio_estimator_options_t()
        o.struct_size = Int64(MemoryLayout<lancbio_estimator_options_t>.size)
        o.method = method
        o.precision = LANCBIO_FLOAT64
        o.m0 = Int64(lanczos.initialPeriod)
        o.m_max = Int64(lanczos.maxPeriod)
        o.growth = lanczos.growth
        o.grow_every = Int64(lanczos.growEvery)
        o.variant = lanczos.variant == .plain ? LANCBIO_VARIANT_PLAIN : LANCBIO_VARIANT_RESIDUAL
        o.reorthogonalize = lanczos.reorthogonalize ? 1 : 0
        o.theta0 = 0
        o.max_iterations = 5
        o.tolerance = 0
        o.step_size = 0
        o.steps = method == LANCBIO_METHOD_GD ? 5 : 10
        o.seed = 0
        o.orthogonality_tolerance = lanczos.orthogonalityTolerance
        o.exact_residual = lanczos.exactResidual ? 1 : 0
        return o
    }

    /// Reads a caller's options struct, honouring its struct_size.
    static func read(_ pointer: UnsafePointer<lancbio_estimator_options_t>) throws(CFailure) -> lancbio_estimator_options_t {
        // Defaults first, for the fields an older caller's struct does not reach; the
        // method is read only once struct_size shows it is there.
        let raw = UnsafeRawPointer(pointer)
        let size = raw.loadUnaligned(as: Int64.self)
        let method = size >= 12 ? raw.loadUnaligned(fromByteOffset: 8, as: Int32.self) : LANCBIO_METHOD_CG
        var options = lancbio_estimator_options_t.defaults(method: method)
        try readVersionedStruct(UnsafeRawPointer(pointer), into: &options, name: "options")
        return options
    }

    /// The core's description of the method, validated later by the core itself.
    func method() throws(CFailure) -> EstimatorMethod {
        func count(_ value: Int64, _ name: String) throws(CFailure) -> Int {
            guard value >= Int64(Int32.min), value <= Int64(Int32.max) else {
                throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "options.\(name) = \(value) is out of range")
            }
            return Int(value)
        }
        func stepSize(_ value: Double, _ name: String) throws(CFailure) -> Double {
            guard value != 0 else {
                throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT,
                               "options.\(name) must be set: a step size > 0 below 2 / lambda_max(A)")
            }
            return value
        }
        switch self.method {
        case LANCBIO_METHOD_LANCZOS:
            let variant: LanczosVariant
            switch self.variant {
            case LANCBIO_VARIANT_RESIDUAL: variant = .residual
            case LANCBIO_VARIANT_PLAIN: variant = .plain
            default: throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "options.variant = \(self.variant) is not a LANCBIO_VARIANT_*")
            }
            return .dynamicLanczos(LanczosOptions(
                initialPeriod: try count(m0, "m0"), maxPeriod: try count(m_max, "m_max"), growth: growth,
                growEvery: try count(grow_every, "grow_every"), variant: variant, reorthogonalize: reorthogonalize != 0,
                orthogonalityTolerance: orthogonality_tolerance, exactResidual: exact_residual != 0))
        case LANCBIO_METHOD_SUBBIO:
            return .subbio(theta0: try stepSize(theta0, "theta0"))
        case LANCBIO_METHOD_CG:
            return .conjugateGradient(maxIterations: try count(max_iterations, "max_iterations"), tolerance: tolerance)
        case LANCBIO_METHOD_MINRES:
            return .minres(maxIterations: try count(max_iterations, "max_iterations"), tolerance: tolerance)
        case LANCBIO_METHOD_GD:
            return .gradientDescent(stepSize: try stepSize(step_size, "step_size"), steps: try count(steps, "steps"))
        case LANCBIO_METHOD_NEUMANN:
            return .neumann(stepSize: try stepSize(step_size, "step_size"), terms: try count(steps, "steps"))
        case LANCBIO_METHOD_RANDOM_NEUMANN:
            return .randomNeumann(stepSize: try stepSize(step_size, "step_size"), maxTerms: try count(steps, "steps"), seed: seed)
        default:
            throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "options.method = \(self.method) is not a LANCBIO_METHOD_*")
        }
    }
}

extension lancbio_step_info_t {
    init(_ info: StepInfo) {
        self.init()
        struct_size = Int64(MemoryLayout<lancbio_step_info_t>.size)
        status = info.outcome.status
        residual_kind = info.residualKind.rawValue
        products = Int64(info.products)
        total_products = Int64(info.totalProducts)
        iterations = Int64(info.iterations)
        dimension = Int64(info.dimension)
        period = Int64(info.period)
        restarts = Int64(info.restarts)
        restarted = info.restarted ? 1 : 0
        breakdown = info.breakdown ? 1 : 0
        indefinite = info.indefinite ? 1 : 0
        singular_fallback = info.singularFallback ? 1 : 0
        zero_residual = info.zeroResidual ? 1 : 0
        residual = info.residual
        ritz_min = info.ritzMin
        ritz_max = info.ritzMax
        orthogonality_loss = info.orthogonalityLoss
        orthogonality_restart = info.orthogonalityRestart ? 1 : 0
        residual_uncertain = info.residualUncertain ? 1 : 0
        reductions = Int64(info.reductions)
    }
}
