/// Truncated Neumann series v = eta sum_{i=0..terms} (I - eta A)^i b from zero (stocBiO):
/// `terms` products, no warm start. Converges to A^{-1} b as terms grows when
/// 0 < eta < 2 / lambda_max(A).
final class NeumannSeries<T: BinaryFloatingPoint>: StepMethod {
    typealias Options = (stepSize: Double, terms: Int)
    static var name: String { "neumann" }
    static var readsProductInPlace: Bool { true }

    static func validate(_ o: Options) throws(EstimatorError) {
        try OptionChecks.positive(o.stepSize, "step_size")
        try OptionChecks.count(o.terms, "steps", atLeast: 0)
    }

    /// The finiteness checks of a term.
    static func reductionValues(options: Options) -> Int? { 2 }

    /// The current power.
    static func storage(n: Int, options: Options) -> MethodStorage { MethodStorage(vectors: 1) }

    private var allocations = OwnedAllocations()
    let n: Int
    let stepSize: Double
    let terms: Int
    /// The current power (I - eta A)^i b.
    private let power: UnsafeMutablePointer<T>
    private var taken = 0

    init(n: Int, options: Options) throws(EstimatorError) {
        self.n = n
        stepSize = options.stepSize
        terms = options.terms
        power = try allocations.zeroed(n)
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func begin(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> StepDemand<T> {
        Kernels.copy(input.rhs, to: power, n)
        Kernels.copy(input.rhs, to: ws.pending, n)  // the running sum, scaled by eta at the end
        taken = 0
        return try nextTerm(ws, &info)
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func resume(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> StepDemand<T> {
        info.products += 1
        try Self.applyTerm(power: power, sum: ws.pending, input, stepSize: stepSize, n, across: ws.reduction)
        taken += 1
        return try nextTerm(ws, &info)
    }

    private func nextTerm(_ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> StepDemand<T> {
        if taken < terms { return .product(of: power) }
        Kernels.scale(ws.pending, n, by: stepSize)
        let finite = Kernels.allFinite(ws.pending, n)
        if let reduction = ws.reduction, !(try reduction.allAgree(finite)) {
            throw .nonFiniteResult("the Neumann series overflowed (on some process)")
        }
        guard finite else { throw .nonFiniteResult("the Neumann series overflowed") }
        info.iterations = taken
        info.residualKind = .unavailable
        info.settleOutcome()
        return .done
    }

    /// power <- power - eta * A power (in input.product); sum += power (sum nil: no sum).
    static func applyTerm(power: UnsafeMutablePointer<T>, sum: UnsafeMutablePointer<T>?, _ input: StepInput<T>,
                          stepSize eta: Double, _ n: Int, across reduction: Reduction?) throws(EstimatorError) {
        if let reduction {
            // Both checks over all processes, in one reduction.
            let powerFinite = Kernels.update(power, times: 1, plus: -eta, times: input.product, n).allFinite
            let sumFinite = sum.map { Kernels.update($0, times: 1, plus: 1, times: power, n).allFinite } ?? true
            reduction.values[0] = powerFinite ? 0 : 1
            reduction.values[1] = sumFinite ? 0 : 1
            try reduction.sum(2)
            guard reduction.values[0] == 0 else {
                throw try reduction.productFailure(input, "the Neumann term (I - eta A)^i b", n)
            }
            guard reduction.values[1] == 0 else { throw .nonFiniteResult("the Neumann series overflowed") }
            return
        }
        // power - eta * product, and sum + power, each rounded once to T.
        guard Kernels.update(power, times: 1, plus: -eta, times: input.product, n).allFinite else {
            throw input.productFailure("the Neumann term (I - eta A)^i b", n)
        }
        if let sum, !Kernels.update(sum, times: 1, plus: 1, times: power, n).allFinite {
            throw .nonFiniteResult("the Neumann series overflowed")
        }
    }

    func commit(_ ws: StepWorkspace<T>) {}

    // Each step starts from b alone.
    func save(to archive: inout StateWriter) {}
    func restore(from archive: inout StateReader) throws(EstimatorError) -> StateInstallation { {} }
}
