import Foundation
import Testing
@testable import LancbioCore

/// Checkpoints: a restored (or loaded) estimator or optimizer continues bitwise as the
/// saved one would have; the bytes are rejected when damaged; only committed state is in
/// them.
@Suite("Checkpoints")
struct CheckpointTests {
    static let methods: [EstimatorMethod] = BreakdownTests.allMethods + [
        // A growing period with cycles that end by the schedule, by n, and early.
        .dynamicLanczos(LanczosOptions(initialPeriod: 2, maxPeriod: 7, growth: 1.5, growEvery: 3)),
        .dynamicLanczos(LanczosOptions(initialPeriod: 3, maxPeriod: 3, reorthogonalize: true)),
        .dynamicLanczos(LanczosOptions(initialPeriod: 4, maxPeriod: 4, orthogonalityTolerance: 1e-10)),
        // The option that adds a product, and the checks and restarts of CG and MINRES.
        .dynamicLanczos(LanczosOptions(initialPeriod: 2, maxPeriod: 7, growth: 1.5, growEvery: 3, exactResidual: true)),
        .conjugateGradient(maxIterations: 30, tolerance: 1e-15),
        .minres(maxIterations: 30, tolerance: 1e-15),
    ]
    static let steps = 12
    let n = 9
    let operators: [DenseMatrix]
    let rhs: [[Double]]

    init() {
        operators = (0..<Self.steps).map { DenseMatrix.spd(n: 9, condition: 20, seed: 900 + UInt64($0)) }
        var rng = TestRandom(seed: 901)
        rhs = (0..<Self.steps).map { _ in rng.vector(9) }
    }

    /// The estimates (as bit patterns) and infos of steps `range`.
    func run<T: BinaryFloatingPoint>(_ e: Estimator<T>, _ range: Range<Int>) throws -> [([UInt64], StepInfo)] {
        try range.map { k in
            let (v, info) = try step(e, operators[k], rhs[k])
            return (v.map(\.bitPattern), info)
        }
    }

    func continuesBitwise<T: BinaryFloatingPoint>(_: T.Type, _ method: EstimatorMethod) throws {
        let reference = try run(try Estimator<T>(n: n, method: method), 0..<Self.steps)
        for split in 0...Self.steps {
            let original = try Estimator<T>(n: n, method: method)
            _ = try run(original, 0..<split)
            let bytes = try checkpoint(original)
            let restored = try restore(T.self, bytes)
            #expect(restored.steps == original.steps && restored.totalProducts == original.totalProducts)
            #expect(restored.lastInfo == original.lastInfo)
            #expect(restored.lanczosDimension == original.lanczosDimension && restored.restarts == original.restarts)
            #expect(estimate(restored).map(\.bitPattern) == estimate(original).map(\.bitPattern))
            // Loading into an estimator with the same options that has been used elsewhere.
            let loaded = try Estimator<T>(n: n, method: method)
            _ = try run(loaded, 3..<6)
            try bytes.withUnsafeBytes { try loaded.load(Checkpoint(validating: $0)) }
            #expect(try checkpoint(loaded) == bytes, "\(method.name): a loaded estimator saves other bytes")
            let next = reference[split...]
            let fromRestored = try run(restored, split..<Self.steps), fromLoaded = try run(loaded, split..<Self.steps)
            #expect(fromRestored.elementsEqual(next) { $0.0 == $1.0 && $0.1 == $1.1 },
                    "\(method.name) \(T.self): restored after \(split) steps")
            #expect(fromLoaded.elementsEqual(next) { $0.0 == $1.0 && $0.1 == $1.1 },
                    "\(method.name) \(T.self): loaded after \(split) steps")
        }
    }

    @Test("a restored or loaded float64 estimator's next steps equal the uninterrupted run's bit for bit",
          arguments: methods)
    func continuesFloat64(method: EstimatorMethod) throws { try continuesBitwise(Double.self, method) }

    @Test("a restored or loaded float32 estimator's next steps equal the uninterrupted run's bit for bit",
          arguments: methods)
    func continuesFloat32(method: EstimatorMethod) throws { try continuesBitwise(Float.self, method) }

    @Test("the operator scale that judges singularity at a restart is restored: a restored Lanczos continues bit for bit")
    func scalesAreRestored() throws {
        // Plain variant, b almost in A's null space: each restart's q_1 = b / ||b|| has
        // ||A q_1|| ~ 1e-9 and T_1 = [1e-18], rounding only against the scale of the cycle
        // before (a first cycle has none, and takes the Galerkin step).
        let a = DenseMatrix(n: 3, entries: [1, 0, 0, 0, 1, 0, 0, 0, 0])
        let b: [Double] = [1e-9, 0, 1]
        let method = EstimatorMethod.dynamicLanczos(LanczosOptions(initialPeriod: 2, maxPeriod: 2, variant: .plain))
        func steps(_ e: Estimator<Double>, _ count: Int) throws -> [([UInt64], StepInfo)] {
            try (0..<count).map { _ in
                let (v, info) = try step(e, a, b)
                return (v.map(\.bitPattern), info)
            }
        }
        let reference = try steps(try Estimator<Double>(n: 3, method: method), 8)
        #expect(reference[2].1.singularFallback, "the second cycle's first step is judged against the first's scale")
        for split in 0...8 {
            let original = try Estimator<Double>(n: 3, method: method)
            _ = try steps(original, split)
            let restored = try restore(Double.self, try checkpoint(original))
            #expect(try steps(restored, 8 - split).elementsEqual(reference[split...]) { $0.0 == $1.0 && $0.1 == $1.1 },
                    "restored after \(split) steps")
        }
    }

    @Test("a failed step changes nothing a checkpoint holds", arguments: methods)
    func failedStepLeavesTheCheckpoint(method: EstimatorMethod) throws {
        let e = try Estimator<Double>(n: n, method: method)
        for k in 0..<8 {
            let before = try checkpoint(e)
            var count = 0
            _ = try? rhs[k].withUnsafeBufferPointer { bp in
                var out = [Double](repeating: 0, count: n)
                return try out.withUnsafeMutableBufferPointer { vp in
                    try e.step(rhs: bp, into: vp) { input, output in
                        count += 1
                        let y = operators[k].times(Array(input))
                        for i in 0..<n { output[i] = y[i] }
                        if count == 1 + k % 3 { throw ProductFailure(atProduct: count) }
                    }
                }
            }
            if count == 1 + k % 3 { #expect(try checkpoint(e) == before, "\(method.name) step \(k)") }
            try step(e, operators[k], rhs[k])
        }
    }

    @Test("a checkpoint is refused during a step, and the step goes on")
    func refusedDuringAStep() throws {
        let e = try Estimator<Double>(n: n, method: .dynamicLanczos(LanczosOptions()))
        try step(e, operators[0], rhs[0])
        let bytes = try checkpoint(e)
        _ = try rhs[1].withUnsafeBufferPointer { try e.begin(rhs: $0) }
        #expect(throws: EstimatorError.self) { _ = try e.checkpointSize() }
        #expect(throws: EstimatorError.self) { try bytes.withUnsafeBytes { try e.load(Checkpoint(validating: $0)) } }
        #expect(e.isStepInProgress)
        e.cancel()
        #expect(try checkpoint(e) == bytes)
    }

    @Test("every changed byte and every truncation is rejected, and the estimator is unchanged")
    func damageIsRejected() throws {
        for method in [EstimatorMethod.dynamicLanczos(LanczosOptions(initialPeriod: 4, maxPeriod: 4)),
                       .randomNeumann(stepSize: 0.01, maxTerms: 3, seed: 5)] {
            let e = try Estimator<Float>(n: n, method: method)
            _ = try run(e, 0..<3)
            let bytes = try checkpoint(e)
            for i in bytes.indices {
                var damaged = bytes
                damaged[i] ^= 0x40
                #expect(throws: EstimatorError.self) { try damaged.withUnsafeBytes { try e.load(Checkpoint(validating: $0)) } }
            }
            for length in 0..<bytes.count {
                #expect(throws: EstimatorError.self) {
                    try bytes.withUnsafeBytes { try e.load(Checkpoint(validating: UnsafeRawBufferPointer(rebasing: $0[..<length]))) }
                }
            }
            #expect(try checkpoint(e) == bytes)
        }
    }

    @Test("a Lanczos checkpoint holds the live cycle only: none when the next step restarts")
    func lanczosSavesTheLiveCycle() throws {
        let period = 3
        let e = try Estimator<Double>(n: n, method: .dynamicLanczos(
            LanczosOptions(initialPeriod: period, maxPeriod: period, orthogonalityTolerance: .infinity)))
        let empty = try checkpoint(e).count
        try step(e, operators[0], rhs[0])
        try step(e, operators[1], rhs[1])
        // j = 2: the previous cycle's scale and ||vbar||, alpha, beta, the Ritz flag and
        // bounds, q_1 .. q_3, the anchor and its product.
        #expect(try checkpoint(e).count == empty + 8 * (2 + 2 + 2 + 3) + 8 * n * (3 + 2))
        try step(e, operators[2], rhs[2])
        #expect(e.lanczosDimension == period)
        #expect(try checkpoint(e).count == empty, "the next step restarts: no cycle is saved")
    }

    @Test("an estimator refuses a checkpoint of another precision, dimension, method or options")
    func incompatibleLoadsAreRefused() throws {
        let lanczos = EstimatorMethod.dynamicLanczos(LanczosOptions(initialPeriod: 2, maxPeriod: 5))
        let saved = try Estimator<Double>(n: n, method: lanczos)
        _ = try run(saved, 0..<2)
        let bytes = try checkpoint(saved)
        let float = try Estimator<Float>(n: n, method: lanczos)
        let smaller = try Estimator<Double>(n: n - 1, method: lanczos)
        let other = try Estimator<Double>(n: n, method: .dynamicLanczos(LanczosOptions(initialPeriod: 2, maxPeriod: 6)))
        let cg = try Estimator<Double>(n: n, method: .conjugateGradient(maxIterations: 3, tolerance: 0))
        try bytes.withUnsafeBytes { raw in
            let c = try Checkpoint(validating: raw)
            #expect(c.holds(Double.self) && !c.holds(Float.self) && c.n == n && c.method == lanczos && c.bilevel == nil)
            #expect(throws: EstimatorError.self) { try float.load(c) }
            #expect(throws: EstimatorError.self) { try smaller.load(c) }
            #expect(throws: EstimatorError.self) { try other.load(c) }
            #expect(throws: EstimatorError.self) { try cg.load(c) }
            #expect(throws: EstimatorError.self) { _ = try BilevelOptimizer<Double>(restoring: c) }
        }
        #expect(float.steps == 0 && smaller.steps == 0 && other.steps == 0 && cg.steps == 0)
    }

    @Test("the checksum is FNV-1a-64 in four byte lanes, and any one changed byte changes it")
    func checksum() {
        func fnv(_ bytes: some Sequence<UInt8>) -> UInt64 {
            bytes.reduce(0xCBF2_9CE4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
        }
        func reference(_ bytes: [UInt8]) -> UInt64 {
            let lanes = (0..<4).map { k in fnv(stride(from: k, to: bytes.count, by: 4).map { bytes[$0] }) }
            return fnv(lanes.flatMap { lane in (0..<8).map { UInt8(truncatingIfNeeded: lane >> (8 * $0)) } })
        }
        var rng = TestRandom(seed: 907)
        for count in [0, 1, 2, 3, 4, 5, 7, 8, 31, 64, 129] {
            let bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let sum = bytes.withUnsafeBytes { StateArchive.checksum($0) }
            #expect(sum == reference(bytes), "\(count) bytes")
            for i in bytes.indices {
                for flip in [UInt8(1), 0x80, 0xFF] {
                    var changed = bytes
                    changed[i] ^= flip
                    #expect(changed.withUnsafeBytes { StateArchive.checksum($0) } != sum)
                }
            }
        }
    }

    // MARK: Bilevel

    /// g = 0.5 y^T D y + 0.025 sum y^4 - y^T C x, f = 0.5 ||y - c||^2 + 0.05 ||x||^2, in T.
    static func problem<T: BinaryFloatingPoint>(_: T.Type, dx: Int, dy: Int) -> BilevelProblem<T> {
        func coupling(_ i: Int, _ j: Int) -> Double { 0.3 * sin(1.0 + Double(i) + 2.0 * Double(j)) }
        return BilevelProblem<T>(
            gradYG: { x, y, out in
                for i in 0..<dy {
                    let cx = (0..<dx).reduce(0.0) { $0 + coupling(i, $1) * Double(x[$1]) }
                    let yi = Double(y[i])
                    out[i] = T((1 + 0.5 * Double(i)) * yi + 0.1 * yi * yi * yi - cx)
                }
            },
            gradXF: { x, _, out in for j in 0..<dx { out[j] = T(0.1 * Double(x[j])) } },
            gradYF: { _, y, out in for i in 0..<dy { out[i] = T(Double(y[i]) - cos(0.5 * Double(i))) } },
            hvpYY: { _, y, v, out in
                for i in 0..<dy { out[i] = T((1 + 0.5 * Double(i) + 0.3 * Double(y[i]) * Double(y[i])) * Double(v[i])) }
            },
            jvpXY: { _, _, v, out in
                for j in 0..<dx { out[j] = T(-(0..<dy).reduce(0.0) { $0 + coupling($1, j) * Double(v[$1]) }) }
            })
    }

    func bilevelContinues<T: BinaryFloatingPoint>(_: T.Type, _ method: EstimatorMethod) throws {
        let dx = 4, dy = 7, iterations = 10
        let options = BilevelOptions(lrX: 0.5, lrY: 0.2, lrXDecay: 0.3, innerSteps: 2)
        let problem = Self.problem(T.self, dx: dx, dy: dy)
        func iterate(_ o: BilevelOptimizer<T>, _ x: inout [T], _ y: inout [T], _ count: Int) throws -> [[UInt64]] {
            try (0..<count).map { _ in
                let info = try x.withUnsafeMutableBufferPointer { xp in
                    try y.withUnsafeMutableBufferPointer { yp in try o.step(x: xp, y: yp, problem: problem) }
                }
                let v = estimate(o.estimator), g = Array(o.hypergradient).map { Double($0) }
                return (x.map { Double($0) } + y.map { Double($0) } + v + g).map(\.bitPattern)
                    + [UInt64(info.iteration), UInt64(info.totalProducts), info.hypergradientNorm.bitPattern]
            }
        }
        let start = ((0..<dx).map { T(0.5 - 0.2 * Double($0)) }, (0..<dy).map { T(0.1 * Double($0)) })
        var (x, y) = start
        let reference = try iterate(try BilevelOptimizer<T>(dx: dx, dy: dy, options: options, method: method), &x, &y, iterations)
        for split in [0, 1, 4, 7] {
            (x, y) = start
            let original = try BilevelOptimizer<T>(dx: dx, dy: dy, options: options, method: method)
            _ = try iterate(original, &x, &y, split)
            var bytes = [UInt8](repeating: 0, count: try original.checkpointSize())
            _ = try bytes.withUnsafeMutableBytes { try original.save(into: $0) }
            let restored = try bytes.withUnsafeBytes { try BilevelOptimizer<T>(restoring: Checkpoint(validating: $0)) }
            let loaded = try BilevelOptimizer<T>(dx: dx, dy: dy, options: options, method: method)
            var (xl, yl) = start
            _ = try iterate(loaded, &xl, &yl, 2)
            try bytes.withUnsafeBytes { try loaded.load(Checkpoint(validating: $0)) }
            (xl, yl) = (x, y)
            #expect(restored.iterations == split && restored.lastInfo == original.lastInfo)
            let next = Array(reference[split...])
            #expect(try iterate(restored, &x, &y, iterations - split) == next, "\(method.name) \(T.self) after \(split)")
            #expect(try iterate(loaded, &xl, &yl, iterations - split) == next, "\(method.name) \(T.self) loaded after \(split)")
        }
    }

    @Test("a restored or loaded bilevel optimizer's next iterations equal the uninterrupted run's bit for bit",
          arguments: [EstimatorMethod.dynamicLanczos(LanczosOptions(initialPeriod: 2, maxPeriod: 5, growth: 1.5, growEvery: 3)),
                      .conjugateGradient(maxIterations: 3, tolerance: 0),
                      .randomNeumann(stepSize: 0.1, maxTerms: 3, seed: 9)])
    func bilevelContinuesBitwise(method: EstimatorMethod) throws {
        try bilevelContinues(Double.self, method)
        try bilevelContinues(Float.self, method)
    }

    @Test("a bilevel optimizer refuses another's checkpoint, and an estimator's")
    func bilevelIncompatible() throws {
        let method = EstimatorMethod.conjugateGradient(maxIterations: 3, tolerance: 0)
        let o = try BilevelOptimizer<Double>(dx: 3, dy: 4, options: BilevelOptions(lrX: 0.1, lrY: 0.1), method: method)
        var bytes = [UInt8](repeating: 0, count: try o.checkpointSize())
        _ = try bytes.withUnsafeMutableBytes { try o.save(into: $0) }
        let others = [
            try BilevelOptimizer<Double>(dx: 2, dy: 4, options: BilevelOptions(lrX: 0.1, lrY: 0.1), method: method),
            try BilevelOptimizer<Double>(dx: 3, dy: 4, options: BilevelOptions(lrX: 0.2, lrY: 0.1), method: method),
            try BilevelOptimizer<Double>(dx: 3, dy: 4, options: BilevelOptions(lrX: 0.1, lrY: 0.1),
                                         method: .minres(maxIterations: 3, tolerance: 0)),
        ]
        try bytes.withUnsafeBytes { raw in
            let c = try Checkpoint(validating: raw)
            #expect(c.kind == .bilevel && c.bilevel?.dx == 3 && c.n == 4)
            for other in others { #expect(throws: EstimatorError.self) { try other.load(c) } }
            #expect(throws: EstimatorError.self) { _ = try Estimator<Double>(restoring: c) }
            #expect(throws: EstimatorError.self) { _ = try BilevelOptimizer<Float>(restoring: c) }
        }
    }
}

func checkpoint<T: BinaryFloatingPoint>(_ e: Estimator<T>) throws -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: try e.checkpointSize())
    let written = try bytes.withUnsafeMutableBytes { try e.save(into: $0) }
    #expect(written == bytes.count)
    return bytes
}

func restore<T: BinaryFloatingPoint>(_: T.Type, _ bytes: [UInt8]) throws -> Estimator<T> {
    try bytes.withUnsafeBytes { try Estimator<T>(restoring: Checkpoint(validating: $0)) }
}
