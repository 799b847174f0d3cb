import Foundation
import Testing
@testable import LancbioCore

/// docs/algorithms.md section 3's breakdown cases: no NaN, the right flags, a usable result.
@Suite("Breakdowns and indefinite operators")
struct BreakdownTests {
    static let allMethods: [EstimatorMethod] = [
        .dynamicLanczos(LanczosOptions(initialPeriod: 5, maxPeriod: 5)),
        .dynamicLanczos(LanczosOptions(initialPeriod: 5, maxPeriod: 5, variant: .plain)),
        .subbio(theta0: 0.01),
        .conjugateGradient(maxIterations: 5, tolerance: 0),
        .minres(maxIterations: 5, tolerance: 0),
        .gradientDescent(stepSize: 0.01, steps: 3),
        .neumann(stepSize: 0.01, terms: 3),
        .randomNeumann(stepSize: 0.01, maxTerms: 3, seed: 1),
    ]

    @Test("an operator with 3 distinct eigenvalues breaks down at j = 3 with the exact solution")
    func invariantSubspace() throws {
        let n = 20
        let eigenvalues = (0..<n).map { [1.0, 4.0, 9.0][$0 % 3] }
        let a = DenseMatrix.withEigenvalues(eigenvalues, seed: 41)
        var rng = TestRandom(seed: 42)
        let b = rng.vector(n)
        let e = try Estimator<Double>(n: n, method: .dynamicLanczos(LanczosOptions(initialPeriod: 10, maxPeriod: 10, growth: 1)))
        var infos = [StepInfo](), v = [Double]()
        for _ in 0..<5 {
            let r = try step(e, a, b)
            infos.append(r.info); v = r.v
        }
        #expect(infos[2].breakdown && infos[2].outcome == .breakdown && infos[2].dimension == 3)
        #expect(!infos[0].breakdown && !infos[1].breakdown)
        #expect(infos[3].restarted)            // restart instead of dividing by zero
        #expect(relativeError(v, a.solve(b)) < 1e-10)
        #expect(allFinite(v))
    }

    @Test("b = 0 gives v = 0 (or keeps an exact estimate) with no NaN", arguments: BreakdownTests.allMethods)
    func zeroRightHandSide(method: EstimatorMethod) throws {
        let n = 12
        let a = DenseMatrix.spd(n: n, condition: 10, seed: 43)
        let e = try Estimator<Double>(n: n, method: method)
        let b = [Double](repeating: 0, count: n)
        for _ in 0..<3 {
            let (v, info) = try step(e, a, b)
            #expect(v == [Double](repeating: 0, count: n), "\(method.name): \(v)")
            #expect(info.residual.isFinite)
        }
    }

    @Test("zero residual at restart: v = vbar already solves the system; no basis vector")
    func zeroResidualAtRestart() throws {
        let n = 10
        let a = DenseMatrix.spd(n: n, condition: 10, seed: 44)
        var rng = TestRandom(seed: 45)
        let x = rng.vector(n)
        let b = a.times(x)
        let e = try Estimator<Double>(n: n, method: .dynamicLanczos(LanczosOptions()))
        try setEstimate(e, x)
        let (v, info) = try step(e, a, b)
        #expect(info.zeroResidual && info.dimension == 0 && info.products == 1)
        #expect(relativeError(v, x) < 1e-15)
        let next = try step(e, a, b).info
        #expect(next.restarted)
    }

    @Test("an indefinite operator: Lanczos and SubBiO flag it and stay finite; CG stops at negative curvature")
    func indefinite() throws {
        let n = 16
        let eigenvalues = (0..<n).map { Double($0) - 5.5 }
        let a = DenseMatrix.withEigenvalues(eigenvalues, seed: 46)
        var rng = TestRandom(seed: 47)
        let b = rng.vector(n)
        let lanczos = try Estimator<Double>(n: n, method: .dynamicLanczos(LanczosOptions(initialPeriod: n, maxPeriod: n, growth: 1, reorthogonalize: true)))
        var sawIndefinite = false, v = [Double]()
        for _ in 0..<n {
            let r = try step(lanczos, a, b)
            sawIndefinite = sawIndefinite || r.info.indefinite
            v = r.v
            #expect(allFinite(v))
        }
        #expect(sawIndefinite)
        // A full cycle on a nonsingular indefinite A still solves it (pivoted tridiagonal solve).
        #expect(relativeError(v, a.solve(b)) < 1e-8)

        let sub = try Estimator<Double>(n: n, method: .subbio(theta0: 0.1))
        let s = try step(sub, a, b)
        #expect(allFinite(s.v))

        let cg = try Estimator<Double>(n: n, method: .conjugateGradient(maxIterations: 50, tolerance: 0))
        let c = try step(cg, a, b)
        #expect(allFinite(c.v))
        #expect(c.info.indefinite && c.info.outcome == .indefinite)
    }

    @Test("a singular operator: the least-squares fallback keeps every estimate finite", arguments: BreakdownTests.allMethods)
    func singular(method: EstimatorMethod) throws {
        let n = 12
        var eigenvalues = (0..<n).map { 1 + Double($0) }
        eigenvalues[0] = 0; eigenvalues[5] = 0
        let a = DenseMatrix.withEigenvalues(eigenvalues, seed: 48)
        var rng = TestRandom(seed: 49)
        let b = rng.vector(n)   // generally inconsistent
        let e = try Estimator<Double>(n: n, method: method)
        for _ in 0..<12 {
            let (v, info) = try step(e, a, b)
            #expect(allFinite(v), "\(method.name)")
            #expect(info.residual.isFinite)
        }
    }

    @Test("a zero operator: Lanczos reports a singular projected system and returns finite values")
    func zeroOperator() throws {
        let n = 8
        let a = DenseMatrix(n: n, entries: [Double](repeating: 0, count: n * n))
        var rng = TestRandom(seed: 50)
        let b = rng.vector(n)
        let e = try Estimator<Double>(n: n, method: .dynamicLanczos(LanczosOptions()))
        let (v, info) = try step(e, a, b)
        #expect(info.singularFallback && info.breakdown)
        #expect(info.outcome == .singular)
        #expect(allFinite(v))
    }
}
