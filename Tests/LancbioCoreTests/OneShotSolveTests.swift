import Testing
@testable import LancbioCore

/// One-shot solves against dense solves: convergence, an honest residual, and never an
/// answer worse than the starting point.
@Suite("One-shot solves")
struct OneShotSolveTests {
    /// Runs a solve of A x = b from x0 and returns x and the report.
    func solve<T: BinaryFloatingPoint>(_: T.Type, _ a: DenseMatrix, _ b: [Double], x0: [Double]? = nil,
                                       method: EstimatorMethod, tolerance: Double, budget: Int? = nil,
                                       products: inout Int) throws -> (x: [Double], report: SolveReport) {
        let plan = try OneShotSolve<T>(n: b.count, method: method, tolerance: tolerance, maxIterations: budget)
        let bt = b.map { T($0) }
        var x = (x0 ?? [Double](repeating: 0, count: b.count)).map { T($0) }
        var calls = 0
        let report = try bt.withUnsafeBufferPointer { bp in
            try x.withUnsafeMutableBufferPointer { xp in
                try plan.run(rhs: bp, solution: xp) { input, output in
                    calls += 1
                    let y = a.times(input.map { Double($0) })
                    for i in 0..<y.count { output[i] = T(y[i]) }
                }
            }
        }
        products = calls
        return (x.map { Double($0) }, report)
    }

    @Test("every method converges to the dense solution, reports the true residual and counts every product",
          arguments: [EstimatorMethod.dynamicLanczos(LanczosOptions()),
                      .conjugateGradient(maxIterations: 1, tolerance: 0), .minres(maxIterations: 1, tolerance: 0),
                      .gradientDescent(stepSize: 0.09, steps: 1), .neumann(stepSize: 0.09, terms: 1)])
    func converges(method: EstimatorMethod) throws {
        let n = 30
        let a = DenseMatrix.spd(n: n, condition: 10, seed: 900)  // eigenvalues in [1, 10]
        var rng = TestRandom(seed: 901)
        let b = rng.vector(n)
        var products = 0
        let (x, report) = try solve(Double.self, a, b, method: method, tolerance: 1e-9, budget: 5000,
                                    products: &products)
        let trueResidual = vnorm(vminus(a.times(x), b))
        #expect(report.converged)
        #expect(abs(report.residual - trueResidual) <= 1e-12 * vnorm(b))
        #expect(report.residual <= 1e-9 * vnorm(b))
        #expect(relativeError(x, a.solve(b)) < 1e-7)
        #expect(report.products == products)
    }

    @Test("Float storage converges to Float accuracy")
    func float32() throws {
        let a = DenseMatrix.spd(n: 20, condition: 20, seed: 902)
        var rng = TestRandom(seed: 903)
        let b = rng.vector(20)
        var products = 0
        let (x, report) = try solve(Float.self, a, b, method: .dynamicLanczos(LanczosOptions()), tolerance: 1e-5,
                                    products: &products)
        #expect(report.converged)
        #expect(relativeError(x, a.solve(b)) < 1e-4)
    }

    @Test("on an ill-conditioned operator the answer is never worse than x0 = 0, whatever the restarts do")
    func neverWorseThanStart() throws {
        let n = 120
        let a = DenseMatrix.spd(n: n, condition: 1e8, seed: 904)
        var rng = TestRandom(seed: 905)
        let b = rng.vector(n)
        var products = 0
        for tolerance in [1e-12, 1e-6] {
            let (x, report) = try solve(Double.self, a, b, method: .dynamicLanczos(LanczosOptions()),
                                        tolerance: tolerance, budget: 400, products: &products)
            let trueResidual = vnorm(vminus(a.times(x), b))
            #expect(report.residual <= vnorm(b) * (1 + 1e-12))
            #expect(abs(report.residual - trueResidual) <= 1e-9 * vnorm(b))
            #expect(report.products == products)
        }
    }

    @Test("a budget that ends the loop still reports the residual of the x returned")
    func budgetEndsWithTheTruth() throws {
        let a = DenseMatrix.spd(n: 40, condition: 1e4, seed: 906)
        var rng = TestRandom(seed: 907)
        let b = rng.vector(40)
        var products = 0
        for budget in [1, 2, 5, 17] {
            let (x, report) = try solve(Double.self, a, b, method: .dynamicLanczos(LanczosOptions()),
                                        tolerance: 1e-14, budget: budget, products: &products)
            #expect(!report.converged)
            #expect(abs(report.residual - vnorm(vminus(a.times(x), b))) <= 1e-12 * vnorm(b), "budget \(budget)")
            #expect(report.products == products && products <= budget + 2, "budget \(budget)")
        }
    }

    @Test("methods and options without a one-shot solve are rejected with the reason")
    func rejected() {
        let cases: [(EstimatorMethod, String)] = [
            (.subbio(theta0: 0.1), "subbio"),
            (.randomNeumann(stepSize: 0.1, maxTerms: 3, seed: 0), "random-neumann"),
            (.dynamicLanczos(LanczosOptions(variant: .plain)), "residual variant"),
            (.gradientDescent(stepSize: 0, steps: 1), "step_size"),
        ]
        for (method, reason) in cases {
            #expect {
                _ = try OneShotSolve<Double>(n: 4, method: method, tolerance: 1e-8, maxIterations: nil)
            } throws: { error in
                guard case EstimatorError.invalidArgument(let message) = error else { return false }
                return message.contains(reason)
            }
        }
        #expect(throws: EstimatorError.self) {
            _ = try OneShotSolve<Double>(n: 4, method: .conjugateGradient(maxIterations: 1, tolerance: 0),
                                         tolerance: -1, maxIterations: nil)
        }
    }

    @Test("the Neumann series starts from zero, and x is unchanged when a solve fails")
    func neumannStartAndAtomicity() throws {
        let a = DenseMatrix.spd(n: 5, condition: 2, seed: 908)
        let plan = try OneShotSolve<Double>(n: 5, method: .neumann(stepSize: 0.5, terms: 1), tolerance: 1e-8,
                                            maxIterations: 50)
        let b = [Double](repeating: 1, count: 5)
        var x: [Double] = [1, 2, 3, 4, 5]
        let before = x
        #expect(throws: EstimatorError.self) {
            try b.withUnsafeBufferPointer { bp in
                try x.withUnsafeMutableBufferPointer { xp in
                    _ = try plan.run(rhs: bp, solution: xp) { input, output in
                        let y = a.times(Array(input))
                        for i in 0..<5 { output[i] = y[i] }
                    }
                }
            }
        }
        let lanczos = try OneShotSolve<Double>(n: 5, method: .dynamicLanczos(LanczosOptions()), tolerance: 1e-8,
                                               maxIterations: nil)
        var calls = 0
        #expect(throws: ProductFailure.self) {
            try b.withUnsafeBufferPointer { bp in
                try x.withUnsafeMutableBufferPointer { xp in
                    _ = try lanczos.run(rhs: bp, solution: xp) { input, output in
                        calls += 1
                        if calls == 3 { throw ProductFailure(atProduct: 3) }
                        let y = a.times(Array(input))
                        for i in 0..<5 { output[i] = y[i] }
                    }
                }
            }
        }
        #expect(x == before)
    }

    @Test("inside a step's product closure, productInput is the vector handed to the closure")
    func productInputInsideTheClosure() throws {
        let n = 6
        let a = DenseMatrix.spd(n: n, condition: 5, seed: 909)
        var rng = TestRandom(seed: 910)
        let b = rng.vector(n)
        for method in [EstimatorMethod.subbio(theta0: 0.1), .dynamicLanczos(LanczosOptions())] {
            let e = try Estimator<Double>(n: n, method: method)
            var out = [Double](repeating: 0, count: n)
            var mismatches = 0
            for _ in 0..<3 {
                _ = try b.withUnsafeBufferPointer { bp in
                    try out.withUnsafeMutableBufferPointer { vp in
                        try e.step(rhs: bp, into: vp) { input, output in
                            if e.productInput.baseAddress != input.baseAddress || Array(e.productInput) != Array(input) {
                                mismatches += 1
                            }
                            let y = a.times(Array(input))
                            for i in 0..<n { output[i] = y[i] }
                        }
                    }
                }
            }
            #expect(mismatches == 0, "\(method.name)")
        }
    }

    @Test("the Lanczos solve keeps no basis: its memory does not grow with the budget, and it fits n = 10^7")
    func memoryIndependentOfTheBudget() throws {
        let method = EstimatorMethod.dynamicLanczos(LanczosOptions())
        let small = try OneShotSolve<Double>(n: 10_000, method: method, tolerance: 1e-8, maxIterations: 10)
        let large = try OneShotSolve<Double>(n: 10_000, method: method, tolerance: 1e-8, maxIterations: 1 << 30)
        #expect(small.requiredBytes == large.requiredBytes)
        let huge = try OneShotSolve<Double>(n: 10_000_000, method: method, tolerance: 1e-8, maxIterations: nil)
        #expect(huge.requiredBytes! <= 8 * 10_000_000 * MemoryLayout<Double>.stride)
    }

    @Test("on fixed SPD systems the Lanczos solve uses CG's products (within one), from zero and from a guess",
          arguments: [(40, 1e2), (80, 1e4), (120, 1e6)])
    func productsOfCG(n: Int, condition: Double) throws {
        let a = DenseMatrix.spd(n: n, condition: condition, seed: 920 + UInt64(n))
        var rng = TestRandom(seed: 921)
        let b = rng.vector(n)
        for x0 in [nil, rng.vector(n)] {
            var lanczosProducts = 0, cgProducts = 0
            let (x, lanczos) = try solve(Double.self, a, b, x0: x0, method: .dynamicLanczos(LanczosOptions()),
                                         tolerance: 1e-8, budget: 20 * n, products: &lanczosProducts)
            let (_, cg) = try solve(Double.self, a, b, x0: x0, method: .conjugateGradient(maxIterations: 1, tolerance: 0),
                                    tolerance: 1e-8, budget: 20 * n, products: &cgProducts)
            #expect(lanczos.converged && cg.converged)
            #expect(lanczosProducts <= cgProducts + 1, "lanczos \(lanczosProducts), cg \(cgProducts)")
            #expect(vnorm(vminus(a.times(x), b)) <= 1e-8 * vnorm(b) * (1 + 1e-9))
        }
    }
}
