import Foundation
import Testing
@testable import LancbioCore

extension ProcessWideSettings {
    /// Creation that runs out of memory throws `.outOfMemory` and leaves nothing allocated,
    /// whichever of its allocations the system refuses; and `requiredBytes`, which the C
    /// layer's probe maps before creating, is exactly what creation asks for.
    ///
    /// `LineAlignedMemory.FailureInjection` makes every allocation of this thread after
    /// the first k fail, for each k below the number a successful creation makes, and
    /// counts the allocations still live when the creation has failed (LeakSanitizer, in
    /// `make check`, checks the objects as well).
    @Suite("Allocation failure")
    struct OutOfMemoryTests {
        typealias Injection = LineAlignedMemory.FailureInjection

        static let methods: [EstimatorMethod] = [
            .dynamicLanczos(LanczosOptions(initialPeriod: 2, maxPeriod: 9)),
            .dynamicLanczos(LanczosOptions(variant: .plain, reorthogonalize: true)),
            .subbio(theta0: 0.1),
            .conjugateGradient(maxIterations: 4, tolerance: 0),
            .minres(maxIterations: 4, tolerance: 0),
            .gradientDescent(stepSize: 0.1, steps: 2),
            .neumann(stepSize: 0.1, terms: 3),
            .randomNeumann(stepSize: 0.1, maxTerms: 3, seed: 5),
        ]
        /// Too small for the passes ever to be split (under any thresholds tests set), and
        /// large enough that they always are: the two storage layouts of the passes.
        static let sizes = [37, VectorPasses<Double>.minimumRows + 5]

        /// The outcome of `body` as an `EstimatorError`, nil for success.
        static func failure(_ body: () throws -> Void) -> EstimatorError? {
            do {
                try body()
                return nil
            } catch let error as EstimatorError {
                return error
            } catch {
                return .invalidState("unexpected error \(error)")
            }
        }

        /// Runs `create` (which makes an object and drops it) with no allocation failing,
        /// then with each allocation in turn failing; expects every failure to be
        /// `.outOfMemory` at that allocation, with nothing left allocated. Returns the
        /// counts of the successful creation.
        static func failEachAllocation(_ what: String, _ create: () throws -> Void) -> Injection.Counts {
            let (outcome, full) = Injection.measuring(failingAfter: nil) { failure(create) }
            #expect(outcome == nil, "\(what): \(outcome.map { $0.message } ?? "")")
            #expect(full.allocations > 0 && full.live == 0, "\(what): \(full)")
            for k in 0..<full.allocations {
                let (error, counts) = Injection.measuring(failingAfter: k) { failure(create) }
                guard case .outOfMemory(let bytes) = error else {
                    Issue.record("\(what), allocation \(k + 1) of \(full.allocations) failing: \(String(describing: error))")
                    continue
                }
                #expect(bytes > 0)
                // It stopped at the refused allocation and released every one before it.
                #expect(counts.allocations == k + 1 && counts.live == 0, "\(what), allocation \(k + 1) failing: \(counts)")
            }
            return full
        }

        func estimators<T: BinaryFloatingPoint>(_: T.Type) {
            for method in Self.methods {
                for n in Self.sizes {
                    let what = "Estimator<\(T.self)>(n: \(n), \(method))"
                    let full = Self.failEachAllocation(what) { _ = try Estimator<T>(n: n, method: method) }
                    #expect(full.bytes == Estimator<T>.requiredBytes(n: n, method: method), "\(what)")
                }
            }
        }

        @Test("an estimator whose allocation fails throws .outOfMemory and leaks nothing, for every allocation")
        func estimatorCreation() {
            estimators(Double.self)
            estimators(Float.self)
        }

        @Test("a bilevel optimizer whose allocation fails throws .outOfMemory and leaks nothing, for every allocation")
        func bilevelCreation() {
            let options = BilevelOptions(lrX: 0.1, lrY: 0.1, innerSteps: 1)
            for method in Self.methods {
                for dy in Self.sizes {
                    let what = "BilevelOptimizer(dx: 11, dy: \(dy), \(method))"
                    let full = Self.failEachAllocation(what) {
                        _ = try BilevelOptimizer<Double>(dx: 11, dy: dy, options: options, method: method)
                    }
                    #expect(full.bytes == BilevelOptimizer<Double>.requiredBytes(dx: 11, dy: dy, method: method), "\(what)")
                }
            }
        }

        func solves<T: BinaryFloatingPoint>(_: T.Type) throws {
            let methods: [EstimatorMethod] = [
                .dynamicLanczos(LanczosOptions()), .conjugateGradient(maxIterations: 1, tolerance: 0),
                .minres(maxIterations: 1, tolerance: 0), .gradientDescent(stepSize: 0.3, steps: 1),
                .neumann(stepSize: 0.3, terms: 1),
            ]
            for method in methods {
                for n in Self.sizes {
                    let plan = try OneShotSolve<T>(n: n, method: method, tolerance: 1e-6, maxIterations: 3)
                    let b = (0..<n).map { T(1 + $0 % 3) }
                    var products = 0, failedRunProducts = 0
                    var x = [T](repeating: 0, count: n), solved: [T] = []
                    let what = "OneShotSolve<\(T.self)>(n: \(n), \(method))"
                    let full = Self.failEachAllocation(what) {
                        products = 0
                        x = [T](repeating: 0, count: n)
                        do {
                            _ = try b.withUnsafeBufferPointer { bp in
                                try x.withUnsafeMutableBufferPointer { xp in
                                    try plan.run(rhs: bp, solution: xp) { input, output in
                                        products += 1
                                        for i in 0..<n { output[i] = 2 * input[i] }
                                    }
                                }
                            }
                            solved = x
                        } catch {
                            failedRunProducts += products
                            // A failed solve leaves the initial guess as it was.
                            #expect(x.allSatisfy { $0 == 0 }, "\(what): x changed")
                            throw error
                        }
                    }
                    #expect(full.bytes == plan.requiredBytes, "\(what)")
                    // Every allocation comes before the first product.
                    #expect(failedRunProducts == 0, "\(what)")
                    // The run that succeeded made progress on 2 x = b (3 iterations at most).
                    let x64 = solved.map { Double($0) }, b64 = b.map { Double($0) }
                    #expect(x64.count == n && vnorm(vminus(x64.map { 2 * $0 }, b64)) < 0.3 * vnorm(b64), "\(what)")
                }
            }
        }

        @Test("a one-shot solve whose allocation fails throws .outOfMemory, leaks nothing and leaves x unchanged")
        func solveAllocation() throws {
            try solves(Double.self)
            try solves(Float.self)
        }

        @Test("an injected failure stays on the thread that asked for it")
        func injectionIsPerThread() {
            let (elsewhere, counts) = Injection.measuring(failingAfter: 0) {
                nonisolated(unsafe) var error: EstimatorError? = .invalidState("the thread did not run")
                let done = DispatchSemaphore(value: 0)
                let thread = Thread {
                    error = Self.failure { _ = try Estimator<Double>(n: 50, method: Self.methods[0]) }
                    done.signal()
                }
                thread.start()
                done.wait()
                return error
            }
            #expect(elsewhere == nil)
            #expect(counts == Injection.Counts())
            #expect(Self.failure { _ = try Estimator<Double>(n: 50, method: Self.methods[0]) } == nil)
        }
    }
}
