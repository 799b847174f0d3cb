import Foundation
import Testing
@testable import LancbioCore

private struct SlicedProductFailure: Error {}

/// One process's results, written by its thread only.
private final class RankResults: @unchecked Sendable {
    var estimates: [Double] = []
    var infos: [StepInfo] = []
    var errors: [String] = []
}

private struct Results: @unchecked Sendable {
    let ranks: [RankResults]
    init(_ p: Int) { ranks = (0..<p).map { _ in RankResults() } }
    var estimates: [[Double]] { ranks.map(\.estimates) }
    var infos: [[StepInfo]] { ranks.map(\.infos) }
    var errors: [[String]] { ranks.map(\.errors) }
}

@Suite("Vectors sliced across processes", .serialized)
struct SlicedVectorTests {
    let n = 40
    let sizes = [7, 20, 13]
    let a = DenseMatrix.spd(n: 40, condition: 50, seed: 31)

    static let methods: [EstimatorMethod] = [
        .dynamicLanczos(LanczosOptions(initialPeriod: 4, maxPeriod: 8)),
        .dynamicLanczos(LanczosOptions(initialPeriod: 3, maxPeriod: 6, variant: .plain, exactResidual: true)),
        .dynamicLanczos(LanczosOptions(initialPeriod: 3, maxPeriod: 6, reorthogonalize: true)),
        .conjugateGradient(maxIterations: 6, tolerance: 1e-10),
        .gradientDescent(stepSize: 0.02, steps: 3),
        .neumann(stepSize: 0.02, terms: 4),
        .randomNeumann(stepSize: 0.02, maxTerms: 4, seed: 9),
    ]

    /// b of step k: a drifting right-hand side, the same for every process count.
    func rhs(_ k: Int, scale: Double = 1) -> [Double] {
        var rng = TestRandom(seed: 77)
        return rng.vector(n).enumerated().map { scale * ($0.element * (1 + 0.05 * Double(k)) + 0.01 * Double($0.offset % 3)) }
    }

    /// Steps on one estimator over the whole vector: the reference.
    func reference(_ method: EstimatorMethod, steps: Int, scale: Double = 1) throws -> [([Double], StepInfo)] {
        let e = try Estimator<Double>(n: n, method: method)
        var out: [([Double], StepInfo)] = []
        for k in 0..<steps {
            let b = rhs(k, scale: scale)
            var v = [Double](repeating: 0, count: n)
            let info = try b.withUnsafeBufferPointer { bp in
                try v.withUnsafeMutableBufferPointer { vp in
                    try e.step(rhs: bp, into: vp) { x, y in
                        for i in 0..<n { y[i] = (0..<n).reduce(0.0) { $0 + a[i, $1] * x[$1] } }
                    }
                }
            }
            out.append((v, info))
        }
        return out
    }

    /// Runs `steps` steps on the simulated processes; `failAt` makes process 1's product
    /// throw in that step.
    private func sliced(_ method: EstimatorMethod, steps: Int, failAt: Int? = nil, failingProduct: Int = 1,
                        scale: Double = 1, nanInRhsAt: Int? = nil) -> (Results, SimulatedProcesses) {
        let world = SimulatedProcesses(sizes: sizes, matrix: a)
        let results = Results(sizes.count)
        let full = (0..<steps).map { rhs($0, scale: scale) }
        world.run { rank in
            let m = world.sizes[rank], o = world.offsets[rank]
            do {
                let e = try Estimator<Double>(n: m, method: method)
                try e.setReduction { world.reduce(rank, $0) }
                for k in 0..<steps {
                    var b = Array(full[k][o..<(o + m)])
                    if k == nanInRhsAt && rank == 2 { b[m / 2] = .nan }
                    var v = [Double](repeating: 0, count: m)
                    var products = 0
                    do {
                        let info = try b.withUnsafeBufferPointer { bp in
                            try v.withUnsafeMutableBufferPointer { vp in
                                try e.step(rhs: bp, into: vp) { x, y in
                                    products += 1
                                    // The operator's own exchange runs on every process (a
                                    // failure that skipped it would leave the others
                                    // waiting there, whatever the library does).
                                    world.product(rank, x, y)
                                    if k == failAt && rank == 1 && products == failingProduct { throw SlicedProductFailure() }
                                }
                            }
                        }
                        results.ranks[rank].infos.append(info)
                        results.ranks[rank].estimates.append(contentsOf: v)
                    } catch {
                        results.ranks[rank].errors.append("\(k): \(error)")
                        // The estimate and the last info are those of the step before.
                        var kept = [Double](repeating: 0, count: m)
                        try kept.withUnsafeMutableBufferPointer { try e.copyEstimate(into: $0) }
                        let before = results.ranks[rank].estimates.suffix(m)
                        if Array(before) != kept || results.ranks[rank].infos.last != e.lastInfo {
                            results.ranks[rank].errors.append("state changed")
                        }
                        // Another product on the next try of the same step: the one that failed
                        // is not retried, so the processes stay in step with each other.
                    }
                }
            } catch {
                results.ranks[rank].errors.append("setup: \(error)")
            }
        }
        return (results, world)
    }

    @Test("every method on 3 uneven slices agrees with one estimator on the whole vector to 1e-12, and the processes' infos bitwise",
          arguments: methods)
    func agreesWithOneProcess(method: EstimatorMethod) throws {
        let steps = 9
        let expected = try reference(method, steps: steps)
        let (results, world) = sliced(method, steps: steps)
        #expect(results.errors.allSatisfy { $0.isEmpty }, "\(results.errors)")
        for k in 0..<steps {
            var joined: [Double] = []
            for rank in 0..<sizes.count {
                joined += results.estimates[rank][(k * sizes[rank])..<((k + 1) * sizes[rank])]
            }
            let (v, info) = expected[k]
            #expect(relativeError(joined, v) < 1e-12, "step \(k)")
            #expect(info.outcome == results.infos[0][k].outcome, "step \(k)")
            #expect(info.products == results.infos[0][k].products, "step \(k)")
            #expect(abs(info.residual - results.infos[0][k].residual) <= 1e-9 * max(info.residual, 1e-12), "step \(k)")
            for rank in 1..<sizes.count { #expect(results.infos[rank][k] == results.infos[0][k], "step \(k) rank \(rank)") }
        }
        // The step infos count every hook call but the one of setReduction.
        for rank in 0..<sizes.count {
            #expect(results.infos[rank].reduce(0) { $0 + $1.reductions } + 1 == world.calls[rank])
        }
    }

    @Test("reductions per step: 2 per Lanczos step with b's check riding on the first (3 at a restart: the anchor's, or at a plain restart b's own), 1 + 1 + 2 per CG iteration, 1 + 1 per gradient step")
    func reductionCounts() throws {
        let lanczos = sliced(.dynamicLanczos(LanczosOptions(initialPeriod: 4, maxPeriod: 4)), steps: 5).0.infos[0]
        #expect(lanczos.map(\.reductions) == [3, 2, 2, 2, 3])
        #expect(lanczos.map(\.restarted) == [true, false, false, false, true])
        // A plain restart needs ||b|| before its first product (q_1 = b / ||b||): b's own call.
        let plain = sliced(.dynamicLanczos(LanczosOptions(initialPeriod: 3, maxPeriod: 3, variant: .plain)), steps: 4)
        #expect(plain.0.infos[0].map(\.reductions) == [3, 2, 2, 3])
        let cg = sliced(.conjugateGradient(maxIterations: 5, tolerance: 0), steps: 2).0.infos[0]
        #expect(cg.map(\.reductions) == cg.map { 2 + 2 * $0.iterations })
        let gd = sliced(.gradientDescent(stepSize: 0.02, steps: 3), steps: 2).0.infos[0]
        #expect(gd.map(\.reductions) == [4, 4])
        let neumann = sliced(.neumann(stepSize: 0.02, terms: 3), steps: 1).0.infos[0]
        #expect(neumann.map(\.reductions) == [5])
    }

    @Test("a product failing on one process fails the step on every process, each estimator unchanged; the next step agrees",
          arguments: [methods[0], methods[3], methods[4]])
    func failureReachesEveryProcess(method: EstimatorMethod) throws {
        // A later product of the step where there is one (CG, GD), so that the failing
        // process has taken part in reductions of the step before it fails.
        let (results, _) = sliced(method, steps: 4, failAt: 2, failingProduct: method == Self.methods[0] ? 1 : 2)
        for rank in 0..<sizes.count {
            #expect(results.errors[rank].count == 1, "\(results.errors[rank])")
            guard results.infos[rank].count == 3 else { return }
            let expected = rank == 1 ? "SlicedProductFailure" : "collectiveFailure"
            #expect(results.errors[rank].first?.contains(expected) == true, "\(results.errors[rank])")
            #expect(results.infos[rank].count == 3)
        }
        for k in 0..<3 where results.infos.allSatisfy({ $0.count == 3 }) {
            for rank in 1..<sizes.count { #expect(results.infos[rank][k] == results.infos[0][k]) }
        }
    }

    @Test("NaN in b on one process fails that step on every process with nonFiniteInput, each estimator unchanged, whether b's check rides on the step's first reduction or has its own",
          arguments: [(methods[0], 2), (methods[0], 4), (methods[1], 3), (methods[3], 1)])
    func nonFiniteRhsOnOneProcess(method: EstimatorMethod, step: Int) throws {
        let steps = 6
        let (results, _) = sliced(method, steps: steps, nanInRhsAt: step)
        let expected = try reference(method, steps: steps)
        for rank in 0..<sizes.count {
            #expect(results.errors[rank].count == 1, "\(results.errors[rank])")
            #expect(results.errors[rank].first?.hasPrefix("\(step): ") == true, "\(results.errors[rank])")
            #expect(results.errors[rank].first?.contains("nonFiniteInput") == true, "\(results.errors[rank])")
            #expect(results.infos[rank].count == steps - 1)
        }
        // The steps before agree with one process; those after go on from the same state.
        for k in 0..<step where results.infos.allSatisfy({ $0.count == steps - 1 }) {
            var joined: [Double] = []
            for rank in 0..<sizes.count { joined += results.estimates[rank][(k * sizes[rank])..<((k + 1) * sizes[rank])] }
            #expect(relativeError(joined, expected[k].0) < 1e-12, "step \(k)")
        }
        for k in 0..<(steps - 1) where results.infos.allSatisfy({ $0.count == steps - 1 }) {
            for rank in 1..<sizes.count { #expect(results.infos[rank][k] == results.infos[0][k]) }
        }
    }

    @Test("norms stay overflow-safe across processes: b at 1e+200 and 1e-200 (squares out of range) agrees with one process, the rescaling adding 2 reductions per norm",
          arguments: [1e200, 1e-200])
    func normsStayOverflowSafe(scale: Double) throws {
        for method in [Self.methods[0], Self.methods[3], Self.methods[4]] {
            let steps = 4
            let whole = try reference(method, steps: steps, scale: scale)
            let (results, _) = sliced(method, steps: steps, scale: scale)
            let plain = sliced(method, steps: steps).0
            #expect(results.errors.allSatisfy { $0.isEmpty }, "\(results.errors)")
            guard results.infos.allSatisfy({ $0.count == steps }) else { return }
            for k in 0..<steps {
                var joined: [Double] = []
                for rank in 0..<sizes.count {
                    joined += results.estimates[rank][(k * sizes[rank])..<((k + 1) * sizes[rank])]
                }
                // Compared at unit scale: the reference's own squares would overflow or underflow.
                let error = relativeError(joined.map { $0 / scale }, whole[k].0.map { $0 / scale })
                #expect(error < 1e-12, "\(method) step \(k)")
                let finite = joined.allSatisfy { $0.isFinite }
                #expect(finite)
                for rank in 1..<sizes.count { #expect(results.infos[rank][k] == results.infos[0][k]) }
                // At least ||b||'s sum of squares left the safe range: 2 more calls each time.
                let extra = results.infos[0][k].reductions - plain.infos[0][k].reductions
                #expect(extra >= 2 && extra % 2 == 0, "\(method) step \(k): \(extra) more reductions")
            }
        }
    }

    @Test("SubBiO and MINRES refuse a reduction hook with invalidArgument")
    func unsupportedMethodsRefuse() throws {
        for method in [EstimatorMethod.subbio(theta0: 0.1), .minres(maxIterations: 3, tolerance: 0)] {
            let e = try Estimator<Double>(n: 4, method: method)
            #expect(throws: EstimatorError.self) { try e.setReduction { _ in true } }
            #expect(!e.hasReduction)
        }
    }
}

/// The quadratic bilevel problem of the sliced tests: g(x, y) = y^T A y / 2 - y^T (B x + c),
/// f(x, y) = ||y - d||^2 / 2 + mu ||x||^2 / 2, with y (dy = 40) sliced and x (dx = 4)
/// replicated. Each process computes the rows of its slice; grad_x f's replicated term is
/// contributed by process 0, J v = -B^T v by every process for its rows.
private struct SlicedQuadratic: @unchecked Sendable {
    let dx = 4
    let a: DenseMatrix
    let b: [Double]  // dy x dx, row-major
    let c: [Double], d: [Double]
    let mu = 0.5

    init(a: DenseMatrix) {
        self.a = a
        var rng = TestRandom(seed: 5)
        b = rng.vector(a.n * 4)
        c = rng.vector(a.n)
        d = rng.vector(a.n)
    }

    /// The derivatives of process `rank` (rows offset..<offset + count); `world` exchanges
    /// the slices for A y, as the operator's own communication; nil for one process.
    func problem(rank: Int, offset: Int, count: Int, world: SimulatedProcesses?,
                 failing: @escaping () -> Bool = { false }) -> BilevelProblem<Double> {
        let a = self.a, b = self.b, c = self.c, d = self.d, mu = self.mu, dx = self.dx
        func times(_ v: UnsafeBufferPointer<Double>, _ out: UnsafeMutableBufferPointer<Double>) {
            if let world {
                world.product(rank, v, out)
            } else {
                for i in 0..<count { out[i] = (0..<a.n).reduce(0.0) { $0 + a[i, $1] * v[$1] } }
            }
        }
        return BilevelProblem<Double>(
            gradYG: { x, y, out in
                times(y, out)
                for i in 0..<count {
                    let row = offset + i
                    out[i] -= (0..<dx).reduce(c[row]) { $0 + b[row * dx + $1] * x[$1] }
                }
                if failing() { throw SlicedProductFailure() }
            },
            gradXF: { x, _, out in for j in 0..<dx { out[j] = rank == 0 ? mu * x[j] : 0 } },
            gradYF: { _, y, out in for i in 0..<count { out[i] = y[i] - d[offset + i] } },
            hvpYY: { _, _, v, out in times(v, out) },
            jvpXY: { _, _, v, out in
                for j in 0..<dx { out[j] = -(0..<count).reduce(0.0) { $0 + b[(offset + $1) * dx + j] * v[$1] } }
            })
    }
}

extension SlicedVectorTests {
    @Test("the bilevel loop with y on 3 uneven slices and x replicated agrees with one process to 1e-12, the processes' x and infos bitwise; a derivative failing on one process fails that iteration on every process, each optimizer unchanged",
          arguments: [false, true])
    func slicedBilevel(failing: Bool) throws {
        let quadratic = SlicedQuadratic(a: a)
        let options = BilevelOptions(lrX: 0.2, lrY: 0.05, innerSteps: 3)
        let method = EstimatorMethod.dynamicLanczos(LanczosOptions(initialPeriod: 3, maxPeriod: 6))
        let iterations = 8, failAt = 4
        // One process on the whole problem.
        let whole = try BilevelOptimizer<Double>(dx: quadratic.dx, dy: n, options: options, method: method)
        var x = [Double](repeating: 0.1, count: quadratic.dx), y = [Double](repeating: 0, count: n)
        var expected: [[Double]] = []
        let single = quadratic.problem(rank: 0, offset: 0, count: n, world: nil)
        for _ in 0..<iterations {
            _ = try x.withUnsafeMutableBufferPointer { xp in
                try y.withUnsafeMutableBufferPointer { yp in try whole.step(x: xp, y: yp, problem: single) }
            }
            expected.append(x + y)
        }
        let world = SimulatedProcesses(sizes: sizes, matrix: a)
        let results = Results(sizes.count)
        world.run { rank in
            let m = world.sizes[rank], o = world.offsets[rank]
            do {
                let opt = try BilevelOptimizer<Double>(dx: quadratic.dx, dy: m, options: options, method: method)
                try opt.setReduction { world.reduce(rank, $0) }
                var x = [Double](repeating: 0.1, count: quadratic.dx), y = [Double](repeating: 0, count: m)
                var k = 0, attempt = 0
                let problem = quadratic.problem(rank: rank, offset: o, count: m, world: world) {
                    failing && rank == 1 && k == failAt && attempt == 0
                }
                while k < iterations {
                    do {
                        let info = try x.withUnsafeMutableBufferPointer { xp in
                            try y.withUnsafeMutableBufferPointer { yp in try opt.step(x: xp, y: yp, problem: problem) }
                        }
                        results.ranks[rank].infos.append(info.estimator)
                        results.ranks[rank].estimates.append(contentsOf: x + y)
                        results.ranks[rank].estimates.append(info.hypergradientNorm)
                        k += 1
                        attempt = 0
                    } catch {
                        results.ranks[rank].errors.append("\(k): \(error)")
                        let before = results.ranks[rank].estimates.suffix(quadratic.dx + m + 1).dropLast()
                        if k > 0 && Array(before) != x + y { results.ranks[rank].errors.append("state changed") }
                        attempt += 1
                    }
                }
            } catch {
                results.ranks[rank].errors.append("setup: \(error)")
            }
        }
        for rank in 0..<sizes.count {
            if failing {
                #expect(results.errors[rank].count == 1, "\(results.errors[rank])")
                let expected = rank == 1 ? "SlicedProductFailure" : "collectiveFailure"
                #expect(results.errors[rank].first?.contains(expected) == true, "\(results.errors[rank])")
            } else {
                #expect(results.errors[rank].isEmpty, "\(results.errors[rank])")
            }
        }
        let stride = { (rank: Int) in quadratic.dx + self.sizes[rank] + 1 }
        guard (0..<sizes.count).allSatisfy({ results.estimates[$0].count == iterations * stride($0) }) else { return }
        for k in 0..<iterations {
            var joined: [Double] = []
            for rank in 0..<sizes.count {
                let row = Array(results.estimates[rank][(k * stride(rank))..<((k + 1) * stride(rank))])
                if rank == 0 { joined += row.prefix(quadratic.dx) }
                joined += row[quadratic.dx..<(quadratic.dx + sizes[rank])]
                // x and the hyper-gradient norm are the same bits everywhere.
                let first = Array(results.estimates[0][(k * stride(0))..<(k * stride(0) + quadratic.dx)])
                #expect(Array(row.prefix(quadratic.dx)) == first, "iteration \(k) rank \(rank)")
                #expect(row.last == results.estimates[0][(k + 1) * stride(0) - 1], "iteration \(k) rank \(rank)")
            }
            #expect(relativeError(joined, expected[k]) < 1e-12, "iteration \(k)")
            for rank in 1..<sizes.count { #expect(results.infos[rank][k] == results.infos[0][k]) }
        }
    }

    @Test("a bilevel optimizer refuses a reduction with lr_y auto or SubBiO, and then has none")
    func slicedBilevelRefusals() throws {
        let auto = try BilevelOptimizer<Double>(dx: 2, dy: 4, options: BilevelOptions(lrX: 0.1, lrY: 0, innerSteps: 1, lrYAuto: true),
                                                method: .dynamicLanczos(LanczosOptions()))
        #expect(throws: EstimatorError.self) { try auto.setReduction { _ in true } }
        #expect(!auto.hasReduction && !auto.estimator.hasReduction)
        let subbio = try BilevelOptimizer<Double>(dx: 2, dy: 4, options: BilevelOptions(lrX: 0.1, lrY: 0.1, innerSteps: 1),
                                                  method: .subbio(theta0: 0.1))
        #expect(throws: EstimatorError.self) { try subbio.setReduction { _ in true } }
        #expect(!subbio.hasReduction)
    }
}
