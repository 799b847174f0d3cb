/// The Lanczos solution of A x = b for a fixed symmetric A with short recurrences: the
/// D-Lanczos form (Saad, *Iterative Methods for Sparse Linear Systems*, 2nd ed., section
/// 6.7.1), which factors the growing tridiagonal T_j = L_j D_j L_j^T as it goes and updates
/// x along one search direction, so no Lanczos basis is stored: O(n) memory and one
/// product per step, CG's algebra in Lanczos form.
///
/// With v_1 = r_0 / ||r_0||, zeta_1 = ||r_0||:
///
///     w = A v_j - beta_j v_{j-1},  alpha_j = v_j . w,  w -= alpha_j v_j,  beta_{j+1} = ||w||
///     lambda_j = beta_j / eta_{j-1},  eta_j = alpha_j - lambda_j beta_j,  zeta_j = -lambda_j zeta_{j-1}
///     p_j = (v_j - beta_j p_{j-1}) / eta_j,  x_j = x_{j-1} + zeta_j p_j
///
/// and ||b - A x_j|| = beta_{j+1} |zeta_j / eta_j| in exact arithmetic (the estimate each
/// step reports). The dynamic estimator cannot use this form: its operator changes between
/// steps, so it keeps its basis and re-solves the projected system.
///
/// Edge cases: a zero pivot eta_j (T_j singular, possible only for indefinite A) ends the
/// run at the last iterate with `zeroPivot`; a negative pivot is allowed (T_j indefinite
/// but nonsingular) and flagged `indefinite`; beta_{j+1} = 0 (an invariant Krylov space)
/// ends the run with the exact Galerkin solution.
struct LanczosRecurrenceSolve<T: BinaryFloatingPoint> {
    /// n-vectors of scratch `run` needs: v_{j-1}, v_j, w, p and the product.
    static var scratchVectors: Int { 5 }

    /// How a run ended.
    struct Run {
        var steps = 0
        /// beta_{j+1} |zeta_j / eta_j| after the last step.
        var estimate = Double.infinity
        var breakdown = false
        var indefinite = false
        var zeroPivot = false
    }

    let n: Int

    /// Runs from x (n values, updated in place) on the residual r = b - A x (n values,
    /// overwritten), until the estimate is <= threshold, the run ends (breakdown, zero
    /// pivot) or `maxSteps` products were used.
    /// - Parameters:
    ///   - rho: ||r||.
    ///   - scratch: `scratchVectors * n` values.
    ///   - collective: with vectors sliced across processes, reduces alpha and beta (2
    ///     calls per step) and takes this process's failures to the next reduction.
    /// - Throws: whatever `product` throws; `.nonFiniteProduct` / `.nonFiniteResult`;
    ///   across processes `.collectiveFailure` (a failed product shows there).
    func run(
        x: UnsafeMutablePointer<T>, residual r: UnsafeMutablePointer<T>, residualNorm rho: Double, threshold: Double,
        maxSteps: Int, scratch: UnsafeMutablePointer<T>, collective: SolveCollective?,
        product: (UnsafeBufferPointer<T>, UnsafeMutableBufferPointer<T>) throws -> Void
    ) throws -> Run {
        var run = Run()
        guard rho > 0, maxSteps > 0 else {
            run.estimate = rho
            return run
        }
        var previous = scratch, current = scratch + n, next = scratch + 2 * n
        let direction = scratch + 3 * n, y = scratch + 4 * n
        Kernels.scaledCopy(r, dividingBy: rho, into: current, n)
        Kernels.fill(direction, n, with: 0)
        var beta = 0.0, eta = 1.0, zeta = rho
        let ulp = Double(T.ulpOfOne)
        while run.steps < maxSteps {
            if let collective {
                collective.product(product, current, y, n)
            } else {
                try product(UnsafeBufferPointer(start: current, count: n), UnsafeMutableBufferPointer(start: y, count: n))
            }
            run.steps += 1
            let previousVector: UnsafePointer<T>? = run.steps > 1 ? UnsafePointer(previous) : nil
            let localAlpha = Kernels.lanczosCoefficient(q: current, y: y, previous: previousVector, beta: beta, n)
            let alpha = try collective?.coefficient(localAlpha) ?? localAlpha
            guard alpha.isFinite else {
                if let collective { throw try collective.productFailure(y, n) }
                throw Kernels.allFinite(y, n)
                    ? EstimatorError.nonFiniteResult("the Lanczos coefficient v^T A v overflowed")
                    : EstimatorError.nonFiniteProduct("the operator returned NaN or infinity (A v)")
            }
            let squares = Kernels.lanczosResidual(y: y, q: current, alpha: alpha, previous: previousVector, beta: beta,
                                                  into: next, n)
            let nextBeta = try collective?.norm(squares: squares, of: next, n)
                ?? Kernels.norm(fromSumOfSquares: squares) ?? Kernels.norm(next, n)
            guard nextBeta.isFinite else { throw EstimatorError.nonFiniteResult("the Lanczos vector overflowed") }
            // The LDL^T step: the new pivot, and the coefficient of the new direction.
            if run.steps > 1 {
                let lambda = beta / eta
                zeta = -lambda * zeta
                eta = alpha - lambda * beta
            } else {
                eta = alpha
            }
            let scale = Double.hypot(Double.hypot(alpha, beta), nextBeta)
            guard eta.magnitude > 16 * ulp * scale else {
                // T_j is singular: x_j does not exist; x_{j-1} stands.
                run.zeroPivot = true
                run.indefinite = true
                return run
            }
            if eta < 0 { run.indefinite = true }
            // p_j = (v_j - beta_j p_{j-1}) / eta_j, then x_j = x_{j-1} + zeta_j p_j, in one pass.
            if !Self.advance(direction: direction, solution: x, along: current, keeping: -beta / eta,
                             adding: 1 / eta, step: zeta, n) {
                guard let collective else { throw EstimatorError.nonFiniteResult("the Lanczos solution overflowed") }
                // The scalars ahead do not depend on x: the next reduction tells every process.
                collective.solutionNonFinite = true
            }
            run.estimate = nextBeta * (zeta / eta).magnitude
            if !(nextBeta > 16 * ulp * scale) {
                run.breakdown = true
                return run
            }
            if run.estimate <= threshold { return run }
            Kernels.scale(next, n, dividingBy: nextBeta)
            (previous, current, next) = (current, next, previous)
            beta = nextBeta
        }
        return run
    }

    /// p = a p + c v, then x += zeta p, each rounded once to T, in one pass; false if an
    /// entry of p or x is not finite.
    @inline(__always)
    static func advance(direction p: UnsafeMutablePointer<T>, solution x: UnsafeMutablePointer<T>,
                        along v: UnsafePointer<T>, keeping a: Double, adding c: Double, step zeta: Double,
                        _ n: Int) -> Bool {
        let va = DoubleLanes(repeating: a), vc = DoubleLanes(repeating: c), vz = DoubleLanes(repeating: zeta)
        var poison = DoubleLanes()
        let vectorRows = n & ~(Kernels.laneCount &- 1)
        var i = 0
        while i < vectorRows {
            let direction = Kernels.rounded(va * Kernels.loadLanes(UnsafePointer(p), i) + vc * Kernels.loadLanes(v, i),
                                            to: T.self)
            Kernels.storeLanes(direction, p, i)
            let solution = Kernels.rounded(Kernels.loadLanes(UnsafePointer(x), i) + vz * direction, to: T.self)
            Kernels.storeLanes(solution, x, i)
            poison += solution * 0
            i &+= Kernels.laneCount
        }
        var bad = Kernels.total(poison)
        while i < n {
            p[i] = T(a * Double(p[i]) + c * Double(v[i]))
            x[i] = T(Double(x[i]) + zeta * Double(p[i]))
            bad += Double(x[i]) * 0
            i &+= 1
        }
        // A non-finite direction makes the solution non-finite too (inf * 0 is NaN).
        return bad == 0
    }
}
