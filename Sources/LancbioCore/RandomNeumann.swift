/// The TTSA / BSA estimator as the paper's comparison runs it: a random truncation
/// p uniform in {0 .. maxTerms-1}, v = eta (I - eta A)^p b, then `maxTerms` gradient
/// steps v <- v - eta (A v - b). p + maxTerms products.
///
/// The generator state is part of the estimator state: a failed step does not advance
/// it, and `reset` reseeds it.
final class RandomNeumann<T: BinaryFloatingPoint>: StepMethod {
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

    init(n: Int, stepSize: Double, maxTerms: Int, seed: UInt64) {
        self.n = n
        self.stepSize = stepSize
        self.maxTerms = maxTerms
        self.seed = seed
        generator = SplitMix64(seed: seed)
        pendingGenerator = generator
        power = .allocate(zeroed: n)
    }

    deinit { power.deallocateZeroed() }

    /// The truncation length p of the last completed step.
    private(set) var lastTruncation = 0

    func begin(_ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> Bool {
        pendingGenerator = generator
        truncation = pendingGenerator.next(below: maxTerms)
        Kernels.copy(ws.rhs, to: power, n)
        powersTaken = 0
        gradientStepsTaken = 0
        return try advance(ws)
    }

    func resume(_ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> Bool {
        info.products += 1
        if powersTaken < truncation {
            try NeumannSeries<T>.applyTerm(power: power, sum: nil, ws, stepSize: stepSize, n)
            powersTaken += 1
        } else {
            lastResidual = try GradientSteps<T>.gradientStep(ws, stepSize: stepSize)
            gradientStepsTaken += 1
        }
        guard try !advance(ws) else { return true }
        info.iterations = powersTaken + gradientStepsTaken
        info.residual = lastResidual
        info.residualKind = .previousIterate
        info.settleOutcome()
        return false
    }

    /// Requests the next product, or returns false when all are done.
    private func advance(_ ws: StepWorkspace<T>) throws(EstimatorError) -> Bool {
        if powersTaken < truncation {
            ws.productInput = UnsafePointer(power)
            return true
        }
        if gradientStepsTaken == 0 {
            // The series is done: the gradient steps start from eta (I - eta A)^p b.
            Kernels.scaledCopy(power, by: stepSize, into: ws.pending, n)
            guard Kernels.allFinite(ws.pending, n) else { throw .nonFiniteResult("eta (I - eta A)^p b overflowed") }
        }
        if gradientStepsTaken < maxTerms {
            ws.productInput = UnsafePointer(ws.pending)
            return true
        }
        return false
    }

    func commit(_ ws: StepWorkspace<T>) {
        generator = pendingGenerator
        lastTruncation = truncation
    }

    func abandon() {}

    func reset() {
        generator = SplitMix64(seed: seed)
        lastTruncation = 0
    }
}
