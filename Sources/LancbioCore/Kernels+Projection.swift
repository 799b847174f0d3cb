// The projection of a Lanczos step, Q^T (b - w), fused with everything else that has to
// stream an n-vector at the same time, so that each vector crosses the memory bus once.

extension Kernels {
    /// coefficients[c] = q_c . (b - w) for the first `columns` columns of the column-major
    /// rows x columns matrix at `basis` with column stride `stride` (w nil means 0), over
    /// `rows` entries of every vector; when `z` is given, also
    /// zCoefficients[c] = zScale * (q_c . z), after which z is scaled by zScale in place.
    /// Returns ||b - w||^2 over those rows (accumulated in Double as it is formed), which
    /// with the coefficients gives the part of b - w outside the basis.
    ///
    /// Blocked by rows: a block of r = b - w (formed in `scratch`, Double, count >=
    /// min(kernelBlockRows, rows)) and of z stays in cache while four columns at a time
    /// sweep it. Every vector is read from memory once, however many columns there are; b - w and the
    /// normalisation of z cost no pass of their own. Each coefficient is one fixed sum
    /// (block by block, lanes in a fixed order), whatever the caller.
    @inlinable @discardableResult
    static func projectResidual<T: BinaryFloatingPoint>(
        _ basis: UnsafePointer<T>, rows n: Int, stride: Int, columns: Int,
        rhs b: UnsafePointer<T>, minus w: UnsafePointer<T>?,
        coefficients: UnsafeMutablePointer<Double>,
        and z: UnsafeMutablePointer<T>?, scalingBy zScale: Double, zCoefficients: UnsafeMutablePointer<Double>,
        scratch: UnsafeMutablePointer<Double>
    ) -> Double {
        coefficients.update(repeating: 0, count: columns)
        var squares = 0.0
        if z != nil { zCoefficients.update(repeating: 0, count: columns) }
        var start = 0
        while start < n {
            let rows = min(kernelBlockRows, n &- start)
            let vectorRows = rows & ~(laneCount &- 1)
            let bb = b + start
            // Two sums of squares, so that no fused add waits on the one before it.
            var s0 = DoubleLanes(), s1 = DoubleLanes()
            var t = 0
            if let w {
                let ww = w + start
                while t &+ 2 &* laneCount <= vectorRows {
                    let x = loadLanes(bb, t) - loadLanes(ww, t)
                    let y = loadLanes(bb, t &+ laneCount) - loadLanes(ww, t &+ laneCount)
                    storeLanes(x, scratch, t); storeLanes(y, scratch, t &+ laneCount)
                    s0 = multiplyAdd(x, x, s0); s1 = multiplyAdd(y, y, s1)
                    t &+= 2 &* laneCount
                }
                while t < vectorRows {
                    let x = loadLanes(bb, t) - loadLanes(ww, t)
                    storeLanes(x, scratch, t); s0 = multiplyAdd(x, x, s0); t &+= laneCount
                }
                squares += total(s0 + s1)
                while t < rows { let x = Double(bb[t]) - Double(ww[t]); scratch[t] = x; squares += x * x; t &+= 1 }
            } else {
                while t &+ 2 &* laneCount <= vectorRows {
                    let x = loadLanes(bb, t), y = loadLanes(bb, t &+ laneCount)
                    storeLanes(x, scratch, t); storeLanes(y, scratch, t &+ laneCount)
                    s0 = multiplyAdd(x, x, s0); s1 = multiplyAdd(y, y, s1)
                    t &+= 2 &* laneCount
                }
                while t < vectorRows {
                    let x = loadLanes(bb, t)
                    storeLanes(x, scratch, t); s0 = multiplyAdd(x, x, s0); t &+= laneCount
                }
                squares += total(s0 + s1)
                while t < rows { let x = Double(bb[t]); scratch[t] = x; squares += x * x; t &+= 1 }
            }
            let r = UnsafePointer(scratch)
            if let z {
                let zz = z + start
                projectBlock(basis + start, stride: stride, rows: rows, columns: columns, r, UnsafePointer(zz),
                             coefficients, zCoefficients)
                scale(zz, rows, by: zScale)
            } else {
                projectBlock(basis + start, stride: stride, rows: rows, columns: columns, r, coefficients)
            }
            start &+= rows
        }
        if z != nil {
            for c in 0..<columns { zCoefficients[c] *= zScale }
        }
        return squares
    }

    /// Adds q_c . r (q_c: `rows` values at basis + c * stride) to coefficients[c].
    @inlinable
    static func projectBlock<T: BinaryFloatingPoint>(
        _ basis: UnsafePointer<T>, stride n: Int, rows: Int, columns: Int, _ r: UnsafePointer<Double>,
        _ coefficients: UnsafeMutablePointer<Double>
    ) {
        let vectorRows = rows & ~(laneCount &- 1)
        var c = 0
        while c &+ 4 <= columns {
            let q0 = basis + c &* n, q1 = q0 + n, q2 = q1 + n, q3 = q2 + n
            // Two vectors of rows per step, in two sets of sums: four chains of fused adds
            // would each wait on their own latency, which halves the speed on a cached block.
            var a0 = DoubleLanes(), a1 = DoubleLanes(), a2 = DoubleLanes(), a3 = DoubleLanes()
            var b0 = DoubleLanes(), b1 = DoubleLanes(), b2 = DoubleLanes(), b3 = DoubleLanes()
            var t = 0
            while t &+ 2 &* laneCount <= vectorRows {
                let x = loadLanes(r, t), y = loadLanes(r, t &+ laneCount)
                a0 = multiplyAdd(loadLanes(q0, t), x, a0); a1 = multiplyAdd(loadLanes(q1, t), x, a1)
                a2 = multiplyAdd(loadLanes(q2, t), x, a2); a3 = multiplyAdd(loadLanes(q3, t), x, a3)
                b0 = multiplyAdd(loadLanes(q0, t &+ laneCount), y, b0); b1 = multiplyAdd(loadLanes(q1, t &+ laneCount), y, b1)
                b2 = multiplyAdd(loadLanes(q2, t &+ laneCount), y, b2); b3 = multiplyAdd(loadLanes(q3, t &+ laneCount), y, b3)
                t &+= 2 &* laneCount
            }
            if t < vectorRows {
                let x = loadLanes(r, t)
                a0 = multiplyAdd(loadLanes(q0, t), x, a0); a1 = multiplyAdd(loadLanes(q1, t), x, a1)
                a2 = multiplyAdd(loadLanes(q2, t), x, a2); a3 = multiplyAdd(loadLanes(q3, t), x, a3)
                t &+= laneCount
            }
            var s0 = total(a0 + b0), s1 = total(a1 + b1), s2 = total(a2 + b2), s3 = total(a3 + b3)
            while t < rows {
                let x = r[t]
                s0 += Double(q0[t]) * x; s1 += Double(q1[t]) * x
                s2 += Double(q2[t]) * x; s3 += Double(q3[t]) * x
                t &+= 1
            }
            coefficients[c] += s0; coefficients[c &+ 1] += s1; coefficients[c &+ 2] += s2; coefficients[c &+ 3] += s3
            c &+= 4
        }
        while c < columns {
            coefficients[c] += dot(basis + c &* n, r, rows)
            c &+= 1
        }
    }

    /// Adds q_c . r to coefficients[c] and q_c . z to zCoefficients[c], one sweep per four
    /// columns. (Eight per sweep with AVX-512, whose registers hold the sixteen sums, was
    /// measured: no faster.)
    @inlinable
    static func projectBlock<T: BinaryFloatingPoint>(
        _ basis: UnsafePointer<T>, stride n: Int, rows: Int, columns: Int, _ r: UnsafePointer<Double>,
        _ z: UnsafePointer<T>, _ coefficients: UnsafeMutablePointer<Double>, _ zCoefficients: UnsafeMutablePointer<Double>
    ) {
        let vectorRows = rows & ~(laneCount &- 1)
        /// Column c's lane sums a (with r) and b (with z), plus the rows past the vectors.
        @inline(__always)
        func finish(_ c: Int, _ q: UnsafePointer<T>, _ a: DoubleLanes, _ b: DoubleLanes) {
            var s = total(a), u = total(b)
            var t = vectorRows
            while t < rows {
                let p = Double(q[t])
                s += p * r[t]; u += p * Double(z[t])
                t &+= 1
            }
            coefficients[c] += s; zCoefficients[c] += u
        }
        var c = 0
        while c &+ 4 <= columns {
            let q0 = basis + c &* n, q1 = q0 + n, q2 = q1 + n, q3 = q2 + n
            var a0 = DoubleLanes(), a1 = DoubleLanes(), a2 = DoubleLanes(), a3 = DoubleLanes()
            var b0 = DoubleLanes(), b1 = DoubleLanes(), b2 = DoubleLanes(), b3 = DoubleLanes()
            var t = 0
            while t < vectorRows {
                let x = loadLanes(r, t), y = loadLanes(z, t)
                let p0 = loadLanes(q0, t), p1 = loadLanes(q1, t), p2 = loadLanes(q2, t), p3 = loadLanes(q3, t)
                a0 = multiplyAdd(p0, x, a0); a1 = multiplyAdd(p1, x, a1)
                a2 = multiplyAdd(p2, x, a2); a3 = multiplyAdd(p3, x, a3)
                b0 = multiplyAdd(p0, y, b0); b1 = multiplyAdd(p1, y, b1)
                b2 = multiplyAdd(p2, y, b2); b3 = multiplyAdd(p3, y, b3)
                t &+= laneCount
            }
            finish(c, q0, a0, b0); finish(c &+ 1, q1, a1, b1); finish(c &+ 2, q2, a2, b2); finish(c &+ 3, q3, a3, b3)
            c &+= 4
        }
        while c < columns {
            // At most three columns: the second read of each comes from cache.
            coefficients[c] += dot(basis + c &* n, r, rows)
            zCoefficients[c] += dot(basis + c &* n, z, rows)
            c &+= 1
        }
    }
}
