/// Whether dynamic Lanczos anchors each cycle at the last estimate.
public enum LanczosVariant: Int32, Sendable {
    /// The paper's method: restart at vbar = v_k, solve for the correction from
    /// r0 = b - A vbar (one extra product per restart).
    case residual = 0
    /// The research code's stochastic variant: no anchor, q_1 = b / ||b||.
    case plain = 1
}

/// Options of dynamic Lanczos (docs/algorithms.md section 3). The defaults are the paper's
/// schedule; the C layer's `lancbio_estimator_options_init` (and through it Python) reads
/// them from here.
public struct LanczosOptions: Equatable, Sendable {
    /// The largest m_max: the basis and its (m_max + 1)^2 projected system stay small
    /// beside the n-vectors.
    public static let maximumPeriod = 4096
    /// The paper's schedule.
    public static let defaults = LanczosOptions(
        initialPeriod: 1, maxPeriod: 80, growth: 1.1, growEvery: 20, variant: .residual, reorthogonalize: false,
        orthogonalityTolerance: 1e-2, exactResidual: false)

    /// Initial restart period m0 >= 1.
    public var initialPeriod: Int
    /// Largest restart period m_max >= initialPeriod; the basis holds m_max + 1 vectors.
    public var maxPeriod: Int
    /// Period growth factor (>= 1): m <- min(ceil(m * growth), m_max).
    public var growth: Double
    /// Grow the period every this many steps (>= 1).
    public var growEvery: Int
    public var variant: LanczosVariant
    /// Re-orthogonalise each new basis vector against the stored basis (twice, classical
    /// Gram-Schmidt): costs four more passes over the basis per step (a projection and a
    /// combination per round).
    public var reorthogonalize: Bool
    /// Restart the cycle early when the newest basis vector has lost orthogonality:
    /// max_i |q_i . q_{j+1}| above this (> 0; from 1 up the check never fires, as the
    /// products of unit vectors are at most 1, and infinity skips it). While A
    /// drifts between steps the three-term recurrence no longer keeps the basis
    /// orthogonal, and a long cycle on a badly non-orthogonal basis can make the estimate
    /// diverge. Checked in the same pass over the basis as the projection of b, so it costs
    /// compute, not memory traffic. Ignored with `reorthogonalize`.
    public var orthogonalityTolerance: Double
    /// Report ||A v - b|| of every step's estimate, from one more product per step, instead
    /// of the estimate beta_j |e_j^T s|, which is exact only while A and b stay fixed
    /// (docs/algorithms.md section 3.6). One-shot solves check the true residual
    /// themselves and ignore it.
    public var exactResidual: Bool

    /// Options left out take their value from `defaults`.
    public init(initialPeriod: Int = defaults.initialPeriod, maxPeriod: Int = defaults.maxPeriod,
                growth: Double = defaults.growth, growEvery: Int = defaults.growEvery,
                variant: LanczosVariant = defaults.variant, reorthogonalize: Bool = defaults.reorthogonalize,
                orthogonalityTolerance: Double = defaults.orthogonalityTolerance,
                exactResidual: Bool = defaults.exactResidual) {
        self.initialPeriod = initialPeriod
        self.maxPeriod = maxPeriod
        self.growth = growth
        self.growEvery = growEvery
        self.variant = variant
        self.reorthogonalize = reorthogonalize
        self.orthogonalityTolerance = orthogonalityTolerance
        self.exactResidual = exactResidual
    }

    func validate() throws(EstimatorError) {
        guard maxPeriod >= 1, maxPeriod <= Self.maximumPeriod else {
            throw .invalidArgument("m_max must be in 1...\(Self.maximumPeriod) (got \(maxPeriod))")
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
