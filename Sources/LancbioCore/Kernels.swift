// Vector kernels shared by every estimator.
//
// All reductions accumulate in Double, whatever the storage type: Float32 dot products over
// 10^6 entries lose too many digits otherwise, and the conversion is free next to the
// memory traffic. Loops run over raw pointers whose counts the callers have verified, and
// reductions keep several independent accumulators so the compiler can vectorise them
// without reassociating a single sum.

/// Rows processed per block by the multi-column kernels. The block of the vector the columns
/// meet (128 kB in Double) stays in L2 while the columns sweep it, so each matrix element is
/// read from memory once; and each column is read in runs of this many rows, long enough
/// for the hardware prefetcher. (Measured at n = 1e6, j = 40, alternating builds: the two
/// basis passes took 6-12% less time than with 2048-row blocks, which stay in L1 but give
/// the prefetcher 16 kB runs.)
@usableFromInline let kernelBlockRows = 16384

@usableFromInline
enum Kernels {
    /// sum_i x_i * y_i, accumulated in Double (x and y may differ in precision).
    @inlinable
    static func dot<T: BinaryFloatingPoint, U: BinaryFloatingPoint>(
        _ x: UnsafePointer<T>, _ y: UnsafePointer<U>, _ n: Int
    ) -> Double {
        // Two vector accumulators: one chain of fused adds would wait on its own latency
        // and run at half the speed of a cache-resident vector.
        var s0 = DoubleLanes(), s1 = DoubleLanes()
        var i = 0
        while i &+ 2 &* laneCount <= n {
            s0 = multiplyAdd(loadLanes(x, i), loadLanes(y, i), s0)
            s1 = multiplyAdd(loadLanes(x, i &+ laneCount), loadLanes(y, i &+ laneCount), s1)
            i &+= 2 &* laneCount
        }
        if i &+ laneCount <= n {
            s0 = multiplyAdd(loadLanes(x, i), loadLanes(y, i), s0)
            i &+= laneCount
        }
        var sum = total(s0 + s1)
        while i < n {
            sum += Double(x[i]) * Double(y[i])
            i &+= 1
        }
        return sum
    }

    /// Euclidean norm without spurious overflow or underflow.
    ///
    /// The fast path squares and sums in Double. Only when that sum is not safely inside the
    /// normal range (it overflowed, or it is so small that squaring lost digits) is the
    /// vector rescaled by its largest magnitude and summed again, as BLAS nrm2 does.
    @inlinable
    static func norm<T: BinaryFloatingPoint>(_ x: UnsafePointer<T>, _ n: Int) -> Double {
        let sumOfSquares = dot(x, x, n)
        if sumOfSquares.isFinite && (sumOfSquares == 0 || sumOfSquares >= 0x1p-900) && sumOfSquares <= 0x1p900 {
            if sumOfSquares != 0 { return sumOfSquares.squareRoot() }
            // Zero: either all entries are zero, or they underflowed when squared.
            if maxMagnitude(x, n) == 0 { return 0 }
        }
        return carefulNorm(x, n)
    }

    /// ||x - y|| without forming x - y, with `norm`'s care: the differences are squared
    /// and summed in Double, and summed again rescaled by the largest when that sum is not
    /// safely inside the normal range. NaN or infinity in either vector gives a non-finite
    /// result.
    @inlinable
    static func distance<T: BinaryFloatingPoint>(_ x: UnsafePointer<T>, _ y: UnsafePointer<T>, _ n: Int) -> Double {
        var s0 = DoubleLanes(), s1 = DoubleLanes()
        var i = 0
        while i &+ 2 &* laneCount <= n {
            let d0 = loadLanes(x, i) - loadLanes(y, i)
            let d1 = loadLanes(x, i &+ laneCount) - loadLanes(y, i &+ laneCount)
            s0 = multiplyAdd(d0, d0, s0); s1 = multiplyAdd(d1, d1, s1)
            i &+= 2 &* laneCount
        }
        if i &+ laneCount <= n {
            let d0 = loadLanes(x, i) - loadLanes(y, i)
            s0 = multiplyAdd(d0, d0, s0)
            i &+= laneCount
        }
        var sum = total(s0 + s1)
        while i < n {
            let d = Double(x[i]) - Double(y[i])
            sum += d * d
            i &+= 1
        }
        if sum.isFinite && sum >= 0x1p-900 && sum <= 0x1p900 { return sum.squareRoot() }
        return carefulDistance(x, y, n)
    }

    @usableFromInline
    static func carefulDistance<T: BinaryFloatingPoint>(_ x: UnsafePointer<T>, _ y: UnsafePointer<T>, _ n: Int) -> Double {
        var scale = 0.0
        var sawNaN = false
        for i in 0..<n {
            let a = (Double(x[i]) - Double(y[i])).magnitude
            sawNaN = sawNaN || a.isNaN
            scale = a > scale ? a : scale
        }
        if sawNaN { return .nan }
        guard scale.isFinite, scale > 0 else { return scale }
        var sum = 0.0
        for i in 0..<n {
            let t = (Double(x[i]) - Double(y[i])) / scale
            sum += t * t
        }
        return scale * sum.squareRoot()
    }

    @usableFromInline
    static func carefulNorm<T: BinaryFloatingPoint>(_ x: UnsafePointer<T>, _ n: Int) -> Double {
        let scale = maxMagnitude(x, n)
        guard scale.isFinite, scale > 0 else { return scale }  // NaN, Inf, or zero pass through
        // Divide rather than multiply by 1 / scale: for a subnormal scale the reciprocal
        // overflows. This path is rare, so the slower division costs nothing that matters.
        var sum = 0.0
        for i in 0..<n {
            let t = Double(x[i]) / scale
            sum += t * t
        }
        return scale * sum.squareRoot()
    }

    /// max_i |x_i|; NaN if any entry is NaN.
    @inlinable
    static func maxMagnitude<T: BinaryFloatingPoint>(_ x: UnsafePointer<T>, _ n: Int) -> Double {
        // In vectors: the scalar loop's select chain ran at a fraction of the memory speed,
        // and `norm` calls this on every vector whose squares sum to zero (a residual that
        // vanished, a Krylov space that became invariant), in some problems every step.
        // A NaN never compares greater, so it never replaces the maximum; the mask notes it.
        let w = laneCount
        var m0 = DoubleLanes(), m1 = DoubleLanes()
        var nan0 = SIMDMask<DoubleLanes.MaskStorage>(), nan1 = SIMDMask<DoubleLanes.MaskStorage>()
        var i = 0
        @inline(__always) func magnitude(_ v: DoubleLanes) -> DoubleLanes { v.replacing(with: -v, where: v .< 0) }
        while i &+ 2 &* w <= n {
            let a0 = magnitude(loadLanes(x, i)), a1 = magnitude(loadLanes(x, i &+ w))
            nan0 .|= a0 .!= a0
            nan1 .|= a1 .!= a1
            m0.replace(with: a0, where: a0 .> m0)
            m1.replace(with: a1, where: a1 .> m1)
            i &+= 2 &* w
        }
        m0.replace(with: m1, where: m1 .> m0)
        var m = m0.max()
        var sawNaN = any(nan0 .| nan1)
        while i < n {
            let a = Double(x[i]).magnitude
            sawNaN = sawNaN || a.isNaN
            m = a > m ? a : m
            i &+= 1
        }
        return sawNaN ? .nan : m
    }

    /// True when every entry is finite. Branch-free: x * 0 is 0 for finite x and NaN
    /// otherwise, so the sum stays 0 exactly when all entries are finite.
    ///
    /// In vectors, four sums at a time: a scalar sum is a chain of dependent additions,
    /// one value per add latency (measured 88 us at n = 64000, 6 GB/s, where the same
    /// pass in vectors runs at the cache's speed). The bilevel step checks x, y and every
    /// callback's output with it, 12 passes an iteration.
    @inlinable
    static func allFinite<T: BinaryFloatingPoint>(_ x: UnsafePointer<T>, _ n: Int) -> Bool {
        let w = laneCount
        var s0 = DoubleLanes(), s1 = DoubleLanes(), s2 = DoubleLanes(), s3 = DoubleLanes()
        var i = 0
        while i &+ 4 &* w <= n {
            s0 += loadLanes(x, i) * 0
            s1 += loadLanes(x, i &+ w) * 0
            s2 += loadLanes(x, i &+ 2 &* w) * 0
            s3 += loadLanes(x, i &+ 3 &* w) * 0
            i &+= 4 &* w
        }
        while i &+ w <= n {
            s0 += loadLanes(x, i) * 0
            i &+= w
        }
        var s = total((s0 + s1) + (s2 + s3))
        while i < n {
            s += Double(x[i]) * 0
            i &+= 1
        }
        return s == 0
    }

    @inlinable
    static func copy<T>(_ source: UnsafePointer<T>, to destination: UnsafeMutablePointer<T>, _ n: Int) {
        destination.update(from: source, count: n)
    }

    @inlinable
    static func fill<T: BinaryFloatingPoint>(_ x: UnsafeMutablePointer<T>, _ n: Int, with value: T) {
        x.update(repeating: value, count: n)
    }

    /// x *= a
    @inlinable
    static func scale<T: BinaryFloatingPoint>(_ x: UnsafeMutablePointer<T>, _ n: Int, by a: Double) {
        for i in 0..<n { x[i] = T(Double(x[i]) * a) }
    }

    /// y += a * x
    @inlinable
    static func axpy<T: BinaryFloatingPoint>(_ a: Double, _ x: UnsafePointer<T>, _ y: UnsafeMutablePointer<T>, _ n: Int) {
        for i in 0..<n { y[i] = T(Double(y[i]) + a * Double(x[i])) }
    }

    /// Whether every entry of y + a x, rounded to T, is finite; writes nothing (the check
    /// before an update that must not fail halfway). In vectors: the scalar loop with an
    /// early exit ran at a quarter of the memory speed.
    @inlinable
    static func axpyStaysFinite<T: BinaryFloatingPoint>(
        _ a: Double, _ x: UnsafePointer<T>, _ y: UnsafePointer<T>, _ n: Int
    ) -> Bool {
        let va = DoubleLanes(repeating: a), w = laneCount
        var p0 = DoubleLanes(), p1 = DoubleLanes()
        var i = 0
        while i &+ 2 &* w <= n {
            p0 += rounded(loadLanes(y, i) + va * loadLanes(x, i), to: T.self) * 0
            p1 += rounded(loadLanes(y, i &+ w) + va * loadLanes(x, i &+ w), to: T.self) * 0
            i &+= 2 &* w
        }
        var p = total(p0 + p1)
        while i < n {
            p += Double(T(Double(y[i]) + a * Double(x[i]))) * 0
            i &+= 1
        }
        return p == 0
    }

    /// y = b y + a x, in one pass that also reports whether every entry of the new y is
    /// finite and its sum of squares (accumulated in Double as `dot` sums, so the norm
    /// needs no second pass). b = 1 is y += a x exactly; a = 1 is y = x + b y exactly.
    @inlinable
    static func update<T: BinaryFloatingPoint>(
        _ y: UnsafeMutablePointer<T>, times b: Double, plus a: Double, times x: UnsafePointer<T>, _ n: Int
    ) -> (allFinite: Bool, sumOfSquares: Double) {
        let va = DoubleLanes(repeating: a), vb = DoubleLanes(repeating: b)
        // A local function marked to be inlined, not a closure literal: with 8-wide vectors
        // the optimiser left closure literals that capture vectors out of line.
        @inline(__always) func value(_ i: Int) -> DoubleLanes {
            rounded(vb * loadLanes(UnsafePointer(y), i) + va * loadLanes(x, i), to: T.self)
        }
        var (sum, bad, i) = streamMeasuring(n, value: value, store: { storeLanes($1, y, $0) })
        while i < n {
            let value = T(b * Double(y[i]) + a * Double(x[i]))
            y[i] = value
            bad += Double(value) * 0
            sum += Double(value) * Double(value)
            i &+= 1
        }
        return (bad == 0, sum)
    }

    /// z = x - y
    @inlinable
    static func subtract<T: BinaryFloatingPoint>(
        _ x: UnsafePointer<T>, _ y: UnsafePointer<T>, into z: UnsafeMutablePointer<T>, _ n: Int
    ) {
        for i in 0..<n { z[i] = x[i] - y[i] }
    }


}

extension Kernels {
    /// y = a * x
    @inlinable
    static func scaledCopy<T: BinaryFloatingPoint>(_ x: UnsafePointer<T>, by a: Double, into y: UnsafeMutablePointer<T>, _ n: Int) {
        for i in 0..<n { y[i] = T(Double(x[i]) * a) }
    }

    /// The three-term Lanczos coefficient q . (y - b p) in one pass (p nil means b p = 0).
    @inlinable
    static func lanczosCoefficient<T: BinaryFloatingPoint>(
        q: UnsafePointer<T>, y: UnsafePointer<T>, previous p: UnsafePointer<T>?, beta b: Double, _ n: Int
    ) -> Double {
        guard let p else { return dot(q, y, n) }
        let vb = DoubleLanes(repeating: b)
        var s0 = DoubleLanes(), s1 = DoubleLanes()
        var i = 0
        while i &+ 2 &* laneCount <= n {
            s0 = multiplyAdd(loadLanes(q, i), loadLanes(y, i) - vb * loadLanes(p, i), s0)
            s1 = multiplyAdd(loadLanes(q, i &+ laneCount), loadLanes(y, i &+ laneCount) - vb * loadLanes(p, i &+ laneCount), s1)
            i &+= 2 &* laneCount
        }
        if i &+ laneCount <= n {
            s0 = multiplyAdd(loadLanes(q, i), loadLanes(y, i) - vb * loadLanes(p, i), s0)
            i &+= laneCount
        }
        var sum = total(s0 + s1)
        while i < n {
            sum += Double(q[i]) * (Double(y[i]) - b * Double(p[i]))
            i &+= 1
        }
        return sum
    }

    /// out = y - a q - b p (p nil means b p = 0): the unnormalised next Lanczos vector.
    /// Returns the sum of squares of the stored out, for `norm(fromSumOfSquares:)`, so
    /// the norm costs no second pass.
    @inlinable @discardableResult
    static func lanczosResidual<T: BinaryFloatingPoint>(
        y: UnsafePointer<T>, q: UnsafePointer<T>, alpha a: Double, previous p: UnsafePointer<T>?, beta b: Double,
        into out: UnsafeMutablePointer<T>, _ n: Int
    ) -> Double {
        let va = DoubleLanes(repeating: a), vb = DoubleLanes(repeating: b)
        @inline(__always) func store(_ i: Int, _ v: DoubleLanes) { storeLanes(v, out, i) }
        var squares: Double, i: Int
        if let p {
            @inline(__always) func value(_ i: Int) -> DoubleLanes {
                rounded(loadLanes(y, i) - va * loadLanes(q, i) - vb * loadLanes(p, i), to: T.self)
            }
            (squares, _, i) = streamMeasuring(n, value: value, store: store)
        } else {
            @inline(__always) func value(_ i: Int) -> DoubleLanes { rounded(loadLanes(y, i) - va * loadLanes(q, i), to: T.self) }
            (squares, _, i) = streamMeasuring(n, value: value, store: store)
        }
        while i < n {
            let value = T(Double(y[i]) - a * Double(q[i]) - (p.map { b * Double($0[i]) } ?? 0))
            out[i] = value
            squares += Double(value) * Double(value)
            i &+= 1
        }
        return squares
    }

    /// For i = 0, w, 2w, ... (w = laneCount) while w entries fit in n: v = value(i),
    /// store(i, v). Returns the sum of squares of the v (fused adds), their poison sum
    /// (v * 0: zero exactly when every v is finite) and the first row left. Two of each
    /// sum, so that no add waits on the one before it; a caller that ignores a sum does not
    /// pay for it once inlined.
    @inlinable @inline(__always)
    static func streamMeasuring(
        _ n: Int, value: (Int) -> DoubleLanes, store: (Int, DoubleLanes) -> Void
    ) -> (sumOfSquares: Double, poison: Double, rowsDone: Int) {
        var squares = DoubleLanes(), poison = DoubleLanes()
        var squares1 = DoubleLanes(), poison1 = DoubleLanes()
        var i = 0
        while i &+ 2 &* laneCount <= n {
            let v0 = value(i), v1 = value(i &+ laneCount)
            store(i, v0); store(i &+ laneCount, v1)
            squares = multiplyAdd(v0, v0, squares); squares1 = multiplyAdd(v1, v1, squares1)
            poison += v0 * 0; poison1 += v1 * 0
            i &+= 2 &* laneCount
        }
        if i &+ laneCount <= n {
            let v0 = value(i)
            store(i, v0)
            squares = multiplyAdd(v0, v0, squares)
            poison += v0 * 0
            i &+= laneCount
        }
        return (total(squares + squares1), total(poison + poison1), i)
    }

    /// The norm from a sum of squares accumulated in Double, when that sum is safely
    /// inside the normal range; nil when it overflowed or lost digits to underflow (or is
    /// zero), where only `norm`'s rescaling pass gives the right answer.
    @inlinable
    static func norm(fromSumOfSquares s: Double) -> Double? {
        s.isFinite && s >= 0x1p-900 && s <= 0x1p900 ? s.squareRoot() : nil
    }

    /// Whether every entry of x is finite, and its sum of squares in Double, in one pass.
    @inlinable
    static func measure<T: BinaryFloatingPoint>(_ x: UnsafePointer<T>, _ n: Int) -> (allFinite: Bool, sumOfSquares: Double) {
        measuring(x, n, store: { _, _ in }, storeScalar: { _ in })
    }

    /// Copies x into y in the same pass that checks it and measures it: returns whether
    /// every entry is finite and the sum of squares in Double (see `norm(fromSumOfSquares:)`).
    @inlinable
    static func copyMeasuring<T: BinaryFloatingPoint>(
        _ x: UnsafePointer<T>, into y: UnsafeMutablePointer<T>, _ n: Int
    ) -> (allFinite: Bool, sumOfSquares: Double) {
        measuring(x, n, store: { i, value in storeLanes(value, y, i) }, storeScalar: { i in y[i] = x[i] })
    }

    @inlinable @inline(__always)
    static func measuring<T: BinaryFloatingPoint>(
        _ x: UnsafePointer<T>, _ n: Int, store: (Int, DoubleLanes) -> Void, storeScalar: (Int) -> Void
    ) -> (allFinite: Bool, sumOfSquares: Double) {
        // x * 0 is 0 for finite x and NaN otherwise: the poison sum stays 0 exactly when
        // all entries are finite, without a branch in the loop.
        var (sum, bad, i) = streamMeasuring(n, value: { loadLanes(x, $0) }, store: store)
        while i < n {
            let value = Double(x[i])
            storeScalar(i)
            sum += value * value
            bad += value * 0
            i &+= 1
        }
        return (bad == 0, sum)
    }
}

extension Kernels {
    /// x /= d. Multiplies by 1 / d when that is finite (the fast path); divides element by
    /// element when d is so small (subnormal) that its reciprocal overflows.
    @inlinable
    static func scale<T: BinaryFloatingPoint>(_ x: UnsafeMutablePointer<T>, _ n: Int, dividingBy d: Double) {
        let r = 1 / d
        if r.isFinite {
            scale(x, n, by: r)
        } else {
            for i in 0..<n { x[i] = T(Double(x[i]) / d) }
        }
    }

    /// y = x / d, with the same care as `scale(_:_:dividingBy:)`.
    @inlinable
    static func scaledCopy<T: BinaryFloatingPoint>(_ x: UnsafePointer<T>, dividingBy d: Double,
                                                   into y: UnsafeMutablePointer<T>, _ n: Int) {
        let r = 1 / d
        if r.isFinite {
            scaledCopy(x, by: r, into: y, n)
        } else {
            for i in 0..<n { y[i] = T(Double(x[i]) / d) }
        }
    }
}
