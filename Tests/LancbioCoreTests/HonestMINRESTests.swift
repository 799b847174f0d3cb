import Foundation
import Testing
@testable import LancbioCore

@Suite("Honest residuals: MINRES")
struct HonestMINRESTests {
    func singularInconsistent<T: BinaryFloatingPoint>(_: T.Type, _ precision: Precision, maxIterations: Int) throws {
        let system = InconsistentSystem(n: 40, rank: 20, seed: 51)
        let e = try Estimator<T>(n: 40, method: .minres(maxIterations: maxIterations, tolerance: 0))
        let (v, info) = try step(e, system.a, system.b)
        let truth = trueResidual(system.a, v, system.b)
        let bNorm = vnorm(system.b)
        // No v beats the least-squares minimum, so neither may the report.
        #expect(info.residual >= system.leastSquaresResidual * (1 - precision.slack),
                "reported \(info.residual) below the least-squares minimum \(system.leastSquaresResidual)")
        #expect(info.residualUncertain || abs(info.residual - truth) <= precision.slack * bNorm,
                "reported \(info.residual), true \(truth), info \(info)")
        // The exhausted space does not send v off by 1 / gamma (MINRES's v is not the
        // least-squares solution of least norm, but near it: it was 1e15 away).
        #expect(vnorm(v) <= 100 * system.leastSquaresNorm, "||v|| \(vnorm(v)), least-squares ||v|| \(system.leastSquaresNorm)")
        #expect(truth <= system.leastSquaresResidual * 1.05 || maxIterations < 20, "true residual \(truth)")
        if maxIterations > 20 { #expect(info.outcome == .singular, "outcome \(info.outcome)") }
    }

    @Test("rank 20 of 40, b outside the range: the residual is the true one, never below the least-squares minimum, and v stays bounded past the rank",
          arguments: Precision.allCases, [10, 19, 20, 21, 22, 25, 40, 80])
    func singularInconsistentSystem(precision: Precision, maxIterations: Int) throws {
        switch precision {
        case .float: try singularInconsistent(Float.self, precision, maxIterations: maxIterations)
        case .double: try singularInconsistent(Double.self, precision, maxIterations: maxIterations)
        }
    }

    func scipyCase<T: BinaryFloatingPoint>(_: T.Type, _ precision: Precision, maxIterations: Int) throws {
        let e = try Estimator<T>(n: 3, method: .minres(maxIterations: maxIterations, tolerance: 0))
        let (v, info) = try step(e, scipySingular, scipySingularRhs)
        let truth = trueResidual(scipySingular, v, scipySingularRhs)
        #expect(abs(info.residual - truth) <= precision.slack, "reported \(info.residual), true \(truth), info \(info)")
        #expect(info.residual >= 1 - precision.slack)
        #expect(vnorm(v) <= 2)
        if maxIterations >= 3 {
            // The space is exhausted at the least-squares solution, which is no exact one.
            #expect(abs(truth - 1) <= precision.slack, "true residual \(truth)")
            #expect(info.outcome == .singular, "outcome \(info.outcome)")
        }
    }

    @Test("scipy's singular inconsistent 3 x 3 case: the residual is ||A v - b|| (not 0) and the outcome singular",
          arguments: Precision.allCases, [1, 2, 3, 5])
    func scipySingularCase(precision: Precision, maxIterations: Int) throws {
        switch precision {
        case .float: try scipyCase(Float.self, precision, maxIterations: maxIterations)
        case .double: try scipyCase(Double.self, precision, maxIterations: maxIterations)
        }
    }

    func rankOne<T: BinaryFloatingPoint>(_: T.Type, _ precision: Precision) throws {
        let n = 10
        var rng = TestRandom(seed: 61)
        let u = rng.vector(n), b = rng.vector(n)
        var a = DenseMatrix(n: n, entries: [Double](repeating: 0, count: n * n))
        for i in 0..<n { for j in 0..<n { a[i, j] = u[i] * u[j] } }
        let along = vdot(u, b) / vdot(u, u)
        let minimum = vnorm(zip(b, u).map { $0 - along * $1 })
        let e = try Estimator<T>(n: n, method: .minres(maxIterations: n, tolerance: 0))
        let (v, info) = try step(e, a, b)
        let truth = trueResidual(a, v, b)
        // An invariant space that left ||b - A v|| ~ ||b|| met a b outside the range: the
        // estimate is a least-squares one, not exact, and says so.
        #expect(info.outcome == .singular, "outcome \(info.outcome), residual \(info.residual)")
        #expect(abs(info.residual - truth) <= precision.slack * vnorm(b), "reported \(info.residual), true \(truth)")
        #expect(abs(truth - minimum) <= precision.slack * vnorm(b), "true \(truth), least-squares minimum \(minimum)")
        #expect(vnorm(v) <= 10 * abs(along) * vnorm(u), "||v|| \(vnorm(v))")
    }

    @Test("rank-1 A: the breakdown with a residual of about ||b|| is reported singular, with its true residual",
          arguments: Precision.allCases)
    func rankOneOperator(precision: Precision) throws {
        switch precision {
        case .float: try rankOne(Float.self, precision)
        case .double: try rankOne(Double.self, precision)
        }
    }

    @Test("float32 at condition 1e6: a success is a true residual within the tolerance, and any other residual is the truth or flagged",
          arguments: [200, 1000, 3000])
    func float32AtItsLimit(maxIterations: Int) throws {
        let n = 50
        let a = DenseMatrix.spd(n: n, condition: 1e6, seed: 71)
        var rng = TestRandom(seed: 72)
        let b = rng.vector(n)
        let tolerance = 1e-5
        let e = try Estimator<Float>(n: n, method: .minres(maxIterations: maxIterations, tolerance: tolerance))
        let (v, info) = try step(e, a, b)
        let truth = trueResidual(a, v, b)
        if info.outcome == .success { #expect(truth <= 1.5 * tolerance * vnorm(b), "success with true residual \(truth)") }
        #expect(info.residualUncertain || (info.residual <= 2 * truth && truth <= 2 * info.residual),
                "reported \(info.residual), true \(truth), info \(info)")
    }
}
