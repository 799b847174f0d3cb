/// Gradient (Richardson) steps v <- v - eta (A v - b) from the committed estimate:
/// AmIGO-GD with `steps` = Q, SOBA with `steps` = 1. One product per step.
final class GradientSteps<T: BinaryFloatingPoint>: StepMethod {
    typealias Options = (stepSize: Double, steps: Int)
    static var name: String { "gd" }
    /// The product's buffer becomes the residual.
    static var readsProductInPlace: Bool { false }

    static func validate(_ o: Options) throws(EstimatorError) {
        try OptionChecks.positive(o.stepSize, "step_size")
        try OptionChecks.count(o.steps, "steps", atLeast: 1)
    }

    static func storage(n: Int, options: Options) -> MethodStorage { MethodStorage(vectors: 0) }
    /// ||A v - b||^2 and the three finiteness checks of each gradient step.
    static func reductionValues(options: Options) -> Int? { 4 }

    let n: Int
    let stepSize: Double
    let steps: Int
    private var taken = 0

    init(n: Int, options: Options) {
        self.n = n
        stepSize = options.stepSize
        steps = options.steps
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func begin(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> StepDemand<T> {
        Kernels.copy(ws.estimate, to: ws.pending, n)
        taken = 0
        return .product(of: ws.pending)
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func resume(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> StepDemand<T> {
        info.products += 1
        let residualNorm = try Self.gradientStep(input, ws, stepSize: stepSize)
        taken += 1
        guard taken >= steps else { return .product(of: ws.pending) }
        info.iterations = taken
        info.residual = residualNorm
        info.residualKind = .previousIterate
        info.settleOutcome()
        return .done
    }

    /// pending <- pending - eta (A pending - b), with A pending in ws.productOutput.
    /// Returns ||A pending - b|| before the step.
    static func gradientStep(_ input: StepInput<T>, _ ws: StepWorkspace<T>, stepSize eta: Double)
        throws(EstimatorError) -> Double {
        let v = ws.pending, r = ws.productOutput, b = input.rhs, n = ws.n
        // r = A v - b in place (the product buffer is scratch once read), then v -= eta r, in
        // one pass that also sums r's squares. Separate poisons tell the operator's NaN or
        // infinity from our own overflow; vector accumulators keep the loop vectorised.
        let step = DoubleLanes(repeating: eta)
        var productPoison = DoubleLanes(), residualPoison = DoubleLanes()
        var estimatePoison = DoubleLanes(), squares = DoubleLanes()
        let vectorRows = n & ~(Kernels.laneCount &- 1)
        var i = 0
        while i < vectorRows {
            let a = Kernels.loadLanes(UnsafePointer(r), i)
            let ri = a - Kernels.loadLanes(b, i)
            productPoison += a * 0
            residualPoison += ri * 0
            let stored = Kernels.rounded(ri, to: T.self)
            Kernels.storeLanes(stored, r, i)
            squares += stored * stored
            let next = Kernels.rounded(Kernels.loadLanes(UnsafePointer(v), i) - step * ri, to: T.self)
            Kernels.storeLanes(next, v, i)
            estimatePoison += next * 0
            i &+= Kernels.laneCount
        }
        var product = Kernels.total(productPoison), residual = Kernels.total(residualPoison)
        var estimate = Kernels.total(estimatePoison), sum = Kernels.total(squares)
        while i < n {
            let a = Double(r[i])
            let ri = a - Double(b[i])
            product += a * 0
            residual += ri * 0
            r[i] = T(ri)
            sum += Double(r[i]) * Double(r[i])
            v[i] = T(Double(v[i]) - eta * ri)
            estimate += Double(v[i]) * 0
            i &+= 1
        }
        if let reduction = ws.reduction {
            // The checks and ||r||^2 over all processes, in one reduction.
            let values = reduction.values
            values[0] = residual == 0 ? Reduction.contribution(squares: sum, of: r, n) : 0
            values[1] = product == 0 ? 0 : 1
            values[2] = residual == 0 ? 0 : 1
            values[3] = estimate == 0 ? 0 : 1
            try reduction.sum(4)
            guard values[1] == 0 else { throw .nonFiniteProduct("the operator returned NaN or infinity (A v, on some process)") }
            guard values[2] == 0 else { throw .nonFiniteResult("A v - b overflowed") }
            guard values[3] == 0 else { throw .nonFiniteResult("the gradient step overflowed") }
            return try reduction.norm(squares: values[0], r, n)
        }
        guard product == 0 else { throw .nonFiniteProduct("the operator returned NaN or infinity (A v)") }
        guard residual == 0 else { throw .nonFiniteResult("A v - b overflowed") }
        guard estimate == 0 else { throw .nonFiniteResult("the gradient step overflowed") }
        return Kernels.norm(fromSumOfSquares: sum) ?? Kernels.norm(r, n)
    }

    func commit(_ ws: StepWorkspace<T>) {}

    // Each step starts from the estimate: nothing else carries over.
    func save(to archive: inout StateWriter) {}
    func restore(from archive: inout StateReader) throws(EstimatorError) -> StateInstallation { {} }
}
