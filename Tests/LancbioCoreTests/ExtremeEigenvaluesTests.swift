import Foundation
import Testing
@testable import LancbioCore

@Suite("Extreme eigenvalues")
struct ExtremeEigenvaluesTests {
    /// The full eigenvalue routine (implicit QL) is the reference.
    func reference(_ d: [Double], _ e: [Double]) -> (Double, Double) {
        var values = [Double](repeating: 0, count: d.count)
        var work = [Double](repeating: 0, count: 2 * d.count)
        _ = d.withUnsafeBufferPointer { dp in e.withUnsafeBufferPointer { ep in
            values.withUnsafeMutableBufferPointer { vp in work.withUnsafeMutableBufferPointer { wp in
                SymmetricTridiagonal(diagonal: dp, offDiagonal: ep)!.eigendecompose(eigenvalues: vp, eigenvectors: nil, workspace: wp)
            } }
        } }
        return (values.first!, values.last!)
    }

    func extremes(_ d: [Double], _ e: [Double], bounds: (min: Double, max: Double)? = nil) -> (min: Double, max: Double) {
        var work = [Double](repeating: 0, count: 2 * d.count)
        return d.withUnsafeBufferPointer { dp in e.withUnsafeBufferPointer { ep in
            work.withUnsafeMutableBufferPointer { SymmetricTridiagonal(diagonal: dp, offDiagonal: ep)!.extremeEigenvalues(workspace: $0, bounds: bounds)! }
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

/// The extremes against the dense eigenvalue solver on the matrices a Lanczos cycle and its
/// callers produce, with the accuracy the contract promises: 1e-10 of the largest
/// Gershgorin bound in magnitude.
@Suite("Extreme eigenvalues against the dense solver")
struct ExtremeEigenvaluesReferenceTests {
    let base = ExtremeEigenvaluesTests()

    /// The spectrum's scale in the contract's sense.
    func gershgorinScale(_ d: [Double], _ e: [Double]) -> Double {
        var scale = 0.0
        for i in d.indices {
            let left = i > 0 ? abs(e[i - 1]) : 0, right = i < d.count - 1 ? abs(e[i]) : 0
            scale = max(scale, abs(d[i] - left - right), abs(d[i] + left + right))
        }
        return scale
    }

    func expectAccurate(_ d: [Double], _ e: [Double], bounds: (min: Double, max: Double)? = nil,
                        _ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let (lo, hi) = base.reference(d, e)
        let got = base.extremes(d, e, bounds: bounds)
        let tolerance = 1e-10 * gershgorinScale(d, e)
        #expect(abs(got.min - lo) <= tolerance && abs(got.max - hi) <= tolerance,
                "\(label): got (\(got.min), \(got.max)), want (\(lo), \(hi)), tolerance \(tolerance)",
                sourceLocation: sourceLocation)
    }

    /// Lanczos on diag(spectrum) from a seeded start: the T_j a Lanczos cycle builds.
    /// Without reorthogonalisation, long runs on few distinct eigenvalues grow the "ghost"
    /// copies of converged extremes that real runs produce; with it (twice, against every
    /// earlier vector), T has the given spectrum to rounding.
    func lanczos(_ spectrum: [Double], steps: Int, reorthogonalize: Bool, seed: UInt64) -> (d: [Double], e: [Double]) {
        var rng = TestRandom(seed: seed)
        let n = spectrum.count
        var v = rng.vector(n)
        let norm0 = vnorm(v)
        v = v.map { $0 / norm0 }
        var basis = [v], previous = [Double](repeating: 0, count: n)
        var d = [Double](), e = [Double](), beta = 0.0
        for _ in 0..<steps {
            var w = (0..<n).map { spectrum[$0] * v[$0] - beta * previous[$0] }
            let alpha = vdot(w, v)
            for i in 0..<n { w[i] -= alpha * v[i] }
            if reorthogonalize {
                for _ in 0..<2 { for u in basis { let c = vdot(u, w); for i in 0..<n { w[i] -= c * u[i] } } }
            }
            d.append(alpha)
            beta = vnorm(w)
            if d.count == steps || beta == 0 { break }
            e.append(beta)
            previous = v
            v = w.map { $0 / beta }
            if reorthogonalize { basis.append(v) }
        }
        return (d, e)
    }

    @Test("random T of every size 1...200 agree, cold and warm-started from the leading block")
    func randomEverySize() {
        var rng = TestRandom(seed: 4242)
        for n in 1...200 {
            for trial in 0..<3 {
                let d = (0..<n).map { _ in rng.uniform(-1, 4) }
                let e = (0..<max(n - 1, 0)).map { _ in trial == 2 ? rng.gaussian() * 1e-3 : rng.uniform(-1, 1) }
                expectAccurate(d, e, "cold n \(n) trial \(trial)")
                if n > 1 {
                    let sub = base.reference(Array(d.dropLast()), Array(e.dropLast()))
                    expectAccurate(d, e, bounds: (sub.0, sub.1), "warm n \(n) trial \(trial)")
                }
            }
        }
    }

    @Test("Lanczos T_j warm-started from the previous step's result agree at every step, ghosts included",
          arguments: ["uniform", "geometric", "clustered ends", "few distinct (ghosts)"])
    func lanczosSteps(spectrum kind: String) {
        let spectrum: [Double]
        var steps = 120
        switch kind {
        case "uniform": spectrum = (0..<400).map { 1 + 99 * Double($0) / 399 }
        case "geometric": spectrum = (0..<400).map { pow(10, -3 + 6 * Double($0) / 399) }
        case "clustered ends":
            // Three eigenvalues within 2e-12 at each end.
            let low: [Double] = [1, 1 + 1e-12, 1 + 2e-12], high: [Double] = [50 - 2e-12, 50 - 1e-12, 50]
            spectrum = low + (3..<397).map { (i: Int) -> Double in 2 + 47 * Double(i) / 399 } + high
        default:
            // 200 steps on 12 eigenvalues: T_j gains copies of the converged extremes.
            spectrum = (0..<12).map { Double($0 * $0) + 1 }
            steps = 200
        }
        let (d, e) = lanczos(spectrum, steps: steps, reorthogonalize: false, seed: 17)
        var hint: (min: Double, max: Double)?
        for j in 1...d.count {
            let dj = Array(d[0..<j]), ej = Array(e[0..<(j - 1)])
            expectAccurate(dj, ej, bounds: hint, "\(kind) j \(j)")
            hint = base.extremes(dj, ej, bounds: hint)
        }
    }

    @Test("Wilkinson's W21+, whose two largest eigenvalues agree to about 1e-14, agrees cold and warm")
    func wilkinson() {
        let d = (0..<21).map { Double(abs(10 - $0)) }, e = [Double](repeating: 1, count: 20)
        expectAccurate(d, e, "W21+")
        let sub = base.reference(Array(d.dropLast()), Array(e.dropLast()))
        expectAccurate(d, e, bounds: (sub.0, sub.1), "W21+ warm")
        expectAccurate(d.map { -$0 }, e, "-W21+")
    }

    @Test("pairs, triples and quintuples of eigenvalues down to 1e-14 apart at both extremes agree",
          arguments: [1e-14, 1e-12, 1e-10, 1e-8, 1e-6, 1e-3])
    func clustersAtExtremes(gap: Double) {
        var rng = TestRandom(seed: 77)
        for multiplicity in [2, 3, 5] {
            var spectrum = (0..<multiplicity).map { 0.5 + gap * Double($0) }
            spectrum += (0..<30).map { _ in rng.uniform(1, 2) }
            spectrum += (0..<multiplicity).map { 3 - gap * Double($0) }
            let (d, e) = lanczos(spectrum, steps: spectrum.count, reorthogonalize: true, seed: UInt64(multiplicity))
            expectAccurate(d, e, "\(multiplicity)-fold gap \(gap) cold")
            let sub = base.reference(Array(d.dropLast()), Array(e.dropLast()))
            expectAccurate(d, e, bounds: (sub.0, sub.1), "\(multiplicity)-fold gap \(gap) warm")
            // Negated: the clusters trade ends.
            expectAccurate(d.map { -$0 }, e, "\(multiplicity)-fold gap \(gap) negated")
        }
    }

    @Test("graded, huge (1e+300), tiny (1e-300) and subnormal entries neither overflow nor underflow",
          // The last is 1e-310, spelled as the product that gives its Double exactly: a
          // subnormal literal warns.
          arguments: [1e300, 1e150, 1e-150, 1e-300, 20_240_225_330_731 * Double.leastNonzeroMagnitude])
    func extremeScales(scale: Double) {
        var rng = TestRandom(seed: 9)
        for n in [2, 3, 10, 50] {
            let d = (0..<n).map { _ in rng.uniform(-1, 4) * scale }
            let e = (0..<(n - 1)).map { _ in rng.uniform(-1, 1) * scale }
            expectAccurate(d, e, "scale \(scale) n \(n)")
            let sub = base.reference(Array(d.dropLast()), Array(e.dropLast()))
            expectAccurate(d, e, bounds: (sub.0, sub.1), "scale \(scale) n \(n) warm")
            // Graded: entries fall by 1e-3 per row, so most of the spectrum sits far below
            // the scale the contract measures accuracy in.
            let gd = (0..<n).map { i in rng.uniform(1, 2) * scale * pow(1e-3, Double(i)) }
            let ge = (0..<(n - 1)).map { i in rng.uniform(-1, 1) * scale * pow(1e-3, Double(i) + 0.5) }
            expectAccurate(gd, ge, "graded scale \(scale) n \(n)")
            expectAccurate(gd.reversed(), ge.reversed(), "graded upward scale \(scale) n \(n)")
        }
    }

    @Test("wrong warm-start hints cost passes, never accuracy")
    func wrongHints() {
        var rng = TestRandom(seed: 31)
        for n in [2, 5, 40, 150] {
            let d = (0..<n).map { _ in rng.uniform(-1, 4) }
            let e = (0..<(n - 1)).map { _ in rng.uniform(-1, 1) }
            let (lo, hi) = base.reference(d, e)
            let middle = (lo + hi) / 2, width = hi - lo
            let hints: [(String, (min: Double, max: Double))] = [
                ("swapped", (hi, lo)),
                ("both in the middle", (middle, middle)),
                ("beyond the extremes", (lo - width, hi + width)),
                ("outside Gershgorin", (-1e6, 1e6)),
                ("far inside out", (1e6, -1e6)),
                ("at the extremes exactly", (lo, hi)),
                ("just past the extremes", (lo - 1e-12 * width, hi + 1e-12 * width)),
                ("not finite", (.nan, .infinity)),
            ]
            for (label, hint) in hints { expectAccurate(d, e, bounds: hint, "\(label) n \(n)") }
        }
    }

    @Test("zero off-diagonals give the extreme diagonal entries, with and without hints at them")
    func zeroOffDiagonals() {
        var rng = TestRandom(seed: 5)
        for n in [2, 3, 17, 64] {
            let d = (0..<n).map { _ in rng.uniform(-3, 3) }
            let zeros = [Double](repeating: 0, count: n - 1)
            let sorted = d.sorted()
            for bounds in [nil, (sorted[0], sorted[n - 1]), (d[0], d[0]), (sorted[1], sorted[n - 2])]
                as [(min: Double, max: Double)?] {
                let got = base.extremes(d, zeros, bounds: bounds)
                let tolerance = 1e-10 * gershgorinScale(d, zeros)
                #expect(abs(got.min - sorted[0]) <= tolerance && abs(got.max - sorted[n - 1]) <= tolerance,
                        "n \(n) bounds \(String(describing: bounds))")
            }
            // Blocks decoupled by a zero off-diagonal in the middle.
            var e = (0..<(n - 1)).map { _ in rng.uniform(-1, 1) }
            e[(n - 1) / 2] = 0
            expectAccurate(d, e, "split n \(n)")
            expectAccurate(d, e, bounds: (d[0], d[0]), "split n \(n), hint at a diagonal entry")
        }
        #expect(base.extremes([0, 0, 0], [0, 0]) == (min: 0, max: 0))
    }

    @Test("n = 1 and n = 2 are exact or nearly, and non-finite entries give nil")
    func smallAndNonFinite() {
        #expect(base.extremes([3.5], []) == (min: 3.5, max: 3.5))
        #expect(base.extremes([3.5], [], bounds: (1, 2)) == (min: 3.5, max: 3.5))
        expectAccurate([1, 2], [0.5], "2 x 2")
        expectAccurate([1, 1], [1e-9], "2 x 2, nearly equal eigenvalues")
        expectAccurate([1e300, -1e300], [1e300], "2 x 2 at 1e+300")
        var work = [Double](repeating: 0, count: 6)
        for bad in [Double.nan, .infinity, -.infinity] {
            let d = [1, bad, 2], e = [0.5, 0.5]
            let result = d.withUnsafeBufferPointer { dp in e.withUnsafeBufferPointer { ep in
                work.withUnsafeMutableBufferPointer {
                    SymmetricTridiagonal(diagonal: dp, offDiagonal: ep)!.extremeEigenvalues(workspace: $0)
                }
            } }
            #expect(result == nil)
            let offResult = [1.0, 2, 3].withUnsafeBufferPointer { dp in [0.5, bad].withUnsafeBufferPointer { ep in
                work.withUnsafeMutableBufferPointer {
                    SymmetricTridiagonal(diagonal: dp, offDiagonal: ep)!.extremeEigenvalues(workspace: $0)
                }
            } }
            #expect(offResult == nil)
        }
    }

    @Test("the same input gives the same bits, whatever the workspace held")
    func deterministic() {
        var rng = TestRandom(seed: 61)
        let (d, e) = lanczos((0..<200).map { _ in rng.uniform(0, 10) }, steps: 60, reorthogonalize: false, seed: 3)
        for bounds in [nil, base.extremes(Array(d.dropLast()), Array(e.dropLast()))] as [(min: Double, max: Double)?] {
            let first = base.extremes(d, e, bounds: bounds)
            var work = [Double](repeating: .nan, count: 4 * d.count)
            let second = d.withUnsafeBufferPointer { dp in e.withUnsafeBufferPointer { ep in
                work.withUnsafeMutableBufferPointer {
                    SymmetricTridiagonal(diagonal: dp, offDiagonal: ep)!.extremeEigenvalues(workspace: $0, bounds: bounds)!
                }
            } }
            #expect(first.min.bitPattern == second.min.bitPattern && first.max.bitPattern == second.max.bitPattern)
        }
    }

    @Test("the normalised T left in the workspace gives the inertia test the reference's answer")
    func workspaceForInertia() {
        var rng = TestRandom(seed: 8)
        for n in [2, 9, 40] {
            for shift in [-2.0, -0.5, 0.5, 3.0, 1e6] {
                let d = (0..<n).map { _ in rng.uniform(0, 2) + shift }
                let e = (0..<(n - 1)).map { _ in rng.uniform(-0.5, 0.5) }
                let (lo, _) = base.reference(d, e)
                guard abs(lo) > 1e-8 else { continue }
                var work = [Double](repeating: 0, count: 2 * n)
                let nonPositive = d.withUnsafeBufferPointer { dp in e.withUnsafeBufferPointer { ep in
                    work.withUnsafeMutableBufferPointer { wp in
                        let t = SymmetricTridiagonal(diagonal: dp, offDiagonal: ep)!
                        _ = t.extremeEigenvalues(workspace: wp)
                        return t.hasNonPositiveEigenvalue(workspace: UnsafePointer(wp.baseAddress!))
                    }
                } }
                #expect(nonPositive == (lo <= 0), "n \(n) shift \(shift)")
            }
        }
        // T = 0 returns early, yet must leave a workspace that reports the zero eigenvalue.
        var work = [Double](repeating: 1, count: 6)
        let zeroHasNonPositive = [0.0, 0, 0].withUnsafeBufferPointer { dp in [0.0, 0].withUnsafeBufferPointer { ep in
            work.withUnsafeMutableBufferPointer { wp in
                let t = SymmetricTridiagonal(diagonal: dp, offDiagonal: ep)!
                _ = t.extremeEigenvalues(workspace: wp)
                return t.hasNonPositiveEigenvalue(workspace: UnsafePointer(wp.baseAddress!))
            }
        } }
        #expect(zeroHasNonPositive)
    }

    @Test("off-diagonals far below the scale (where the leading minors underflow) agree")
    func negligibleCouplings() {
        var rng = TestRandom(seed: 12)
        for n in [3, 9, 30, 90] {
            for coupling in [1e-20, 1e-40, 1e-100] {
                // Diagonal entries equal to 1 or within rounding of it: at a shift of exactly 1
                // every two rows shrink the minors by the coupling squared.
                let d = (0..<n).map { _ in 1 + 1e-15 * Double(Int(rng.uniform(0, 3))) }
                let e = (0..<(n - 1)).map { _ in coupling * rng.uniform(0.5, 1) }
                expectAccurate(d, e, "coupling \(coupling) n \(n)")
                expectAccurate(d, e, bounds: (1, 1), "coupling \(coupling) n \(n), hints at 1")
                let sub = base.reference(Array(d.dropLast()), Array(e.dropLast()))
                expectAccurate(d, e, bounds: (sub.0, sub.1), "coupling \(coupling) n \(n) warm")
            }
        }
    }

    @Test("integer matrices with exactly repeated eigenvalues and exact hits agree")
    func exactTies() {
        var rng = TestRandom(seed: 21)
        for trial in 0..<200 {
            let n = 2 + trial % 40
            let d = (0..<n).map { _ in Double(Int(rng.uniform(0, 3))) }
            let e = (0..<(n - 1)).map { _ in Double(Int(rng.uniform(0, 2))) }
            expectAccurate(d, e, "trial \(trial)")
            let sub = base.reference(Array(d.dropLast()), Array(e.dropLast()))
            expectAccurate(d, e, bounds: (sub.0, sub.1), "trial \(trial) warm")
            expectAccurate(d, e, bounds: (d[0], d[n - 1]), "trial \(trial) hints at diagonal entries")
        }
    }
}
