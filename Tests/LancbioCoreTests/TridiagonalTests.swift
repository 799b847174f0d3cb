import Foundation
import Testing
@testable import LancbioCore

// MARK: - References and helpers, written independently of the code under test

/// SplitMix64: a tiny seeded generator, so every random case is reproducible.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform(_ low: Double, _ high: Double) -> Double {
        low + (high - low) * Double(next() >> 11) / Double(1 << 53)
    }
}

private struct Tridiagonal {
    var d: [Double]
    var e: [Double]
    var n: Int { d.count }

    var dense: [[Double]] {
        var a = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
        for i in 0..<n { a[i][i] = d[i] }
        for i in 0..<(n - 1) { a[i][i + 1] = e[i]; a[i + 1][i] = e[i] }
        return a
    }
    var maxAbs: Double { (d + e).map(\.magnitude).max() ?? 0 }

    func times(_ x: [Double]) -> [Double] {
        (0..<n).map { i in
            var s = d[i] * x[i]
            if i > 0 { s += e[i - 1] * x[i - 1] }
            if i < n - 1 { s += e[i] * x[i + 1] }
            return s
        }
    }

    /// Diagonally dominant with positive diagonal, hence SPD.
    static func randomSPD(_ n: Int, _ rng: inout SplitMix64) -> Tridiagonal {
        let e = (0..<max(n - 1, 0)).map { _ in rng.uniform(-1, 1) }
        let d = (0..<n).map { i in
            (i > 0 ? e[i - 1].magnitude : 0) + (i < n - 1 ? e[i].magnitude : 0) + rng.uniform(0.01, 1)
        }
        return Tridiagonal(d: d, e: e)
    }

    static func randomIndefinite(_ n: Int, _ rng: inout SplitMix64) -> Tridiagonal {
        Tridiagonal(d: (0..<n).map { _ in rng.uniform(-1, 1) },
                    e: (0..<max(n - 1, 0)).map { _ in rng.uniform(-1, 1) })
    }

    /// The path-graph Laplacian: exactly singular, null space spanned by the ones vector.
    static func pathLaplacian(_ n: Int, scale: Double = 1) -> Tridiagonal {
        Tridiagonal(d: (0..<n).map { i in (i == 0 || i == n - 1 ? 1 : 2) * scale },
                    e: [Double](repeating: -scale, count: n - 1))
    }
}

/// Dense Gaussian elimination with partial pivoting.
private func denseSolve(_ a0: [[Double]], _ b0: [Double]) -> [Double] {
    var a = a0, b = b0
    let n = b.count
    for k in 0..<n {
        let p = (k..<n).max { a[$0][k].magnitude < a[$1][k].magnitude }!
        a.swapAt(k, p); b.swapAt(k, p)
        for i in (k + 1)..<n where a[i][k] != 0 {
            let f = a[i][k] / a[k][k]
            for j in k..<n { a[i][j] -= f * a[k][j] }
            b[i] -= f * b[k]
        }
    }
    var x = [Double](repeating: 0, count: n)
    for i in stride(from: n - 1, through: 0, by: -1) {
        var s = b[i]
        for j in (i + 1)..<n { s -= a[i][j] * x[j] }
        x[i] = s / a[i][i]
    }
    return x
}

/// Cyclic Jacobi on the dense matrix: eigenvalues ascending and their eigenvectors
/// (vectors[i] belongs to values[i]). Flat storage through raw buffers, because nested
/// arrays make the unoptimised test build crawl.
private func jacobiEigen(_ a0: [[Double]]) -> (values: [Double], vectors: [[Double]]) {
    let n = a0.count
    var aStore = a0.flatMap { $0 }
    var vStore = (0..<(n * n)).map { $0 % (n + 1) == 0 ? 1.0 : 0.0 }
    aStore.withUnsafeMutableBufferPointer { aBuf in
        vStore.withUnsafeMutableBufferPointer { vBuf in
            let a = aBuf.baseAddress!, v = vBuf.baseAddress!  // a[i * n + j], v[k * n + j]
            for _ in 0..<100 {
                var off = 0.0, total = 0.0
                for i in 0..<(n * n) { total += a[i] * a[i]; if i % (n + 1) != 0 { off += a[i] * a[i] } }
                if off <= 1e-34 * total || off == 0 { break }
                for p in 0..<n {
                    for q in (p + 1)..<n where a[p * n + q] != 0 {
                        let apq = a[p * n + q]
                        let theta = (a[q * n + q] - a[p * n + p]) / (2 * apq)
                        let t = (theta >= 0 ? 1.0 : -1.0) / (theta.magnitude + (theta * theta + 1).squareRoot())
                        let c = 1 / (t * t + 1).squareRoot(), s = t * c
                        for k in 0..<n {
                            let akp = a[k * n + p], akq = a[k * n + q]
                            a[k * n + p] = c * akp - s * akq
                            a[k * n + q] = s * akp + c * akq
                        }
                        for k in 0..<n {
                            let apk = a[p * n + k], aqk = a[q * n + k]
                            a[p * n + k] = c * apk - s * aqk
                            a[q * n + k] = s * apk + c * aqk
                        }
                        for k in 0..<n {
                            let vkp = v[k * n + p], vkq = v[k * n + q]
                            v[k * n + p] = c * vkp - s * vkq
                            v[k * n + q] = s * vkp + c * vkq
                        }
                    }
                }
            }
        }
    }
    let order = (0..<n).sorted { aStore[$0 * (n + 1)] < aStore[$1 * (n + 1)] }
    return (order.map { aStore[$0 * (n + 1)] }, order.map { j in (0..<n).map { vStore[$0 * n + j] } })
}

/// Number of eigenvalues of T below x (Sturm sequence / LDL^T inertia count).
private func sturmCount(_ t: Tridiagonal, below x: Double) -> Int {
    var count = 0
    var q = 1.0
    for i in 0..<t.n {
        let coupling = i > 0 ? t.e[i - 1] * t.e[i - 1] : 0
        q = t.d[i] - x - (i > 0 ? coupling / q : 0)
        if q == 0 { q = -Double.leastNormalMagnitude }
        if q < 0 { count += 1 }
    }
    return count
}

/// The k-th smallest eigenvalue (k = 0 ..< n) by bisection on Sturm counts, inside the
/// Gershgorin interval: slow but independent of any iteration under test.
private func bisectEigenvalue(_ t: Tridiagonal, index k: Int) -> Double {
    var low = 0.0, high = 0.0
    for i in 0..<t.n {
        let radius = (i > 0 ? t.e[i - 1].magnitude : 0) + (i < t.n - 1 ? t.e[i].magnitude : 0)
        low = min(low, t.d[i] - radius)
        high = max(high, t.d[i] + radius)
    }
    for _ in 0..<200 {
        let mid = (low + high) / 2
        if mid <= low || mid >= high { break }
        if sturmCount(t, below: mid) > k { high = mid } else { low = mid }
    }
    return (low + high) / 2
}

/// The 2-norm condition number max|lambda| / min|lambda|, from bisection.
private func conditionNumber(_ t: Tridiagonal) -> Double {
    let negatives = sturmCount(t, below: 0)
    var smallest = Double.infinity
    if negatives > 0 { smallest = min(smallest, bisectEigenvalue(t, index: negatives - 1).magnitude) }
    if negatives < t.n { smallest = min(smallest, bisectEigenvalue(t, index: negatives).magnitude) }
    let largest = max(bisectEigenvalue(t, index: 0).magnitude, bisectEigenvalue(t, index: t.n - 1).magnitude)
    return largest / smallest
}

private func norm(_ x: [Double]) -> Double { x.reduce(0) { $0 + $1 * $1 }.squareRoot() }
private func distance(_ x: [Double], _ y: [Double]) -> Double { norm(zip(x, y).map { $0 - $1 }) }

// MARK: - Wrappers that supply buffers of exactly the documented minimum sizes

private func solve(_ t: Tridiagonal, _ b: inout [Double]) -> SymmetricTridiagonal.SolveOutcome {
    var work = [Double](repeating: .nan, count: 4 * t.n)
    return t.d.withUnsafeBufferPointer { d in
        t.e.withUnsafeBufferPointer { e in
            b.withUnsafeMutableBufferPointer { rhs in
                work.withUnsafeMutableBufferPointer { w in
                    SymmetricTridiagonal(diagonal: d, offDiagonal: e)!.solve(rhs: rhs, workspace: w)
                }
            }
        }
    }
}

private func eigen(_ t: Tridiagonal, vectors: Bool = true)
    -> (ok: Bool, values: [Double], vectors: [Double]) {
    var values = [Double](repeating: .nan, count: t.n)
    var z = [Double](repeating: .nan, count: t.n * t.n)
    var work = [Double](repeating: .nan, count: 2 * t.n)
    let ok = t.d.withUnsafeBufferPointer { d in
        t.e.withUnsafeBufferPointer { e in
            values.withUnsafeMutableBufferPointer { lambda in
                z.withUnsafeMutableBufferPointer { zb in
                    work.withUnsafeMutableBufferPointer { w in
                        SymmetricTridiagonal(diagonal: d, offDiagonal: e)!.eigendecompose(
                            eigenvalues: lambda, eigenvectors: vectors ? zb : nil, workspace: w)
                    }
                }
            }
        }
    }
    return (ok, values, z)
}

private func leastSquares(_ t: Tridiagonal, _ b: inout [Double], relativeCutoff: Double? = nil) -> Int {
    var work = [Double](repeating: .nan, count: t.n * t.n + 4 * t.n)
    return t.d.withUnsafeBufferPointer { d in
        t.e.withUnsafeBufferPointer { e in
            b.withUnsafeMutableBufferPointer { rhs in
                work.withUnsafeMutableBufferPointer { w in
                    SymmetricTridiagonal(diagonal: d, offDiagonal: e)!.solveLeastSquares(
                        rhs: rhs, relativeCutoff: relativeCutoff, workspace: w)
                }
            }
        }
    }
}

private let eps = Double.ulpOfOne

// MARK: - Solve

@Suite("Tridiagonal solve")
struct TridiagonalSolveTests {
    @Test("solve agrees with dense pivoted elimination, within the condition-number bound",
          arguments: Array(1...80))
    func solveMatchesDenseReference(n: Int) {
        var rng = SplitMix64(seed: 0x5EED_0000 + UInt64(n))
        for kind in ["spd", "indefinite"] {
            let t = kind == "spd" ? Tridiagonal.randomSPD(n, &rng) : Tridiagonal.randomIndefinite(n, &rng)
            let b = (0..<n).map { _ in rng.uniform(-1, 1) }
            let reference = denseSolve(t.dense, b)
            let condition = conditionNumber(t)
            var x = b
            let outcome = solve(t, &x)
            guard case .solved(let growth) = outcome else {
                Issue.record("\(kind) n=\(n) cond=\(condition): \(outcome)")
                continue
            }
            #expect(growth > 0 && growth <= 1)
            let relativeError = distance(x, reference) / norm(reference)
            #expect(relativeError <= 20 * Double(n) * eps * condition, "\(kind) n=\(n) cond=\(condition)")
            // Backward stability does not depend on the conditioning at all.
            let residual = distance(t.times(x), b)
            #expect(residual <= 20 * Double(n) * eps * (3 * t.maxAbs * norm(x) + norm(b)), "\(kind) n=\(n)")
        }
    }

    @Test("zero diagonal is handled by row interchange")
    func zeroDiagonalNeedsPivoting() {
        var x = [3.0, 5.0]
        #expect(solve(Tridiagonal(d: [0, 0], e: [1]), &x) == .solved(reciprocalPivotGrowth: 1))
        #expect(x == [5, 3])
        // Indefinite, zero leading pivot, n = 3: [[0,1,0],[1,0,1],[0,1,1]].
        let t = Tridiagonal(d: [0, 0, 1], e: [1, 1])
        var y = [1.0, 2.0, 3.0]
        guard case .solved = solve(t, &y) else { Issue.record("not solved"); return }
        #expect(distance(t.times(y), [1, 2, 3]) <= 10 * eps)
    }

    @Test("n = 1 divides, reporting growth 1")
    func singleEntry() {
        var x = [6.0]
        #expect(solve(Tridiagonal(d: [-3], e: []), &x) == .solved(reciprocalPivotGrowth: 1))
        #expect(x == [-2])
    }

    @Test("decoupled blocks (zero off-diagonals) are solved block by block")
    func decoupledBlocks() {
        let t = Tridiagonal(d: [2, 4, -1, 3], e: [1, 0, 0.5])
        let b = [1.0, -2.0, 0.5, 4.0]
        var x = b
        guard case .solved = solve(t, &x) else { Issue.record("not solved"); return }
        let reference = denseSolve(t.dense, b)
        #expect(distance(x, reference) <= 10 * eps * norm(reference))
    }

    fileprivate static let singularCases: [(String, Tridiagonal)] = [
        ("diag [1,0,1], zero couplings", Tridiagonal(d: [1, 0, 1], e: [0, 0])),
        ("1x1 zero", Tridiagonal(d: [0], e: [])),
        ("zero matrix", Tridiagonal(d: [0, 0, 0], e: [0, 0])),
        ("rank-one 2x2 [[1,1],[1,1]]", Tridiagonal(d: [1, 1], e: [1])),
        ("path Laplacian n=2", Tridiagonal.pathLaplacian(2)),
        ("path Laplacian n=17", Tridiagonal.pathLaplacian(17)),
        ("path Laplacian n=80, scaled 3.7", Tridiagonal.pathLaplacian(80, scale: 3.7)),
        ("zero pivot after interchange", Tridiagonal(d: [0, 1, 0], e: [1, 0])),
    ]

    @Test("singular T reports .singular and leaves rhs unchanged", arguments: singularCases.indices)
    func singularIsReported(index: Int) {
        let (name, t) = Self.singularCases[index]
        let b = (0..<t.n).map { Double($0) + 0.5 }
        var x = b
        #expect(solve(t, &x) == .singular, "\(name)")
        #expect(x == b, "\(name)")
    }

    @Test("a pivot below n * ulp * max|T| is singular; one just above it is solved")
    func pivotThresholdDecidesSingularity() {
        let threshold = 3 * eps * 2  // n = 3, max|T| = 2
        var x = [1.0, 1.0, 1.0]
        #expect(solve(Tridiagonal(d: [2, threshold * 0.9, 1], e: [0, 0]), &x) == .singular)
        #expect(solve(Tridiagonal(d: [2, threshold * 1.1, 1], e: [0, 0]), &x) != .singular)
        // The same through elimination: the second pivot is 1 - 1 + delta.
        let delta = 2 * 2 * eps  // n = 2, max|T| = 1 + delta, exact in binary
        var y = [1.0, 1.0]
        #expect(solve(Tridiagonal(d: [1, 1 + delta / 4], e: [1]), &y) == .singular)
        #expect(solve(Tridiagonal(d: [1, 1 + 2 * delta], e: [1]), &y) != .singular)
    }

    @Test("an unrepresentable (overflowing) solution reports .singular, never inf or NaN")
    func overflowIsSingular() {
        let t = Tridiagonal(d: [1e-300, 1e-300], e: [0])
        let b = [1e300, 1.0]
        var x = b
        #expect(solve(t, &x) == .singular)
        #expect(x == b)
    }

    @Test("non-finite input reports .singular")
    func nonFiniteIsSingular() {
        var x = [1.0, 1.0]
        #expect(solve(Tridiagonal(d: [1, .nan], e: [0]), &x) == .singular)
        #expect(solve(Tridiagonal(d: [1, 1], e: [.infinity]), &x) == .singular)
        var y = [Double.nan, 1.0]
        #expect(solve(Tridiagonal(d: [1, 1], e: [0]), &y) == .singular)
        #expect(x == [1, 1])
    }

    @Test("reciprocal pivot growth reflects the spread of U's diagonal")
    func pivotGrowthIndicator() {
        var x = [1.0, 1.0, 1.0]
        #expect(solve(Tridiagonal(d: [1, 1e-6, 1], e: [0, 0]), &x) == .solved(reciprocalPivotGrowth: 1e-6))
    }
}

// MARK: - Eigen

@Suite("Tridiagonal eigen")
struct TridiagonalEigenTests {
    static let sizes = [1, 2, 3, 4, 5, 8, 13, 21, 34, 55, 80]

    @Test("eigenvalues agree with dense Jacobi and with Sturm counts", arguments: sizes)
    func eigenvaluesMatchJacobi(n: Int) {
        var rng = SplitMix64(seed: 0xE16E_0000 + UInt64(n))
        for t in [Tridiagonal.randomIndefinite(n, &rng), .randomSPD(n, &rng)] {
            let reference = jacobiEigen(t.dense).values
            for withVectors in [true, false] {
                let result = eigen(t, vectors: withVectors)
                #expect(result.ok)
                let scale = reference.map(\.magnitude).max()!
                let worst = zip(result.values, reference).map { ($0 - $1).magnitude }.max()!
                #expect(worst <= 10 * Double(n) * eps * scale, "n=\(n) vectors=\(withVectors)")
                #expect(result.values == result.values.sorted())
            }
            // Inertia: each computed eigenvalue sits where the Sturm count says it should.
            let values = eigen(t, vectors: false).values
            let slack = 10 * Double(n) * eps * t.maxAbs * 3
            for (i, lambda) in values.enumerated() {
                #expect(sturmCount(t, below: lambda - slack) <= i)
                #expect(sturmCount(t, below: lambda + slack) >= i + 1)
            }
        }
    }

    @Test("the [-1, 2, -1] matrix has eigenvalues 2 - 2cos(k pi / (n + 1))", arguments: [1, 2, 3, 10, 50, 80, 200])
    func closedFormLaplacian(n: Int) {
        let t = Tridiagonal(d: [Double](repeating: 2, count: n), e: [Double](repeating: -1, count: n - 1))
        let result = eigen(t)
        #expect(result.ok)
        for k in 1...n {
            let exact = 2 - 2 * cos(Double(k) * Double.pi / Double(n + 1))
            #expect((result.values[k - 1] - exact).magnitude <= 10 * Double(n) * eps * 4, "n=\(n) k=\(k)")
        }
    }

    @Test("2x2 eigenvalues match the quadratic formula")
    func twoByTwoClosedForm() {
        for (a, b, c) in [(1.0, 2.0, 3.0), (-5.0, 1e-9, 5.0), (0.0, 1.0, 0.0), (1e8, 1.0, -1e-8), (2.0, 0.0, 2.0)] {
            let result = eigen(Tridiagonal(d: [a, c], e: [b]))
            let mean = (a + c) / 2, radius = (((a - c) / 2) * ((a - c) / 2) + b * b).squareRoot()
            let scale = max(a.magnitude, b.magnitude, c.magnitude)
            #expect(result.ok)
            #expect((result.values[0] - (mean - radius)).magnitude <= 4 * eps * scale)
            #expect((result.values[1] - (mean + radius)).magnitude <= 4 * eps * scale)
        }
    }

    @Test("eigenvectors are orthonormal and satisfy T z = lambda z", arguments: sizes)
    func eigenvectorsAreOrthonormalEigenpairs(n: Int) {
        var rng = SplitMix64(seed: 0xFEC7_0000 + UInt64(n))
        let clustered = Tridiagonal(d: [Double](repeating: 1, count: n), e: (0..<(n - 1)).map { _ in rng.uniform(-1e-9, 1e-9) })
        for t in [Tridiagonal.randomIndefinite(n, &rng), .randomSPD(n, &rng), clustered,
                  Tridiagonal(d: [Double](repeating: 2, count: n), e: [Double](repeating: -1, count: n - 1))] {
            let result = eigen(t)
            #expect(result.ok)
            let z = result.vectors
            let column = { (i: Int) in Array(z[(i * n)..<((i + 1) * n)]) }
            var worstOrthogonality = 0.0, worstResidual = 0.0
            for i in 0..<n {
                let zi = column(i)
                for j in 0...i {
                    let dot = zip(zi, column(j)).reduce(0) { $0 + $1.0 * $1.1 }
                    worstOrthogonality = max(worstOrthogonality, (dot - (i == j ? 1 : 0)).magnitude)
                }
                let residual = distance(t.times(zi), zi.map { $0 * result.values[i] })
                worstResidual = max(worstResidual, residual / max(t.maxAbs, .leastNormalMagnitude))
            }
            #expect(worstOrthogonality <= 1e-12, "n=\(n)")
            #expect(worstResidual <= 1e-12, "n=\(n)")
        }
    }

    @Test("zero off-diagonals give the sorted diagonal and permuted identity columns")
    func decoupledDiagonal() {
        let t = Tridiagonal(d: [3, -1, 0, 2, -1], e: [0, 0, 0, 0])
        let result = eigen(t)
        #expect(result.ok)
        #expect(result.values == [-1, -1, 0, 2, 3])
        for i in 0..<5 {
            let col = result.vectors[(i * 5)..<((i + 1) * 5)]
            #expect(col.filter { $0 != 0 }.count == 1)
            #expect(col.contains { $0.magnitude == 1 })
        }
    }

    @Test("the zero matrix and n = 1 need no iteration")
    func trivialMatrices() {
        let zero = eigen(Tridiagonal(d: [0, 0, 0], e: [0, 0]))
        #expect(zero.ok && zero.values == [0, 0, 0])
        #expect(zero.vectors == [1, 0, 0, 0, 1, 0, 0, 0, 1])
        let one = eigen(Tridiagonal(d: [-7.5], e: []))
        #expect(one.ok && one.values == [-7.5] && one.vectors == [1])
    }

    @Test("extreme scaling (1e300, 1e-300) neither overflows nor loses relative accuracy",
          arguments: [1e300, 1e-300, 0x1p1000, 0x1p-1030])
    func extremeScales(scale: Double) {
        var rng = SplitMix64(seed: 0x5CA1E)
        let base = Tridiagonal.randomIndefinite(30, &rng)
        let scaled = Tridiagonal(d: base.d.map { $0 * scale }, e: base.e.map { $0 * scale })
        let reference = eigen(base).values
        let result = eigen(scaled)
        #expect(result.ok)
        #expect(result.values.allSatisfy { $0.isFinite })
        let largest = reference.map(\.magnitude).max()!
        // Subnormal scales lose bits in the input itself, so compare relative to that.
        let tolerance = scale < Double.leastNormalMagnitude * 1e10 ? 1e-3 : 300 * eps
        for (v, r) in zip(result.values, reference) {
            #expect((v / scale - r).magnitude <= tolerance * largest, "scale=\(scale)")
        }
    }

    @Test("graded entries (1 ... 1e-30) keep small eigenvalues to high relative accuracy")
    func gradedMatrix() {
        let n = 12
        let t = Tridiagonal(d: (0..<n).map { pow(1e-3, Double($0)) * 2 }, e: (0..<(n - 1)).map { pow(1e-3, Double($0) + 0.5) })
        let result = eigen(t)
        #expect(result.ok)
        // Sturm counts at +-1e-6 relative around each eigenvalue bracket it exactly.
        for (i, lambda) in result.values.enumerated() {
            #expect(sturmCount(t, below: lambda - 1e-6 * lambda.magnitude) <= i)
            #expect(sturmCount(t, below: lambda + 1e-6 * lambda.magnitude) >= i + 1)
        }
    }

    @Test("non-finite input returns false")
    func nonFiniteFails() {
        #expect(!eigen(Tridiagonal(d: [1, .nan], e: [0])).ok)
        #expect(!eigen(Tridiagonal(d: [1, 1], e: [.infinity])).ok)
    }
}

// MARK: - Least squares

@Suite("Tridiagonal least squares")
struct TridiagonalLeastSquaresTests {
    @Test("a singular consistent path Laplacian gives the minimum-norm solution",
          arguments: [2, 3, 10, 40, 80])
    func minimumNormOnSingularLaplacian(n: Int) {
        var rng = SplitMix64(seed: 0x1EA5 + UInt64(n))
        // Random path-graph Laplacian: weights w_i on edges; null space = ones.
        let w = (0..<(n - 1)).map { _ in rng.uniform(0.5, 1.5) }
        let t = Tridiagonal(d: (0..<n).map { i in (i > 0 ? w[i - 1] : 0) + (i < n - 1 ? w[i] : 0) },
                            e: w.map { -$0 })
        var b = (0..<n).map { _ in rng.uniform(-1, 1) }
        let mean = b.reduce(0, +) / Double(n)
        b = b.map { $0 - mean }  // consistent: orthogonal to the null space
        // Reference: ground node 0, solve the nonsingular rest, then remove the null component.
        let sub = Array(t.dense[1...].map { Array($0[1...]) })
        var reference = [0.0] + denseSolve(sub, Array(b[1...]))
        let shift = reference.reduce(0, +) / Double(n)
        reference = reference.map { $0 - shift }

        var x = b
        #expect(leastSquares(t, &x) == 1)
        #expect(distance(x, reference) <= 1e-9 * norm(reference), "n=\(n)")
        #expect(abs(x.reduce(0, +)) <= 1e-10 * norm(reference))
    }

    @Test("decoupled zero rows are left at zero, not divided by")
    func minimumNormOnDecoupledZero() {
        var x = [1.0, 0.0, 2.0]
        #expect(leastSquares(Tridiagonal(d: [1, 0, 1], e: [0, 0]), &x) == 1)
        #expect(distance(x, [1, 0, 2]) <= 4 * eps)
        var zero = [1.0, 2.0]
        #expect(leastSquares(Tridiagonal(d: [0, 0], e: [0]), &zero) == 2)
        #expect(zero == [0, 0])
        var single = [3.0]
        #expect(leastSquares(Tridiagonal(d: [0], e: []), &single) == 1)
        #expect(single == [0])
    }

    @Test("an inconsistent singular system gives the pseudo-inverse solution")
    func pseudoInverseOnInconsistent() {
        let t = Tridiagonal.pathLaplacian(6)
        let b = [1.0, 0, 0, 0, 0, 0]  // not orthogonal to ones
        let (values, vectors) = jacobiEigen(t.dense)
        var reference = [Double](repeating: 0, count: 6)
        for (lambda, v) in zip(values, vectors) where lambda.magnitude > 1e-10 {
            let c = zip(v, b).reduce(0) { $0 + $1.0 * $1.1 } / lambda
            for k in 0..<6 { reference[k] += c * v[k] }
        }
        var x = b
        #expect(leastSquares(t, &x) == 1)
        #expect(distance(x, reference) <= 1e-12 * norm(reference))
    }

    @Test("on a nonsingular system least squares equals the solve", arguments: [1, 2, 5, 30, 80])
    func equalsSolveWhenNonsingular(n: Int) {
        var rng = SplitMix64(seed: 0xA11 + UInt64(n))
        for t in [Tridiagonal.randomSPD(n, &rng), .randomIndefinite(n, &rng)] {
            let b = (0..<n).map { _ in rng.uniform(-1, 1) }
            var viaSolve = b, viaLeastSquares = b
            guard case .solved = solve(t, &viaSolve) else { Issue.record("singular"); continue }
            let condition = conditionNumber(t)
            #expect(leastSquares(t, &viaLeastSquares) == 0)
            #expect(distance(viaSolve, viaLeastSquares) <= 50 * Double(n) * eps * condition * norm(viaSolve),
                    "n=\(n) cond=\(condition)")
        }
    }

    @Test("a larger relative cutoff drops more eigenvalues; zero keeps all nonzero ones")
    func cutoffControlsTruncation() {
        let t = Tridiagonal(d: [1, 1e-4, 1e-8], e: [0, 0])
        var x = [1.0, 1.0, 1.0]
        #expect(leastSquares(t, &x, relativeCutoff: 1e-6) == 1)
        #expect(distance(x, [1, 1e4, 0]) <= 1e-12 * 1e4)
        var y = [1.0, 1.0, 1.0]
        #expect(leastSquares(t, &y, relativeCutoff: 0) == 0)
        var z = [1.0, 1.0, 1.0]
        #expect(leastSquares(t, &z, relativeCutoff: 1) == 3)
        #expect(z == [0, 0, 0])
    }

    @Test("failure (non-finite input) returns -1 and leaves rhs unchanged")
    func failureLeavesRhs() {
        var x = [1.0, 2.0]
        #expect(leastSquares(Tridiagonal(d: [.nan, 1], e: [0]), &x) == -1)
        #expect(x == [1, 2])
    }
}
