import Foundation
import Testing
@testable import LancbioCore

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
