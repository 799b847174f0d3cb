/// The smallest and largest eigenvalues of the symmetric tridiagonal T (diagonal `d`,
/// count n >= 1; off-diagonal `e`, count >= n - 1), by bisection on Sturm counts.
///
/// The Sturm count c(x) (the number of eigenvalues below x) is the number of negative
/// pivots of the LDL^T factorisation of T - x I, one O(n) pass. Bisection inside the
/// Gershgorin interval isolates each extreme eigenvalue to 1e-10 of the spectrum's scale
/// in about 35 passes, all in O(n) memory: far cheaper than a full eigenvalue
/// iteration when only the extremes are wanted (every Lanczos step reports them).
///
/// - Parameters:
///   - workspace: count >= 2n (the normalised diagonal and squared off-diagonal).
/// - Returns: (min, max), or nil when an entry is not finite.
///
/// Edge cases: n = 1 returns (d0, d0); zero off-diagonals give the extreme diagonal
/// entries; a zero pivot is replaced by a tiny one of the spectrum's scale, as LAPACK's
/// dstebz does, so the count stays well defined.
///   - bounds: the extremes of the leading (n-1) x (n-1) submatrix, when known. By
///     interlacing the new minimum lies below the old one and the maximum above, usually
///     close: the search gallops outward from them and bisects a short interval instead
///     of the whole Gershgorin interval (a Lanczos cycle extends T by one row per step).
public func symmetricTridiagonalExtremeEigenvalues(
    diagonal d: UnsafeBufferPointer<Double>, offDiagonal e: UnsafeBufferPointer<Double>,
    workspace: UnsafeMutableBufferPointer<Double>, bounds: (min: Double, max: Double)? = nil
) -> (min: Double, max: Double)? {
    let n = d.count
    precondition(n >= 1 && e.count >= n - 1 && workspace.count >= 2 * n)
    // Gershgorin interval of T, then everything in units of its scale: entries near
    // 1e+300 would otherwise overflow e_i^2 in the Sturm recurrence.
    var rawLow = Double.infinity, rawHigh = -Double.infinity
    for i in 0..<n {
        let left = i > 0 ? e[i - 1].magnitude : 0
        let right = i < n - 1 ? e[i].magnitude : 0
        rawLow = Swift.min(rawLow, d[i] - left - right)
        rawHigh = Swift.max(rawHigh, d[i] + left + right)
    }
    guard rawLow.isFinite, rawHigh.isFinite else { return nil }
    if n == 1 { return (d[0], d[0]) }
    let unit = Swift.max(rawLow.magnitude, rawHigh.magnitude)
    if unit == 0 { return (0, 0) }
    let dp = workspace.baseAddress!, squares = workspace.baseAddress! + n
    for i in 0..<n {
        dp[i] = d[i] / unit
        let ei = i < n - 1 ? e[i] / unit : 0
        squares[i] = ei * ei
    }
    let low = rawLow / unit, high = rawHigh / unit
    let scale = 1.0   // the spectrum's scale, in these units
    let pivotFloor = Double.leastNormalMagnitude * 4 + scale * Double.ulpOfOne * Double.ulpOfOne

    /// Number of eigenvalues strictly below x.
    func count(below x: Double) -> Int {
        var negatives = 0
        var pivot = dp[0] - x
        for i in 0..<n {
            if i > 0 { pivot = (dp[i] - x) - squares[i - 1] / pivot }
            if pivot.magnitude < pivotFloor { pivot = -pivotFloor }
            if pivot < 0 { negatives += 1 }
        }
        return negatives
    }

    // Ritz values are diagnostics: ten digits of the spectrum's scale are ample, and
    // stopping there halves the passes against bisecting to the last ulp.
    let tolerance = 1e-10 * scale
    func bisect(_ lo: Double, _ hi: Double, atLeast k: Int) -> Double {
        // The smallest x with count(below: x) >= k lies in (lo, hi].
        var lo = lo, hi = hi
        for _ in 0..<128 where hi - lo > tolerance {
            let mid = lo + (hi - lo) / 2
            if count(below: mid) >= k { hi = mid } else { lo = mid }
        }
        return lo + (hi - lo) / 2
    }
    // Widen slightly: Gershgorin bounds may be attained exactly.
    let margin = tolerance + scale * Double.ulpOfOne
    let (floor, ceiling) = (low - margin, high + margin)
    guard let raw = bounds, raw.min.isFinite, raw.max.isFinite else {
        return (bisect(floor, ceiling, atLeast: 1) * unit, bisect(floor, ceiling, atLeast: n) * unit)
    }
    let bounds = (min: raw.min / unit, max: raw.max / unit)
    // Minimum: count(below: x) >= 1 holds at x just above the old minimum; gallop down
    // until it fails, then bisect between the last two probes.
    var upper = Swift.min(bounds.min + margin, ceiling)
    var smallest: Double
    if count(below: upper) >= 1 {
        var step = 1e-6 * scale
        var lower = Swift.max(upper - step, floor)
        while lower > floor && count(below: lower) >= 1 {
            upper = lower
            step *= 16
            lower = Swift.max(upper - step, floor)
        }
        smallest = bisect(lower, upper, atLeast: 1)
    } else {
        smallest = bisect(floor, ceiling, atLeast: 1)   // the hint was wrong: search everything
    }
    // Maximum, mirrored: count(below: x) >= n fails just below the old maximum.
    var lowerMax = Swift.max(bounds.max - margin, floor)
    var largest: Double
    if count(below: lowerMax) < n {
        var step = 1e-6 * scale
        var upperMax = Swift.min(lowerMax + step, ceiling)
        while upperMax < ceiling && count(below: upperMax) < n {
            lowerMax = upperMax
            step *= 16
            upperMax = Swift.min(lowerMax + step, ceiling)
        }
        largest = bisect(lowerMax, upperMax, atLeast: n)
    } else {
        largest = bisect(floor, ceiling, atLeast: n)
    }
    smallest = Swift.min(smallest, largest)
    return (smallest * unit, largest * unit)
}

/// Whether the symmetric tridiagonal T has an eigenvalue <= 0: its inertia, from one
/// Sturm count at 0 (exact in the sense of the LDL^T pivots), so the answer does not
/// depend on a bisection tolerance. `workspace` is as left by
/// `symmetricTridiagonalExtremeEigenvalues` (the normalised T: same signs of pivots).
func symmetricTridiagonalHasNonPositiveEigenvalue(count n: Int, workspace: UnsafePointer<Double>) -> Bool {
    let d = workspace, squares = workspace + n
    var pivot = d[0]
    if !(pivot > 0) { return true }
    for i in 1..<n {
        pivot = d[i] - squares[i - 1] / pivot
        if !(pivot > 0) { return true }
    }
    return false
}
