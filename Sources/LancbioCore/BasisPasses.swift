enum BasisSplit {
    /// Smaller passes stay on one thread. Measured on two cores, in one run alternating
    /// builds: from 2^16 basis entries a split step is 1.4-1.5x faster (n = 1e4, j = 10:
    /// 22 us against 33 us; n = 2e4, j = 5: 30 us against 43 us). The two virtual cores of
    /// a cloud machine do not always run in parallel, though (at times the split gained
    /// nothing, as if they shared one physical core); the split then cost 5-15%, against
    /// its 1.5x when they do. (A variable for tests, which lower it to split small problems.)
    nonisolated(unsafe) static var minimumEntries = 1 << 16
    /// And passes over fewer rows than this stay on one thread whatever the number of
    /// columns: a chunk of a few hundred rows per column is a short stream for the
    /// prefetcher and a microsecond of work; at n = 1e3, j = 80 the split step took 12 us
    /// or, when the two cores did not run in parallel, 21 us, against 15 us on one thread.
    nonisolated(unsafe) static var minimumRows = 8192
    /// Rows are cut into this many chunks: enough that the two threads end close together
    /// and that a helper descheduled mid-chunk holds up little.
    static let chunks = 8
}

/// The two passes over the Lanczos basis that dominate a step's memory traffic,
/// s = Q^T (b - w) (with the orthogonality check) and v = vbar + Q s, cut by rows into
/// chunks that `HelperThread` shares between two cores when the basis is large.
///
/// Whether a pass is cut depends only on its size, never on whether the helper was free,
/// and chunk sums are added in chunk order: a given step gives the same bits on one
/// thread or two.
final class BasisPasses<T: BinaryFloatingPoint> {
    private var allocations = OwnedAllocations()
    let n: Int
    /// Column capacity of the basis (m_max + 1).
    let capacity: Int
    /// `BasisSplit.minimumEntries` and `minimumRows` when this was created, so a test
    /// changing them cannot change the results of estimators that already exist.
    private let threshold: Int
    private let minimumRows: Int
    /// `blockRows` Doubles per thread (one thread for an unsplit pass).
    private let scratch: UnsafeMutablePointer<Double>
    private let blockRows: Int
    /// Per chunk (`chunkStride` Doubles): its coefficients (`capacity`), its orthogonality
    /// products (`capacity`), then a scalar: the sum of a one-result pass, or ||b - w||^2
    /// of a projection.
    private let partial: UnsafeMutablePointer<Double>
    private var chunkStride: Int { 2 * capacity + 1 }
    private let finite: UnsafeMutablePointer<Bool>
    private let work: ChunkedWork

    /// What one pass works on: built on the caller's stack for each call and handed to the
    /// chunks by pointer (`ChunkedWork.runAll`), so no vector of a call, the caller's own
    /// included, is held by this object after it.
    private enum Pass {
        case project(basis: UnsafePointer<T>, columns: Int, rhs: UnsafePointer<T>, minus: UnsafePointer<T>?,
                     z: UnsafeMutablePointer<T>?, zScale: Double)
        case combine(basis: UnsafePointer<T>, columns: Int, coefficients: UnsafeMutablePointer<Double>,
                     base: UnsafePointer<T>?, out: UnsafeMutablePointer<T>)
        case coefficient(q: UnsafePointer<T>, y: UnsafePointer<T>, previous: UnsafePointer<T>?, beta: Double)
        case residual(y: UnsafePointer<T>, q: UnsafePointer<T>, alpha: Double, previous: UnsafePointer<T>?,
                      beta: Double, out: UnsafeMutablePointer<T>)
    }

    /// - Parameters: n >= 1 rows; capacity >= 1 columns, at most `LanczosOptions.maximumPeriod + 1`.
    /// - Throws: `.outOfMemory`, with nothing left allocated.
    init(n: Int, capacity: Int) throws(EstimatorError) {
        self.n = n
        self.capacity = capacity
        threshold = BasisSplit.minimumEntries
        minimumRows = Self.minimumRows
        let chunks = BasisSplit.chunks
        // The thresholds read once: the storage must fit the splits this object will make.
        let sizes = Self.sizes(n: n, capacity: capacity, threshold: threshold, minimumRows: minimumRows)
        work = try ChunkedWork(rows: n, chunks: chunks)
        blockRows = Self.scratchRows(n: n)
        scratch = try allocations.zeroed(sizes.scratch)
        partial = try allocations.zeroed(sizes.partial)
        finite = try allocations.zeroed(chunks)
        finite.initialize(repeating: true, count: chunks)
        work.run = { [unowned self] chunk, worker, pass in
            self.run(pass.assumingMemoryBound(to: Pass.self).pointee, chunk: chunk, worker: worker)
        }
        // Create the helper now, not inside a step (creating a thread allocates).
        if sizes.splittable { _ = HelperThread.shared }
    }

    /// Scratch Doubles per thread: a block, rounded up to whole 64-byte lines so that the
    /// second thread's scratch starts on a line too.
    static func scratchRows(n: Int) -> Int { (min(kernelBlockRows, n) + 7) & ~7 }

    private static var minimumRows: Int { max(BasisSplit.minimumRows, 64 * BasisSplit.chunks) }

    /// The Doubles of the scratch (one block per thread) and of the per-chunk sums, which a
    /// basis too small ever to be split does without.
    private static func sizes(n: Int, capacity: Int, threshold: Int, minimumRows: Int)
        -> (splittable: Bool, scratch: Int, partial: Int) {
        // Any n reaches here (requiredBytes asks before it checks n): n * capacity may overflow.
        let (entries, overflow) = n.multipliedReportingOverflow(by: capacity)
        let splittable = n >= minimumRows && (overflow || entries >= threshold)
        return (splittable, (splittable ? 2 : 1) * scratchRows(n: n),
                splittable ? BasisSplit.chunks * (2 * capacity + 1) : 1)
    }

    /// Bytes a `BasisPasses` for n rows and `capacity` columns allocates (with the split
    /// thresholds in force when it is created).
    static func storageBytes(n: Int, capacity: Int) -> Int {
        let sizes = sizes(n: n, capacity: capacity, threshold: BasisSplit.minimumEntries, minimumRows: minimumRows)
        return ChunkedWork.storageBytes(chunks: BasisSplit.chunks) + (sizes.scratch + sizes.partial) * MemoryLayout<Double>.stride
            + BasisSplit.chunks * MemoryLayout<Bool>.stride
    }

    private func splits(_ columns: Int) -> Bool {
        n >= minimumRows && n * columns >= threshold
    }

    /// The three-term recurrence streams four vectors: split it like a four-column pass.
    private var splitsRecurrence: Bool { splits(min(4, capacity)) }

    /// alpha = q . (y - beta p). See `Kernels.lanczosCoefficient`.
    func lanczosCoefficient(q: UnsafePointer<T>, y: UnsafePointer<T>, previous p: UnsafePointer<T>?,
                            beta: Double) -> Double {
        guard splitsRecurrence else { return Kernels.lanczosCoefficient(q: q, y: y, previous: p, beta: beta, n) }
        dispatch(.coefficient(q: q, y: y, previous: p, beta: beta))
        return sumChunks()
    }

    /// out = y - alpha q - beta p; returns the sum of squares of out. See `Kernels.lanczosResidual`.
    func lanczosResidual(y: UnsafePointer<T>, q: UnsafePointer<T>, alpha: Double, previous p: UnsafePointer<T>?,
                         beta: Double, into out: UnsafeMutablePointer<T>) -> Double {
        guard splitsRecurrence else {
            return Kernels.lanczosResidual(y: y, q: q, alpha: alpha, previous: p, beta: beta, into: out, n)
        }
        dispatch(.residual(y: y, q: q, alpha: alpha, previous: p, beta: beta, out: out))
        return sumChunks()
    }

    /// s = Q^T (b - w) over `columns` columns (w nil: Q^T b); with z, also
    /// zCoefficients = Q^T z * zScale, z scaled in place. Returns ||b - w||^2. See
    /// `Kernels.projectResidual`.
    @discardableResult
    func project(_ basis: UnsafePointer<T>, columns: Int, rhs: UnsafePointer<T>, minus w: UnsafePointer<T>?,
                 coefficients: UnsafeMutablePointer<Double>,
                 and z: UnsafeMutablePointer<T>?, scalingBy zScale: Double,
                 zCoefficients: UnsafeMutablePointer<Double>) -> Double {
        guard splits(columns) else {
            return Kernels.projectResidual(basis, rows: n, stride: n, columns: columns, rhs: rhs, minus: w,
                                           coefficients: coefficients, and: z, scalingBy: zScale,
                                           zCoefficients: zCoefficients, scratch: scratch)
        }
        dispatch(.project(basis: basis, columns: columns, rhs: rhs, minus: w, z: z, zScale: zScale))
        sumChunks(offset: 0, columns: columns, into: coefficients)
        if z != nil { sumChunks(offset: capacity, columns: columns, into: zCoefficients) }
        return sumChunks()
    }

    /// out = base + Q s over `columns` columns; false if an entry of out is not finite.
    /// See `Kernels.combineColumns`.
    func combine(_ basis: UnsafePointer<T>, columns: Int, coefficients: UnsafeMutablePointer<Double>,
                 base: UnsafePointer<T>?, into out: UnsafeMutablePointer<T>) -> Bool {
        guard splits(columns) else {
            return Kernels.combineColumns(basis, n: n, columns: columns, coefficients: coefficients,
                                          base: base, into: out, scratch: scratch)
        }
        dispatch(.combine(basis: basis, columns: columns, coefficients: coefficients, base: base, out: out))
        var allFinite = true
        for c in 0..<BasisSplit.chunks { allFinite = allFinite && finite[c] }
        return allFinite
    }

    private func dispatch(_ pass: Pass) {
        withUnsafePointer(to: pass) { work.runAll(UnsafeRawPointer($0)) }
    }

    /// The chunks' scalar results (the last Double of each chunk's part), added in chunk order.
    private func sumChunks() -> Double {
        var sum = 0.0
        for c in 0..<BasisSplit.chunks { sum += partial[c * chunkStride + 2 * capacity] }
        return sum
    }

    private func sumChunks(offset: Int, columns: Int, into result: UnsafeMutablePointer<Double>) {
        for i in 0..<columns { result[i] = partial[offset + i] }
        for c in 1..<BasisSplit.chunks {
            let p = partial + c * chunkStride + offset
            for i in 0..<columns { result[i] += p[i] }
        }
    }

    private func run(_ pass: Pass, chunk: Int, worker: Int) {
        let (start, rows) = work.rows(of: chunk)
        let blockScratch = scratch + worker * blockRows
        let p = partial + chunk * chunkStride
        let scalar = p + 2 * capacity
        switch pass {
        case let .project(basis, columns, rhs, minus, z, zScale):
            scalar.pointee = Kernels.projectResidual(basis + start, rows: rows, stride: n, columns: columns, rhs: rhs + start,
                                    minus: minus.map { $0 + start }, coefficients: p,
                                    and: z.map { $0 + start }, scalingBy: zScale, zCoefficients: p + capacity,
                                    scratch: blockScratch)
        case let .coefficient(q, y, previous, beta):
            scalar.pointee = Kernels.lanczosCoefficient(q: q + start, y: y + start, previous: previous.map { $0 + start },
                                              beta: beta, rows)
        case let .residual(y, q, alpha, previous, beta, out):
            scalar.pointee = Kernels.lanczosResidual(y: y + start, q: q + start, alpha: alpha,
                                           previous: previous.map { $0 + start }, beta: beta, into: out + start, rows)
        case let .combine(basis, columns, coefficients, base, out):
            finite[chunk] = Kernels.combineColumns(basis + start, n: rows, stride: n, columns: columns,
                                                   coefficients: coefficients, base: base.map { $0 + start },
                                                   into: out + start, scratch: blockScratch)
        }
    }
}
