// The combination v = vbar + Q s of a Lanczos step: the second pass over the basis.

extension Kernels {
    /// out = base + sum_c coefficients[c] * q_c over the first `columns` columns of `basis`
    /// (column stride `stride`, default n; `n` rows; base nil means zero), accumulating in
    /// Double. Returns false when any output entry is not finite (overflow), so callers
    /// need no second pass to check. `out` may be `base`.
    ///
    /// Blocked by rows: eight columns at a time sweep a block, their sum added to the
    /// partial sums of the block, which stay in `scratch` (Double, count >=
    /// min(kernelBlockRows, n), in cache) between sweeps. The first sweep starts from base
    /// and the last writes out, so with up to eight columns a block is a single sweep; each
    /// matrix element is read once.
    @inlinable
    static func combineColumns<T: BinaryFloatingPoint>(
        _ basis: UnsafePointer<T>, n: Int, stride: Int? = nil, columns: Int, coefficients: UnsafePointer<Double>,
        base: UnsafePointer<T>?, into out: UnsafeMutablePointer<T>, scratch: UnsafeMutablePointer<Double>
    ) -> Bool {
        let stride = stride ?? n
        guard columns > 0 else {
            // No column to pad with: out = base.
            var poison = 0.0
            for t in 0..<n {
                let value = base.map { $0[t] } ?? 0
                out[t] = value
                poison += Double(value) * 0
            }
            return poison == 0
        }
        let sweeps = (columns + 7) / 8
        var poison = DoubleLanes()
        var start = 0
        while start < n {
            let rows = min(kernelBlockRows, n &- start)
            for sweep in 0..<sweeps {
                let c = sweep &* 8
                let count = min(8, columns &- c)
                // Missing columns repeat the first with coefficient 0 (x + 0 * q is x):
                // one loop body serves every count, at the price of a few cached loads.
                let first = basis + (c &* stride &+ start)
                func column(_ k: Int) -> UnsafePointer<T> { k < count ? first + k &* stride : first }
                func coefficient(_ k: Int) -> Double { k < count ? coefficients[c &+ k] : 0 }
                let q = (column(0), column(1), column(2), column(3), column(4), column(5), column(6), column(7))
                let a = (coefficient(0), coefficient(1), coefficient(2), coefficient(3),
                         coefficient(4), coefficient(5), coefficient(6), coefficient(7))
                // Local functions marked to be inlined rather than closure literals: with
                // 8-wide vectors the optimiser left some of those out of line (a call per row).
                let b = base.map { $0 + start }
                @inline(__always) func fromBase(_ t: Int) -> DoubleLanes { loadLanes(b.unsafelyUnwrapped, t) }
                @inline(__always) func fromBase(_ t: Int) -> Double { Double(b.unsafelyUnwrapped[t]) }
                @inline(__always) func zero(_ t: Int) -> DoubleLanes { DoubleLanes() }
                @inline(__always) func zero(_ t: Int) -> Double { 0 }
                @inline(__always) func fromScratch(_ t: Int) -> DoubleLanes { loadLanes(scratch, t) }
                @inline(__always) func fromScratch(_ t: Int) -> Double { scratch[t] }
                @inline(__always) func toOut(_ t: Int, _ v: DoubleLanes) { poison += storeRounded(v, out + start, t) }
                @inline(__always) func toOut(_ t: Int, _ v: Double) { poison[0] += storeRounded(v, out + start, t) }
                @inline(__always) func toScratch(_ t: Int, _ v: DoubleLanes) { storeLanes(v, scratch, t) }
                @inline(__always) func toScratch(_ t: Int, _ v: Double) { scratch[t] = v }
                switch (sweep > 0, sweep == sweeps &- 1, b != nil) {
                case (false, true, true):
                    sweepBlock(q, a, rows, load: fromBase, scalar: fromBase, store: toOut, storeScalar: toOut)
                case (false, true, false):
                    sweepBlock(q, a, rows, load: zero, scalar: zero, store: toOut, storeScalar: toOut)
                case (false, false, true):
                    sweepBlock(q, a, rows, load: fromBase, scalar: fromBase, store: toScratch, storeScalar: toScratch)
                case (false, false, false):
                    sweepBlock(q, a, rows, load: zero, scalar: zero, store: toScratch, storeScalar: toScratch)
                case (true, true, _):
                    sweepBlock(q, a, rows, load: fromScratch, scalar: fromScratch, store: toOut, storeScalar: toOut)
                case (true, false, _):
                    sweepBlock(q, a, rows, load: fromScratch, scalar: fromScratch, store: toScratch, storeScalar: toScratch)
                }
            }
            start &+= rows
        }
        return total(poison) == 0
    }

    /// Stores v rounded to T at p[t ..< t + laneCount]; returns v * 0 of the stored values (NaN
    /// lanes where they are not finite), for the caller's poison sum.
    @inlinable @inline(__always)
    static func storeRounded<T: BinaryFloatingPoint>(_ v: DoubleLanes, _ p: UnsafeMutablePointer<T>, _ t: Int)
        -> DoubleLanes {
        let stored = rounded(v, to: T.self)
        storeLanes(stored, p, t)
        return stored * 0
    }

    @inlinable @inline(__always)
    static func storeRounded<T: BinaryFloatingPoint>(_ v: Double, _ p: UnsafeMutablePointer<T>, _ t: Int) -> Double {
        let stored = T(v)
        p[t] = stored
        return Double(stored) * 0
    }

    /// One sweep of eight columns over a block: store(t, load(t) + sum_k a_k q_k[t]).
    @inlinable @inline(__always)
    static func sweepBlock<T: BinaryFloatingPoint>(
        _ q: (UnsafePointer<T>, UnsafePointer<T>, UnsafePointer<T>, UnsafePointer<T>,
              UnsafePointer<T>, UnsafePointer<T>, UnsafePointer<T>, UnsafePointer<T>),
        _ a: (Double, Double, Double, Double, Double, Double, Double, Double),
        _ rows: Int,
        load: (Int) -> DoubleLanes, scalar: (Int) -> Double,
        store: (Int, DoubleLanes) -> Void, storeScalar: (Int, Double) -> Void
    ) {
        let a0 = DoubleLanes(repeating: a.0), a1 = DoubleLanes(repeating: a.1), a2 = DoubleLanes(repeating: a.2)
        let a3 = DoubleLanes(repeating: a.3), a4 = DoubleLanes(repeating: a.4), a5 = DoubleLanes(repeating: a.5)
        let a6 = DoubleLanes(repeating: a.6), a7 = DoubleLanes(repeating: a.7)
        let vectorRows = rows & ~(laneCount &- 1)
        var t = 0
        while t < vectorRows {
            // Two independent chains keep both FMA pipes busy.
            var low = a0 * loadLanes(q.0, t), high = a4 * loadLanes(q.4, t)
            low = multiplyAdd(a1, loadLanes(q.1, t), low); high = multiplyAdd(a5, loadLanes(q.5, t), high)
            low = multiplyAdd(a2, loadLanes(q.2, t), low); high = multiplyAdd(a6, loadLanes(q.6, t), high)
            low = multiplyAdd(a3, loadLanes(q.3, t), low); high = multiplyAdd(a7, loadLanes(q.7, t), high)
            store(t, load(t) + (low + high))
            t &+= laneCount
        }
        while t < rows {
            var low = a.0 * Double(q.0[t]), high = a.4 * Double(q.4[t])
            low += a.1 * Double(q.1[t]); high += a.5 * Double(q.5[t])
            low += a.2 * Double(q.2[t]); high += a.6 * Double(q.6[t])
            low += a.3 * Double(q.3[t]); high += a.7 * Double(q.7[t])
            storeScalar(t, scalar(t) + (low + high))
            t &+= 1
        }
    }
}
