/// What T - x I says about T at four shifts x at once: the Sturm count and the first two
/// logarithmic derivatives of the characteristic polynomial.
struct SturmSample {
    /// The number of eigenvalues below x: negative pivots of the LDL^T factorisation of
    /// T - x I. A zero pivot counts as negative, so an eigenvalue exactly at x may count
    /// either way.
    var below: SIMD4<Int64>
    /// p'(x) / p(x) = sum_k 1 / (x - lambda_k), for p(x) = det(T - x I); not finite where
    /// it could not be computed reliably.
    var g: SIMD4<Double>
    /// -(p'/p)'(x) = sum_k 1 / (x - lambda_k)^2.
    var h: SIMD4<Double>
}

extension SymmetricTridiagonal {
    /// T / s in the form the Sturm counts read: its diagonal and the squares of its
    /// off-diagonal entries, s a power of two near T's Gershgorin scale, so that the
    /// entries are below 2 in magnitude (the sampling's underflow and overflow margins
    /// assume it). `extremeEigenvalues(workspace:bounds:)` lays it out in its workspace.
    struct Normalised {
        /// n >= 1.
        let dimension: Int
        /// d_i / s, count n.
        let diagonal: UnsafePointer<Double>
        /// (e_i / s)^2 for i in 0..<n-1; entry n - 1, if any, is not read.
        let squares: UnsafePointer<Double>
    }
}

extension SymmetricTridiagonal.Normalised {
    /// Evaluates `SturmSample` at the four shifts `x` by the leading principal minors of
    /// T - x I, falling back to the pivots when those underflow.
    ///
    /// - Parameters:
    ///   - x: Four shifts, in the units of T / s.
    /// - Returns: The counts and derivatives at each shift, lane by lane.
    ///
    /// Edge cases:
    /// - n = 1: the sample is that of d_0 - x alone.
    /// - A shift at an eigenvalue may count it either way (see `SturmSample.below`).
    func sample(at x: SIMD4<Double>) -> SturmSample {
        sampleByMinors(at: x) ?? sampleByPivots(at: x)
    }

    /// `SturmSample` from the minors p_i = det of the leading (i+1) x (i+1) block of
    /// T - x I, which satisfy p_i = (d_i - x) p_{i-1} - e_{i-1}^2 p_{i-2} (p_{-1} = 1,
    /// p_{-2} = 0); p_i' and p_i'' follow from differentiating it. The pivots are
    /// p_i / p_{i-1}, so a sign change is a negative pivot, and g = p'/p,
    /// h = g^2 - p''/p at i = n - 1.
    ///
    /// Why not the pivots themselves: their recurrence divides, and the chain of n
    /// dependent divisions is what a pass costs. This one multiplies, several times faster,
    /// and is backward stable in the same way: the computed minors are exact for T with
    /// d_i - x perturbed by a few ulps of itself and e_i^2 by a few ulps, as long as
    /// nothing under- or overflows. For that, every 8 rows the state is rescaled by a power
    /// of two (exact), which keeps the minors far from overflow (they grow at most 8-fold
    /// per row for T scaled to entries below 2). If they still come near the underflow
    /// threshold, which takes off-diagonals below about 1e-17 of the scale or an exactly
    /// singular leading block followed by a zero off-diagonal, the result is nil and the
    /// caller uses the pivots.
    func sampleByMinors(at x: SIMD4<Double>) -> SturmSample? {
        let n = dimension, d = diagonal
        // (p0, p1) = (p_{i-2}, p_{i-1}); d0, d1 and s0, s1 their first and second
        // derivatives.
        var p0 = SIMD4<Double>(repeating: 1), p1 = SIMD4<Double>(repeating: d[0]) - x
        var d0 = SIMD4<Double>.zero, d1 = SIMD4<Double>(repeating: -1)
        var s0 = SIMD4<Double>.zero, s1 = SIMD4<Double>.zero
        var below = SIMD4<Int64>.zero.replacing(with: 1, where: p1 .<= 0)
        let exponentMask = SIMD4<Int64>(repeating: 0x7FF0_0000_0000_0000)
        let twiceBias = SIMD4<Int64>(repeating: 2046 << 52)
        var lowest = twiceBias, highest = SIMD4<Int64>.zero
        var i = 1
        while i < n {
            let end = Swift.min(i &+ 8, n)
            while i < end {
                let dx = SIMD4(repeating: d[i]) - x
                let e2 = SIMD4(repeating: squares[i &- 1])
                let p2 = dx * p1 - e2 * p0
                // Grouped so that each derivative's own chain is one multiply and one
                // subtract; d1 * 2 rather than d1 + d1, which the optimiser turns into lane
                // shuffles here.
                let d2 = dx * d1 - (p1 + e2 * d0)
                let s2 = dx * s1 - (d1 * 2 + e2 * s0)
                // A zero minor counts as a negative pivot and the pivot after it as
                // positive, as with dstebz's floor on the pivots.
                let negative = (p2 .== 0) .| (((p2 .< 0) .^ (p1 .< 0)) .& (p1 .!= 0))
                below &+= SIMD4<Int64>.zero.replacing(with: 1, where: negative)
                p0 = p1; p1 = p2; d0 = d1; d1 = d2; s0 = s1; s1 = s2
                i &+= 1
            }
            // 2^-k with 2^k <= max(|p0|, |p1|) < 2^(k+1), from the exponent bits.
            let e1 = unsafeBitCast(p1, to: SIMD4<Int64>.self) & exponentMask
            let e0 = unsafeBitCast(p0, to: SIMD4<Int64>.self) & exponentMask
            let e = e1.replacing(with: e0, where: e1 .< e0)
            lowest = lowest.replacing(with: e, where: e .< lowest)
            highest = highest.replacing(with: e, where: e .> highest)
            let f = unsafeBitCast(twiceBias &- e, to: SIMD4<Double>.self)
            p0 *= f; p1 *= f; d0 *= f; d1 *= f; s0 *= f; s1 *= f
        }
        // Below 2^-900 the next rows could reach subnormal numbers, which round absolutely.
        guard all(lowest .>= SIMD4(repeating: (1023 - 900) << 52)), all(highest .< exponentMask) else { return nil }
        let g = d1 / p1
        return SturmSample(below: below, g: g, h: g * g - s1 / p1)
    }

    /// `SturmSample` from the pivots q_i of T - x I = U D U^T, which cannot underflow: the
    /// slow path for what `sampleByMinors(at:)` declines.
    ///
    /// With q_{n-1} = d_{n-1} - x and q_i = d_i - x - e_i^2 / q_{i+1}, det(T - x I) is the
    /// product of the pivots, so p'/p is the sum of q_i'/q_i and h the sum of their negated
    /// derivatives. A pivot smaller in magnitude than about ulp^2 (of T's scale, about 1)
    /// is replaced by minus that floor, as LAPACK's dstebz does, so that the count stays
    /// defined. The pivots run from the bottom because the usual shift is an eigenvalue of
    /// the leading (n-1) x (n-1) block (the previous Lanczos step's Ritz value), where a
    /// top-down second-to-last pivot vanishes.
    /// Where the terms of h cancelled by more than 1e7 (the shift near an eigenvalue of a
    /// trailing block: h has few correct digits), g is set to NaN.
    func sampleByPivots(at x: SIMD4<Double>) -> SturmSample {
        let n = dimension, d = diagonal
        let floor = SIMD4<Double>(repeating: Double.leastNormalMagnitude * 4 + Double.ulpOfOne * Double.ulpOfOne)
        var q = SIMD4<Double>(repeating: d[n - 1]) - x
        q.replace(with: -floor, where: (q .< floor) .& (q .> -floor))
        var below = SIMD4<Int64>.zero.replacing(with: 1, where: q .< 0)
        var reciprocal = 1 / q
        // a = q'/q and b = q''/q of the latest pivot: the pivots can be tiny or huge, their
        // ratios are what the sums need.
        var a = -reciprocal, b = SIMD4<Double>.zero
        var g = a, h = a * a, gross = h
        var i = n - 2
        while i >= 0 {
            let t = squares[i] * reciprocal
            q = (SIMD4(repeating: d[i]) - x) - t
            q.replace(with: -floor, where: (q .< floor) .& (q .> -floor))
            below &+= SIMD4<Int64>.zero.replacing(with: 1, where: q .< 0)
            // q_i' = -1 + t a_{i+1} and q_i'' = t (b_{i+1} - 2 a_{i+1}^2), with
            // t = e_i^2 / q_{i+1}.
            let derivative = t * a - 1
            let second = t * (b - a * a * 2)
            reciprocal = 1 / q
            a = derivative * reciprocal
            b = second * reciprocal
            let square = a * a
            g += a
            h += square - b
            gross += square
            i -= 1
        }
        g.replace(with: .nan, where: .!(gross .<= h * 1e7))
        return SturmSample(below: below, g: g, h: h)
    }

    /// Whether T has an eigenvalue <= 0, from the signs of the LDL^T pivots at 0 (which
    /// s > 0 does not change). The first pivot that is not positive decides, so a zero one
    /// never divides.
    func hasNonPositiveEigenvalue() -> Bool {
        let n = dimension, d = diagonal
        var pivot = d[0]
        if !(pivot > 0) { return true }
        for i in 1..<n {
            pivot = d[i] - squares[i - 1] / pivot
            if !(pivot > 0) { return true }
        }
        return false
    }
}
