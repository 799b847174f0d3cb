/// Which estimator of A^{-1} b to run, with its own options. ALGORITHMS.md sections 3-5
/// give the mathematics of each.
public enum EstimatorMethod: Equatable, Sendable {
    /// LancBiO's dynamic Lanczos: one Lanczos step per outer iteration (1 + 1/m products).
    case dynamicLanczos(LanczosOptions)
    /// SubBiO: Galerkin solve on span{b, v - theta0 A v} (3 products).
    /// `theta0` > 0, in the units of 1 / eigenvalue of A.
    case subspace(theta0: Double)
    /// Conjugate gradients warm-started from the last estimate (AmIGO-CG): stops after
    /// `maxIterations` iterations or when ||r|| <= tolerance * ||b|| (maxIterations + 1 products at most).
    case conjugateGradient(maxIterations: Int, tolerance: Double)
    /// MINRES warm-started from the last estimate, for symmetric indefinite A
    /// (maxIterations + 1 products at most).
    case minres(maxIterations: Int, tolerance: Double)
    /// `steps` gradient (Richardson) steps v <- v - stepSize (A v - b) from the last
    /// estimate (AmIGO-GD; SOBA is steps = 1).
    case gradientDescent(stepSize: Double, steps: Int)
    /// Truncated Neumann series v = eta sum_{i=0..terms} (I - eta A)^i b (stocBiO; `terms` products).
    case neumann(stepSize: Double, terms: Int)
    /// v = eta (I - eta A)^p b with p uniform in {0..maxTerms-1} drawn from a generator
    /// seeded by `seed`, then `maxTerms` gradient steps (TTSA / BSA; p + maxTerms products).
    case randomNeumann(stepSize: Double, maxTerms: Int, seed: UInt64)

    /// Short lowercase name, as the C and Python layers spell it.
    public var name: String {
        switch self {
        case .dynamicLanczos: return "lanczos"
        case .subspace: return "subbio"
        case .conjugateGradient: return "cg"
        case .minres: return "minres"
        case .gradientDescent: return "gd"
        case .neumann: return "neumann"
        case .randomNeumann: return "random-neumann"
        }
    }

    func validate() throws(EstimatorError) {
        func positive(_ x: Double, _ what: String) throws(EstimatorError) {
            guard x.isFinite, x > 0 else { throw .invalidArgument("\(what) must be finite and > 0 (got \(x))") }
        }
        func count(_ k: Int, _ what: String, atLeast low: Int) throws(EstimatorError) {
            guard k >= low, k <= 1 << 30 else { throw .invalidArgument("\(what) must be in \(low)...\(1 << 30) (got \(k))") }
        }
        switch self {
        case .dynamicLanczos(let o): try o.validate()
        case .subspace(let theta0): try positive(theta0, "theta0")
        case .conjugateGradient(let k, let tol), .minres(let k, let tol):
            try count(k, "maxIterations", atLeast: 0)
            guard tol.isFinite, tol >= 0 else { throw .invalidArgument("tolerance must be finite and >= 0 (got \(tol))") }
        case .gradientDescent(let eta, let k):
            try positive(eta, "stepSize"); try count(k, "steps", atLeast: 1)
        case .neumann(let eta, let k):
            try positive(eta, "stepSize"); try count(k, "terms", atLeast: 0)
        case .randomNeumann(let eta, let k, _):
            try positive(eta, "stepSize"); try count(k, "maxTerms", atLeast: 1)
        }
    }
}

/// Whether dynamic Lanczos anchors each cycle at the last estimate.
public enum LanczosVariant: Int32, Sendable {
    /// The paper's method: restart at vbar = v_k, solve for the correction from
    /// r0 = b - A vbar (one extra product per restart).
    case residual = 0
    /// The research code's stochastic variant: no anchor, q_1 = b / ||b||.
    case plain = 1
}

/// Options of dynamic Lanczos (ALGORITHMS.md section 3).
public struct LanczosOptions: Equatable, Sendable {
    /// Initial restart period m0 >= 1.
    public var initialPeriod = 1
    /// Largest restart period m_max >= initialPeriod; the basis holds m_max + 1 vectors.
    public var maxPeriod = 80
    /// Period growth factor (>= 1): m <- min(ceil(m * growth), m_max).
    public var growth = 1.1
    /// Grow the period every this many steps (>= 1).
    public var growEvery = 20
    public var variant = LanczosVariant.residual
    /// Re-orthogonalise each new basis vector against the stored basis (twice, classical
    /// Gram-Schmidt): costs two more passes over the basis per step.
    public var reorthogonalize = false
    /// Restart the cycle early when the newest basis vector has lost orthogonality:
    /// max_i |q_i . q_{j+1}| above this (in (0, 1]; infinity disables the check). While A
    /// drifts between steps the three-term recurrence no longer keeps the basis
    /// orthogonal, and a long cycle on a badly non-orthogonal basis can make the estimate
    /// diverge. Checked in the same pass over the basis as the projection of b, so it costs
    /// compute, not memory traffic. Ignored with `reorthogonalize`.
    public var orthogonalityTolerance = 1e-2

    public init(initialPeriod: Int = 1, maxPeriod: Int = 80, growth: Double = 1.1, growEvery: Int = 20,
                variant: LanczosVariant = .residual, reorthogonalize: Bool = false,
                orthogonalityTolerance: Double = 1e-2) {
        self.initialPeriod = initialPeriod
        self.maxPeriod = maxPeriod
        self.growth = growth
        self.growEvery = growEvery
        self.variant = variant
        self.reorthogonalize = reorthogonalize
        self.orthogonalityTolerance = orthogonalityTolerance
    }

    func validate() throws(EstimatorError) {
        guard maxPeriod >= 1, maxPeriod <= 4096 else {
            throw .invalidArgument("m_max must be in 1...4096 (got \(maxPeriod))")
        }
        guard initialPeriod >= 1, initialPeriod <= maxPeriod else {
            throw .invalidArgument("m0 must be in 1...m_max (got m0 = \(initialPeriod), m_max = \(maxPeriod))")
        }
        guard growth.isFinite, growth >= 1, growth <= 1e6 else {
            throw .invalidArgument("growth must be finite and in [1, 1e6] (got \(growth))")
        }
        guard growEvery >= 1 else { throw .invalidArgument("grow_every must be >= 1 (got \(growEvery))") }
        guard orthogonalityTolerance > 0, !orthogonalityTolerance.isNaN else {
            throw .invalidArgument("orthogonality_tolerance must be > 0, or infinity to disable the check (got \(orthogonalityTolerance))")
        }
    }
}
