import Testing
@testable import LancbioCore

/// The view's own contract: which sizes form a matrix, and that an off-diagonal buffer of
/// n entries (the layout of storage sized for a growing T) has its last entry ignored.
@Suite("Symmetric tridiagonal view")
struct SymmetricTridiagonalViewTests {
    func formed(_ d: [Double], _ e: [Double]) -> Int? {
        d.withUnsafeBufferPointer { dp in
            e.withUnsafeBufferPointer { ep in SymmetricTridiagonal(diagonal: dp, offDiagonal: ep)?.dimension }
        }
    }

    @Test("n - 1 or n off-diagonal entries form a matrix; other counts and n = 0 do not")
    func sizesAreCheckedOnce() {
        #expect(formed([1, 2, 3], [4, 5]) == 3)
        #expect(formed([1, 2, 3], [4, 5, 6]) == 3)
        #expect(formed([1, 2, 3], [4]) == nil)
        #expect(formed([1, 2, 3], [4, 5, 6, 7]) == nil)
        #expect(formed([], []) == nil)
        #expect(formed([], [1]) == nil)
        #expect(formed([7], []) == 1)
        #expect(formed([7], [8]) == 1)
        let none = UnsafeBufferPointer<Double>(start: nil, count: 0)
        #expect(SymmetricTridiagonal(diagonal: none, offDiagonal: none) == nil)
        let single = [7.0].withUnsafeBufferPointer { dp in
            SymmetricTridiagonal(diagonal: dp, offDiagonal: none).map { t in
                var lambda = [Double.nan], work = [Double](repeating: .nan, count: 2)
                let ok = lambda.withUnsafeMutableBufferPointer { lp in
                    work.withUnsafeMutableBufferPointer { t.eigendecompose(eigenvalues: lp, eigenvectors: nil, workspace: $0) }
                }
                return ok ? lambda[0] : .nan
            }
        }
        #expect(single == 7)
    }

    @Test("the last of n off-diagonal entries is never read", arguments: [1, 2, 5, 17])
    func trailingOffDiagonalIsIgnored(n: Int) {
        let d = (0..<n).map { 2 + Double($0 % 3) }
        let e = (0..<(n - 1)).map { 0.5 - Double($0 % 2) }
        let padded = e + [.nan]
        func run(_ e: [Double]) -> [UInt64] {
            var lambda = [Double](repeating: 0, count: n), z = [Double](repeating: 0, count: n * n)
            var x = (0..<n).map { Double($0) + 1 }, y = x
            var work = [Double](repeating: 0, count: n * n + 4 * n)
            var extremes = (min: Double.nan, max: Double.nan)
            d.withUnsafeBufferPointer { dp in
                e.withUnsafeBufferPointer { ep in
                    let t = SymmetricTridiagonal(diagonal: dp, offDiagonal: ep)!
                    work.withUnsafeMutableBufferPointer { w in
                        lambda.withUnsafeMutableBufferPointer { lp in
                            z.withUnsafeMutableBufferPointer { zp in
                                _ = t.eigendecompose(eigenvalues: lp, eigenvectors: zp, workspace: w)
                            }
                        }
                        extremes = t.extremeEigenvalues(workspace: w) ?? extremes
                        x.withUnsafeMutableBufferPointer { _ = t.solve(rhs: $0, workspace: w) }
                        y.withUnsafeMutableBufferPointer { _ = t.solveLeastSquares(rhs: $0, workspace: w) }
                    }
                }
            }
            return (lambda + z + x + y + [extremes.min, extremes.max]).map(\.bitPattern)
        }
        #expect(run(padded) == run(e))
    }

    @Test("the inertia test reads a 1 x 1 T itself")
    func inertiaOfOneByOne() {
        for (entry, nonPositive) in [(2.0, false), (0.0, true), (-1.0, true)] {
            let result = [entry].withUnsafeBufferPointer { dp in
                [Double]().withUnsafeBufferPointer { ep in
                    var work = [Double](repeating: .nan, count: 2)
                    return work.withUnsafeMutableBufferPointer { w in
                        let t = SymmetricTridiagonal(diagonal: dp, offDiagonal: ep)!
                        _ = t.extremeEigenvalues(workspace: w)
                        return t.hasNonPositiveEigenvalue(workspace: UnsafePointer(w.baseAddress!))
                    }
                }
            }
            #expect(result == nonPositive, "d = \(entry)")
        }
    }
}
