import Foundation
import Testing
@testable import LancbioCore

// Systems on which residual recurrences and estimates stop telling the truth, with their
// dense references, for the tests of honest residuals (docs/algorithms.md sections 3.6
// and 9): each reported residual is checked against ||A v - b|| computed densely, never
// below what any v can reach, and flagged where the step cannot vouch for it.

/// The precisions a property is checked in, with the slack rounding needs in each.
enum Precision: String, CaseIterable, CustomTestStringConvertible {
    case float, double
    var testDescription: String { rawValue }
    /// Relative agreement expected between a residual a step vouches for and the truth.
    var slack: Double { self == .float ? 1e-4 : 1e-9 }
}

/// A singular PSD system whose b lies outside the range of A: A = sum_{k < rank} lambda_k
/// q_k q_k^T, so min_v ||A v - b|| is the norm of b's part along q_rank ... q_{n-1}, and
/// the least-squares solution of least norm has coefficients (q_k . b) / lambda_k.
struct InconsistentSystem {
    let a: DenseMatrix
    let b: [Double]
    let leastSquaresResidual: Double
    let leastSquaresNorm: Double

    init(n: Int, rank: Int, seed: UInt64) {
        let q = DenseMatrix.orthonormalBasis(n: n, seed: seed)
        let lambda = (0..<n).map { $0 < rank ? 1 + 9 * Double($0) / Double(rank - 1) : 0 }
        a = DenseMatrix.withEigenvalues(lambda, basis: q)
        var rng = TestRandom(seed: seed + 1)
        b = rng.vector(n)
        var outside = 0.0, solution = 0.0
        for k in 0..<n {
            let c = vdot(q[k], b)
            if k < rank { solution += (c / lambda[k]) * (c / lambda[k]) } else { outside += c * c }
        }
        leastSquaresResidual = outside.squareRoot()
        leastSquaresNorm = solution.squareRoot()
    }
}

/// scipy's singular inconsistent 3 x 3 case (test_iterative.py): A = [[0,1,0],[1,0,0],[0,0,0]],
/// b = (1, 0, 1); min ||A v - b|| = |b_3| = 1, reached by v = (0, 1, 0).
let scipySingular = DenseMatrix(n: 3, entries: [0, 1, 0, 1, 0, 0, 0, 0, 0])
let scipySingularRhs: [Double] = [1, 0, 1]

func trueResidual(_ a: DenseMatrix, _ v: [Double], _ b: [Double]) -> Double { vnorm(vminus(a.times(v), b)) }

