/// SubBiO (Algorithm 1 of the paper): the Galerkin solution of A v = b on
/// S = span{b, v_k - theta0 A v_k}, with three products (A b, A v_k, A w).
///
/// The two spanning vectors are orthonormalised first, so parallel vectors reduce the
/// subspace to one dimension instead of producing a singular 2 x 2 system; the products of
/// the orthonormal vectors follow from the three products by linearity. The residual
/// ||A v - b|| is then exact, from the same products.
final class SubBiO<T: BinaryFloatingPoint>: StepMethod {
    static var name: String { "subbio" }
    /// The last product's buffer is the residual's scratch.
    static var readsProductInPlace: Bool { false }

    /// `theta0` > 0, in the units of 1 / eigenvalue of A.
    static func validate(_ theta0: Double) throws(EstimatorError) {
        guard theta0.isFinite, theta0 > 0 else {
            throw .invalidArgument("theta0 must be finite and > 0 (got \(theta0))")
        }
    }

    /// A b, the direction and its product; the 2 x 2 projected system.
    static func storage(n: Int, options: Double) -> MethodStorage {
        MethodStorage(vectors: 3, bytes: ProjectedSystem.storageBytes(capacity: 2))
    }

    private var allocations = OwnedAllocations()
    let n: Int
    let theta0: Double
    private let rhsProduct: UnsafeMutablePointer<T>     // A b
    private let direction: UnsafeMutablePointer<T>      // w = v - theta0 A v, then its part orthogonal to b
    private let directionProduct: UnsafeMutablePointer<T>
    private let projected: ProjectedSystem
    private enum Phase { case rhsProduct, estimateProduct, directionProduct }
    private var phase = Phase.rhsProduct

    init(n: Int, options theta0: Double) throws(EstimatorError) {
        self.n = n
        self.theta0 = theta0
        rhsProduct = try allocations.zeroed(n)
        direction = try allocations.zeroed(n)
        directionProduct = try allocations.zeroed(n)
        projected = try ProjectedSystem(capacity: 2)
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func begin(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> StepDemand<T> {
        guard input.rhsNorm > 0 else {
            // b = 0: the Galerkin solution on any subspace is zero.
            Kernels.fill(ws.pending, n, with: 0)
            info.zeroResidual = true
            info.residualKind = .exact
            info.settleOutcome()
            return .done
        }
        phase = .rhsProduct
        return .productOfRhs
    }

    @_specialize(where T == Double)
    @_specialize(where T == Float)
    func resume(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo) throws(EstimatorError) -> StepDemand<T> {
        info.products += 1
        let y = input.product
        guard Kernels.allFinite(y, n) else { throw .nonFiniteProduct("the operator returned NaN or infinity") }
        switch phase {
        case .rhsProduct:
            Kernels.copy(y, to: rhsProduct, n)
            phase = .estimateProduct
            return .product(of: ws.estimate)
        case .estimateProduct:
            let v = ws.estimate
            for i in 0..<n { direction[i] = T(Double(v[i]) - theta0 * Double(y[i])) }
            guard Kernels.allFinite(direction, n) else { throw .nonFiniteResult("v - theta0 A v overflowed") }
            phase = .directionProduct
            return .product(of: direction)
        case .directionProduct:
            Kernels.copy(y, to: directionProduct, n)
            try galerkinSolve(input, ws, &info)
            return .done
        }
    }

    private func galerkinSolve(_ input: StepInput<T>, _ ws: StepWorkspace<T>, _ info: inout StepInfo)
        throws(EstimatorError) {
        // Work with unit vectors throughout, so no inner product squares the scale of b or v
        // (which would overflow or underflow for |b| near 1e+-150).
        // z1 = b / ||b|| into the workspace's copy of b (b itself may be the caller's),
        // A z1 = A b / ||b|| in place.
        let bn = input.rhsNorm
        let z1 = ws.rhsCopy, az1 = rhsProduct
        Kernels.scaledCopy(input.rhs, dividingBy: bn, into: z1, n)
        Kernels.scale(az1, n, dividingBy: bn)
        // u = w / ||w||, then its part orthogonal to z1; A u by linearity.
        let directionNorm = Kernels.norm(direction, n)
        var twoDimensional = directionNorm > 0
        var orthogonalNorm = 0.0
        if twoDimensional {
            Kernels.scale(direction, n, dividingBy: directionNorm)
            Kernels.scale(directionProduct, n, dividingBy: directionNorm)
            let along = Kernels.dot(z1, direction, n)
            Kernels.axpy(-along, z1, direction, n)
            Kernels.axpy(-along, az1, directionProduct, n)
            orthogonalNorm = Kernels.norm(direction, n)
            twoDimensional = orthogonalNorm > 8 * Double(T.ulpOfOne)
        }
        if twoDimensional {
            Kernels.scale(direction, n, dividingBy: orthogonalNorm)
            Kernels.scale(directionProduct, n, dividingBy: orthogonalNorm)
        }
        let z2 = direction, az2 = directionProduct
        let d = projected.diagonal, e = projected.offDiagonal, s = projected.solution
        d[0] = Kernels.dot(z1, az1, n)
        s[0] = bn
        if twoDimensional {
            d[1] = Kernels.dot(z2, az2, n)
            e[0] = (Kernels.dot(z1, az2, n) + Kernels.dot(z2, az1, n)) / 2
            s[1] = 0
        }
        let j = twoDimensional ? 2 : 1
        let report = projected.solve(dimension: j)
        guard report.solved else { throw .nonFiniteResult("the projected 2 x 2 system could not be solved") }
        // v = s1 z1 + s2 z2, and A v - b = s1 A z1 + s2 A z2 - ||b|| z1 from the stored products.
        let c1 = s[0], c2 = twoDimensional ? s[1] : 0
        let v = ws.pending, r = ws.productOutput
        for i in 0..<n {
            v[i] = T(c1 * Double(z1[i]) + c2 * Double(z2[i]))
            r[i] = T(c1 * Double(az1[i]) + c2 * Double(az2[i]) - bn * Double(z1[i]))
        }
        guard Kernels.allFinite(v, n) else { throw .nonFiniteResult("the SubBiO estimate overflowed") }
        info.iterations = 1
        info.dimension = j
        // Products near the overflow threshold can make A v - b overflow even though v is
        // finite: the residual is then not available, rather than NaN or infinity.
        let residual = Kernels.norm(r, n)
        info.residual = residual.isFinite ? residual : 0
        info.residualKind = residual.isFinite ? .exact : .unavailable
        info.ritzMin = report.ritzMin
        info.ritzMax = report.ritzMax
        info.indefinite = report.indefinite
        info.singularFallback = report.singular
        info.settleOutcome()
    }

    func commit(_ ws: StepWorkspace<T>) {}

    // Each step builds its subspace from b and the estimate alone.
    func save(to archive: inout StateWriter) {}
    func restore(from archive: inout StateReader) throws(EstimatorError) -> StateInstallation { {} }
}
