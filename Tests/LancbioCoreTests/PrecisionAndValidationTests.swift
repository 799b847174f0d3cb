import Foundation
import Testing
@testable import LancbioCore

@Suite("Float32 against Float64")
struct PrecisionTests {
    /// Documented tolerance: Float32 estimates agree with Float64 to a relative 1e-4 times
    /// the condition number's square root on these problems (vectors are stored in Float
    /// but every reduction accumulates in Double).
    @Test("every method in Float32 stays within the documented tolerance of Float64", arguments: BreakdownTests.allMethods)
    func float32MatchesFloat64(method: EstimatorMethod) throws {
        let n = 64
        let condition = 100.0
        let a = DenseMatrix.spd(n: n, condition: condition, seed: 80)
        var rng = TestRandom(seed: 81)
        let e64 = try Estimator<Double>(n: n, method: method)
        let e32 = try Estimator<Float>(n: n, method: method)
        for k in 0..<10 {
            let b = rng.vector(n)
            let v64 = try step(e64, a, b).v
            let v32 = try step(e32, a, b).v
            #expect(relativeError(v32, v64) < 1e-4 * condition.squareRoot(), "\(method.name) step \(k)")
        }
    }
}

@Suite("Argument validation")
struct ValidationTests {
    @Test("out-of-range sizes and options are rejected with invalidArgument", arguments: [
        (0, EstimatorMethod.conjugateGradient(maxIterations: 1, tolerance: 0)),
        (-3, .conjugateGradient(maxIterations: 1, tolerance: 0)),
        (4, .dynamicLanczos(LanczosOptions(maxPeriod: 0))),
        (4, .dynamicLanczos(LanczosOptions(initialPeriod: 5, maxPeriod: 4))),
        (4, .dynamicLanczos(LanczosOptions(growth: 0.5))),
        (4, .dynamicLanczos(LanczosOptions(growth: .nan))),
        (4, .dynamicLanczos(LanczosOptions(growEvery: 0))),
        (4, .subbio(theta0: 0)),
        (4, .subbio(theta0: -1)),
        (4, .conjugateGradient(maxIterations: -1, tolerance: 0)),
        (4, .minres(maxIterations: 3, tolerance: -1e-3)),
        (4, .minres(maxIterations: 3, tolerance: .infinity)),
        (4, .gradientDescent(stepSize: .nan, steps: 1)),
        (4, .gradientDescent(stepSize: 0.1, steps: 0)),
        (4, .neumann(stepSize: 0.1, terms: -1)),
        (4, .randomNeumann(stepSize: 0.1, maxTerms: 0, seed: 0)),
        (Int.max / 2, .dynamicLanczos(LanczosOptions())),
    ])
    func invalid(n: Int, method: EstimatorMethod) {
        #expect {
            _ = try Estimator<Double>(n: n, method: method)
        } throws: { error in
            if case .invalidArgument = error as? EstimatorError { return true }
            return false
        }
    }

    @Test("buffers of the wrong length are rejected")
    func wrongLengths() throws {
        let e = try Estimator<Double>(n: 4, method: .gradientDescent(stepSize: 0.1, steps: 1))
        let short = [1.0, 2, 3]
        #expect(throws: EstimatorError.self) { _ = try short.withUnsafeBufferPointer { try e.begin(rhs: $0) } }
        #expect(throws: EstimatorError.self) { try short.withUnsafeBufferPointer { try e.setEstimate($0) } }
        #expect(!e.isStepInProgress)
    }
}

@Suite("Scaling")
struct ScalingTests {
    /// Norms are computed with a scaled fallback, so tiny and huge inputs neither underflow
    /// nor overflow: scaling b scales v by the same factor.
    @Test("b scaled by 1e-150 and 1e+150 gives the scaled estimate", arguments: [1e-150, 1e150, 1e-300, 1e-310])
    func scaledInputs(scale: Double) throws {
        let n = 20
        let a = DenseMatrix.spd(n: n, condition: 10, seed: 90)
        var rng = TestRandom(seed: 91)
        let bs = (0..<6).map { _ in rng.vector(n) }
        for method in BreakdownTests.allMethods {
            let plain = try Estimator<Double>(n: n, method: method)
            let scaled = try Estimator<Double>(n: n, method: method)
            for b in bs {
                let v = try step(plain, a, b).v
                let w = try step(scaled, a, b.map { $0 * scale }).v
                #expect(allFinite(w))
                let error = relativeError(w.map { $0 / scale }, v)
                #expect(error < 1e-10, "\(method.name) at scale \(scale): \(error)")
            }
        }
    }
}
