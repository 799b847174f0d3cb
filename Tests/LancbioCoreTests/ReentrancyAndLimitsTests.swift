import Foundation
import Testing
@testable import LancbioCore

@Suite("Limits and re-entrancy")
struct ReentrancyAndLimitsTests {
    @Test("a Lanczos cycle never outgrows n: with m_max > n the estimate stays exact", arguments: [1, 2, 5])
    func cycleCappedAtDimension(n: Int) throws {
        let a = DenseMatrix.spd(n: n, condition: 5, seed: 200 + UInt64(n))
        var rng = TestRandom(seed: 201)
        let b = rng.vector(n)
        let exact = a.solve(b)
        let e = try Estimator<Double>(n: n, method: .dynamicLanczos(LanczosOptions(initialPeriod: 30, maxPeriod: 30, growth: 1)))
        for k in 1...40 {
            let (v, info) = try step(e, a, b)
            #expect(info.dimension <= n, "step \(k)")
            if k >= n { #expect(relativeError(v, exact) < 1e-10, "step \(k)") }
        }
    }

    @Test("calls from inside the estimator's own product closure are rejected and change nothing")
    func estimatorReentry() throws {
        let n = 6
        let a = DenseMatrix.spd(n: n, condition: 5, seed: 202)
        var rng = TestRandom(seed: 203)
        let b = rng.vector(n)
        let method = EstimatorMethod.dynamicLanczos(LanczosOptions(initialPeriod: 3, maxPeriod: 3))
        let e = try Estimator<Double>(n: n, method: method)
        let reference = try Estimator<Double>(n: n, method: method)
        var rejected = [String]()
        var out = [Double](repeating: 0, count: n)
        for _ in 0..<4 {
            _ = try b.withUnsafeBufferPointer { bp in
                try out.withUnsafeMutableBufferPointer { vp in
                    try e.step(rhs: bp, into: vp) { input, output in
                        do { try e.reset() } catch { rejected.append("reset") }
                        do { _ = try bp.withMemoryRebound(to: Double.self) { try e.begin(rhs: $0) } } catch { rejected.append("begin") }
                        do { try e.setEstimate(bp) } catch { rejected.append("setEstimate") }
                        e.cancel()   // a no-op inside the callback
                        let y = a.times(Array(input))
                        for i in 0..<n { output[i] = y[i] }
                    }
                }
            }
            let expected = try step(reference, a, b).v
            #expect(out == expected)
        }
        #expect(Set(rejected) == ["reset", "begin", "setEstimate"])
        #expect(e.totalProducts == reference.totalProducts)
    }

    @Test("a bilevel step re-entered from a problem closure is rejected; the outer step completes unchanged")
    func bilevelReentry() throws {
        let q = QuadraticBilevel(n: 5, seed: 204)
        let options = BilevelOptions(lrX: 0.2, lrY: 0.1, innerSteps: 2)
        let method = EstimatorMethod.conjugateGradient(maxIterations: 3, tolerance: 0)
        let optimizer = try BilevelOptimizer<Double>(dx: 5, dy: 5, options: options, method: method)
        let reference = try BilevelOptimizer<Double>(dx: 5, dy: 5, options: options, method: method)
        var problem = q.closures(.init())
        let original = problem.gradXF
        var rejected = 0
        var scratchX = [Double](repeating: 1, count: 5), scratchY = [Double](repeating: 0, count: 5)
        problem.gradXF = { x, y, out in
            do {
                _ = try scratchX.withUnsafeMutableBufferPointer { xp in
                    try scratchY.withUnsafeMutableBufferPointer { yp in try optimizer.step(x: xp, y: yp, problem: q.closures(.init())) }
                }
            } catch { rejected += 1 }
            do { try optimizer.reset() } catch { rejected += 1 }
            try original(x, y, out)
        }
        var rng = TestRandom(seed: 205)
        var x = rng.vector(5), y = rng.vector(5)
        var xr = x, yr = y
        for _ in 0..<3 {
            let info = try BilevelOptimizerTests.run(optimizer, problem, x: &x, y: &y)
            let expected = try BilevelOptimizerTests.run(reference, q.closures(.init()), x: &xr, y: &yr)
            #expect(x == xr && y == yr && info == expected)
        }
        #expect(rejected == 6)
        #expect(scratchX == [1, 1, 1, 1, 1])
    }
}

@Suite("Review findings")
struct ReviewFindingsTests {
    @Test("requiredBytes counts the projected system: (m_max + 1)^2 doubles dominate at small n")
    func requiredBytesCountsTheSmallSystem() {
        let bytes = Estimator<Double>.requiredBytes(n: 1, method: .dynamicLanczos(LanczosOptions(maxPeriod: 4096)))!
        #expect(bytes >= 4097 * 4097 * 8)
    }

    @Test("a Float bilevel step whose x overflows Float fails instead of storing infinity")
    func floatOverflowIsAnError() throws {
        let optimizer = try BilevelOptimizer<Float>(dx: 1, dy: 1, options: BilevelOptions(lrX: 1, lrY: 0.1, innerSteps: 0),
                                                    method: .gradientDescent(stepSize: 0.1, steps: 1))
        var x: [Float] = [3e38], y: [Float] = [0]
        let problem = BilevelProblem<Float>(
            gradYG: { _, _, out in out[0] = 0 }, gradXF: { _, _, out in out[0] = -2e38 },
            gradYF: { _, _, out in out[0] = 0 }, hvpYY: { _, _, v, out in out[0] = v[0] },
            jvpXY: { _, _, _, out in out[0] = 0 })
        #expect(throws: EstimatorError.self) {
            _ = try x.withUnsafeMutableBufferPointer { xp in
                try y.withUnsafeMutableBufferPointer { yp in try optimizer.step(x: xp, y: yp, problem: problem) }
            }
        }
        #expect(x == [3e38] && optimizer.iterations == 0)
    }

    @Test("resetting the optimizer's estimator from inside its HVP is rejected and the step completes unaffected")
    func estimatorResetInsideBilevelHVP() throws {
        let q = QuadraticBilevel(n: 4, seed: 210)
        let optimizer = try BilevelOptimizer<Double>(dx: 4, dy: 4, options: BilevelOptions(lrX: 0.1, lrY: 0.1),
                                                     method: .conjugateGradient(maxIterations: 3, tolerance: 0))
        var problem = q.closures(.init())
        var x = [1.0, 2, 3, 4], y = [0.0, 0, 0, 0]
        _ = try BilevelOptimizerTests.run(optimizer, problem, x: &x, y: &y)
        let (xBefore, yBefore, vBefore) = (x, y, estimate(optimizer.estimator))
        let hvp = problem.hvpYY
        var rejected = false
        problem.hvpYY = { x, y, v, out in
            do { try optimizer.estimator.reset() } catch { rejected = true }
            try hvp(x, y, v, out)
        }
        _ = try BilevelOptimizerTests.run(optimizer, problem, x: &x, y: &y)
        #expect(rejected)
        #expect(x != xBefore && y != yBefore)            // the step itself went on and completed
        #expect(estimate(optimizer.estimator) != vBefore)
        #expect(optimizer.iterations == 2)
    }
}
