/// Truncated Neumann series v = eta sum_{i=0..terms} (I - eta A)^i b from zero (stocBiO):
/// `terms` products, no warm start. Converges to A^{-1} b as terms grows when
/// 0 < eta < 2 / lambda_max(A).
final class NeumannSeries<T: BinaryFloatingPoint>: StepMethod {
    let n: Int
    let stepSize: Double
    let terms: Int
    /// The current power (I - eta A)^i b.
    private let power: UnsafeMutablePointer<T>
    private var taken = 0

    init(n: Int, stepSize: Double, terms: Int) {
        self.n = n
        self.stepSize = stepSize
        self.terms = terms
        power = .allocate(zeroed: n)
    }

    deinit { power.deallocateZeroed() }

    func begin(_ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> Bool {
        Kernels.copy(ws.rhs, to: power, n)
        Kernels.copy(ws.rhs, to: ws.pending, n)  // the running sum, scaled by eta at the end
        taken = 0
        return try nextTerm(ws, &info)
    }

    func resume(_ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> Bool {
        info.products += 1
        try Self.applyTerm(power: power, sum: ws.pending, ws, stepSize: stepSize, n)
        taken += 1
        return try nextTerm(ws, &info)
    }

    private func nextTerm(_ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> Bool {
        if taken < terms {
            ws.productInput = UnsafePointer(power)
            return true
        }
        Kernels.scale(ws.pending, n, by: stepSize)
        guard Kernels.allFinite(ws.pending, n) else { throw .nonFiniteResult("the Neumann series overflowed") }
        info.iterations = taken
        info.residualKind = .unavailable
        info.settleOutcome()
        return false
    }

    /// power <- power - eta * A power; sum += power (sum nil: no sum).
    static func applyTerm(power: UnsafeMutablePointer<T>, sum: UnsafeMutablePointer<T>?, _ ws: StepWorkspace<T>,
                          stepSize eta: Double, _ n: Int) throws(EstimatorError) {
        // power - eta * product, and sum + power, each rounded once to T.
        guard Kernels.update(power, times: 1, plus: -eta, times: ws.productOutput, n).allFinite else {
            throw ws.productFailure("the Neumann term (I - eta A)^i b")
        }
        if let sum, !Kernels.update(sum, times: 1, plus: 1, times: power, n).allFinite {
            throw .nonFiniteResult("the Neumann series overflowed")
        }
    }

    func commit(_ ws: StepWorkspace<T>) {}
    func abandon() {}
    func reset() {}
}
