/// Gradient (Richardson) steps v <- v - eta (A v - b) from the committed estimate:
/// AmIGO-GD with `steps` = Q, SOBA with `steps` = 1. One product per step.
final class GradientSteps<T: BinaryFloatingPoint>: StepMethod {
    let n: Int
    let stepSize: Double
    let steps: Int
    private var taken = 0

    init(n: Int, stepSize: Double, steps: Int) {
        self.n = n
        self.stepSize = stepSize
        self.steps = steps
    }

    func begin(_ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> Bool {
        Kernels.copy(ws.estimate, to: ws.pending, n)
        taken = 0
        ws.productInput = UnsafePointer(ws.pending)
        return true
    }

    func resume(_ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> Bool {
        info.products += 1
        let residualNorm = try Self.gradientStep(ws, stepSize: stepSize)
        taken += 1
        guard taken >= steps else { return true }
        info.iterations = taken
        info.residual = residualNorm
        info.residualKind = .previousIterate
        info.settleOutcome()
        return false
    }

    /// pending <- pending - eta (A pending - b), with A pending in ws.productOutput.
    /// Returns ||A pending - b|| before the step.
    static func gradientStep(_ ws: StepWorkspace<T>, stepSize eta: Double) throws(EstimatorError) -> Double {
        let v = ws.pending, r = ws.productOutput, b = ws.rhs
        // r = A v - b in place (the product buffer is scratch once read), then v -= eta r.
        // Two poisons tell the operator's NaN or infinity from our own overflow.
        var productPoison = 0.0, residualPoison = 0.0
        for i in 0..<ws.n {
            let a = Double(r[i])
            let ri = a - Double(b[i])
            productPoison += a * 0
            residualPoison += ri * 0
            r[i] = T(ri)
            v[i] = T(Double(v[i]) - eta * ri)
        }
        guard productPoison == 0 else { throw .nonFiniteProduct("the operator returned NaN or infinity (A v)") }
        guard residualPoison == 0 else { throw .nonFiniteResult("A v - b overflowed") }
        guard Kernels.allFinite(v, ws.n) else { throw .nonFiniteResult("the gradient step overflowed") }
        return Kernels.norm(r, ws.n)
    }

    func commit(_ ws: StepWorkspace<T>) {}
    func abandon() {}
    func reset() {}
}
