import Foundation
import Testing
@testable import LancbioCore

private struct SolveProductFailure: Error {}

/// One process's solve, written by its thread only.
private final class RankSolve: @unchecked Sendable {
    var x: [Double] = []
    var report: SolveReport?
    var error: (any Error)?
    var hookCalls = 0
    /// Process 1's allocations, when the test counted them.
    var allocations: LineAlignedMemory.FailureInjection.Counts?
}

/// One-shot solves on 3 simulated processes with uneven slices (`SimulatedProcesses`),
/// against one process on the whole vector.
@Suite("One-shot solves across processes", .serialized)
struct SlicedSolveTests {
    let n = 40
    let sizes = [7, 20, 13]
    // Conditioned so that every method meets its tolerance well before n steps: past
    // that, CG's lost orthogonality amplifies rounding, and the order of summation alone
    // would move the last step.
    let a = DenseMatrix.spd(n: 40, condition: 10, seed: 31)

    static let methods: [EstimatorMethod] = [
        .dynamicLanczos(LanczosOptions()),
        .dynamicLanczos(LanczosOptions(reorthogonalize: true)),
        .conjugateGradient(maxIterations: 1, tolerance: 0),
        .gradientDescent(stepSize: 0.03, steps: 1),
        .neumann(stepSize: 0.03, terms: 1),
    ]

    func rhs(scale: Double = 1) -> [Double] {
        var rng = TestRandom(seed: 78)
        return rng.vector(n).map { scale * $0 }
    }

    func start() -> [Double] {
        var rng = TestRandom(seed: 79)
        return rng.vector(n).map { 0.1 * $0 }
    }

    /// The solve on one process over the whole vector: the reference.
    func reference(_ method: EstimatorMethod, b: [Double], x0: [Double]?, tolerance: Double,
                   budget: Int?) throws -> ([Double], SolveReport) {
        let plan = try OneShotSolve<Double>(n: n, method: method, tolerance: tolerance, maxIterations: budget)
        var x = x0 ?? [Double](repeating: 0, count: n)
        let report = try b.withUnsafeBufferPointer { bp in
            try x.withUnsafeMutableBufferPointer { xp in
                try plan.run(rhs: bp, solution: xp) { input, output in
                    for i in 0..<n { output[i] = (0..<n).reduce(0.0) { $0 + a[i, $1] * input[$1] } }
                }
            }
        }
        return (x, report)
    }

    /// The solve on the simulated processes, each on its slice; `failAt` makes process 1's
    /// product of that number throw, `edit` changes a process's b and x0 before the call;
    /// with `countingAllocations`, process 1's allocations are counted and those after the
    /// first `failingAllocationsAfter` fail (`LineAlignedMemory.FailureInjection`).
    fileprivate func sliced(_ method: EstimatorMethod, b: [Double], x0: [Double]?, tolerance: Double, budget: Int?,
                            failAt: Int? = nil, countingAllocations: Bool = false, failingAllocationsAfter: Int? = nil,
                        edit: @escaping @Sendable (Int, inout [Double], inout [Double]) -> Void = { _, _, _ in })
        -> ([RankSolve], SimulatedProcesses) {
        let world = SimulatedProcesses(sizes: sizes, matrix: a)
        let ranks = sizes.map { _ in RankSolve() }
        let initial = x0 ?? [Double](repeating: 0, count: n)
        world.run { rank in
            let m = world.sizes[rank], o = world.offsets[rank]
            let result = ranks[rank]
            var bLocal = Array(b[o..<(o + m)])
            var x = Array(initial[o..<(o + m)])
            edit(rank, &bLocal, &x)
            let before = x
            var products = 0
            let b = bLocal
            func solve() {
                do {
                    // The local n: the default budget (10 N) is resolved inside the call.
                    let plan = try OneShotSolve<Double>(n: m, method: method, tolerance: tolerance, maxIterations: budget)
                    result.report = try b.withUnsafeBufferPointer { bp in
                        try x.withUnsafeMutableBufferPointer { xp in
                            try plan.run(rhs: bp, solution: xp, reduction: { world.reduce(rank, $0) }) { input, output in
                                products += 1
                                world.product(rank, input, output)
                                if rank == 1 && products == failAt { throw SolveProductFailure() }
                            }
                        }
                    }
                } catch {
                    result.error = error
                    if x != before { result.error = EstimatorError.invalidState("x changed by a failed solve") }
                }
            }
            if countingAllocations && rank == 1 {
                result.allocations = LineAlignedMemory.FailureInjection.measuring(failingAfter: failingAllocationsAfter) {
                    solve()
                }.counts
            } else {
                solve()
            }
            result.x = x
            result.hookCalls = world.calls[rank]
        }
        return (ranks, world)
    }

    @Test("every supported method on 3 uneven slices agrees with one process on the whole vector to 1e-12, the reports bitwise equal across processes and counting every hook call",
          arguments: methods)
    func agreesWithOneProcess(method: EstimatorMethod) throws {
        for (x0, scale) in [(nil, 1.0), (start(), 1.0), (nil, 1e200), (nil, 1e-200)] {
            if case .neumann = method, x0 != nil { continue }
            let b = rhs(scale: scale)
            let budget: Int? = if case .gradientDescent = method { 60 } else if case .neumann = method { 60 } else { nil }
            let (expected, report) = try reference(method, b: b, x0: x0, tolerance: 1e-6, budget: budget)
            let (ranks, _) = sliced(method, b: b, x0: x0, tolerance: 1e-6, budget: budget)
            #expect(ranks.allSatisfy { $0.error == nil }, "\(ranks.map { $0.error.map { "\($0)" } ?? "" })")
            guard let first = ranks[0].report else { continue }
            let joined = ranks.flatMap(\.x)
            #expect(relativeError(joined.map { $0 / scale }, expected.map { $0 / scale }) < 1e-12, "x0 \(x0 != nil), scale \(scale)")
            #expect(first.converged == report.converged && first.products == report.products
                    && first.iterations == report.iterations, "\(first) vs \(report)")
            #expect(abs(first.residual - report.residual) <= 1e-9 * report.rhsNorm)
            #expect(abs(first.rhsNorm - report.rhsNorm) <= 1e-14 * report.rhsNorm)
            #expect(report.reductions == 0)
            for rank in ranks {
                #expect(rank.report == first)
                #expect(rank.report?.reductions == rank.hookCalls)
            }
        }
    }

    @Test("reductions per solve: the setup's 1, then 2 per recurrence step and 1 per check; the estimator's methods 1 more for their setup and each step's own")
    func reductionCounts() throws {
        let b = rhs()
        // The recurrence from x0 = 0, and from x0 != 0 (its first check has a reduction).
        for x0 in [nil, start()] {
            let (ranks, _) = sliced(Self.methods[0], b: b, x0: x0, tolerance: 1e-6, budget: nil)
            let report = try #require(ranks[0].report)
            let checks = report.products - report.iterations
            #expect(report.reductions == 1 + 2 * report.iterations + checks)
        }
        // A restart: a tolerance the first run's estimate meets before the truth does.
        let tight = sliced(Self.methods[0], b: b, x0: nil, tolerance: 1e-15, budget: 200).0[0].report
        let restarted = try #require(tight)
        #expect(restarted.lastStep.restarts > 0)
        #expect(restarted.reductions == 1 + 2 * restarted.iterations + (restarted.products - restarted.iterations))
        // CG: its step's 2 + 2 per iteration, the check's 1, the setup's 2.
        let cg = try #require(sliced(Self.methods[2], b: b, x0: nil, tolerance: 1e-6, budget: nil).0[0].report)
        #expect(cg.reductions == 2 + (2 + 2 * cg.iterations) + 1)
        #expect(cg.lastStep.reductions == 2 + 2 * cg.iterations)
        let gd = try #require(sliced(Self.methods[3], b: b, x0: nil, tolerance: 1e-6, budget: 5).0[0].report)
        #expect(gd.reductions == 2 + (1 + 5) + 1)
        let neumann = try #require(sliced(Self.methods[4], b: b, x0: nil, tolerance: 1e-6, budget: 5).0[0].report)
        #expect(neumann.reductions == 2 + (2 + 5) + 1)
    }

    @Test("a product failing on one process fails the solve on every process at the next reduction, that process with its own error, the others collectiveFailure, x unchanged everywhere",
          arguments: [(methods[0], 1), (methods[0], 6), (methods[1], 4), (methods[2], 3), (methods[3], 2), (methods[3], 41)])
    func failureReachesEveryProcess(method: EstimatorMethod, failAt: Int) throws {
        // (GD's product 41 is the check after its 40 steps.)
        for x0 in [nil, start()] {
            let (ranks, _) = sliced(method, b: rhs(), x0: x0, tolerance: 1e-6, budget: 40, failAt: failAt)
            for (rank, result) in ranks.enumerated() {
                let error = try #require(result.error, "rank \(rank)")
                if rank == 1 {
                    #expect(error is SolveProductFailure, "\(error)")
                } else {
                    guard case EstimatorError.collectiveFailure = error else {
                        Issue.record("rank \(rank): \(error)")
                        continue
                    }
                }
            }
        }
    }

    @Test("NaN in b or x0 on one process, or x0 != 0 for the Neumann series on one process, fails the solve on every process alike before any product")
    func inputsCheckedAcrossProcesses() throws {
        let cases: [(EstimatorMethod, @Sendable (Int, inout [Double], inout [Double]) -> Void, String)] = [
            (Self.methods[0], { rank, b, _ in if rank == 2 { b[3] = .nan } }, "nonFiniteInput"),
            (Self.methods[2], { rank, _, x in if rank == 0 { x[1] = .infinity } }, "nonFiniteInput"),
            (Self.methods[4], { rank, _, x in if rank == 1 { x[0] = 1 } }, "invalidArgument"),
        ]
        for (method, edit, expected) in cases {
            let (ranks, world) = sliced(method, b: rhs(), x0: nil, tolerance: 1e-6, budget: 30, edit: edit)
            for result in ranks {
                #expect(result.error.map { "\($0)".contains(expected) } == true, "\(String(describing: result.error))")
            }
            // The setup's reduction only: no product, no other call.
            for rank in 0..<sizes.count { #expect(world.calls[rank] == 1) }
        }
    }

    @Test("MINRES refuses a reduction hook with invalidArgument on every process, without calling it")
    func minresRefuses() throws {
        let (ranks, world) = sliced(.minres(maxIterations: 1, tolerance: 0), b: rhs(), x0: nil, tolerance: 1e-6, budget: 10)
        for (rank, result) in ranks.enumerated() {
            guard case EstimatorError.invalidArgument = try #require(result.error) else {
                Issue.record("\(String(describing: result.error))")
                continue
            }
            #expect(world.calls[rank] == 0)
        }
    }
}

extension ProcessWideSettings {
    /// Allocation failures arm a hook one thread at a time: with the other such suites.
    @Suite("One-shot solves across processes: allocation failure")
    struct SlicedSolveAllocationTests {
        @Test("an allocation refused on one process fails the solve on every process, that one with outOfMemory, the others collectiveFailure, nothing left allocated, whichever allocation it is",
              arguments: [SlicedSolveTests.methods[0], SlicedSolveTests.methods[1], SlicedSolveTests.methods[2]])
        func allocationFailureReachesEveryProcess(method: EstimatorMethod) throws {
            let solves = SlicedSolveTests()
            let b = solves.rhs()
            let (succeeding, _) = solves.sliced(method, b: b, x0: nil, tolerance: 1e-6, budget: 30, countingAllocations: true)
            let full = try #require(succeeding[1].allocations)
            #expect(succeeding.allSatisfy { $0.error == nil } && full.allocations > 0 && full.live == 0)
            for k in 0..<full.allocations {
                let (ranks, world) = solves.sliced(method, b: b, x0: nil, tolerance: 1e-6, budget: 30,
                                                   countingAllocations: true, failingAllocationsAfter: k)
                for (rank, result) in ranks.enumerated() {
                    switch result.error {
                    case EstimatorError.outOfMemory? where rank == 1: break
                    case EstimatorError.collectiveFailure? where rank != 1: break
                    default: Issue.record("allocation \(k + 1) failing, rank \(rank): \(String(describing: result.error))")
                    }
                    // Before any product: every setup failure shows at a setup reduction.
                    #expect(world.calls[rank] <= 2)
                }
                #expect(ranks[1].allocations?.live == 0, "allocation \(k + 1) failing")
            }
        }
    }
}
