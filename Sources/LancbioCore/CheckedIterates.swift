/// The candidate solution of a one-shot solve, checked against the truth: the residual
/// b - A x from one product, and the best iterate checked so far, so that the answer is
/// never worse than the best one seen (or than x0 = 0, whose residual ||b|| needs no
/// product). Works in three n-vectors of the solve's scratch: the candidate, the residual
/// and the best iterate.
struct CheckedIterates<T: BinaryFloatingPoint> {
    let n: Int
    let rhs: UnsafePointer<T>
    /// x, written by the solve's method.
    let candidate: UnsafeMutablePointer<T>
    /// b - A candidate after `check`; b itself after `init` when x0 = 0.
    let residual: UnsafeMutablePointer<T>
    private let best: UnsafeMutablePointer<T>
    /// The caller's x: x0 until `answer` writes the solution there.
    private let solution: UnsafeMutablePointer<T>
    /// The products the checks used.
    private(set) var checks = 0
    /// The smallest true residual known: of the best checked candidate, or ||b|| for
    /// x0 = 0, or infinity before any check of another x0.
    private(set) var bestResidual: Double
    private var bestIsStart = true
    /// Whether x0 = 0: then the residual is b without a product.
    let startsAtZero: Bool

    /// Reduces the checks' norms when the vectors are sliced across processes.
    private let collective: SolveCollective?

    /// - Parameters:
    ///   - scratch: 3 n values.
    ///   - rhsNorm: ||b||.
    ///   - solution: n values, x0; the answer is written there by `answer` only.
    ///   - startsAtZero: whether x0 = 0 (on every process, across processes).
    init(n: Int, rhs: UnsafePointer<T>, rhsNorm: Double, solution: UnsafeMutablePointer<T>,
         scratch: UnsafeMutablePointer<T>, startsAtZero: Bool, collective: SolveCollective?) {
        self.n = n
        self.rhs = rhs
        self.solution = solution
        self.collective = collective
        candidate = scratch
        residual = scratch + n
        best = scratch + 2 * n
        self.startsAtZero = startsAtZero
        bestResidual = startsAtZero ? rhsNorm : .infinity
        Kernels.copy(solution, to: candidate, n)
        if startsAtZero { Kernels.copy(rhs, to: residual, n) }
    }

    /// ||b - A candidate|| from one product (leaving b - A candidate in `residual`; across
    /// processes in one reduction); the candidate becomes the best iterate if it is.
    mutating func check(_ product: (UnsafeBufferPointer<T>, UnsafeMutableBufferPointer<T>) throws -> Void)
        throws -> Double {
        checks += 1
        let norm: Double
        if let collective {
            collective.product(product, candidate, residual, n)
            let productFinite = Kernels.allFinite(residual, n)
            Kernels.subtract(rhs, UnsafePointer(residual), into: residual, n)
            norm = try collective.residualNorm(residual, productFinite: productFinite, n)
        } else {
            try product(UnsafeBufferPointer(start: candidate, count: n), UnsafeMutableBufferPointer(start: residual, count: n))
            guard Kernels.allFinite(residual, n) else {
                throw EstimatorError.nonFiniteProduct("the operator returned NaN or infinity (the residual check A x)")
            }
            Kernels.subtract(rhs, UnsafePointer(residual), into: residual, n)
            norm = Kernels.norm(residual, n)
        }
        guard norm.isFinite else {
            throw EstimatorError.nonFiniteResult("the residual ||A x - b|| overflowed")
        }
        if norm < bestResidual {
            bestResidual = norm
            bestIsStart = false
            Kernels.copy(UnsafePointer(candidate), to: best, n)
        }
        return norm
    }

    /// Writes the answer into the caller's x: the candidate, whose last checked residual
    /// is `last`, or the best iterate when that was better (x0 stays when it was the best).
    /// Returns the answer's residual.
    func answer(lastResidual last: Double) -> Double {
        guard last > bestResidual else {
            Kernels.copy(UnsafePointer(candidate), to: solution, n)
            return last
        }
        // The last iterates lost ground (restarts, an ill-conditioned A): an earlier one,
        // or the start, was better.
        if !bestIsStart { Kernels.copy(UnsafePointer(best), to: solution, n) }
        return bestResidual
    }
}
