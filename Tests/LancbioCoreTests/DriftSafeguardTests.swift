import Foundation
import Testing
@testable import LancbioCore

/// A_k = diag(d_i (1 + 0.05 sin(w k + 0.37 i))) + u_k u_k^T with d_i in [1, 16]: an SPD
/// operator drifting by about 5e-4 relative per step.
struct DriftingOperator {
    let n: Int
    let w: Double
    var k = 0

    func apply(_ x: UnsafeBufferPointer<Double>, _ y: UnsafeMutableBufferPointer<Double>) {
        let t = w * 0.1 * Double(k)
        var c = 0.0
        for i in 0..<n { c += 0.05 * sin(0.013 * Double(i + 1) + t) * x[i] }
        for i in 0..<n {
            let d = (1 + 15 * Double(i) / Double(n - 1)) * (1 + 0.05 * sin(w * Double(k) + 0.37 * Double(i)))
            y[i] = d * x[i] + 0.05 * sin(0.013 * Double(i + 1) + t) * c
        }
    }
}

@Suite("Drifting operators")
struct DriftSafeguardTests {
    /// Runs `steps` steps and returns the largest relative true residual seen at the
    /// checkpoints, and whether an early (orthogonality) restart happened.
    func run(tolerance: Double, steps: Int) throws -> (worst: Double, earlyRestarts: Int) {
        let n = 120
        var op = DriftingOperator(n: n, w: 1e-2)
        let e = try Estimator<Double>(n: n, method: .dynamicLanczos(LanczosOptions(orthogonalityTolerance: tolerance)))
        let b = (0..<n).map { 1 + 0.5 * sin(0.01 * Double($0)) }
        var v = [Double](repeating: 0, count: n), r = [Double](repeating: 0, count: n)
        var worst = 0.0, early = 0
        for k in 1...steps {
            op.k = k
            let info = try b.withUnsafeBufferPointer { bp in
                try v.withUnsafeMutableBufferPointer { vp in try e.step(rhs: bp, into: vp) { op.apply($0, $1) } }
            }
            if info.orthogonalityRestart { early += 1 }
            if k % 250 == 0 {
                v.withUnsafeBufferPointer { vp in r.withUnsafeMutableBufferPointer { op.apply(vp, $0) } }
                worst = max(worst, vnorm(vminus(r, b)) / vnorm(b))
            }
        }
        return (worst, early)
    }

    @Test("with the orthogonality check (default) the residual stays bounded over thousands of steps")
    func safeguardKeepsResidualBounded() throws {
        let guarded = try run(tolerance: 1e-2, steps: 4000)
        #expect(guarded.worst < 5e-2, "worst relative residual \(guarded.worst)")
        #expect(guarded.earlyRestarts > 0)
    }

    @Test("without it the same run diverges: the check is what keeps it bounded")
    func withoutSafeguardItDiverges() throws {
        let unguarded = try run(tolerance: .infinity, steps: 4000)
        #expect(unguarded.worst > 1, "worst relative residual \(unguarded.worst)")
        #expect(unguarded.earlyRestarts == 0)
    }
}
