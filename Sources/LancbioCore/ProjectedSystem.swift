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
        /// False only if the eigenvalue iteration failed or the data were not finite:
        /// `solution` is then unusable.
        var solved = true
    }

    /// Solves the leading `dimension` x `dimension` system in place.
    ///
    /// The extreme Ritz values come from Sturm counts placed by Laguerre's method (a few
    /// O(j) passes, warm-started from the previous step's); the solve is a pivoted LU
    /// (LAPACK gtsv's scheme), whose pivots also reveal singularity: when the smallest
    /// pivot falls below j * ulp * max|pivot|, the minimum-norm least-squares solution from
    /// the full eigendecomposition replaces it (the only O(j^2) path).
    func solve(dimension j: Int, ritzBounds: (min: Double, max: Double)? = nil) -> Report {
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
        if case .solved(let growth) = t.solve(rhs: rhs, workspace: work),
           growth > Double(j) * Double.ulpOfOne, Kernels.allFinite(solution, j) {
            return report
        }
        report.singular = true
        solution.update(from: rhsCopy, count: j)
        if t.solveLeastSquares(rhs: rhs, workspace: work) < 0 || !Kernels.allFinite(solution, j) {
            report.solved = false
        }
        return report
    }
}
