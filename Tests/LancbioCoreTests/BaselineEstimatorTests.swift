import Foundation
import Testing
@testable import LancbioCore

/// Each baseline against its formula (docs/algorithms.md sections 4-5) evaluated densely here.
@Suite("Baseline estimators")
struct BaselineEstimatorTests {
    let n = 25
    let a: DenseMatrix
    let b: [Double]
    let v0: [Double]

    init() {
        a = DenseMatrix.spd(n: n, condition: 20, seed: 21)
        var rng = TestRandom(seed: 22)
        b = rng.vector(n)
        v0 = rng.vector(n)
    }

    func axpy(_ alpha: Double, _ x: [Double], _ y: [Double]) -> [Double] { zip(x, y).map { alpha * $0 + $1 } }

    @Test("gradient steps: v <- v - eta (A v - b), Q times from the last estimate (AmIGO-GD, SOBA)", arguments: [1, 5])
    func gradientDescent(steps: Int) throws {
        let eta = 0.04
        let e = try Estimator<Double>(n: n, method: .gradientDescent(stepSize: eta, steps: steps))
        try setEstimate(e, v0)
        var reference = v0
        for k in 0..<3 {
            var lastResidual = 0.0
            for _ in 0..<steps {
                let r = vminus(a.times(reference), b)
                lastResidual = vnorm(r)
                reference = axpy(-eta, r, reference)
            }
            let (v, info) = try step(e, a, b)
            #expect(relativeError(v, reference) < 1e-13, "outer step \(k)")
            #expect(info.products == steps)
            #expect(abs(info.residual - lastResidual) < 1e-12 * lastResidual)
        }
    }

    @Test("Neumann series: v = eta sum_{i=0..Q} (I - eta A)^i b with Q products (stocBiO)", arguments: [0, 1, 10])
    func neumann(terms: Int) throws {
        let eta = 0.04
        let e = try Estimator<Double>(n: n, method: .neumann(stepSize: eta, terms: terms))
        var power = b, sum = b
        for _ in 0..<terms {
            power = axpy(-eta, a.times(power), power)
            sum = zip(sum, power).map(+)
        }
        let (v, info) = try step(e, a, b)
        #expect(relativeError(v, sum.map { eta * $0 }) < 1e-13)
        #expect(info.products == terms)
    }

    @Test("random Neumann: eta (I - eta A)^p b with p from the seeded generator, then Q gradient steps (TTSA/BSA)")
    func randomNeumann() throws {
        let eta = 0.04, q = 6
        let e = try Estimator<Double>(n: n, method: .randomNeumann(stepSize: eta, maxTerms: q, seed: 99))
        var generator = SplitMix64(seed: 99)
        var draws = Set<Int>()
        for k in 0..<8 {
            let p = generator.next(below: q)
            draws.insert(p)
            var v = b
            for _ in 0..<p { v = axpy(-eta, a.times(v), v) }
            v = v.map { eta * $0 }
            for _ in 0..<q { v = axpy(-eta, vminus(a.times(v), b), v) }
            let (result, info) = try step(e, a, b)
            #expect(relativeError(result, v) < 1e-13, "outer step \(k)")
            #expect(info.products == p + q)
        }
        #expect(draws.count > 1)   // the truncation really varies
        // reset reseeds: the first step repeats.
        try e.reset()
        let again = try step(e, a, b).info.products
        var fresh = SplitMix64(seed: 99)
        #expect(again == fresh.next(below: q) + q)
    }

    @Test("SubBiO: the Galerkin solution on span{b, v - theta0 A v} with 3 products")
    func subBiO() throws {
        let theta0 = 0.03
        let e = try Estimator<Double>(n: n, method: .subbio(theta0: theta0))
        try setEstimate(e, v0)
        var vk = v0
        for k in 0..<3 {
            // Paper's formula: W = [b, v - theta0 A v], (W^T A W) s = W^T b, v = W s.
            let w2 = axpy(-theta0, a.times(vk), vk)
            let aw1 = a.times(b), aw2 = a.times(w2)
            let m11 = vdot(b, aw1), m12 = vdot(b, aw2), m22 = vdot(w2, aw2)
            let r1 = vdot(b, b), r2 = vdot(w2, b)
            let det = m11 * m22 - m12 * m12
            let s1 = (r1 * m22 - m12 * r2) / det, s2 = (m11 * r2 - m12 * r1) / det
            let reference = zip(b, w2).map { s1 * $0 + s2 * $1 }
            let (v, info) = try step(e, a, b)
            #expect(relativeError(v, reference) < 1e-9, "outer step \(k)")
            #expect(info.products == 3)
            #expect(info.dimension == 2)
            #expect(abs(info.residual - vnorm(vminus(a.times(v), b))) < 1e-9 * vnorm(b))
            vk = reference
        }
    }

    @Test("CG: Q iterations warm-started from the last estimate, Q + 1 products (AmIGO-CG)")
    func conjugateGradient() throws {
        let q = 4
        let e = try Estimator<Double>(n: n, method: .conjugateGradient(maxIterations: q, tolerance: 0))
        try setEstimate(e, v0)
        var x = v0
        for k in 0..<3 {
            var r = vminus(b, a.times(x)), p = r
            for _ in 0..<q {
                let ap = a.times(p)
                let alpha = vdot(r, r) / vdot(p, ap)
                x = axpy(alpha, p, x)
                let rNew = axpy(-alpha, ap, r)
                p = axpy(vdot(rNew, rNew) / vdot(r, r), p, rNew)
                r = rNew
            }
            let (v, info) = try step(e, a, b)
            #expect(relativeError(v, x) < 1e-11, "outer step \(k)")
            #expect(info.products == q + 1)
            #expect(info.outcome == .budgetReached)
            #expect(abs(info.residual - vnorm(r)) < 1e-9 * vnorm(r))
        }
    }

    @Test("CG stops at the tolerance and reports success")
    func conjugateGradientTolerance() throws {
        let e = try Estimator<Double>(n: n, method: .conjugateGradient(maxIterations: 500, tolerance: 1e-10))
        let (v, info) = try step(e, a, b)
        #expect(info.outcome == .success)
        #expect(info.iterations < 500)
        #expect(vnorm(vminus(a.times(v), b)) <= 2e-10 * vnorm(b))
    }

    @Test("MINRES solves SPD, indefinite and (consistent) singular systems", arguments: ["spd", "indefinite", "singular"])
    func minres(kind: String) throws {
        let n = 30
        var eigenvalues = (0..<n).map { 1 + Double($0) }
        if kind == "indefinite" { for i in stride(from: 0, to: n, by: 3) { eigenvalues[i] = -eigenvalues[i] } }
        if kind == "singular" { eigenvalues[0] = 0; eigenvalues[1] = 0 }
        let a = DenseMatrix.withEigenvalues(eigenvalues, seed: 31)
        var rng = TestRandom(seed: 32)
        // A consistent right-hand side: b = A x for a random x.
        let b = kind == "singular" ? a.times(rng.vector(n)) : rng.vector(n)
        let e = try Estimator<Double>(n: n, method: .minres(maxIterations: 200, tolerance: 1e-12))
        let (v, info) = try step(e, a, b)
        let residual = vnorm(vminus(a.times(v), b))
        #expect(residual <= 1e-9 * vnorm(b), "residual \(residual), info \(info)")
        #expect(allFinite(v))
        if kind == "indefinite" { #expect(info.indefinite) }
        if kind == "spd" { #expect(relativeError(v, a.solve(b)) < 1e-9) }
    }

    @Test("MINRES's recurrence residual is non-increasing in the iteration count and matches ||A v - b||")
    func minresMonotone() throws {
        var previous = Double.infinity
        for k in [1, 2, 4, 8, 16] {
            let e = try Estimator<Double>(n: n, method: .minres(maxIterations: k, tolerance: 0))
            let (v, info) = try step(e, a, b)
            let trueResidual = vnorm(vminus(a.times(v), b))
            #expect(abs(info.residual - trueResidual) <= 1e-8 * vnorm(b))
            #expect(trueResidual <= previous * (1 + 1e-12))
            previous = trueResidual
        }
    }
}
