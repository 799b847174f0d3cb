import Foundation
import Testing
@testable import LancbioCore

@Suite("Extreme eigenvalues by bisection")
struct ExtremeEigenvaluesTests {
    /// The full eigenvalue routine (implicit QL) is the reference.
    func reference(_ d: [Double], _ e: [Double]) -> (Double, Double) {
        var values = [Double](repeating: 0, count: d.count)
        var work = [Double](repeating: 0, count: 2 * d.count)
        _ = d.withUnsafeBufferPointer { dp in e.withUnsafeBufferPointer { ep in
            values.withUnsafeMutableBufferPointer { vp in work.withUnsafeMutableBufferPointer { wp in
                symmetricTridiagonalEigen(diagonal: dp, offDiagonal: ep, eigenvalues: vp, eigenvectors: nil, workspace: wp)
            } }
        } }
        return (values.first!, values.last!)
    }

    func extremes(_ d: [Double], _ e: [Double], bounds: (min: Double, max: Double)? = nil) -> (min: Double, max: Double) {
        var work = [Double](repeating: 0, count: 2 * d.count)
        return d.withUnsafeBufferPointer { dp in e.withUnsafeBufferPointer { ep in
            work.withUnsafeMutableBufferPointer { symmetricTridiagonalExtremeEigenvalues(diagonal: dp, offDiagonal: ep, workspace: $0, bounds: bounds)! }
        } }
    }

    @Test("agree with the full eigenvalue iteration, cold and warm-started from the leading submatrix",
          arguments: [1, 2, 7, 40, 80])
    func agreeWithReference(n: Int) {
        var rng = TestRandom(seed: UInt64(300 + n))
        for trial in 0..<20 {
            let scale = trial == 19 ? 1e298 : pow(10.0, Double(trial % 7) - 3)
            let d = (0..<n).map { _ in rng.uniform(-1, 4) * scale }
            let e = (0..<max(n - 1, 0)).map { _ in rng.uniform(-1, 1) * scale }
            let (lo, hi) = reference(d, e)
            let cold = extremes(d, e)
            let tolerance = 1e-9 * max(abs(lo), abs(hi), scale)
            #expect(abs(cold.min - lo) <= tolerance && abs(cold.max - hi) <= tolerance, "n \(n) trial \(trial)")
            if n > 1 {
                // The leading (n-1) block's extremes, as a Lanczos cycle would pass them.
                let sub = reference(Array(d.dropLast()), Array(e.dropLast()))
                let warm = extremes(d, e, bounds: (sub.0, sub.1))
                #expect(abs(warm.min - lo) <= tolerance && abs(warm.max - hi) <= tolerance, "warm n \(n) trial \(trial)")
                // A wrong hint costs time, never correctness.
                let wrong = extremes(d, e, bounds: (hi + scale, lo - scale))
                #expect(abs(wrong.min - lo) <= tolerance && abs(wrong.max - hi) <= tolerance, "wrong hint n \(n) trial \(trial)")
            }
        }
    }
}
