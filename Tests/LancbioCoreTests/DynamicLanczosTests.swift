import Foundation
import Testing
@testable import LancbioCore

@Suite("Dynamic Lanczos")
struct DynamicLanczosTests {
    static func lanczos(n: Int, m0: Int = 1, mMax: Int = 80, growth: Double = 1.1, growEvery: Int = 20,
                        variant: LanczosVariant = .residual, reorthogonalize: Bool = false) throws -> Estimator<Double> {
        try Estimator<Double>(n: n, method: .dynamicLanczos(LanczosOptions(
            initialPeriod: m0, maxPeriod: mMax, growth: growth, growEvery: growEvery,
            variant: variant, reorthogonalize: reorthogonalize)))
    }

    @Test("on a fixed SPD operator one full cycle reaches the dense solution",
          arguments: [(1, 10.0), (5, 1e2), (40, 1e3), (120, 1e4), (200, 1e6)])
    func fixedOperatorReachesDenseSolution(n: Int, condition: Double) throws {
        let a = DenseMatrix.spd(n: n, condition: condition, seed: UInt64(n))
        var rng = TestRandom(seed: 7)
        let b = rng.vector(n)
        let exact = a.solve(b)
        // One cycle of n steps with re-orthogonalisation spans the whole space.
        let e = try Self.lanczos(n: n, m0: n, mMax: n, growth: 1, reorthogonalize: true)
        var v = [Double]()
        for _ in 0..<n { v = try step(e, a, b).v }
        #expect(relativeError(v, exact) < 1e-9 * condition)
    }

    @Test("on a fixed operator each cycle of m steps equals m CG iterations from the anchor",
          arguments: [1e2, 1e4])
    func cyclesEqualRestartedCG(condition: Double) throws {
        let n = 150, m = 8, cycles = 6
        let a = DenseMatrix.spd(n: n, condition: condition, seed: 3)
        var rng = TestRandom(seed: 11)
        let b = rng.vector(n), v0 = rng.vector(n)
        let lanczos = try Self.lanczos(n: n, m0: m, mMax: m, growth: 1)
        let cg = try Estimator<Double>(n: n, method: .conjugateGradient(maxIterations: m, tolerance: 0))
        try setEstimate(lanczos, v0)
        try setEstimate(cg, v0)
        for cycle in 1...cycles {
            var v = [Double]()
            for _ in 0..<m { v = try step(lanczos, a, b).v }
            let reference = try step(cg, a, b).v
            #expect(relativeError(v, reference) < 1e-9 * condition, "cycle \(cycle)")
        }
        // And the pair converges: restarted CG(8) reduces the error on these problems.
        #expect(relativeError(estimate(lanczos), a.solve(b)) < relativeError(v0, a.solve(b)))
    }

    @Test("the residual estimate equals ||A v - b|| on a fixed operator (beta_j |e_j^T s|)")
    func residualIdentity() throws {
        let n = 60
        let a = DenseMatrix.spd(n: n, condition: 1e3, seed: 5)
        var rng = TestRandom(seed: 2)
        let b = rng.vector(n)
        try setEstimate(try Self.lanczos(n: n), rng.vector(n))
        let e = try Self.lanczos(n: n, m0: 30, mMax: 30, growth: 1)
        try setEstimate(e, rng.vector(n))
        for j in 1...12 {
            let (v, info) = try step(e, a, b)
            let trueResidual = vnorm(vminus(a.times(v), b))
            #expect(info.dimension == j)
            #expect(info.residualKind == .estimate)
            #expect(abs(info.residual - trueResidual) <= 1e-8 * max(trueResidual, vnorm(b) * 1e-6),
                    "j = \(j): estimate \(info.residual), true \(trueResidual)")
        }
    }

    @Test("on a slowly drifting sequence (A_k, b_k) the residual decreases as the paper describes")
    func driftingOperatorResidualDecreases() throws {
        let n = 100
        let a0 = DenseMatrix.spd(n: n, condition: 50, seed: 9)
        let drift = DenseMatrix.spd(n: n, condition: 2, seed: 10)
        var rng = TestRandom(seed: 4)
        let b0 = rng.vector(n), db = rng.vector(n)
        func operatorAt(_ k: Int) -> (DenseMatrix, [Double]) {
            let t = 1e-3 * sin(Double(k) / 40)   // bounded, slow drift
            var a = a0
            for i in 0..<(n * n) { a.a[i] += t * drift.a[i] }
            return (a, zip(b0, db).map { $0 + t * $1 })
        }
        let e = try Self.lanczos(n: n, m0: 1, mMax: 20, growth: 1.1, growEvery: 10)
        var residuals = [Double]()
        for k in 0..<300 {
            let (a, b) = operatorAt(k)
            let v = try step(e, a, b).v
            residuals.append(vnorm(vminus(a.times(v), b)) / vnorm(b))
        }
        #expect(residuals[299] < 1e-3 * residuals[0])
        #expect(residuals[299] < 1e-4)
        // Decrease over the run, measured over windows (single steps may rise at restarts).
        let early = residuals[20..<40].max()!, late = residuals[280..<300].max()!
        #expect(late < early)
    }

    @Test("products per step are 1 plus 1 at each restart, and the period follows the schedule")
    func productCountsAndSchedule() throws {
        let n = 30
        let a = DenseMatrix.spd(n: n, condition: 10, seed: 1)
        var rng = TestRandom(seed: 3)
        let b = rng.vector(n)
        let e = try Self.lanczos(n: n, m0: 1, mMax: 4, growth: 1.5, growEvery: 3)
        // Reference schedule from docs/algorithms.md section 3, computed by hand here.
        var m = 1, j = 0
        var expectedTotal = 0
        for k in 1...40 {
            if k > 1 && (k - 1) % 3 == 0 { m = min(Int((Double(m) * 1.5).rounded(.up)), 4) }
            let restart = k == 1 || j == m
            if restart { j = 0 }
            j += 1
            let (_, info) = try step(e, a, b)
            expectedTotal += restart ? 2 : 1
            #expect(info.restarted == restart, "k = \(k)")
            #expect(info.products == (restart ? 2 : 1), "k = \(k)")
            #expect(info.period == m, "k = \(k)")
            #expect(info.dimension == j, "k = \(k)")
            #expect(info.totalProducts == expectedTotal)
        }
        #expect(e.totalProducts == expectedTotal)
    }

    @Test("the plain variant solves v = Q T^{-1} Q^T b with no anchor product")
    func plainVariant() throws {
        let n = 40
        let a = DenseMatrix.spd(n: n, condition: 100, seed: 12)
        var rng = TestRandom(seed: 5)
        let b = rng.vector(n)
        let e = try Self.lanczos(n: n, m0: n, mMax: n, growth: 1, variant: .plain, reorthogonalize: true)
        var v = [Double](), info = StepInfo()
        for _ in 0..<n { (v, info) = try step(e, a, b) }
        #expect(info.products == 1)
        #expect(e.totalProducts == n)   // no extra product at the restart
        #expect(relativeError(v, a.solve(b)) < 1e-9)
    }

    @Test("Ritz values bracket and approach the extreme eigenvalues")
    func ritzValues() throws {
        let n = 50
        let eigenvalues = (0..<n).map { 1 + Double($0) }
        let a = DenseMatrix.withEigenvalues(eigenvalues, seed: 8)
        var rng = TestRandom(seed: 6)
        let b = rng.vector(n)
        let e = try Self.lanczos(n: n, m0: 30, mMax: 30, growth: 1)
        var info = StepInfo()
        for _ in 0..<30 { info = try step(e, a, b).info }
        #expect(info.ritzMin >= 1 - 1e-9 && info.ritzMax <= 50 + 1e-9)
        #expect(abs(info.ritzMax - 50) < 1e-3)
        #expect(abs(info.ritzMin - 1) < 1e-1)
    }
}
