import Foundation
import Testing
@testable import LancbioCore

/// A failed step leaves the estimator exactly as before: step, fail, step again gives
/// bitwise the same estimates and diagnostics as never failing.
@Suite("Failure atomicity")
struct FailureAtomicityTests {
    static let methods: [EstimatorMethod] = BreakdownTests.allMethods + [
        .dynamicLanczos(LanczosOptions(initialPeriod: 2, maxPeriod: 3, growth: 1.5, growEvery: 2, reorthogonalize: true)),
        // The products that check a residual: exactResidual's, and those of a convergence
        // CG and MINRES claim below their rounding (n = 14: reached well within 40).
        .dynamicLanczos(LanczosOptions(initialPeriod: 2, maxPeriod: 3, growth: 1.5, growEvery: 2, exactResidual: true)),
        .conjugateGradient(maxIterations: 40, tolerance: 1e-15),
        .minres(maxIterations: 40, tolerance: 1e-15),
    ]
    let n = 14
    let operators: [DenseMatrix]
    let rhs: [[Double]]

    init() {
        operators = (0..<8).map { DenseMatrix.spd(n: 14, condition: 30, seed: 60 + UInt64($0)) }
        var rng = TestRandom(seed: 61)
        rhs = (0..<8).map { _ in rng.vector(14) }
    }

    enum Failure { case thrown, nonFinite(Double) }

    /// Runs one step whose product number `failAt` fails (or returns a non-finite value).
    /// Returns the error, or the step's result when it needed fewer products than that.
    func failingStep(_ e: Estimator<Double>, _ k: Int, failAt: Int, how: Failure) -> Result<(v: [Double], info: StepInfo), Error> {
        var count = 0
        var out = [Double](repeating: 0, count: n)
        do {
            let info = try rhs[k].withUnsafeBufferPointer { bp in
                try out.withUnsafeMutableBufferPointer { vp in
                    try e.step(rhs: bp, into: vp) { input, output in
                        count += 1
                        let y = operators[k].times(Array(input))
                        for i in 0..<n { output[i] = y[i] }
                        if count == failAt {
                            switch how {
                            case .thrown: throw ProductFailure(atProduct: count)
                            case .nonFinite(let x): output[n / 2] = x
                            }
                        }
                    }
                }
            }
            return .success((out, info))
        } catch {
            return .failure(error)
        }
    }

    @Test("a product that throws at any point of a step leaves the state unchanged", arguments: methods)
    func thrownProduct(method: EstimatorMethod) throws {
        try checkAtomicity(method, how: .thrown)
    }

    @Test("a NaN or infinite product is rejected and leaves the state unchanged", arguments: methods)
    func nonFiniteProduct(method: EstimatorMethod) throws {
        try checkAtomicity(method, how: .nonFinite(.nan))
        try checkAtomicity(method, how: .nonFinite(-.infinity))
    }

    func checkAtomicity(_ method: EstimatorMethod, how: Failure) throws {
        let reference = try Estimator<Double>(n: n, method: method)
        var expected = [(v: [Double], info: StepInfo)]()
        for k in 0..<operators.count { expected.append(try step(reference, operators[k], rhs[k])) }

        for failAt in 1...4 {
            let e = try Estimator<Double>(n: n, method: method)
            for k in 0..<operators.count {
                var result: (v: [Double], info: StepInfo)? = nil
                if k % 2 == 1 {
                    let before = estimate(e)
                    switch failingStep(e, k, failAt: failAt, how: how) {
                    case .success(let completed):
                        result = completed   // fewer than failAt products: a normal step k
                    case .failure(let error):
                        switch how {
                        case .thrown: #expect(error as? ProductFailure == ProductFailure(atProduct: failAt))
                        case .nonFinite: #expect(error as? EstimatorError != nil)
                        }
                        #expect(estimate(e) == before)
                        #expect(!e.isStepInProgress)
                    }
                }
                let (v, info) = try result ?? step(e, operators[k], rhs[k])
                #expect(v == expected[k].v, "\(method.name), fail at product \(failAt), step \(k)")
                #expect(info == expected[k].info)
            }
        }
    }

    @Test("NaN or infinity in b is rejected before any product")
    func nonFiniteRightHandSide() throws {
        let e = try Estimator<Double>(n: 3, method: .dynamicLanczos(LanczosOptions()))
        for bad in [Double.nan, .infinity] {
            let b = [1, bad, 0]
            #expect(throws: EstimatorError.self) {
                try b.withUnsafeBufferPointer { _ = try e.begin(rhs: $0) }
            }
            #expect(!e.isStepInProgress && e.totalProducts == 0)
        }
    }
}

@Suite("Reverse communication")
struct ReverseCommunicationTests {
    /// callerBuffer: the product is passed to `resume(product:)`, which reads it in place
    /// (the estimator's own buffer holds NaN, so reading it would show); otherwise it is
    /// written into `productOutput` before `resume()`.
    @Test("begin/resume gives bitwise the estimates of the callback driver, product in either buffer",
          arguments: BreakdownTests.allMethods, [false, true])
    func matchesCallbackDriver(method: EstimatorMethod, callerBuffer: Bool) throws {
        let n = 18
        let a = DenseMatrix.spd(n: n, condition: 40, seed: 70)
        var rng = TestRandom(seed: 71)
        let callback = try Estimator<Double>(n: n, method: method)
        let reverse = try Estimator<Double>(n: n, method: method)
        for _ in 0..<6 {
            let b = rng.vector(n)
            let expected = try step(callback, a, b)
            var progress = try b.withUnsafeBufferPointer { try reverse.begin(rhs: $0) }
            var products = 0
            while progress == .needsProduct {
                let y = a.times(Array(reverse.productInput))
                products += 1
                if callerBuffer {
                    for i in 0..<n { reverse.productOutput[i] = .nan }
                    progress = try y.withUnsafeBufferPointer { try reverse.resume(product: $0) }
                } else {
                    for i in 0..<n { reverse.productOutput[i] = y[i] }
                    progress = try reverse.resume()
                }
            }
            #expect(progress == .finished(expected.info))
            #expect(products == expected.info.products)
            #expect(estimate(reverse) == expected.v)
        }
    }

    @Test("resume(product:) with a product of the wrong length is rejected and the step stays in progress")
    func callerProductOfWrongLength() throws {
        let e = try Estimator<Double>(n: 4, method: .conjugateGradient(maxIterations: 3, tolerance: 0))
        _ = try [1.0, 2, 3, 4].withUnsafeBufferPointer { try e.begin(rhs: $0) }
        #expect(throws: EstimatorError.invalidArgument("the product must hold n = 4 values (got 1)")) {
            _ = try [1.0].withUnsafeBufferPointer { try e.resume(product: $0) }
        }
        #expect(e.isStepInProgress)
    }

    @Test("cancel abandons a step: the next step equals one that never began")
    func cancelRestoresState() throws {
        let n = 10
        let a = DenseMatrix.spd(n: n, condition: 5, seed: 72)
        var rng = TestRandom(seed: 73)
        let b = rng.vector(n)
        let method = EstimatorMethod.dynamicLanczos(LanczosOptions(initialPeriod: 3, maxPeriod: 3))
        let reference = try Estimator<Double>(n: n, method: method)
        let e = try Estimator<Double>(n: n, method: method)
        for k in 0..<5 {
            if k > 0 {
                _ = try b.withUnsafeBufferPointer { try e.begin(rhs: $0) }
                for i in 0..<n { e.productOutput[i] = 1e300 * Double(i) }  // garbage, never resumed
                e.cancel()
            }
            #expect(try step(e, a, b).v == (try step(reference, a, b).v))
        }
    }

    @Test("calls out of order are rejected without changing the state")
    func outOfOrderCalls() throws {
        let e = try Estimator<Double>(n: 4, method: .conjugateGradient(maxIterations: 3, tolerance: 0))
        #expect(throws: EstimatorError.self) { _ = try e.resume() }
        let b = [1.0, 2, 3, 4]
        _ = try b.withUnsafeBufferPointer { try e.begin(rhs: $0) }
        #expect(throws: EstimatorError.self) { _ = try b.withUnsafeBufferPointer { try e.begin(rhs: $0) } }
        #expect(throws: EstimatorError.self) { try b.withUnsafeBufferPointer { try e.setEstimate($0) } }
        #expect(e.isStepInProgress)
    }
}
