import Foundation
import Testing
@testable import LancbioCore

/// g(x, y) = 0.5 y^T H y - y^T B x, f(x, y) = 0.5 ||y - c||^2 + 0.5 mu ||x||^2:
/// y*(x) = H^{-1} B x, J = -B^T, and grad phi(x) = mu x + B^T H^{-1} (H^{-1} B x - c).
struct QuadraticBilevel {
    let n: Int
    let h: DenseMatrix
    let b: DenseMatrix     // square, not symmetric
    let c: [Double]
    let mu = 1.0
    var failAt: (callback: String, call: Int)? = nil
    var calls: [String: Int] = [:]

    init(n: Int, seed: UInt64) {
        self.n = n
        h = DenseMatrix.spd(n: n, condition: 10, seed: seed)
        var rng = TestRandom(seed: seed + 1)
        b = DenseMatrix(n: n, entries: (0..<(n * n)).map { _ in rng.gaussian() / Double(n).squareRoot() })
        c = rng.vector(n)
    }

    func transposeTimes(_ m: DenseMatrix, _ x: [Double]) -> [Double] {
        (0..<n).map { j in (0..<n).reduce(0.0) { $0 + m.a[$1 * n + j] * x[$1] } }
    }

    func yStar(_ x: [Double]) -> [Double] { h.solve(b.times(x)) }

    func trueHypergradient(_ x: [Double]) -> [Double] {
        let inner = h.solve(vminus(yStar(x), c))
        return zip(x, transposeTimes(b, inner)).map { mu * $0 + $1 }
    }

    /// The problem as closures, counting calls and failing where asked.
    func closures(_ counter: Counter) -> BilevelProblem<Double> {
        func maybeFail(_ name: String) throws {
            counter.calls[name, default: 0] += 1
            if let failAt, failAt.callback == name, counter.calls[name] == failAt.call {
                throw ProductFailure(atProduct: failAt.call)
            }
        }
        func write(_ values: [Double], _ out: UnsafeMutableBufferPointer<Double>) {
            for i in 0..<values.count { out[i] = values[i] }
        }
        return BilevelProblem(
            gradYG: { x, y, out in try maybeFail("grad_y_g"); write(vminus(h.times(Array(y)), b.times(Array(x))), out) },
            gradXF: { x, _, out in try maybeFail("grad_x_f"); write(Array(x).map { mu * $0 }, out) },
            gradYF: { _, y, out in try maybeFail("grad_y_f"); write(vminus(Array(y), c), out) },
            hvpYY: { _, _, v, out in try maybeFail("hvp_yy_g"); write(h.times(Array(v)), out) },
            jvpXY: { _, _, v, out in try maybeFail("jvp_xy_g"); write(transposeTimes(b, Array(v)).map { -$0 }, out) })
    }

    final class Counter { var calls: [String: Int] = [:] }
}

@Suite("Bilevel optimizer")
struct BilevelOptimizerTests {
    static func run(_ optimizer: BilevelOptimizer<Double>, _ problem: BilevelProblem<Double>,
                    x: inout [Double], y: inout [Double]) throws -> BilevelStepInfo {
        try x.withUnsafeMutableBufferPointer { xp in
            try y.withUnsafeMutableBufferPointer { yp in try optimizer.step(x: xp, y: yp, problem: problem) }
        }
    }

    @Test("at y = y*(x) with an exact v, the hyper-gradient equals grad phi in closed form")
    func exactHypergradient() throws {
        let q = QuadraticBilevel(n: 12, seed: 100)
        var rng = TestRandom(seed: 101)
        let x0 = rng.vector(12)
        var x = x0, y = q.yStar(x0)
        let optimizer = try BilevelOptimizer<Double>(
            dx: 12, dy: 12, options: BilevelOptions(lrX: 0.1, lrY: 0.05, innerSteps: 3),
            method: .conjugateGradient(maxIterations: 100, tolerance: 1e-13))
        let info = try Self.run(optimizer, q.closures(.init()), x: &x, y: &y)
        let expected = q.trueHypergradient(x0)
        #expect(relativeError(Array(optimizer.hypergradient), expected) < 1e-9)
        #expect(abs(info.hypergradientNorm - vnorm(expected)) < 1e-9 * vnorm(expected))
        #expect(relativeError(x, zip(x0, expected).map { $0 - 0.1 * $1 }) < 1e-12)
        #expect(info.gradientEvaluations == 5 && info.crossProducts == 1 && info.iteration == 1)
    }

    /// Truncated Neumann series are biased by (1 - eta lambda_min)^terms = 0.9^terms here, so
    /// they get enough terms for that bias to sit below the tolerance.
    @Test("every method drives ||grad phi|| down on a strongly convex bilevel problem", arguments: [
        EstimatorMethod.dynamicLanczos(LanczosOptions(initialPeriod: 1, maxPeriod: 10, growth: 1.1, growEvery: 5)),
        .subbio(theta0: 0.05),
        .conjugateGradient(maxIterations: 5, tolerance: 0),
        .gradientDescent(stepSize: 0.1, steps: 5),
        .neumann(stepSize: 0.1, terms: 150),
        .randomNeumann(stepSize: 0.1, maxTerms: 150, seed: 3),
    ])
    func convergence(method: EstimatorMethod) throws {
        let q = QuadraticBilevel(n: 10, seed: 102)
        var rng = TestRandom(seed: 103)
        var x = rng.vector(10), y = rng.vector(10)
        let initial = vnorm(q.trueHypergradient(x))
        let optimizer = try BilevelOptimizer<Double>(
            dx: 10, dy: 10, options: BilevelOptions(lrX: 0.3, lrY: 0.1, innerSteps: 5), method: method)
        let problem = q.closures(.init())
        for _ in 0..<300 { _ = try Self.run(optimizer, problem, x: &x, y: &y) }
        #expect(vnorm(q.trueHypergradient(x)) < 1e-6 * initial, "\(method.name)")
        #expect(optimizer.iterations == 300)
    }

    @Test("a failing or non-finite callback leaves x, y and the optimizer unchanged",
          arguments: ["grad_y_g", "grad_x_f", "grad_y_f", "hvp_yy_g", "jvp_xy_g"])
    func atomicity(callback: String) throws {
        var q = QuadraticBilevel(n: 8, seed: 104)
        var rng = TestRandom(seed: 105)
        let x0 = rng.vector(8), y0 = rng.vector(8)
        let method = EstimatorMethod.dynamicLanczos(LanczosOptions(initialPeriod: 2, maxPeriod: 4, growth: 1.5, growEvery: 2))
        let options = BilevelOptions(lrX: 0.3, lrY: 0.1, lrXDecay: 0.5, lrXMin: 0.01, innerSteps: 2)
        let reference = try BilevelOptimizer<Double>(dx: 8, dy: 8, options: options, method: method)
        var xr = x0, yr = y0
        var expected = [([Double], [Double], BilevelStepInfo)]()
        for _ in 0..<6 {
            let info = try Self.run(reference, q.closures(.init()), x: &xr, y: &yr)
            expected.append((xr, yr, info))
        }
        // The same run, with the callback failing on its 3rd call (inside iteration 2 or 3).
        q.failAt = (callback, 3)
        let failing = try BilevelOptimizer<Double>(dx: 8, dy: 8, options: options, method: method)
        let counter = QuadraticBilevel.Counter()
        let problem = q.closures(counter)
        var x = x0, y = y0, k = 0, failures = 0
        while k < 6 {
            let (xBefore, yBefore) = (x, y)
            let vBefore = estimate(failing.estimator)
            do {
                let info = try Self.run(failing, problem, x: &x, y: &y)
                #expect(x == expected[k].0 && y == expected[k].1 && info == expected[k].2, "iteration \(k + 1)")
                k += 1
            } catch {
                failures += 1
                #expect(error as? ProductFailure != nil)
                #expect(x == xBefore && y == yBefore && estimate(failing.estimator) == vBefore)
                #expect(failing.iterations == k)
            }
        }
        #expect(failures == 1)
    }

    @Test("NaN from a callback is rejected naming it, and nothing changes")
    func nonFiniteCallback() throws {
        let q = QuadraticBilevel(n: 4, seed: 106)
        var problem = q.closures(.init())
        problem.jvpXY = { _, _, _, out in for i in 0..<out.count { out[i] = .nan } }
        let optimizer = try BilevelOptimizer<Double>(dx: 4, dy: 4, options: BilevelOptions(lrX: 0.1, lrY: 0.1),
                                                     method: .dynamicLanczos(LanczosOptions()))
        var x = [1.0, 2, 3, 4], y = [0.0, 0, 0, 0]
        #expect(throws: EstimatorError.nonFiniteProduct("grad_xy g v returned NaN or infinity")) {
            _ = try Self.run(optimizer, problem, x: &x, y: &y)
        }
        #expect(x == [1, 2, 3, 4] && y == [0, 0, 0, 0] && optimizer.iterations == 0 && optimizer.estimator.totalProducts == 0)
    }

    @Test("a non-finite inner gradient is named, an inner step that overflows is reported as such, and nothing changes",
          arguments: [Double.nan, .infinity, 1e308])
    func nonFiniteInnerStep(bad: Double) throws {
        let q = QuadraticBilevel(n: 4, seed: 107)
        var problem = q.closures(.init())
        var calls = 0
        let honest = problem.gradYG
        // Finite for the first two inner steps, then `bad` in one entry (1e308 makes
        // y - theta g overflow with theta = 1e10, though the gradient is finite).
        problem.gradYG = { x, y, out in
            try honest(x, y, out)
            calls += 1
            if calls == 3 { out[2] = bad }
        }
        let optimizer = try BilevelOptimizer<Double>(dx: 4, dy: 4, options: BilevelOptions(lrX: 0.1, lrY: 1e10),
                                                     method: .dynamicLanczos(LanczosOptions()))
        var x = [1.0, 2, 3, 4], y = [0.0, 0, 0, 0]
        let expected: EstimatorError = bad.isFinite ? .nonFiniteResult("the inner y steps overflowed")
                                                    : .nonFiniteProduct("grad_y g returned NaN or infinity")
        #expect(throws: expected) { _ = try Self.run(optimizer, problem, x: &x, y: &y) }
        #expect(calls == 3)  // the first bad step stops the iteration
        #expect(x == [1, 2, 3, 4] && y == [0, 0, 0, 0] && optimizer.iterations == 0 && optimizer.estimator.totalProducts == 0)
    }

    @Test("step sizes follow max(min, base / k^decay)")
    func stepSizeSchedule() throws {
        let optimizer = try BilevelOptimizer<Double>(
            dx: 1, dy: 1, options: BilevelOptions(lrX: 1, lrY: 0.5, lrXDecay: 0.4, lrXMin: 0.3, lrYDecay: 0.5, lrYMin: 0),
            method: .gradientDescent(stepSize: 0.1, steps: 1))
        for k in [1, 2, 10, 100] {
            let (lx, ly) = optimizer.stepSizes(iteration: k)
            #expect(abs(lx - max(0.3, 1 / pow(Double(k), 0.4))) < 1e-15)
            #expect(abs(ly - 0.5 / pow(Double(k), 0.5)) < 1e-15)
        }
    }

    @Test("bad options are rejected", arguments: [
        BilevelOptions(lrX: 0, lrY: 0.1), BilevelOptions(lrX: 0.1, lrY: -1), BilevelOptions(lrX: .nan, lrY: 0.1),
        BilevelOptions(lrX: 0.1, lrY: 0.1, lrXDecay: -1), BilevelOptions(lrX: 0.1, lrY: 0.1, innerSteps: -1),
    ])
    func badOptions(options: BilevelOptions) {
        #expect(throws: EstimatorError.self) {
            _ = try BilevelOptimizer<Double>(dx: 2, dy: 2, options: options, method: .gradientDescent(stepSize: 0.1, steps: 1))
        }
    }
}
