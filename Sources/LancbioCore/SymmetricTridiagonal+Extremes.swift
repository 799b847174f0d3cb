extension SymmetricTridiagonal {
    /// The smallest and largest eigenvalues of T, to about 1e-10 of the spectrum's scale
    /// (the largest Gershgorin bound in magnitude) or better.
    ///
    /// Each extreme is bracketed by Sturm counts (the number of eigenvalues below x, from
    /// the signs of the pivots of T - x I), which are backward stable and alone decide the
    /// accuracy. Where to count comes from Laguerre's method on the characteristic
    /// polynomial, whose first two derivatives fall out of the same recurrence: from either
    /// side of a simple extreme eigenvalue it converges cubically, so a few counts replace
    /// bisection's 35 per extreme. Both extremes are searched together, two points each per
    /// pass over T, in the four lanes of one vector. `ExtremeEigenvalueSearch` has the
    /// safeguards (clusters, rounding), which end in plain bisection at worst;
    /// `SymmetricTridiagonal.Normalised` the counts.
    ///
    /// - Parameters:
    ///   - workspace: Count >= 2n. Left holding T / s (diagonal at
    ///     [0, n), squared off-diagonal at [n, 2n)), s a power of two near the Gershgorin
    ///     scale, which `hasNonPositiveEigenvalue(workspace:)` reads.
    ///   - bounds: The extremes of the leading (n-1) x (n-1) submatrix, when known. By
    ///     interlacing each lies between the two most extreme eigenvalues of T at its end,
    ///     where Laguerre's method converges monotonically, and once the Ritz values have
    ///     converged one pass confirms both extremes (a Lanczos cycle extends T by one row
    ///     per step). Wrong bounds cost passes, never accuracy; non-finite ones are
    ///     ignored.
    /// - Returns: (min, max), or nil when an entry is not finite. The same input gives the
    ///   same bits.
    ///
    /// Edge cases:
    /// - n = 1: (d_0, d_0), and the workspace is left untouched.
    /// - Zero off-diagonals give the extreme diagonal entries.
    /// - T = 0: (0, 0), with a workspace of zeros (the inertia test must see the zero
    ///   eigenvalue too).
    /// - A zero pivot counts as negative (LAPACK's dstebz replaces it by a tiny negative
    ///   one), so the count stays well defined.
    /// - Entries near the overflow or underflow threshold are fine, as everything is
    ///   computed on T scaled by a power of two near its Gershgorin scale.
    /// - A workspace shorter than 2n: a programming error, which traps.
    public func extremeEigenvalues(workspace: UnsafeMutableBufferPointer<Double>,
                                   bounds: (min: Double, max: Double)? = nil) -> (min: Double, max: Double)? {
        let n = dimension, d = diagonal, e = offDiagonal
        precondition(workspace.count >= 2 * n, "SymmetricTridiagonal.extremeEigenvalues: workspace too short")
        guard let (rawLow, rawHigh) = gershgorinInterval() else { return nil }
        if n == 1 { return (d[0], d[0]) }
        let unit = Swift.max(rawLow.magnitude, rawHigh.magnitude)
        let dp = workspace.baseAddress!, squares = workspace.baseAddress! + n
        if unit == 0 {
            // T = 0, which the inertia test must see too.
            dp.update(repeating: 0, count: 2 * n)
            return (0, 0)
        }
        // Everything in units of a power of two near the Gershgorin scale: entries near
        // 1e+300 would otherwise overflow e_i^2, and a power of two scales exactly. Two
        // factors, as 2^-k alone overflows for a subnormal scale.
        let k = unit.exponent
        let half = Double(sign: .plus, exponent: -k / 2, significand: 1)
        let rest = Double(sign: .plus, exponent: -k - (-k / 2), significand: 1)
        for i in 0..<n { dp[i] = d[i] * half * rest }
        for i in 0..<(n - 1) {
            let ei = e[i] * half * rest
            squares[i] = ei * ei
        }
        squares[n - 1] = 0
        let normalised = Normalised(dimension: n, diagonal: dp, squares: squares)
        let low = rawLow * half * rest, high = rawHigh * half * rest
        let scale = unit * half * rest   // the spectrum's scale in these units, in [1, 2)

        // Ritz values are diagnostics: ten digits of the spectrum's scale are ample.
        let tolerance = 1e-10 * scale
        // Widen slightly: Gershgorin bounds may be attained exactly.
        let margin = tolerance + scale * Double.ulpOfOne
        let (floor, ceiling) = (low - margin, high + margin)
        var hints: (min: Double, max: Double)?
        if let raw = bounds, raw.min.isFinite, raw.max.isFinite {
            hints = (raw.min * half * rest, raw.max * half * rest)
        }
        // The maximum is searched as the minimum of -T: its points and hint change sign.
        var smallest = ExtremeEigenvalueSearch(order: n, low: floor, high: ceiling, tolerance: tolerance,
                                               hint: hints?.min)
        var largest = ExtremeEigenvalueSearch(order: n, low: -ceiling, high: -floor, tolerance: tolerance,
                                              hint: hints.map { -$0.max })
        // Enough for trisection alone to finish after the Laguerre rounds.
        for _ in 0..<(ExtremeEigenvalueSearch.laguerreRounds + 48) {
            if smallest.isDone && largest.isDone { break }
            // A finished search still fills its lanes (with its bracket), which costs
            // nothing.
            let (a, b) = smallest.isDone ? (smallest.low, smallest.high) : smallest.nextPoints()
            let (c, f) = largest.isDone ? (largest.low, largest.high) : largest.nextPoints()
            let s = normalised.sample(at: SIMD4(a, b, -c, -f))
            if !smallest.isDone {
                smallest.update(.init(x: a, below: Int(s.below[0]), g: s.g[0], h: s.h[0]),
                                .init(x: b, below: Int(s.below[1]), g: s.g[1], h: s.h[1]))
            }
            if !largest.isDone {
                // Eigenvalues of -T below -y are those of T above y; p'/p changes sign.
                largest.update(.init(x: c, below: n - Int(s.below[2]), g: -s.g[2], h: s.h[2]),
                               .init(x: f, below: n - Int(s.below[3]), g: -s.g[3], h: s.h[3]))
            }
        }
        let minimum = smallest.result / half / rest, maximum = -largest.result / half / rest
        return (Swift.min(minimum, maximum), maximum)
    }

    /// The Gershgorin interval of T (every eigenvalue lies in it), or nil when an entry is
    /// not finite. Four rows at a time: the min and max reductions are otherwise one long
    /// chain of compares.
    private func gershgorinInterval() -> (low: Double, high: Double)? {
        let n = dimension, d = diagonal, e = offDiagonal
        // Swift.min and max drop a NaN operand; x - x is 0 for finite x and NaN otherwise.
        var poison = SIMD4<Double>.zero
        var low = SIMD4<Double>(repeating: .infinity), high = SIMD4<Double>(repeating: -.infinity)
        func row(_ i: Int) {
            let left = i > 0 ? e[i - 1].magnitude : 0
            let right = i < n - 1 ? e[i].magnitude : 0
            low[0] = Swift.min(low[0], d[i] - left - right)
            high[0] = Swift.max(high[0], d[i] + left + right)
            poison[0] += (d[i] - d[i]) + (right - right)
        }
        row(0)
        var i = 1
        // Rows i..<i+4 read e[i-1] through e[i+3], which exist while i + 4 <= n - 1.
        while i &+ 4 <= n &- 1 {
            let di = UnsafeRawPointer(d + i).loadUnaligned(as: SIMD4<Double>.self)
            let left = UnsafeRawPointer(e + (i &- 1)).loadUnaligned(as: SIMD4<Double>.self)
            let right = UnsafeRawPointer(e + i).loadUnaligned(as: SIMD4<Double>.self)
            let radius = left.replacing(with: -left, where: left .< 0) + right.replacing(with: -right, where: right .< 0)
            let rowLow = di - radius, rowHigh = di + radius
            low.replace(with: rowLow, where: rowLow .< low)
            high.replace(with: rowHigh, where: rowHigh .> high)
            poison += (di - di) + (radius - radius)
            i &+= 4
        }
        while i < n {
            row(i)
            i &+= 1
        }
        let rawLow = low.min(), rawHigh = high.max()
        guard rawLow.isFinite, rawHigh.isFinite, poison == .zero else { return nil }
        return (rawLow, rawHigh)
    }

    /// Whether T has an eigenvalue <= 0: its inertia, from one Sturm count at 0 (exact in
    /// the sense of the LDL^T pivots), so the answer does not depend on a bisection
    /// tolerance.
    ///
    /// - Parameters:
    ///   - workspace: As `extremeEigenvalues(workspace:bounds:)` left it for this T, which
    ///     did not return nil: T / s, whose pivots have the signs of T's.
    /// - Returns: true when some eigenvalue is <= 0, false when T is positive definite.
    ///
    /// Edge cases:
    /// - n = 1: reads d_0 itself, as the extremes leave no workspace for it.
    /// - T = 0: true (the workspace holds zeros).
    /// - A zero pivot ends the count: T has an eigenvalue <= 0 exactly then.
    func hasNonPositiveEigenvalue(workspace: UnsafePointer<Double>) -> Bool {
        if dimension == 1 { return !(diagonal[0] > 0) }
        return Normalised(dimension: dimension, diagonal: workspace, squares: workspace + dimension)
            .hasNonPositiveEigenvalue()
    }
}
