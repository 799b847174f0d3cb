import Foundation
@testable import LancbioCore

// Dense linear algebra written independently of the library, as the reference the
// estimators are checked against.

/// Seeded generator for reproducible test data.
struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed &* 0x2545_F491_4F6C_DD1D &+ 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return state
    }
    mutating func uniform(_ low: Double = 0, _ high: Double = 1) -> Double {
        low + (high - low) * Double(next() >> 11) / Double(1 << 53)
    }
    mutating func gaussian() -> Double {
        let u = max(uniform(), 1e-300), v = uniform()
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }
    mutating func vector(_ n: Int) -> [Double] { (0..<n).map { _ in gaussian() } }
}

/// A dense symmetric matrix, row-major.
struct DenseMatrix {
    let n: Int
    var a: [Double]

    init(n: Int, entries: [Double]) { self.n = n; a = entries }

    subscript(i: Int, j: Int) -> Double {
        get { a[i * n + j] }
        set { a[i * n + j] = newValue }
    }

    func times(_ x: [Double]) -> [Double] {
        (0..<n).map { i in (0..<n).reduce(0.0) { $0 + a[i * n + $1] * x[$1] } }
    }

    /// Q diag(eigenvalues) Q^T with Q orthogonal from Gram-Schmidt on Gaussian columns.
    static func withEigenvalues(_ eigenvalues: [Double], seed: UInt64) -> DenseMatrix {
        withEigenvalues(eigenvalues, basis: orthonormalBasis(n: eigenvalues.count, seed: seed))
    }

    /// n orthonormal vectors: Gram-Schmidt (twice) on Gaussian vectors.
    static func orthonormalBasis(n: Int, seed: UInt64) -> [[Double]] {
        var rng = TestRandom(seed: seed)
        var q = [[Double]]()
        while q.count < n {
            var v = rng.vector(n)
            for _ in 0..<2 {
                for u in q {
                    let c = vdot(u, v)
                    for i in 0..<n { v[i] -= c * u[i] }
                }
            }
            let nv = vnorm(v)
            if nv > 1e-8 { q.append(v.map { $0 / nv }) }
        }
        return q
    }

    /// sum_k eigenvalues[k] q_k q_k^T for the orthonormal vectors q_k of `basis`.
    static func withEigenvalues(_ eigenvalues: [Double], basis q: [[Double]]) -> DenseMatrix {
        let n = eigenvalues.count
        var m = DenseMatrix(n: n, entries: [Double](repeating: 0, count: n * n))
        for k in 0..<n {
            for i in 0..<n {
                let s = eigenvalues[k] * q[k][i]
                for j in 0..<n { m.a[i * n + j] += s * q[k][j] }
            }
        }
        return m
    }

    /// Eigenvalues geometrically spaced from 1 to `condition`.
    static func spd(n: Int, condition: Double, seed: UInt64) -> DenseMatrix {
        let eigenvalues = (0..<n).map { i in n == 1 ? 1 : pow(condition, Double(i) / Double(n - 1)) }
        return withEigenvalues(eigenvalues, seed: seed)
    }

    /// Solves A x = b by Gaussian elimination with partial pivoting.
    func solve(_ b: [Double]) -> [Double] {
        var m = a, x = b
        for k in 0..<n {
            var p = k
            for i in (k + 1)..<n where abs(m[i * n + k]) > abs(m[p * n + k]) { p = i }
            if p != k {
                for j in 0..<n { m.swapAt(k * n + j, p * n + j) }
                x.swapAt(k, p)
            }
            for i in (k + 1)..<n {
                let f = m[i * n + k] / m[k * n + k]
                if f == 0 { continue }
                for j in k..<n { m[i * n + j] -= f * m[k * n + j] }
                x[i] -= f * x[k]
            }
        }
        for k in stride(from: n - 1, through: 0, by: -1) {
            var s = x[k]
            for j in (k + 1)..<n { s -= m[k * n + j] * x[j] }
            x[k] = s / m[k * n + k]
        }
        return x
    }
}

func vdot(_ x: [Double], _ y: [Double]) -> Double { zip(x, y).reduce(0) { $0 + $1.0 * $1.1 } }
func vnorm(_ x: [Double]) -> Double { vdot(x, x).squareRoot() }
func vminus(_ x: [Double], _ y: [Double]) -> [Double] { zip(x, y).map { $0 - $1 } }
func relativeError(_ x: [Double], _ reference: [Double]) -> Double { vnorm(vminus(x, reference)) / max(vnorm(reference), 1e-300) }

/// Runs `estimator` for one step with a dense operator; returns the new estimate.
@discardableResult
func step<T: BinaryFloatingPoint>(_ estimator: Estimator<T>, _ a: DenseMatrix, _ b: [Double]) throws -> (v: [Double], info: StepInfo) {
    let bt = b.map { T($0) }
    var v = [T](repeating: 0, count: estimator.n)
    let info = try bt.withUnsafeBufferPointer { bp in
        try v.withUnsafeMutableBufferPointer { vp in
            try estimator.step(rhs: bp, into: vp) { input, output in
                let y = a.times(input.map { Double($0) })
                for i in 0..<y.count { output[i] = T(y[i]) }
            }
        }
    }
    return (v.map { Double($0) }, info)
}

/// The committed estimate as [Double].
func estimate<T: BinaryFloatingPoint>(_ e: Estimator<T>) -> [Double] {
    var v = [T](repeating: 0, count: e.n)
    v.withUnsafeMutableBufferPointer { try! e.copyEstimate(into: $0) }
    return v.map { Double($0) }
}

func setEstimate<T: BinaryFloatingPoint>(_ e: Estimator<T>, _ v: [Double]) throws {
    let vt = v.map { T($0) }
    try vt.withUnsafeBufferPointer { try e.setEstimate($0) }
}

struct ProductFailure: Error, Equatable { let atProduct: Int }
func allFinite(_ v: [Double]) -> Bool { v.allSatisfy { $0.isFinite } }
