import Foundation
import Testing
@testable import LancbioCore

extension ProcessWideSettings {
    /// Large Lanczos steps cut their passes over the basis by rows and run the two parts on
    /// two threads. These tests lower the size at which that happens so that small problems
    /// split too (estimators keep the threshold they were created with).
    @Suite("Two-core basis passes", .serialized)
    struct TwoCoreSplitTests {
        static let n = 5003   // odd: both parts have tails shorter than a SIMD vector
        static let diagonal = (0..<n).map { 1 + 9 * Double($0) / Double(n - 1) }

        static func lanczos(m: Int = 7) -> EstimatorMethod {
            .dynamicLanczos(LanczosOptions(initialPeriod: m, maxPeriod: m))
        }

        /// Runs `steps` steps on A = diag(diagonal) with b_k = b0 + 0.1 sin(k) b1, through
        /// reverse communication with the caller's product buffer; returns every estimate.
        static func run<T: BinaryFloatingPoint>(_ e: Estimator<T>, steps: Int = 17) throws -> [[T]] {
            var rng = TestRandom(seed: 91)
            let b0 = rng.vector(n), b1 = rng.vector(n)
            var estimates: [[T]] = []
            var product = [T](repeating: 0, count: n)
            for k in 0..<steps {
                let b = (0..<n).map { T(b0[$0] + 0.1 * sin(Double(k)) * b1[$0]) }
                var progress = try b.withUnsafeBufferPointer { try e.begin(rhs: $0) }
                while progress == .needsProduct {
                    let x = e.productInput
                    for i in 0..<n { product[i] = T(diagonal[i]) * x[i] }
                    progress = try product.withUnsafeBufferPointer { try e.resume(product: $0) }
                }
                var v = [T](repeating: 0, count: n)
                try v.withUnsafeMutableBufferPointer { try e.copyEstimate(into: $0) }
                estimates.append(v)
            }
            return estimates
        }

        static func withSplitThreshold<R>(_ entries: Int, _ body: () throws -> R) rethrows -> R {
            let saved = (BasisSplit.minimumEntries, BasisSplit.minimumRows)
            BasisSplit.minimumEntries = entries
            BasisSplit.minimumRows = 1
            defer { (BasisSplit.minimumEntries, BasisSplit.minimumRows) = saved }
            return try body()
        }

        @Test("a split step gives the same bits whether the helper thread ran a part or not")
        func helperDoesNotChangeBits() throws {
            let (split, alone, floatSplit, floatAlone) = try Self.withSplitThreshold(1) {
                let split = try Self.run(Estimator<Double>(n: Self.n, method: Self.lanczos()))
                let floatSplit = try Self.run(Estimator<Float>(n: Self.n, method: Self.lanczos()))
                HelperThread.isEnabled = false
                defer { HelperThread.isEnabled = true }
                let alone = try Self.run(Estimator<Double>(n: Self.n, method: Self.lanczos()))
                let floatAlone = try Self.run(Estimator<Float>(n: Self.n, method: Self.lanczos()))
                return (split, alone, floatSplit, floatAlone)
            }
            #expect(HelperThread.shared != nil)
            #expect(split == alone)
            #expect(floatSplit == floatAlone)
        }

        @Test("chunks round like the caller: under upward rounding the helper changes no bit")
        func helperUsesTheCallersRounding() throws {
            let saved = fegetround()
            fesetround(FE_UPWARD)
            defer { fesetround(saved) }
            let (split, alone) = try Self.withSplitThreshold(1) {
                let split = try Self.run(Estimator<Float>(n: Self.n, method: Self.lanczos()), steps: 9)
                HelperThread.isEnabled = false
                defer { HelperThread.isEnabled = true }
                return (split, try Self.run(Estimator<Float>(n: Self.n, method: Self.lanczos()), steps: 9))
            }
            #expect(split == alone)
        }

        @Test("a split step agrees with the unsplit one to rounding, and both solve the system")
        func splitAgreesWithUnsplit() throws {
            let split = try Self.withSplitThreshold(1) {
                try Self.run(Estimator<Double>(n: Self.n, method: Self.lanczos(m: 30)), steps: 200)
            }
            let unsplit = try Self.withSplitThreshold(Int.max) {
                try Self.run(Estimator<Double>(n: Self.n, method: Self.lanczos(m: 30)), steps: 200)
            }
            func distance(_ x: [Double], _ y: [Double]) -> Double {
                zip(x, y).map { ($0 - $1) * ($0 - $1) }.reduce(0, +).squareRoot()
                    / y.map { $0 * $0 }.reduce(0, +).squareRoot()
            }
            for (x, y) in zip(split, unsplit) { #expect(distance(x, y) < 1e-10) }
            // The b_k drift (by up to 0.1 b1 per step), so the estimate tracks diag^-1 b_k with a
            // lag of a few 1e-3. Independent reference: the exact solution of the last system.
            var rng = TestRandom(seed: 91)
            let b0 = rng.vector(Self.n), b1 = rng.vector(Self.n)
            let exact = (0..<Self.n).map { (b0[$0] + 0.1 * sin(199.0) * b1[$0]) / Self.diagonal[$0] }
            #expect(distance(split.last!, exact) < 1e-2)
        }

        @Test("estimators on several threads share the helper and give their sequential results")
        func concurrentEstimators() throws {
            let count = 4
            let (sequential, concurrent) = try Self.withSplitThreshold(1) {
                let sequential = try (0..<count).map { _ in
                    try Self.run(Estimator<Double>(n: Self.n, method: Self.lanczos()), steps: 9)
                }
                let estimators = try (0..<count).map { _ in try Estimator<Double>(n: Self.n, method: Self.lanczos()) }
                let results = UnsafeMutablePointer<[[Double]]>.allocate(capacity: count)
                results.initialize(repeating: [], count: count)
                defer { results.deinitialize(count: count); results.deallocate() }
                nonisolated(unsafe) let shared = (estimators, results)
                DispatchQueue.concurrentPerform(iterations: count) { i in
                    shared.1[i] = (try? Self.run(shared.0[i], steps: 9)) ?? []
                }
                return (sequential, Array(UnsafeBufferPointer(start: results, count: count)))
            }
            #expect(concurrent == sequential)
        }
    }
}

/// The passes over b and the request vector split like the basis passes at large n.
@Suite("Two-core vector passes", .serialized)
struct TwoCoreVectorPassTests {
    static let n = VectorPasses<Double>.minimumRows + 4_001   // odd: the last chunk has a tail

    static func measure<T: BinaryFloatingPoint>(_ x: [T], copying: Bool) throws -> (Bool, Double, [T]) {
        let passes = try VectorPasses<T>(n: x.count)
        #expect(passes.splits)
        var copy = [T](repeating: 0, count: x.count)
        let m = x.withUnsafeBufferPointer { x in copy.withUnsafeMutableBufferPointer { c in
            passes.measure(x.baseAddress!, copyingInto: copying ? c.baseAddress! : nil)
        } }
        return (m.allFinite, m.sumOfSquares, copy)
    }

    @Test("a split copy and check of b copies exactly, sums the squares, and finds a bad entry in any chunk",
          arguments: [false, true])
    func measureAndCopy(copying: Bool) throws {
        var rng = TestRandom(seed: 17)
        let x = rng.vector(Self.n)
        let (finite, squares, copy) = try Self.measure(x, copying: copying)
        let want = x.reduce(0) { $0 + $1 * $1 }
        #expect(finite)
        #expect((squares - want).magnitude <= 1e-12 * want)
        #expect(copy == (copying ? x : [Double](repeating: 0, count: Self.n)))
        for i in [0, Self.n / 2, Self.n - 1] {
            var bad = x
            bad[i] = .nan
            #expect(try !Self.measure(bad, copying: copying).0, "NaN at \(i)")
        }
    }

    @Test("the split passes give the same bits whether the helper ran a chunk or not")
    func helperDoesNotChangeBits() throws {
        var rng = TestRandom(seed: 18)
        let x = rng.vector(Self.n).map { Float($0) }
        let split = try Self.measure(x, copying: true)
        HelperThread.isEnabled = false
        defer { HelperThread.isEnabled = true }
        let alone = try Self.measure(x, copying: true)
        #expect(split.0 == alone.0 && split.1 == alone.1 && split.2 == alone.2)
    }

    @Test("the request copy of a large estimator is the vector the step asks to multiply")
    func requestCopy() throws {
        let e = try Estimator<Double>(n: Self.n, method: .dynamicLanczos(LanczosOptions(initialPeriod: 3, maxPeriod: 3)))
        var rng = TestRandom(seed: 19)
        let b = rng.vector(Self.n)
        let diagonal = (0..<Self.n).map { 1 + Double($0 % 7) }
        var request = [Double](repeating: .nan, count: Self.n)
        var product = [Double](repeating: 0, count: Self.n)
        var progress = try b.withUnsafeBufferPointer { try e.begin(rhs: $0) }
        var requests = 0
        while progress == .needsProduct {
            try request.withUnsafeMutableBufferPointer { try e.copyProductInput(into: $0) }
            #expect(request == Array(e.productInput))
            for i in 0..<Self.n { product[i] = diagonal[i] * request[i] }
            progress = try product.withUnsafeBufferPointer { try e.resume(product: $0) }
            requests += 1
        }
        #expect(requests == 2)   // a restart: the product of the estimate, then of q_1
        var short = [Double](repeating: 0, count: Self.n - 1)
        #expect(throws: EstimatorError.self) { try short.withUnsafeMutableBufferPointer { try e.copyProductInput(into: $0) } }
    }
}
