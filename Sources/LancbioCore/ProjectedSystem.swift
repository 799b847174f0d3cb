/// The small symmetric tridiagonal system T s = c of a subspace method, with storage for
/// up to `capacity` unknowns allocated once.
///
/// Solving also yields T's eigenvalues (the Ritz values: free estimates of A's extreme
/// eigenvalues), which decide how to solve: a pivoted LU solve when T is nonsingular
/// (indefinite T is fine), the minimum-norm least-squares solution when an eigenvalue is
/// below `dimension * ulp * max|eigenvalue|`.
final class ProjectedSystem {
    let capacity: Int
    /// Diagonal of T (count `capacity`), filled by the caller.
    let diagonal: UnsafeMutablePointer<Double>
    /// Off-diagonal of T (count `capacity`), filled by the caller.
    let offDiagonal: UnsafeMutablePointer<Double>
    /// Right-hand side c on entry to `solve`, the solution s after it.
    let solution: UnsafeMutablePointer<Double>
    private let eigenvalues: UnsafeMutablePointer<Double>
    /// c kept for the least-squares fallback, since the LU solve overwrites `solution`.
    private let rhsCopy: UnsafeMutablePointer<Double>
    private let workspace: UnsafeMutablePointer<Double>
    private let workspaceCount: Int

    init(capacity: Int) {
        self.capacity = capacity
        diagonal = .allocate(zeroed: capacity)
        offDiagonal = .allocate(zeroed: capacity)
        solution = .allocate(zeroed: capacity)
        eigenvalues = .allocate(zeroed: capacity)
        rhsCopy = .allocate(zeroed: capacity)
        workspaceCount = capacity * capacity + 4 * capacity
        workspace = .allocate(zeroed: workspaceCount)
    }

    deinit {
        diagonal.deallocate(); offDiagonal.deallocate(); solution.deallocate()
        eigenvalues.deallocate(); rhsCopy.deallocate(); workspace.deallocate()
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
    func solve(dimension j: Int) -> Report {
        var report = Report()
        let d = UnsafeBufferPointer(start: diagonal, count: j)
        let e = UnsafeBufferPointer(start: offDiagonal, count: max(j - 1, 0))
        let work = UnsafeMutableBufferPointer(start: workspace, count: workspaceCount)
        guard Kernels.allFinite(diagonal, j), Kernels.allFinite(offDiagonal, max(j - 1, 0)),
              Kernels.allFinite(solution, j),
              symmetricTridiagonalEigen(diagonal: d, offDiagonal: e,
                                        eigenvalues: UnsafeMutableBufferPointer(start: eigenvalues, count: j),
                                        eigenvectors: nil, workspace: work)
        else {
            report.solved = false
            return report
        }
        report.ritzMin = eigenvalues[0]
        report.ritzMax = eigenvalues[j - 1]
        report.indefinite = report.ritzMin <= 0
        let largest = max(report.ritzMin.magnitude, report.ritzMax.magnitude)
        var smallest = Double.infinity
        for i in 0..<j { smallest = min(smallest, eigenvalues[i].magnitude) }
        let cutoff = Double(j) * Double.ulpOfOne * largest
        let rhs = UnsafeMutableBufferPointer(start: solution, count: j)
        rhsCopy.update(from: solution, count: j)
        if smallest > cutoff,
           case .solved = solveSymmetricTridiagonal(diagonal: d, offDiagonal: e, rhs: rhs, workspace: work),
           Kernels.allFinite(solution, j) {
            return report
        }
        report.singular = true
        solution.update(from: rhsCopy, count: j)
        if leastSquaresSymmetricTridiagonal(diagonal: d, offDiagonal: e, rhs: rhs, workspace: work) < 0
            || !Kernels.allFinite(solution, j) {
            report.solved = false
        }
        return report
    }
}
