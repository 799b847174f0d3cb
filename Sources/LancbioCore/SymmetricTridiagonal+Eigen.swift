import RealModule

extension SymmetricTridiagonal {
    /// Eigenvalues, and optionally eigenvectors, of T by the implicit QL/QR iteration with
    /// Wilkinson shifts (the algorithm of LAPACK's dsteqr).
    ///
    /// The mathematics: T = Z diag(lambda) Z^T with Z orthogonal. Each sweep chases a bulge
    /// with Givens rotations, which is an orthogonal similarity, so the eigenvalues are
    /// kept and the accumulated rotations are the eigenvectors. The shift is the eigenvalue
    /// of the leading (QL) or trailing (QR) 2 x 2 block nearer its corner entry
    /// (Wilkinson's shift), which makes convergence globally assured and, in practice,
    /// cubic. An off-diagonal entry e_m is set to zero once e_m^2 <= eps^2 |d_m| |d_{m+1}|
    /// + safmin, which perturbs the eigenvalues by a small multiple of eps relative to the
    /// neighbouring diagonal entries; the matrix then splits into independent blocks. Each
    /// block is iterated by QL when its top entry is the larger in magnitude and by QR
    /// otherwise, so that graded matrices are chased from their large end (as dsteqr does).
    /// A block whose largest entry lies outside [sqrt(safmin)/eps^2, sqrt(safmax)/3] is
    /// scaled by a power of two first, which is exact, so that neither the shift nor the
    /// splitting test can overflow or underflow.
    ///
    /// - Parameters:
    ///   - eigenvalues: Count >= n. Receives the n eigenvalues in ascending order.
    ///   - eigenvectors: nil to skip them (cheaper: O(n^2) instead of O(n^3)), otherwise
    ///     count >= n * n. Receives orthonormal eigenvectors column-major: column i,
    ///     entries `[i * n, (i + 1) * n)`, belongs to `eigenvalues[i]`.
    ///   - workspace: Count >= 2n. Must not overlap any other argument or T's storage.
    /// - Returns: true on success; false if the iteration needed more than 30n sweeps in
    ///   total or an entry of T was not finite. On false the outputs are unspecified.
    ///
    /// Edge cases:
    /// - n = 1: the eigenvalue is the diagonal entry, the eigenvector is [1].
    /// - Zero off-diagonal entries split T into decoupled blocks, each solved on its own; a
    ///   diagonal matrix needs no sweep and its eigenvectors are columns of the identity.
    /// - 2 x 2 blocks are solved in closed form (no iteration), stably.
    /// - T = 0 gives zero eigenvalues and the identity as eigenvectors.
    /// - Entries near the overflow or underflow threshold are handled by the block scaling.
    /// - Non-finite entries: returns false at once instead of iterating on NaN.
    /// - Repeated or clustered eigenvalues: eigenvectors stay orthonormal (they come from
    ///   accumulated rotations), though any orthonormal basis of the cluster's span may
    ///   come out.
    /// - Buffers shorter than stated: a programming error, which traps (T's own sizes
    ///   were checked when the view was formed).
    public func eigendecompose(
        eigenvalues: UnsafeMutableBufferPointer<Double>,
        eigenvectors: UnsafeMutableBufferPointer<Double>?,
        workspace: UnsafeMutableBufferPointer<Double>
    ) -> Bool {
        let n = dimension
        precondition(eigenvalues.count >= n, "SymmetricTridiagonal.eigendecompose: eigenvalues too short")
        precondition(workspace.count >= 2 * n, "SymmetricTridiagonal.eigendecompose: workspace too short")
        if let z = eigenvectors {
            precondition(z.count >= n * n, "SymmetricTridiagonal.eigendecompose: eigenvectors too short")
        }
        var iteration = ImplicitQLIteration(dimension: n, diagonal: eigenvalues.baseAddress!,
                                            offDiagonal: workspace.baseAddress!,
                                            eigenvectors: eigenvectors?.baseAddress)
        guard iteration.load(self) else { return false }
        guard n > 1 else { return true }
        var start = 0
        while start < n {
            let end = iteration.splitBlock(from: start)
            if end > start {
                guard iteration.reduceBlock(start, end) else { return false }
            }
            start = end + 1
        }
        iteration.sortAscending()
        return true
    }
}

/// One run of the implicit QL/QR iteration: T's working copy, reduced to diagonal form in
/// place, the rotations accumulated so far, and what is left of the sweep budget.
///
/// Rows are visited in a direction `step`: +1 for QL (eigenvalues converge at the top of
/// a block, the bulge is chased upwards from the bottom), -1 for QR (the mirror image).
/// The off-diagonal entry coupling adjacent rows i and j is e[min(i, j)] either way, so
/// one sweep serves both, with the same operations in the same order as dsteqr's two.
///
/// The steps are always inlined, which gives each direction its own copy with `step` a
/// constant, as dsteqr's two loops are; called separately, their loops would also reload
/// the pointers after every store.
private struct ImplicitQLIteration {
    let n: Int
    /// The diagonal: T's on entry, the eigenvalues once every block has converged.
    let d: UnsafeMutablePointer<Double>
    /// The n - 1 off-diagonal entries, each zero once its rows have decoupled.
    let e: UnsafeMutablePointer<Double>
    /// The accumulated rotations, column-major n x n; nil when not wanted.
    let z: UnsafeMutablePointer<Double>?
    /// dsteqr's budget: 30 sweeps per row, over all blocks together.
    private var sweepsLeft: Int

    // LAPACK's constants: eps is the unit roundoff (half an ulp of 1), safmin the smallest
    // normal number; the block scaling window [ssfmin, ssfmax] keeps squares of entries
    // representable.
    private let eps = Double.ulpOfOne / 2
    private let safmin = Double.leastNormalMagnitude
    private var eps2: Double { eps * eps }
    private var ssfmax: Double { (1 / safmin).squareRoot() / 3 }
    private var ssfmin: Double { safmin.squareRoot() / eps2 }

    @inline(__always)
    init(dimension n: Int, diagonal: UnsafeMutablePointer<Double>, offDiagonal: UnsafeMutablePointer<Double>,
         eigenvectors: UnsafeMutablePointer<Double>?) {
        self.n = n
        d = diagonal
        e = offDiagonal
        z = eigenvectors
        sweepsLeft = 30 * n
    }

    /// Copies T in and sets the rotations to the identity; false when an entry of T is not
    /// finite, as NaN would otherwise spend the whole sweep budget.
    @inline(__always)
    func load(_ t: SymmetricTridiagonal) -> Bool {
        for i in 0..<n {
            guard t.diagonal[i].isFinite else { return false }
            d[i] = t.diagonal[i]
        }
        for i in 0..<(n - 1) {
            guard t.offDiagonal[i].isFinite else { return false }
            e[i] = t.offDiagonal[i]
        }
        if let z {
            for i in 0..<(n * n) { z[i] = 0 }
            for i in 0..<n { z[i + i * n] = 1 }
        }
        return true
    }

    /// Ends the block that starts at row `start` at the first off-diagonal entry from there
    /// on that is negligible against its rows' geometric mean (dsteqr's cheap test before
    /// any sweep), which is set to zero; returns the block's last row.
    @inline(__always)
    func splitBlock(from start: Int) -> Int {
        if start > 0 { e[start - 1] = 0 }
        var m = start
        while m < n - 1 {
            let tst = e[m].magnitude
            if tst == 0 { break }
            if tst <= (d[m].magnitude.squareRoot() * d[m + 1].magnitude.squareRoot()) * eps {
                e[m] = 0
                break
            }
            m += 1
        }
        return m
    }

    /// Reduces the block of rows start...end (start < end) to diagonal form; false when the
    /// sweep budget ran out.
    @inline(__always)
    mutating func reduceBlock(_ start: Int, _ end: Int) -> Bool {
        var norm = 0.0
        for i in start...end { norm = max(norm, d[i].magnitude) }
        for i in start..<end { norm = max(norm, e[i].magnitude) }
        if norm == 0 { return true }
        var exponent = 0
        if norm > ssfmax || norm < ssfmin {
            exponent = -Int(norm.exponent)
            Self.scale(d, start..<(end + 1), byPowerOfTwo: exponent)
            Self.scale(e, start..<end, byPowerOfTwo: exponent)
        }
        // Chase from the larger end: that end converges first and keeps graded accuracy.
        let converged = d[end].magnitude < d[start].magnitude
            ? reduce(from: end, to: start, step: -1) : reduce(from: start, to: end, step: 1)
        guard converged else { return false }
        if exponent != 0 { Self.scale(d, start..<(end + 1), byPowerOfTwo: -exponent) }
        return true
    }

    /// Sweeps the rows from `first` to `last` (visited in direction `step`) until every
    /// eigenvalue has converged, deflating at `first`: each converged row or 2 x 2 block
    /// there is split off, the rest swept again; false when the sweep budget ran out.
    @inline(__always)
    private mutating func reduce(from first: Int, to last: Int, step: Int) -> Bool {
        var l = first
        // A lone row left at `last` is converged already, hence `>` rather than `>=`.
        while (last - l) * step > 0 {
            let m = deflationRow(from: l, toward: last, step: step)
            if m != last { e[min(m, m + step)] = 0 }
            if m == l {
                l += step
            } else if m == l + step {
                solve2x2(at: min(l, m))
                l += 2 * step
            } else {
                guard sweepsLeft > 0 else { return false }
                sweepsLeft -= 1
                sweep(from: l, to: m, step: step)
            }
        }
        return true
    }

    /// The first row m from `l` toward `last` whose coupling to row m + step is negligible
    /// (e^2 <= eps^2 |d_m| |d_{m+step}| + safmin), or `last`: rows l...m are then an
    /// unreduced block whose eigenvalues do not depend on the rest to working precision.
    @inline(__always)
    private func deflationRow(from l: Int, toward last: Int, step: Int) -> Int {
        var m = l
        while m != last {
            let tst = e[min(m, m + step)].magnitude
            if tst * tst <= (eps2 * d[m].magnitude) * d[m + step].magnitude + safmin { break }
            m += step
        }
        return m
    }

    /// One implicit QL (step +1) or QR (step -1) sweep over the unreduced rows l...m, at
    /// least three of them: the shifted rotation enters at row m and the bulge it makes is
    /// chased to row l, one Givens rotation per row.
    @inline(__always)
    private func sweep(from l: Int, to m: Int, step: Int) {
        var g = shiftedEntry(corner: l, far: m, step: step)
        var s = 1.0
        var c = 1.0
        var r = 0.0
        var p = 0.0
        var k = m
        while k != l {
            let neighbour = k - step
            let coupling = e[min(k, neighbour)]
            let f = s * coupling
            let b = c * coupling
            (c, s, r) = Self.givens(g, f)
            if k != m { e[min(k, k + step)] = r }
            g = d[k] - p
            r = (d[neighbour] - g) * s + 2 * c * b
            p = s * r
            d[k] = g + p
            g = c * r - b
            rotate(k, neighbour, c: c, s: s)
            k = neighbour
        }
        d[l] -= p
        e[min(l, l + step)] = g
    }

    /// d_m - sigma, for sigma the eigenvalue of the 2 x 2 block at rows l and l + step that
    /// is nearer d_l (Wilkinson's shift), in dsteqr's form, which divides by the coupling
    /// rather than subtracting nearly equal roots; a sweep's first rotation starts from it.
    @inline(__always)
    private func shiftedEntry(corner l: Int, far m: Int, step: Int) -> Double {
        let p = d[l]
        let coupling = e[min(l, l + step)]
        let g = (d[l + step] - p) / (2 * coupling)
        let r = Double.hypot(g, 1)
        return d[m] - p + (coupling / (g + (g >= 0 ? r : -r)))
    }

    /// Diagonalises the 2 x 2 block at rows i and i + 1 in closed form, which converges
    /// where a sweep on two rows would need several.
    @inline(__always)
    private func solve2x2(at i: Int) {
        let r = Self.eigen2x2(d[i], e[i], d[i + 1])
        rotate(i, i + 1, c: r.c, s: r.s)
        d[i] = r.rt1
        d[i + 1] = r.rt2
        e[i] = 0
    }

    /// Selection sort of the eigenvalues, their eigenvectors moving with them: at most
    /// n - 1 swaps, which matters when whole columns move.
    @inline(__always)
    func sortAscending() {
        for i in 0..<(n - 1) {
            var k = i
            var smallest = d[i]
            for j in (i + 1)..<n where d[j] < smallest {
                k = j
                smallest = d[j]
            }
            if k != i {
                d[k] = d[i]
                d[i] = smallest
                if let z {
                    for r in 0..<n {
                        let t = z[r + i * n]
                        z[r + i * n] = z[r + k * n]
                        z[r + k * n] = t
                    }
                }
            }
        }
    }

    /// Columns (i, j) <- (c z_i + s z_j, c z_j - s z_i), when eigenvectors are wanted: the
    /// update dlasr applies for one rotation of a sweep; columns are contiguous in
    /// column-major storage.
    @inline(__always)
    private func rotate(_ i: Int, _ j: Int, c: Double, s: Double) {
        guard let z else { return }
        let zi = z + i * n
        let zj = z + j * n
        for k in 0..<n {
            let t = zj[k]
            zj[k] = c * t - s * zi[k]
            zi[k] = s * t + c * zi[k]
        }
    }

    /// Multiplies entries `rows` of p by 2^k: exact for normal results, so the eigenvalues
    /// of a scaled block are exactly those of the original times 2^k.
    private static func scale(_ p: UnsafeMutablePointer<Double>, _ rows: Range<Int>, byPowerOfTwo k: Int) {
        for i in rows { p[i] = Double(sign: .plus, exponent: k, significand: p[i]) }
    }

    /// The plane rotation with c g + s f = r and c f - s g = 0 (LAPACK dlartg's contract,
    /// with r >= 0). When both inputs vanish the identity is returned, so that an
    /// underflowed bulge leaves the sweep intact instead of dividing by zero.
    @inline(__always)
    private static func givens(_ g: Double, _ f: Double) -> (c: Double, s: Double, r: Double) {
        let r = Double.hypot(g, f)
        if r == 0 { return (1, 0, 0) }
        return (g / r, f / r, r)
    }

    /// Eigen-decomposition of [[a, b], [b, c]] (LAPACK dlaev2): rt1 is the eigenvalue of
    /// larger magnitude, (c, s) its unit eigenvector, rt2 the other eigenvalue.
    private static func eigen2x2(_ a: Double, _ b: Double, _ c: Double)
        -> (rt1: Double, rt2: Double, c: Double, s: Double) {
        let df = a - c
        let tb = b + b
        // sqrt((a - c)^2 + 4 b^2): the distance between the eigenvalues.
        let rt = Double.hypot(df, tb)
        let (rt1, rt2) = eigenvalues2x2(a, b, c, gap: rt)
        let vector = eigenvector2x2(df: df, tb: tb, gap: rt, negativeSum: a + c < 0)
        return (rt1, rt2, vector.c, vector.s)
    }

    /// The eigenvalues of [[a, b], [b, c]], the larger in magnitude first, given their
    /// distance `gap`. The smaller is det / rt1 rather than the quadratic formula's other
    /// root, which would cancel when the eigenvalues differ greatly in magnitude.
    private static func eigenvalues2x2(_ a: Double, _ b: Double, _ c: Double, gap rt: Double)
        -> (rt1: Double, rt2: Double) {
        let sm = a + c
        if sm == 0 { return (0.5 * rt, -0.5 * rt) }
        let rt1 = sm < 0 ? 0.5 * (sm - rt) : 0.5 * (sm + rt)
        let (acmx, acmn) = a.magnitude > c.magnitude ? (a, c) : (c, a)
        return (rt1, (acmx / rt1) * acmn - (b / rt1) * b)
    }

    /// The unit eigenvector (c, s) of rt1, from df = a - c and tb = 2b. It is formed from
    /// the larger of two algebraically equal expressions, as the smaller one cancels.
    private static func eigenvector2x2(df: Double, tb: Double, gap rt: Double, negativeSum: Bool)
        -> (c: Double, s: Double) {
        let ab = tb.magnitude
        let cs = df >= 0 ? df + rt : df - rt
        var cs1: Double
        var sn1: Double
        if cs.magnitude > ab {
            let ct = -tb / cs
            sn1 = 1 / (1 + ct * ct).squareRoot()
            cs1 = ct * sn1
        } else if ab == 0 {
            cs1 = 1
            sn1 = 0
        } else {
            let tn = -cs / tb
            cs1 = 1 / (1 + tn * tn).squareRoot()
            sn1 = tn * cs1
        }
        // dlaev2 rotates by a right angle when sign(a + c) and sign(a - c) agree (a zero
        // sum counting as positive, a zero difference too).
        if negativeSum == (df < 0) {
            (cs1, sn1) = (-sn1, cs1)
        }
        return (cs1, sn1)
    }
}
