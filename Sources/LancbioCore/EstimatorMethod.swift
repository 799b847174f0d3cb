/// Which estimator of A^{-1} b to run, with its own options. docs/algorithms.md sections 3-5
/// give the mathematics of each.
///
/// This is the method table of the core: each case names the `StepMethod` type that
/// implements it (`implementation`); everything else (name, validation, storage, the
/// engine) comes from that type. A new method is a new `StepMethod` file plus a case and
/// its line in `implementation`, and its checkpoint record in `Checkpoint+Records.swift`
/// (the compiler asks for the code and the options; the round-trip tests for the reader).
public enum EstimatorMethod: Equatable, Sendable {
    /// LancBiO's dynamic Lanczos: one Lanczos step per outer iteration (1 + 1/m products).
    case dynamicLanczos(LanczosOptions)
    /// SubBiO: Galerkin solve on span{b, v - theta0 A v} (3 products).
    /// `theta0` > 0, in the units of 1 / eigenvalue of A.
    case subbio(theta0: Double)
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

    /// The implementing type of this method with its options, in precision T.
    func implementation<T: BinaryFloatingPoint>(_: T.Type) -> MethodImplementation<T> {
        switch self {
        case .dynamicLanczos(let o): MethodImplementation(DynamicLanczos<T>.self, o)
        case .subbio(let theta0): MethodImplementation(SubBiO<T>.self, theta0)
        case .conjugateGradient(let k, let tol): MethodImplementation(ConjugateGradient<T>.self, (k, tol))
        case .minres(let k, let tol): MethodImplementation(MINRES<T>.self, (k, tol))
        case .gradientDescent(let eta, let k): MethodImplementation(GradientSteps<T>.self, (eta, k))
        case .neumann(let eta, let k): MethodImplementation(NeumannSeries<T>.self, (eta, k))
        case .randomNeumann(let eta, let k, let seed): MethodImplementation(RandomNeumann<T>.self, (eta, k, seed))
        }
    }

    /// Short lowercase name, as the C and Python layers spell it.
    public var name: String { implementation(Double.self).name }

    func validate() throws(EstimatorError) { try implementation(Double.self).validate() }
}

/// One method's type and options, erased to what the estimator needs before it has an
/// engine: the name, the checks and the storage, and the engine itself.
struct MethodImplementation<T: BinaryFloatingPoint> {
    let name: String
    let validate: () throws(EstimatorError) -> Void
    /// Storage of the method for dimension n (options valid).
    let storage: (_ n: Int) -> MethodStorage
    /// Creates the engine for dimension n (options valid); throws `.outOfMemory`.
    let make: (_ n: Int) throws(EstimatorError) -> any StepMethod<T>
    let readsProductInPlace: Bool
    /// See `StepMethod.reductionValues`.
    let reductionValues: Int?

    init<M: StepMethod>(_ type: M.Type, _ options: M.Options) where M.Scalar == T {
        name = M.name
        validate = { () throws(EstimatorError) in try M.validate(options) }
        storage = { n in M.storage(n: n, options: options) }
        make = { n throws(EstimatorError) in try M(n: n, options: options) }
        readsProductInPlace = M.readsProductInPlace
        reductionValues = M.reductionValues(options: options)
    }
}
