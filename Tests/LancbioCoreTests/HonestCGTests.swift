import Foundation
import Testing
@testable import LancbioCore

@Suite("Honest residuals: CG")
struct HonestCGTests {
    func scaled<T: BinaryFloatingPoint>(_: T.Type, by factor: Double) throws {
        let n = 30
        let a = DenseMatrix.spd(n: n, condition: 100, seed: 81)
        var small = a
        for i in 0..<(n * n) { small.a[i] *= factor }
        var rng = TestRandom(seed: 82)
        let b = rng.vector(n)
        let reference = try Estimator<T>(n: n, method: .conjugateGradient(maxIterations: 60, tolerance: 0))
        let scaledRun = try Estimator<T>(n: n, method: .conjugateGradient(maxIterations: 60, tolerance: 0))
        let (v, info) = try step(reference, a, b)
        let (w, scaledInfo) = try step(scaledRun, small, b)
        // The curvature p^T A p of a converging run underflowed at this scale: now the
        // direction is kept near unit norm and the iterates are the unscaled ones, scaled.
        #expect(!scaledInfo.indefinite && scaledInfo.outcome == info.outcome, "outcome \(scaledInfo.outcome)")
        #expect(scaledInfo.iterations == info.iterations)
        #expect(relativeError(w.map { $0 * factor }, v) <= 1e-12, "relative error \(relativeError(w.map { $0 * factor }, v))")
    }

    @Test("CG on an SPD operator scaled by 2^-960 (~1e-289) runs the unscaled iteration, with no false INDEFINITE")
    func tinyOperatorDouble() throws { try scaled(Double.self, by: 0x1p-960) }

    @Test("CG in float32 on an SPD operator scaled by 2^-120 (~1e-36) runs the unscaled iteration, with no false INDEFINITE")
    func tinyOperatorFloat() throws { try scaled(Float.self, by: 0x1p-120) }

    @Test("CG past convergence: the residual is the true one or flagged, never 1e8 times below it", arguments: Precision.allCases)
    func pastConvergence(precision: Precision) throws {
        let n = 30
        let a = DenseMatrix.spd(n: n, condition: 100, seed: 81)
        var rng = TestRandom(seed: 82)
        let b = rng.vector(n)
        func run<T: BinaryFloatingPoint>(_: T.Type) throws -> (v: [Double], info: StepInfo) {
            try step(try Estimator<T>(n: n, method: .conjugateGradient(maxIterations: 60, tolerance: 0)), a, b)
        }
        let (v, info) = precision == .float ? try run(Float.self) : try run(Double.self)
        let truth = trueResidual(a, v, b)
        #expect(info.residualUncertain || (info.residual <= 2 * truth && truth <= 2 * info.residual),
                "reported \(info.residual), true \(truth)")
    }

    @Test("a convergence CG claims below its rounding is checked with one product: success means the true residual meets the tolerance")
    func claimedConvergenceIsChecked() throws {
        let n = 30
        let a = DenseMatrix.spd(n: n, condition: 100, seed: 81)
        var rng = TestRandom(seed: 82)
        let b = rng.vector(n)
        let e = try Estimator<Double>(n: n, method: .conjugateGradient(maxIterations: 200, tolerance: 1e-15))
        let (v, info) = try step(e, a, b)
        let truth = trueResidual(a, v, b)
        if info.outcome == .success {
            #expect(truth <= 1e-15 * vnorm(b) * (1 + 1e-9), "success with true residual \(truth / vnorm(b)) ||b||")
        }
        if info.residualKind == .exact { #expect(abs(info.residual - truth) <= 1e-3 * truth + 1e-300) }
        #expect(info.products >= info.iterations + 2, "no check product: products \(info.products), iterations \(info.iterations)")
    }
}
