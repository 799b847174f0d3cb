/// The single-vector passes of every step that the caller's buffers force: the check (and,
/// for reverse communication, the copy) of b when a step begins, and the copy of the vector
/// to multiply into the caller's request buffer. At large n they are cut into chunks and
/// shared with the helper thread like the basis passes (`BasisPasses`): fixed chunks, sums
/// added in chunk order, so the results do not depend on which thread ran a chunk.
final class VectorPasses<T: BinaryFloatingPoint> {
    /// Shorter vectors stay on one thread. Measured with alternating builds (reverse
    /// communication from C): splitting these passes from 2^16 rows made steps at n = 1e5
    /// and 1e6 with j = 10 about 5% faster; at j = 40 the basis passes dominate and the
    /// change was within the noise.
    static var minimumRows: Int { 1 << 16 }

    /// Bytes a `VectorPasses` allocates: the chunk bounds and the per-chunk sums.
    static var storageBytes: Int {
        ChunkedWork.storageBytes(chunks: BasisSplit.chunks) + 2 * BasisSplit.chunks * MemoryLayout<Double>.stride
    }

    private var allocations = OwnedAllocations()
    let n: Int
    let splits: Bool
    /// Per chunk: its sum of squares, and its poison sum (0 when every entry is finite).
    private let partial: UnsafeMutablePointer<Double>
    private let work: ChunkedWork

    /// What one pass works on, handed to the chunks by pointer for the call only (see
    /// `ChunkedWork`): the vectors are the caller's.
    private struct Pass {
        let source: UnsafePointer<T>
        let destination: UnsafeMutablePointer<T>?
        let measuring: Bool
    }

    /// - Throws: `.outOfMemory`, with nothing left allocated.
    init(n: Int) throws(EstimatorError) {
        self.n = n
        let chunks = BasisSplit.chunks
        splits = n >= Self.minimumRows
        work = try ChunkedWork(rows: n, chunks: chunks)
        partial = try allocations.zeroed(2 * chunks)
        work.run = { [unowned self] chunk, _, pass in
            self.run(pass.assumingMemoryBound(to: Pass.self).pointee, chunk: chunk)
        }
        if splits { _ = HelperThread.shared }
    }

    /// Whether every entry of x is finite and its sum of squares (see `Kernels.measure`);
    /// with `destination`, x is also copied there in the same pass.
    func measure(_ x: UnsafePointer<T>, copyingInto destination: UnsafeMutablePointer<T>?)
        -> (allFinite: Bool, sumOfSquares: Double) {
        guard splits else {
            if let destination { return Kernels.copyMeasuring(x, into: destination, n) }
            return Kernels.measure(x, n)
        }
        dispatch(Pass(source: x, destination: destination, measuring: true))
        var squares = 0.0, poison = 0.0
        for c in 0..<BasisSplit.chunks {
            squares += partial[2 * c]
            poison += partial[2 * c + 1]
        }
        return (poison == 0, squares)
    }

    /// destination = x (n values).
    func copy(_ x: UnsafePointer<T>, into destination: UnsafeMutablePointer<T>) {
        guard splits else { return Kernels.copy(x, to: destination, n) }
        dispatch(Pass(source: x, destination: destination, measuring: false))
    }

    private func dispatch(_ pass: Pass) {
        withUnsafePointer(to: pass) { work.runAll(UnsafeRawPointer($0)) }
    }

    private func run(_ pass: Pass, chunk: Int) {
        let (start, rows) = work.rows(of: chunk)
        let source = pass.source
        guard pass.measuring else {
            if let destination = pass.destination { Kernels.copy(source + start, to: destination + start, rows) }
            return
        }
        let measured = pass.destination.map { Kernels.copyMeasuring(source + start, into: $0 + start, rows) }
            ?? Kernels.measure(source + start, rows)
        partial[2 * chunk] = measured.sumOfSquares
        partial[2 * chunk + 1] = measured.allFinite ? 0 : 1
    }
}
