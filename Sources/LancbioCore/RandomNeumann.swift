/// The TTSA / BSA estimator as the paper's comparison runs it: a random truncation
/// p uniform in {0 .. maxTerms-1}, v = eta (I - eta A)^p b, then `maxTerms` gradient
/// steps v <- v - eta (A v - b). p + maxTerms products.
///
/// The generator state is part of the estimator state: a failed step does not advance
/// it, and `reset` reseeds it.
final class RandomNeumann<T: BinaryFloatingPoint>: StepMethod {
    typealias Options = (stepSize: Double, maxTerms: Int, seed: UInt64)
    static var name: String { "random-neumann" }
    /// The gradient steps use the product's buffer as the residual.
    static var readsProductInPlace: Bool { false }

    static func validate(_ o: Options) throws(EstimatorError) {
        try OptionChecks.positive(o.stepSize, "step_size")
        try OptionChecks.count(o.maxTerms, "steps", atLeast: 1)
    }

    /// The current power.
    static func storage(n: Int, options: Options) -> MethodStorage { MethodStorage(vectors: 1) }
    /// The gradient steps' sums (the most of one reduction; see `GradientSteps`).
    static func reductionValues(options: Options) -> Int? { 4 }

    private var allocations = OwnedAllocations()
    let n: Int
    let stepSize: Double
    let maxTerms: Int
    let seed: UInt64
    private var generator: SplitMix64
    private var pendingGenerator: SplitMix64
    private let power: UnsafeMutablePointer<T>
    private var truncation = 0
    private var powersTaken = 0
    private var gradientStepsTaken = 0
    private var lastResidual = 0.0

    init(n: Int, options: Options) throws(EstimatorError) {
        self.n = n
        stepSize = options.stepSize
        maxTerms = options.maxTerms
        seed = options.seed
        generator = SplitMix64(seed: seed)
        pendingGenerator = generator
        power = try allocations.zeroed(n)
    }

    /// The truncation length p of the last completed step.
    private(set) var lastTruncation = 0

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func begin(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> StepDemand<T> {
        pendingGenerator = generator
        truncation = pendingGenerator.next(below: maxTerms)
        Kernels.copy(input.rhs, to: power, n)
        powersTaken = 0
        gradientStepsTaken = 0
        return try advance(ws)
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func resume(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> StepDemand<T> {
        info.products += 1
        if powersTaken < truncation {
            try NeumannSeries<T>.applyTerm(power: power, sum: nil, input, stepSize: stepSize, n, across: ws.reduction)
            powersTaken += 1
        } else {
            lastResidual = try GradientSteps<T>.gradientStep(input, ws, stepSize: stepSize)
            gradientStepsTaken += 1
        }
        let next = try advance(ws)
        if case .done = next {
            info.iterations = powersTaken + gradientStepsTaken
            info.residual = lastResidual
            info.residualKind = .previousIterate
            info.settleOutcome()
        }
        return next
    }

    /// The next product to ask for, or `.done` when all are done.
    private func advance(_ ws: StepWorkspace<T>) throws(EstimatorError) -> StepDemand<T> {
        if powersTaken < truncation { return .product(of: power) }
        if gradientStepsTaken == 0 {
            // The series is done: the gradient steps start from eta (I - eta A)^p b.
            Kernels.scaledCopy(power, by: stepSize, into: ws.pending, n)
            let finite = Kernels.allFinite(ws.pending, n)
            if let reduction = ws.reduction, !(try reduction.allAgree(finite)) {
                throw .nonFiniteResult("eta (I - eta A)^p b overflowed (on some process)")
            }
            guard finite else { throw .nonFiniteResult("eta (I - eta A)^p b overflowed") }
        }
        if gradientStepsTaken < maxTerms { return .product(of: ws.pending) }
        return .done
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func commit(_ ws: StepWorkspace<T>) {
        generator = pendingGenerator
        lastTruncation = truncation
    }

    func reset() {
        generator = SplitMix64(seed: seed)
        lastTruncation = 0
    }

    /// The generator's position (the next step's truncation follows from it) and the last
    /// truncation.
    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func save(to archive: inout StateWriter) {
        archive.word(generator.state)
        archive.integer(lastTruncation)
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func restore(from archive: inout StateReader) throws(EstimatorError) -> StateInstallation {
        let state = try archive.word("the generator state")
        let truncation = try archive.integer("the last truncation", in: 0...(maxTerms - 1))
        return { [self] in
            generator = SplitMix64(seed: state)
            lastTruncation = truncation
        }
    }
}
