extension SymmetricTridiagonal {
    /// What `solve(rhs:workspace:)` found.
    public enum SolveOutcome: Equatable, Sendable {
        /// Solved by LU with partial pivoting; `reciprocalPivotGrowth` = min|pivot| /
        /// max|pivot| over U's diagonal, a cheap conditioning indicator in (0, 1].
        case solved(reciprocalPivotGrowth: Double)
        /// A pivot was exactly zero or below `n * ulp * max|T|`: the matrix is singular to
        /// working precision; `rhs` is left unchanged.
        case singular
    }

    /// Solves T x = rhs by Gaussian elimination with partial pivoting (the algorithm of
    /// LAPACK's dgtsv), so indefinite T is fine.
    ///
    /// The mathematics: P T = L U with L unit lower bidiagonal (multipliers of magnitude
    /// <= 1) and U upper triangular with two superdiagonals (the row swaps create the
    /// second one). At step i the row with the larger of |u_ii| and |t_(i+1,i)| becomes the
    /// pivot row, which bounds element growth by 2 and makes the solve backward stable,
    /// unlike the unpivoted Thomas algorithm, which breaks down on indefinite T. Since
    /// U = L^{-1} P T and ||L|| <= 2, min|u_ii| >= sigma_min(T) / 2 up to rounding: a pivot
    /// below n * ulp * max|T| means T is singular to working precision, and that is
    /// reported instead of dividing by it. Elimination is done on a copy of rhs in
    /// `workspace`, so rhs changes only on success.
    ///
    /// - Parameters:
    ///   - rhs: Count exactly n. The right-hand side on entry; x on `.solved`, unchanged on
    ///     `.singular`.
    ///   - workspace: Count >= 4n. Must not overlap any other argument or T's storage.
    /// - Returns: `.solved(reciprocalPivotGrowth:)` with min|u_ii| / max|u_ii| in (0, 1],
    ///   or `.singular`.
    ///
    /// Edge cases:
    /// - n = 1: x = rhs / d unless |d| is zero (then `.singular`).
    /// - Zero off-diagonals (decoupled blocks): each block is eliminated independently; a
    ///   zero diagonal entry with zero neighbours is a zero pivot, hence `.singular`.
    /// - T = 0: `.singular` (every pivot is zero, and the threshold is zero).
    /// - Zero diagonal entries with nonzero couplings (e.g. [[0, 1], [1, 0]]) are handled
    ///   by the row interchange.
    /// - The solution overflows (T badly scaled but above the pivot threshold, or huge
    ///   rhs): reported as `.singular` with rhs unchanged, since x is not representable.
    /// - Non-finite entries in T or rhs: `.singular`, rhs unchanged; never NaN output.
    /// - Buffers of other counts than stated: a programming error, which traps (T's own
    ///   sizes were checked when the view was formed).
    public func solve(rhs: UnsafeMutableBufferPointer<Double>,
                      workspace: UnsafeMutableBufferPointer<Double>) -> SolveOutcome {
        let n = dimension
        precondition(rhs.count == n, "SymmetricTridiagonal.solve: rhs count must equal n")
        precondition(workspace.count >= 4 * n, "SymmetricTridiagonal.solve: workspace too short")
        let x = rhs.baseAddress!
        let lu = PivotedLU(dimension: n, workspace: workspace.baseAddress!, subdiagonal: offDiagonal)
        guard let threshold = lu.load(self, rhs: x),
              let reciprocalGrowth = lu.eliminate(threshold: threshold),
              lu.backSubstitute()
        else { return .singular }
        for k in 0..<n { x[k] = lu.b[k] }
        return .solved(reciprocalPivotGrowth: reciprocalGrowth)
    }

    /// Minimum-norm least-squares solution of T x = rhs, via T's eigendecomposition,
    /// treating eigenvalues with |lambda| <= cutoff as zero.
    ///
    /// The mathematics: with T = Z diag(lambda) Z^T, the truncated pseudo-inverse gives
    /// x = sum over |lambda_i| > cutoff of z_i (z_i^T rhs) / lambda_i. This is the x of
    /// least norm among the minimisers of ||T_c x - rhs||, where T_c is T with the small
    /// eigenvalues set to zero; for a consistent singular system it is the minimum-norm
    /// solution, and for a nonsingular well-conditioned one it equals T^{-1} rhs.
    /// Truncation (rather than dividing by tiny eigenvalues) keeps x bounded by
    /// ||rhs|| / cutoff when T is nearly singular, which is what a fallback from a failed
    /// LU solve needs.
    ///
    /// - Parameters:
    ///   - rhs: Count exactly n. The right-hand side on entry; x on success, unchanged on
    ///     -1.
    ///   - relativeCutoff: >= 0; cutoff = relativeCutoff * max|lambda|. nil means
    ///     n * Double.ulpOfOne. Larger values trade residual for a smaller, steadier x.
    ///   - workspace: Count >= n * n + 4n. Must not overlap any other argument or T's
    ///     storage.
    /// - Returns: The number of eigenvalues treated as zero (0...n), or -1 if the
    ///   eigenvalue iteration failed, an input was not finite, or x overflowed; rhs is then
    ///   unchanged.
    ///
    /// Edge cases:
    /// - n = 1: x = rhs / d, or 0 (returning 1) when d == 0.
    /// - T = 0: x = 0 and the return is n (every eigenvalue is zero, whatever the cutoff).
    /// - Exactly zero eigenvalues are always treated as zero, even with relativeCutoff = 0.
    /// - Zero off-diagonals (decoupled blocks) are handled like any other T.
    /// - Buffers of other counts than stated, or a negative cutoff: a programming error,
    ///   which traps.
    public func solveLeastSquares(rhs: UnsafeMutableBufferPointer<Double>, relativeCutoff: Double? = nil,
                                  workspace: UnsafeMutableBufferPointer<Double>) -> Int {
        let n = dimension
        precondition(rhs.count == n, "SymmetricTridiagonal.solveLeastSquares: rhs count must equal n")
        precondition(workspace.count >= n * n + 4 * n, "SymmetricTridiagonal.solveLeastSquares: workspace too short")
        let relative = relativeCutoff ?? Double(n) * Double.ulpOfOne
        precondition(relative >= 0, "SymmetricTridiagonal.solveLeastSquares: relativeCutoff must be >= 0")

        // Workspace layout: Z (n x n), lambda (n), the eigen-solver's scratch (2n, reused
        // for x afterwards), the coefficients Z^T rhs (n).
        let base = workspace.baseAddress!
        let z = base
        let lambda = base + n * n
        let scratch = lambda + n
        let coefficients = scratch + 2 * n
        guard eigendecompose(eigenvalues: UnsafeMutableBufferPointer(start: lambda, count: n),
                             eigenvectors: UnsafeMutableBufferPointer(start: z, count: n * n),
                             workspace: UnsafeMutableBufferPointer(start: scratch, count: 2 * n))
        else { return -1 }

        let b = rhs.baseAddress!
        let largest = max(lambda[0].magnitude, lambda[n - 1].magnitude)
        let cutoff = relative * largest
        var dropped = 0
        for i in 0..<n {
            let column = z + i * n
            var dot = 0.0
            for k in 0..<n { dot += column[k] * b[k] }
            let l = lambda[i]
            // `l == 0` also covers cutoff = inf * 0 = NaN when T = 0 and
            // relativeCutoff = inf.
            if l == 0 || l.magnitude <= cutoff {
                coefficients[i] = 0
                dropped += 1
            } else {
                coefficients[i] = dot / l
            }
        }
        let x = scratch
        for k in 0..<n { x[k] = 0 }
        for i in 0..<n {
            let c = coefficients[i]
            if c == 0 { continue }
            let column = z + i * n
            for k in 0..<n { x[k] += c * column[k] }
        }
        for k in 0..<n {
            guard x[k].isFinite else { return -1 }
        }
        for k in 0..<n { b[k] = x[k] }
        return dropped
    }
}

/// The pivoted LU factorisation of `SymmetricTridiagonal.solve(rhs:workspace:)`, step by
/// step, in a workspace of 4n: U's diagonal, first and second superdiagonals, and the
/// eliminated right-hand side, so that rhs is written only once x is known to be finite.
///
/// The steps are always inlined: called separately, their loops reload the pointers after
/// every store (the stores might alias `self`), which made the solve 10-15% slower.
private struct PivotedLU {
    let n: Int
    /// T's subdiagonal, read from the caller's storage: row i + 1's entry is still the
    /// original one when step i uses it, so only the superdiagonal needs a copy.
    let dl: UnsafePointer<Double>
    /// U's diagonal.
    let d: UnsafeMutablePointer<Double>
    /// U's first superdiagonal.
    let du: UnsafeMutablePointer<Double>
    /// U's second superdiagonal, made by the row swaps.
    let du2: UnsafeMutablePointer<Double>
    /// The right-hand side, eliminated, then x.
    let b: UnsafeMutablePointer<Double>

    @inline(__always)
    init(dimension n: Int, workspace: UnsafeMutablePointer<Double>, subdiagonal: UnsafePointer<Double>) {
        self.n = n
        dl = subdiagonal
        d = workspace
        du = workspace + n
        du2 = workspace + 2 * n
        b = workspace + 3 * n
    }

    /// Copies T and rhs in; returns the pivot threshold n * ulp * max|T|, or nil when an
    /// entry of T is not finite, as then no pivot is trustworthy.
    @inline(__always)
    func load(_ t: SymmetricTridiagonal, rhs x: UnsafePointer<Double>) -> Double? {
        let diag = t.diagonal
        var maxT = 0.0
        var allInputFinite = true
        for i in 0..<n {
            d[i] = diag[i]
            b[i] = x[i]
            maxT = max(maxT, diag[i].magnitude)
            allInputFinite = allInputFinite && diag[i].isFinite
        }
        for i in 0..<(n - 1) {
            du[i] = dl[i]
            maxT = max(maxT, dl[i].magnitude)
            allInputFinite = allInputFinite && dl[i].isFinite
        }
        // `max` drops NaN, so finiteness is tracked separately. A non-finite rhs is caught
        // by the check on x in `backSubstitute`.
        guard allInputFinite else { return nil }
        return (Double(n) * Double.ulpOfOne) * maxT
    }

    /// Forward elimination, the row with the larger entry in each column becoming the pivot
    /// row; returns min|u_ii| / max|u_ii|, or nil at the first pivot below `threshold` (or
    /// zero), which means T is singular to working precision.
    @inline(__always)
    func eliminate(threshold: Double) -> Double? {
        @inline(__always) func acceptable(_ pivot: Double) -> Bool {
            let a = pivot.magnitude
            return a >= threshold && a > 0
        }

        var smallestPivot = Double.infinity
        var largestPivot = 0.0
        for i in 0..<(n - 1) {
            let sub = dl[i]
            if d[i].magnitude >= sub.magnitude {
                // The diagonal is at least as large: multiplier |fact| <= 1 without a swap.
                guard acceptable(d[i]) else { return nil }
                let fact = sub / d[i]
                d[i + 1] -= fact * du[i]
                b[i + 1] -= fact * b[i]
                du2[i] = 0
            } else {
                // The subdiagonal is larger: swap rows i and i + 1 so |fact| <= 1; the swap
                // moves row i + 1's superdiagonal into a second superdiagonal of U.
                guard acceptable(sub) else { return nil }
                let fact = d[i] / sub
                d[i] = sub
                let temp = d[i + 1]
                d[i + 1] = du[i] - fact * temp
                if i < n - 2 {
                    du2[i] = du[i + 1]
                    du[i + 1] = -fact * du2[i]
                } else {
                    du2[i] = 0
                }
                du[i] = temp
                let bi = b[i]
                b[i] = b[i + 1]
                b[i + 1] = bi - fact * b[i + 1]
            }
            let a = d[i].magnitude
            smallestPivot = min(smallestPivot, a)
            largestPivot = max(largestPivot, a)
        }
        guard acceptable(d[n - 1]) else { return nil }
        smallestPivot = min(smallestPivot, d[n - 1].magnitude)
        largestPivot = max(largestPivot, d[n - 1].magnitude)
        return smallestPivot / largestPivot
    }

    /// Back substitution with U, in place in `b`; false when x is not finite (it
    /// overflowed, or rhs was not finite), so that rhs can be left untouched.
    @inline(__always)
    func backSubstitute() -> Bool {
        var allFinite = true
        b[n - 1] /= d[n - 1]
        allFinite = allFinite && b[n - 1].isFinite
        if n > 1 {
            b[n - 2] = (b[n - 2] - du[n - 2] * b[n - 1]) / d[n - 2]
            allFinite = allFinite && b[n - 2].isFinite
        }
        var i = n - 3
        while i >= 0 {
            b[i] = (b[i] - du[i] * b[i + 1] - du2[i] * b[i + 2]) / d[i]
            allFinite = allFinite && b[i].isFinite
            i -= 1
        }
        return allFinite
    }
}
