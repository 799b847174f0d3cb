import Testing
@testable import LancbioCore

/// The vector kernels against plain loops, at every length up to a few vector widths: the
/// kernels run two vectors per step (a vector is 4 or, with AVX-512, 8 values), then one,
/// then single entries, and each of those paths must give the same sums (to rounding) and
/// the same non-finite detection.
@Suite("Vector kernels against plain loops")
struct KernelTests {
    static let lengths = Array(0...41) + [2047, 2048, 2049, 4100]

    /// |got - want| within a few roundings of the sum of the terms' magnitudes.
    static func close(_ got: Double, _ want: Double, scale: Double, ulps: Double = 64) -> Bool {
        (got - want).magnitude <= ulps * Double.ulpOfOne * max(scale, Double.leastNormalMagnitude)
    }

    /// n Gaussian values (at least one: an empty array may have no base address; the
    /// kernels are given n and must not touch the extra entry).
    static func data<T: BinaryFloatingPoint>(_ n: Int, seed: UInt64, as: T.Type) -> [T] {
        var rng = TestRandom(seed: seed)
        return rng.vector(max(n, 1)).map { T($0) }
    }

    @Test("dot and the Lanczos coefficient q . (y - beta p) match the plain sums",
          arguments: [false, true])
    func dotAndCoefficient(float: Bool) {
        for n in Self.lengths {
            if float { check(n, Float.self) } else { check(n, Double.self) }
        }
        func check<T: BinaryFloatingPoint>(_ n: Int, _: T.Type) {
            let q = Self.data(n, seed: 1, as: T.self), y = Self.data(n, seed: 2, as: T.self)
            let p = Self.data(n, seed: 3, as: T.self)
            let beta = 0.37
            var dot = 0.0, dotScale = 0.0, coefficient = 0.0, coefficientScale = 0.0
            for i in 0..<n {
                let (qi, yi, pi) = (Double(q[i]), Double(y[i]), Double(p[i]))
                dot += qi * yi; dotScale += (qi * yi).magnitude
                coefficient += qi * (yi - beta * pi); coefficientScale += (qi * (yi - beta * pi)).magnitude
            }
            q.withUnsafeBufferPointer { q in y.withUnsafeBufferPointer { y in p.withUnsafeBufferPointer { p in
                let qb = q.baseAddress!, yb = y.baseAddress!, pb = p.baseAddress!
                #expect(Self.close(Kernels.dot(qb, yb, n), dot, scale: dotScale), "dot, n = \(n)")
                #expect(Self.close(Kernels.lanczosCoefficient(q: qb, y: yb, previous: pb, beta: beta, n),
                                   coefficient, scale: coefficientScale), "coefficient, n = \(n)")
                #expect(Self.close(Kernels.lanczosCoefficient(q: qb, y: yb, previous: nil, beta: beta, n),
                                   dot, scale: dotScale), "coefficient without p, n = \(n)")
            } } }
        }
    }

    @Test("the three-term residual stores y - alpha q - beta p and returns its sum of squares",
          arguments: [false, true])
    func residual(float: Bool) {
        for n in Self.lengths {
            if float { check(n, Float.self) } else { check(n, Double.self) }
        }
        func check<T: BinaryFloatingPoint>(_ n: Int, _: T.Type) {
            let q = Self.data(n, seed: 4, as: T.self), y = Self.data(n, seed: 5, as: T.self)
            let p = Self.data(n, seed: 6, as: T.self)
            let (alpha, beta) = (0.81, -1.3)
            for withPrevious in [true, false] {
                var out = [T](repeating: 0, count: max(n, 1))
                let squares = q.withUnsafeBufferPointer { q in y.withUnsafeBufferPointer { y in
                    p.withUnsafeBufferPointer { p in out.withUnsafeMutableBufferPointer { o in
                        Kernels.lanczosResidual(y: y.baseAddress!, q: q.baseAddress!, alpha: alpha,
                                                previous: withPrevious ? p.baseAddress! : nil, beta: beta,
                                                into: o.baseAddress!, n)
                    } }
                } }
                var want = 0.0
                for i in 0..<n {
                    let value = Double(y[i]) - alpha * Double(q[i]) - (withPrevious ? beta * Double(p[i]) : 0)
                    #expect((Double(out[i]) - value).magnitude <= 4 * Double(T.ulpOfOne) * (value.magnitude + 1),
                            "entry \(i) of \(n)")
                    want += Double(out[i]) * Double(out[i])
                }
                #expect(Self.close(squares, want, scale: want), "sum of squares, n = \(n)")
            }
        }
    }

    @Test("allFinite finds a NaN or an infinity at any position, in either precision, and accepts the largest finite values")
    func allFiniteFindsEveryNonFiniteEntry() {
        func check<T: BinaryFloatingPoint>(_: T.Type) {
            for n in Self.lengths + [64, 65, 97] {
                var x = Self.data(n, seed: 11, as: T.self)
                x.withUnsafeBufferPointer { #expect(Kernels.allFinite($0.baseAddress!, n), "\(T.self) n = \(n)") }
                for i in 0..<n {
                    x[i] = i % 2 == 0 ? T.greatestFiniteMagnitude : -T.leastNonzeroMagnitude
                }
                x.withUnsafeBufferPointer { #expect(Kernels.allFinite($0.baseAddress!, n), "extremes, n = \(n)") }
                // Every position while n is small (each lane and the tail), a few beyond.
                let positions = n <= 97 ? Array(0..<n) : [0, 1, n / 2, n - 9, n - 1]
                for bad in [T.nan, .infinity, -.infinity] {
                    for i in positions {
                        var z = x
                        z[i] = bad
                        let found = z.withUnsafeBufferPointer { Kernels.allFinite($0.baseAddress!, n) }
                        #expect(!found, "\(T.self) \(bad) at \(i) of \(n)")
                    }
                }
            }
        }
        check(Double.self)
        check(Float.self)
    }

    @Test("maxMagnitude is the largest |x_i| (infinity included), NaN when any entry is NaN, at any position")
    func maxMagnitudeMatchesThePlainLoop() {
        func check<T: BinaryFloatingPoint>(_: T.Type) {
            for n in Self.lengths + [64, 65, 97] {
                let x = Self.data(n, seed: 14, as: T.self)
                let positions = n <= 97 ? Array(0..<n) : [0, 1, n / 2, n - 9, n - 1]
                for i in [nil] + positions.map(Optional.some) {
                    for special in [T(-1e6), .infinity, -.infinity, .nan, -0.0] where i != nil || special == -1e6 {
                        var z = x
                        if let i { z[i] = special }
                        var want = 0.0
                        for k in 0..<n { want = Swift.max(want, Double(z[k]).magnitude) }
                        let sawNaN = z.prefix(n).contains { $0.isNaN }
                        let got = z.withUnsafeBufferPointer { Kernels.maxMagnitude($0.baseAddress!, n) }
                        #expect(sawNaN ? got.isNaN : got == want, "\(T.self) n = \(n), x[\(String(describing: i))] = \(special)")
                    }
                }
            }
        }
        check(Double.self)
        check(Float.self)
    }

    @Test("axpyStaysFinite agrees with computing y + a x in T entry by entry, Float overflow included")
    func axpyStaysFinite() {
        func check<T: BinaryFloatingPoint>(_: T.Type) {
            for n in Self.lengths where n > 0 {
                let x = Self.data(n, seed: 12, as: T.self), y = Self.data(n, seed: 13, as: T.self)
                for i in Set([0, n / 2, n - 1]) {
                    for (a, xi) in [(-0.5, T(3)), (-2.0, T.greatestFiniteMagnitude), (1.0, T.nan)] {
                        var z = x
                        z[i] = xi
                        let want = (0..<n).allSatisfy { T(Double(y[$0]) + a * Double(z[$0])).isFinite }
                        let got = z.withUnsafeBufferPointer { z in y.withUnsafeBufferPointer { y in
                            Kernels.axpyStaysFinite(a, z.baseAddress!, y.baseAddress!, n)
                        } }
                        #expect(got == want, "\(T.self) n = \(n), x[\(i)] = \(xi), a = \(a)")
                    }
                }
            }
        }
        check(Double.self)
        check(Float.self)
    }

    @Test("copy-and-measure copies exactly, sums the squares, and finds a non-finite entry anywhere")
    func copyMeasuring() {
        for n in Self.lengths {
            let x = Self.data(n, seed: 7, as: Double.self)
            var y = [Double](repeating: 0, count: max(n, 1))
            let measured = x.withUnsafeBufferPointer { x in y.withUnsafeMutableBufferPointer { y in
                Kernels.copyMeasuring(x.baseAddress!, into: y.baseAddress!, n)
            } }
            let want = x.prefix(n).reduce(0) { $0 + $1 * $1 }
            #expect(measured.allFinite)
            #expect(Self.close(measured.sumOfSquares, want, scale: want))
            #expect(y.prefix(n) == x.prefix(n))
            for bad in [Double.nan, .infinity, -.infinity] where n <= 41 {
                for i in 0..<n {
                    var z = x
                    z[i] = bad
                    let found = z.withUnsafeBufferPointer { Kernels.measure($0.baseAddress!, n) }
                    #expect(!found.allFinite, "\(bad) at \(i) of \(n)")
                }
            }
        }
    }

    @Test("the fused update y = b y + a x reports finiteness and the sum of squares of the new y")
    func update() {
        for n in Self.lengths {
            let x = Self.data(n, seed: 8, as: Float.self)
            var y = Self.data(n, seed: 9, as: Float.self)
            let old = y
            let (a, b) = (0.25, -2.0)
            let result = x.withUnsafeBufferPointer { x in y.withUnsafeMutableBufferPointer { y in
                Kernels.update(y.baseAddress!, times: b, plus: a, times: x.baseAddress!, n)
            } }
            var want = 0.0
            for i in 0..<n {
                #expect(y[i] == Float(b * Double(old[i]) + a * Double(x[i])), "entry \(i) of \(n)")
                want += Double(y[i]) * Double(y[i])
            }
            #expect(result.allFinite)
            #expect(Self.close(result.sumOfSquares, want, scale: want))
            if n > 0 {
                var poisoned = x
                poisoned[n - 1] = .infinity
                var z = old
                let bad = poisoned.withUnsafeBufferPointer { x in z.withUnsafeMutableBufferPointer { z in
                    Kernels.update(z.baseAddress!, times: b, plus: a, times: x.baseAddress!, n)
                } }
                #expect(!bad.allFinite, "infinity at the last entry of \(n)")
            }
        }
    }

    /// Row counts for the multi-column kernels: every vector path (two vectors, one, single
    /// rows) at both vector widths, and blocks of kernelBlockRows rows with a remainder.
    static let blockLengths = Array(0...41) + [2049, kernelBlockRows + 5, 2 * kernelBlockRows + 3]

    @Test("the projection Q^T (b - w), with and without the check of z, matches plain sums",
          arguments: [1, 3, 4, 5, 8, 11])
    func projection(columns: Int) {
        projection(columns: columns, as: Double.self)
        projection(columns: columns, as: Float.self)
    }

    func projection<T: BinaryFloatingPoint>(columns: Int, as: T.Type) {
        for n in Self.blockLengths {
            let basis = Self.data(n * columns, seed: 10, as: T.self)
            let b = Self.data(n, seed: 11, as: T.self), w = Self.data(n, seed: 12, as: T.self)
            let z0 = Self.data(n, seed: 13, as: T.self)
            for checkZ in [true, false] {
                var z = z0
                var s = [Double](repeating: .nan, count: columns), u = [Double](repeating: .nan, count: columns)
                var scratch = [Double](repeating: 0, count: kernelBlockRows)
                let zScale = 0.5
                basis.withUnsafeBufferPointer { q in b.withUnsafeBufferPointer { b in w.withUnsafeBufferPointer { w in
                    z.withUnsafeMutableBufferPointer { z in s.withUnsafeMutableBufferPointer { s in
                        u.withUnsafeMutableBufferPointer { u in scratch.withUnsafeMutableBufferPointer { scratch in
                            Kernels.projectResidual(q.baseAddress!, rows: n, stride: n, columns: columns,
                                                    rhs: b.baseAddress!, minus: w.baseAddress!,
                                                    coefficients: s.baseAddress!, and: checkZ ? z.baseAddress! : nil,
                                                    scalingBy: zScale, zCoefficients: u.baseAddress!,
                                                    scratch: scratch.baseAddress!)
                        } }
                    } }
                } } }
                for c in 0..<columns {
                    var want = 0.0, scale = 0.0, wantZ = 0.0, scaleZ = 0.0
                    for i in 0..<n {
                        let qi = Double(basis[c * n + i]), ri = Double(b[i]) - Double(w[i])
                        want += qi * ri; scale += (qi * ri).magnitude
                        wantZ += qi * Double(z0[i]) * zScale; scaleZ += (qi * Double(z0[i]) * zScale).magnitude
                    }
                    #expect(Self.close(s[c], want, scale: scale), "\(T.self) column \(c), n = \(n), z: \(checkZ)")
                    if checkZ { #expect(Self.close(u[c], wantZ, scale: scaleZ), "\(T.self) z column \(c), n = \(n)") }
                }
                // Scaling by 0.5 is exact: z is halved with the check, untouched without it.
                #expect(Array(z.prefix(n)) == z0.prefix(n).map { checkZ ? $0 * T(zScale) : $0 })
                #expect(z.count == n || z[n] == z0[n])
            }
        }
    }

    @Test("the combination base + Q s matches plain sums, in place or not, across blocks and sweeps",
          arguments: [0, 1, 3, 8, 9, 17])
    func combination(columns: Int) {
        combination(columns: columns, as: Double.self)
        combination(columns: columns, as: Float.self)
    }

    func combination<T: BinaryFloatingPoint>(columns: Int, as: T.Type) {
        for n in Self.blockLengths where n > 0 {
            let basis = Self.data(n * columns, seed: 14, as: T.self)
            let base = Self.data(n, seed: 15, as: T.self)
            let s = Self.data(columns, seed: 16, as: Double.self)
            var scratch = [Double](repeating: 0, count: kernelBlockRows)
            for (inPlace, withBase) in [(false, true), (false, false), (true, true)] {
                var out = inPlace ? base : [T](repeating: .nan, count: n)
                let finite = basis.withUnsafeBufferPointer { q in s.withUnsafeBufferPointer { s in
                    base.withUnsafeBufferPointer { base in out.withUnsafeMutableBufferPointer { out in
                        scratch.withUnsafeMutableBufferPointer { scratch in
                            Kernels.combineColumns(q.baseAddress!, n: n, columns: columns, coefficients: s.baseAddress!,
                                                   base: withBase ? (inPlace ? UnsafePointer(out.baseAddress!)
                                                                             : base.baseAddress!) : nil,
                                                   into: out.baseAddress!, scratch: scratch.baseAddress!)
                        }
                    } }
                } }
                #expect(finite)
                for i in 0..<n {
                    var want = withBase ? Double(base[i]) : 0, scale = want.magnitude
                    for c in 0..<columns {
                        want += s[c] * Double(basis[c * n + i]); scale += (s[c] * Double(basis[c * n + i])).magnitude
                    }
                    // One rounding to T at the end; the sums themselves are in Double.
                    #expect((Double(out[i]) - want).magnitude <= Double(T.ulpOfOne) * want.magnitude
                            + 64 * Double.ulpOfOne * scale, "\(T.self) entry \(i) of \(n), \(columns) columns")
                }
            }
        }
    }

    @Test("buffers for the kernels start on a cache line, hold zeros, and are released",
          arguments: [1, 3, 1000, 1 << 17])
    func zeroedBuffersAreAligned(count: Int) throws {
        // Large blocks come from mmap, 16 bytes into a page: the case alignment must fix.
        let d = try UnsafeMutablePointer<Double>.allocate(zeroed: count)
        let f = try UnsafeMutablePointer<Float>.allocate(zeroed: count)
        #expect(UInt(bitPattern: d) % 64 == 0)
        #expect(UInt(bitPattern: f) % 64 == 0)
        #expect((0..<count).allSatisfy { d[$0] == 0 && f[$0] == 0 })
        d.update(repeating: 1, count: count); f.update(repeating: 1, count: count)
        d.deallocateZeroed(); f.deallocateZeroed()
        // Both ways of getting such memory, whichever this build uses: the padded calloc
        // block of release builds and the exact block of debug (sanitizer) builds.
        for bytes in [8, 100, 8 * count] {
            let padded = LineAlignedMemory.padded(bytes)!, exact = LineAlignedMemory.exact(bytes)!
            #expect(UInt(bitPattern: padded) % 64 == 0 && UInt(bitPattern: exact) % 64 == 0)
            #expect((0..<bytes).allSatisfy { padded.load(fromByteOffset: $0, as: UInt8.self) == 0 })
            #expect((0..<bytes).allSatisfy { exact.load(fromByteOffset: $0, as: UInt8.self) == 0 })
            padded.initializeMemory(as: UInt8.self, repeating: 0xff, count: bytes)
            exact.initializeMemory(as: UInt8.self, repeating: 0xff, count: bytes)
            LineAlignedMemory.releasePadded(padded); LineAlignedMemory.releaseExact(exact)
        }
    }
}
