enum BasisSplit {
    /// Below this many basis entries a pass takes ~0.1 ms or less on one core: waking the
    /// helper would cost a noticeable share of it.
    /// (A variable for tests, which lower it to split small problems.)
    nonisolated(unsafe) static var minimumEntries = 1 << 19
}

/// The two passes over the Lanczos basis that dominate a step's memory traffic,
/// s = Q^T (b - w) (with the orthogonality check) and v = vbar + Q s, cut by rows into two
/// parts that `HelperThread` runs on two cores when the basis is large.
///
/// Whether a pass is cut depends only on its size, never on whether the helper was free,
/// so a given step gives the same bits on one thread or two.
final class BasisPasses<T: BinaryFloatingPoint> {
    let n: Int
    /// Column capacity of the basis (m_max + 1).
    let capacity: Int
    /// First row of part 1 (rows [0, half) are part 0).
    private let half: Int
    private let scratch: UnsafeMutablePointer<Double>
    /// Part 1's coefficients (first `capacity`) and orthogonality products (next `capacity`).
    private let partial: UnsafeMutablePointer<Double>
    /// `BasisSplit.minimumEntries` when this was created, so a test changing it cannot change
    /// the results of estimators that already exist.
    private let threshold: Int


    // The pass in progress, set before `HelperThread.run`.
    private enum Pass { case project, combine }
    private var pass = Pass.project
    private var basis = UnsafePointer<T>(bitPattern: 1)!
    private var columns = 0
    private var rhs = UnsafePointer<T>(bitPattern: 1)!
    private var anchorProduct: UnsafePointer<T>? = nil
    private var coefficients = UnsafeMutablePointer<Double>(bitPattern: 1)!
    private var z: UnsafeMutablePointer<T>? = nil
    private var zScale = 1.0
    private var zCoefficients = UnsafeMutablePointer<Double>(bitPattern: 1)!
    private var base: UnsafePointer<T>? = nil
    private var out = UnsafeMutablePointer<T>(bitPattern: 1)!
    private var finite = (true, true)
    private let work = TwoPartWork()

    init(n: Int, capacity: Int) {
        self.n = n
        self.capacity = capacity
        half = (n / 2) & ~7
        threshold = BasisSplit.minimumEntries
        scratch = .allocate(zeroed: 2 * kernelBlockRows)
        partial = .allocate(zeroed: 2 * capacity)
        work.run = { [unowned self] part in self.run(part: part) }
        // Create the helper now, not inside a step (creating a thread allocates).
        if n * capacity >= threshold { _ = HelperThread.shared }
    }

    deinit {
        scratch.deallocate()
        partial.deallocate()
    }

    private func splits(_ columns: Int) -> Bool {
        n * columns >= threshold && half >= kernelBlockRows
    }

    /// s = Q^T (b - w) over `columns` columns (w nil: Q^T b); with z, also
    /// zCoefficients = Q^T z * zScale, z scaled in place. See `Kernels.projectResidual`.
    func project(_ basis: UnsafePointer<T>, columns: Int, rhs: UnsafePointer<T>, minus w: UnsafePointer<T>?,
                 coefficients: UnsafeMutablePointer<Double>,
                 and z: UnsafeMutablePointer<T>?, scalingBy zScale: Double,
                 zCoefficients: UnsafeMutablePointer<Double>) {
        guard splits(columns) else {
            Kernels.projectResidual(basis, rows: n, stride: n, columns: columns, rhs: rhs, minus: w,
                                    coefficients: coefficients, and: z, scalingBy: zScale,
                                    zCoefficients: zCoefficients, scratch: scratch)
            return
        }
        pass = .project
        self.basis = basis; self.columns = columns; self.rhs = rhs; anchorProduct = w
        self.coefficients = coefficients; self.z = z; self.zScale = zScale; self.zCoefficients = zCoefficients
        run()
        for c in 0..<columns { coefficients[c] += partial[c] }
        if z != nil {
            for c in 0..<columns { zCoefficients[c] += partial[capacity + c] }
        }
    }

    /// out = base + Q s over `columns` columns; false if an entry of out is not finite.
    /// See `Kernels.combineColumns`.
    func combine(_ basis: UnsafePointer<T>, columns: Int, coefficients: UnsafeMutablePointer<Double>,
                 base: UnsafePointer<T>?, into out: UnsafeMutablePointer<T>) -> Bool {
        guard splits(columns) else {
            return Kernels.combineColumns(basis, n: n, columns: columns, coefficients: coefficients,
                                          base: base, into: out, scratch: scratch)
        }
        pass = .combine
        self.basis = basis; self.columns = columns; self.coefficients = coefficients
        self.base = base; self.out = out
        run()
        return finite.0 && finite.1
    }

    private func run() {
        if let helper = HelperThread.shared {
            helper.run(work)
        } else {
            run(part: 0)
            run(part: 1)
        }
    }

    private func run(part: Int) {
        let start = part == 0 ? 0 : half
        let rows = part == 0 ? half : n - half
        let blockScratch = scratch + part * kernelBlockRows
        switch pass {
        case .project:
            Kernels.projectResidual(basis + start, rows: rows, stride: n, columns: columns, rhs: rhs + start,
                                    minus: anchorProduct.map { $0 + start },
                                    coefficients: part == 0 ? coefficients : partial,
                                    and: z.map { $0 + start }, scalingBy: zScale,
                                    zCoefficients: part == 0 ? zCoefficients : partial + capacity,
                                    scratch: blockScratch)
        case .combine:
            let ok = Kernels.combineColumns(basis + start, n: rows, stride: n, columns: columns,
                                            coefficients: coefficients, base: base.map { $0 + start },
                                            into: out + start, scratch: blockScratch)
            if part == 0 { finite.0 = ok } else { finite.1 = ok }
        }
    }
}
