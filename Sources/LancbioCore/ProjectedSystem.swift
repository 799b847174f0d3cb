/// The small symmetric tridiagonal system T s = c of a subspace method, with storage for
/// up to `capacity` unknowns allocated once.
///
/// Solving also yields T's extreme eigenvalues (the Ritz values: cheap estimates of A's
/// extreme eigenvalues). A pivoted LU solve handles nonsingular T (indefinite T is fine);
/// the minimum-norm least-squares solution replaces it when T is singular to working
/// precision.
final class ProjectedSystem {
    private var allocations = OwnedAllocations()
    let capacity: Int
    /// Diagonal of T (count `capacity`), filled by the caller.
    let diagonal: UnsafeMutablePointer<Double>
    /// Off-diagonal of T (count `capacity`), filled by the caller.
    let offDiagonal: UnsafeMutablePointer<Double>
    /// Right-hand side c on entry to `solve`, the solution s after it.
    let solution: UnsafeMutablePointer<Double>
    /// c kept for the least-squares fallback, since the LU solve overwrites `solution`.
    private let rhsCopy: UnsafeMutablePointer<Double>
    private let workspace: UnsafeMutablePointer<Double>
    private let workspaceCount: Int

    /// Doubles of the solver's workspace: the eigenvector matrix of the least-squares
    /// fallback and four vectors.
    private static func workspaceCount(capacity: Int) -> Int { capacity * capacity + 4 * capacity }

    /// Bytes a system of `capacity` unknowns allocates.
    static func storageBytes(capacity: Int) -> Int {
        (4 * capacity + workspaceCount(capacity: capacity)) * MemoryLayout<Double>.stride
    }

    /// - Parameter capacity: 1...`LanczosOptions.maximumPeriod + 1` unknowns.
    /// - Throws: `.outOfMemory`, with nothing left allocated.
    init(capacity: Int) throws(EstimatorError) {
        self.capacity = capacity
        diagonal = try allocations.zeroed(capacity)
        offDiagonal = try allocations.zeroed(capacity)
        solution = try allocations.zeroed(capacity)
        rhsCopy = try allocations.zeroed(capacity)
        workspaceCount = Self.workspaceCount(capacity: capacity)
        workspace = try allocations.zeroed(workspaceCount)
    }

    /// What `solve` found.
    struct Report {
        var ritzMin = 0.0
        var ritzMax = 0.0
        var indefinite = false
        var singular = false
        /// ||T s - c|| of the least-squares solution when `singular` (0 otherwise: the
        /// solve is exact to rounding): the part of c no s reaches, which the residual
        /// estimate must include.
        var leastSquaresResidual = 0.0
        /// False only if the eigenvalue iteration failed or the data were not finite:
        /// `solution` is then unusable.
        var solved = true
    }

    /// Solves the leading `dimension` x `dimension` system in place.
    ///
    /// The extreme Ritz values come from Sturm counts placed by Laguerre's method (a few
    /// O(j) passes, warm-started from the previous step's); the solve is a pivoted LU
    /// (LAPACK gtsv's scheme), whose pivots also reveal singularity. T counts as singular
    /// when the smallest pivot falls below j * ulp * ||T|| or below `singularityFloor`, or
    /// when ||s|| > ||c|| / floor (since ||s|| <= ||c|| / sigma_min(T), that proves
    /// sigma_min(T) below the floor, which the pivots need not show); the minimum-norm
    /// least-squares solution from the full eigendecomposition then replaces the solve (the
    /// only O(j^2) path), with the eigenvalues below those levels treated as zero.
    ///
    /// - Parameters:
    ///   - ritzBounds: The previous T's extremes, when T extends it (see
    ///     `SymmetricTridiagonal.extremeEigenvalues`).
    ///   - singularityFloor: >= 0 (default 0): eigenvalues of T below it are rounding, in
    ///     the units of T. A Lanczos T is accurate only to a few eps ||A|| of the storage,
    ///     and a T whose entries are all such noise (the basis met A's null space) is as
    ///     far from singular relative to itself as any other.
    func solve(dimension j: Int, ritzBounds: (min: Double, max: Double)? = nil, singularityFloor: Double = 0) -> Report {
        var report = Report()
        let work = UnsafeMutableBufferPointer(start: workspace, count: workspaceCount)
        guard Kernels.allFinite(diagonal, j), Kernels.allFinite(offDiagonal, max(j - 1, 0)),
              Kernels.allFinite(solution, j),
              let t = SymmetricTridiagonal(diagonal: UnsafeBufferPointer(start: diagonal, count: j),
                                           offDiagonal: UnsafeBufferPointer(start: offDiagonal, count: max(j - 1, 0))),
              let extremes = t.extremeEigenvalues(workspace: work, bounds: ritzBounds)
        else {
            report.solved = false
            return report
        }
        report.ritzMin = extremes.min
        report.ritzMax = extremes.max
        report.indefinite = t.hasNonPositiveEigenvalue(workspace: UnsafePointer(workspace))
        let rhs = UnsafeMutableBufferPointer(start: solution, count: j)
        rhsCopy.update(from: solution, count: j)
        // ||T||_2 from the Ritz values; the pivots of the LU are within a small factor of it.
        let norm = max(extremes.min.magnitude, extremes.max.magnitude)
        let level = Double(j) * Double.ulpOfOne
        let floor = max(level * norm, singularityFloor.isFinite ? singularityFloor : 0)
        if case .solved(let growth) = t.solve(rhs: rhs, workspace: work),
           growth > level, growth * norm > floor, Kernels.allFinite(solution, j),
           Kernels.norm(solution, j) * floor <= Kernels.norm(rhsCopy, j) {
            return report
        }
        report.singular = true
        solution.update(from: rhsCopy, count: j)
        let cutoff = norm > 0 ? max(level, floor / norm) : level
        if t.solveLeastSquares(rhs: rhs, relativeCutoff: cutoff, workspace: work) < 0 || !Kernels.allFinite(solution, j) {
            report.solved = false
            return report
        }
        report.leastSquaresResidual = leastSquaresResidual(j)
        return report
    }

    /// ||T s - c||, with c in `rhsCopy` and s in `solution`.
    private func leastSquaresResidual(_ j: Int) -> Double {
        var largest = 0.0
        for i in 0..<j { largest = max(largest, rhsCopy[i].magnitude) }
        guard largest > 0 else { return 0 }
        // In units of the largest |c_i|, so that the squares neither overflow nor underflow.
        var sum = 0.0
        for i in 0..<j {
            var ts = diagonal[i] * solution[i]
            if i > 0 { ts += offDiagonal[i - 1] * solution[i - 1] }
            if i < j - 1 { ts += offDiagonal[i] * solution[i + 1] }
            let r = (ts - rhsCopy[i]) / largest
            sum += r * r
        }
        return largest * sum.squareRoot()
    }
}
