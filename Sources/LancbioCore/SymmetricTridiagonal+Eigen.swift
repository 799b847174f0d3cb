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

        let d = eigenvalues.baseAddress!
        let e = workspace.baseAddress!
        let z = eigenvectors?.baseAddress
        for i in 0..<n {
            guard diagonal[i].isFinite else { return false }
            d[i] = diagonal[i]
        }
        for i in 0..<(n - 1) {
            guard offDiagonal[i].isFinite else { return false }
            e[i] = offDiagonal[i]
        }
        if let z {
            for i in 0..<(n * n) { z[i] = 0 }
            for i in 0..<n { z[i + i * n] = 1 }
        }
        guard n > 1 else { return true }

        // LAPACK's constants: eps is the unit roundoff (half an ulp of 1), safmin the smallest
        // normal number; the block scaling window keeps squares of entries representable.
        let eps = Double.ulpOfOne / 2
        let eps2 = eps * eps
        let safmin = Double.leastNormalMagnitude
        let ssfmax = (1 / safmin).squareRoot() / 3
        let ssfmin = safmin.squareRoot() / eps2
        let maxSweeps = 30 * n
        var sweeps = 0

        var l1 = 0
        while l1 < n {
            // Find the next block [l1, m]: the first negligible off-diagonal from l1 on.
            if l1 > 0 { e[l1 - 1] = 0 }
            var m = l1
            while m < n - 1 {
                let tst = e[m].magnitude
                if tst == 0 { break }
                if tst <= (d[m].magnitude.squareRoot() * d[m + 1].magnitude.squareRoot()) * eps {
                    e[m] = 0
                    break
                }
                m += 1
            }
            var l = l1
            let blockStart = l
            var lend = m
            let blockEnd = lend
            l1 = m + 1
            if lend == l { continue }

            var anorm = 0.0
            for i in l...lend { anorm = max(anorm, d[i].magnitude) }
            for i in l..<lend { anorm = max(anorm, e[i].magnitude) }
            if anorm == 0 { continue }
            var scaleExponent = 0
            if anorm > ssfmax || anorm < ssfmin {
                scaleExponent = -Int(anorm.exponent)
                scaleBlock(d, e, from: l, to: lend, byPowerOfTwo: scaleExponent)
            }

            // Chase from the larger end: that end converges first and keeps graded accuracy.
            if d[lend].magnitude < d[l].magnitude {
                lend = blockStart
                l = blockEnd
            }

            if lend > l {
                // QL iteration: eigenvalues converge at the top (index l) of the block.
                while true {
                    var m = l
                    while m < lend {
                        let tst = e[m].magnitude
                        if tst * tst <= (eps2 * d[m].magnitude) * d[m + 1].magnitude + safmin { break }
                        m += 1
                    }
                    if m < lend { e[m] = 0 }
                    var p = d[l]
                    if m == l {
                        l += 1
                        if l <= lend { continue }
                        break
                    }
                    if m == l + 1 {
                        let r = symmetricEigen2x2(d[l], e[l], d[l + 1])
                        if let z { rotateColumns(z, n, l, l + 1, c: r.c, s: r.s) }
                        d[l] = r.rt1
                        d[l + 1] = r.rt2
                        e[l] = 0
                        l += 2
                        if l <= lend { continue }
                        break
                    }
                    if sweeps == maxSweeps { return false }
                    sweeps += 1

                    var g = (d[l + 1] - p) / (2 * e[l])
                    var r = Double.hypot(g, 1)
                    g = d[m] - p + (e[l] / (g + (g >= 0 ? r : -r)))
                    var s = 1.0
                    var c = 1.0
                    p = 0
                    var i = m - 1
                    while i >= l {
                        let f = s * e[i]
                        let b = c * e[i]
                        (c, s, r) = givens(g, f)
                        if i != m - 1 { e[i + 1] = r }
                        g = d[i + 1] - p
                        r = (d[i] - g) * s + 2 * c * b
                        p = s * r
                        d[i + 1] = g + p
                        g = c * r - b
                        if let z { rotateColumns(z, n, i, i + 1, c: c, s: -s) }
                        i -= 1
                    }
                    d[l] -= p
                    e[l] = g
                }
            } else {
                // QR iteration: eigenvalues converge at the bottom (index l) of the block.
                while true {
                    var m = l
                    while m > lend {
                        let tst = e[m - 1].magnitude
                        if tst * tst <= (eps2 * d[m].magnitude) * d[m - 1].magnitude + safmin { break }
                        m -= 1
                    }
                    if m > lend { e[m - 1] = 0 }
                    var p = d[l]
                    if m == l {
                        l -= 1
                        if l >= lend { continue }
                        break
                    }
                    if m == l - 1 {
                        let r = symmetricEigen2x2(d[l - 1], e[l - 1], d[l])
                        if let z { rotateColumns(z, n, l - 1, l, c: r.c, s: r.s) }
                        d[l - 1] = r.rt1
                        d[l] = r.rt2
                        e[l - 1] = 0
                        l -= 2
                        if l >= lend { continue }
                        break
                    }
                    if sweeps == maxSweeps { return false }
                    sweeps += 1

                    var g = (d[l - 1] - p) / (2 * e[l - 1])
                    var r = Double.hypot(g, 1)
                    g = d[m] - p + (e[l - 1] / (g + (g >= 0 ? r : -r)))
                    var s = 1.0
                    var c = 1.0
                    p = 0
                    for i in m..<l {
                        let f = s * e[i]
                        let b = c * e[i]
                        (c, s, r) = givens(g, f)
                        if i != m { e[i - 1] = r }
                        g = d[i] - p
                        r = (d[i + 1] - g) * s + 2 * c * b
                        p = s * r
                        d[i] = g + p
                        g = c * r - b
                        if let z { rotateColumns(z, n, i, i + 1, c: c, s: s) }
                    }
                    d[l] -= p
                    e[l - 1] = g
                }
            }

            if scaleExponent != 0 {
                for i in blockStart...blockEnd {
                    d[i] = Double(sign: .plus, exponent: -scaleExponent, significand: d[i])
                }
            }
        }

        // Selection sort: at most n - 1 swaps, which matters when whole columns move with them.
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
        return true
    }
}

/// The plane rotation with c g + s f = r and c f - s g = 0 (LAPACK dlartg's contract, with
/// r >= 0). When both inputs vanish the identity is returned, so that an underflowed
/// bulge leaves the sweep intact instead of dividing by zero.
@inline(__always)
fileprivate func givens(_ g: Double, _ f: Double) -> (c: Double, s: Double, r: Double) {
    let r = Double.hypot(g, f)
    if r == 0 { return (1, 0, 0) }
    return (g / r, f / r, r)
}

/// Columns (i, j) <- (c z_i + s z_j, c z_j - s z_i): the update dlasr applies for one
/// rotation of a sweep; columns are contiguous in column-major storage.
@inline(__always)
fileprivate func rotateColumns(_ z: UnsafeMutablePointer<Double>, _ n: Int, _ i: Int, _ j: Int,
                               c: Double, s: Double) {
    let zi = z + i * n
    let zj = z + j * n
    for k in 0..<n {
        let t = zj[k]
        zj[k] = c * t - s * zi[k]
        zi[k] = s * t + c * zi[k]
    }
}

/// Multiplies d[from...to] and e[from..<to] by 2^k: exact for normal results, so the
/// eigenvalues of the scaled block are exactly those of the original times 2^k.
fileprivate func scaleBlock(_ d: UnsafeMutablePointer<Double>, _ e: UnsafeMutablePointer<Double>,
                            from: Int, to: Int, byPowerOfTwo k: Int) {
    for i in from...to { d[i] = Double(sign: .plus, exponent: k, significand: d[i]) }
    for i in from..<to { e[i] = Double(sign: .plus, exponent: k, significand: e[i]) }
}

/// Eigen-decomposition of [[a, b], [b, c]] (LAPACK dlaev2): rt1 is the eigenvalue of
/// larger magnitude, (c, s) its unit eigenvector, rt2 = the other.
///
/// rt2 is computed as det / rt1 rather than from the quadratic formula, which would cancel
/// when the eigenvalues differ greatly in magnitude; the eigenvector is formed from the
/// larger of two algebraically equal expressions for the same reason.
fileprivate func symmetricEigen2x2(_ a: Double, _ b: Double, _ c: Double)
    -> (rt1: Double, rt2: Double, c: Double, s: Double) {
    let sm = a + c
    let df = a - c
    let tb = b + b
    let ab = tb.magnitude
    let (acmx, acmn) = a.magnitude > c.magnitude ? (a, c) : (c, a)
    // sqrt((a - c)^2 + 4 b^2): the distance between the eigenvalues.
    let rt = Double.hypot(df, tb)
    let rt1: Double
    let rt2: Double
    let sgn1: Double
    if sm < 0 {
        rt1 = 0.5 * (sm - rt)
        sgn1 = -1
        rt2 = (acmx / rt1) * acmn - (b / rt1) * b
    } else if sm > 0 {
        rt1 = 0.5 * (sm + rt)
        sgn1 = 1
        rt2 = (acmx / rt1) * acmn - (b / rt1) * b
    } else {
        rt1 = 0.5 * rt
        rt2 = -0.5 * rt
        sgn1 = 1
    }
    let cs: Double
    let sgn2: Double
    if df >= 0 {
        cs = df + rt
        sgn2 = 1
    } else {
        cs = df - rt
        sgn2 = -1
    }
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
    if sgn1 == sgn2 {
        let tn = cs1
        cs1 = -sn1
        sn1 = tn
    }
    return (rt1, rt2, cs1, sn1)
}
