import Foundation
@testable import LancbioCore

/// P processes simulated by P threads, each working on its slice of the vectors:
/// the reduction hook and the product exchange through shared slots and a barrier, and
/// every thread sums the slots in the same order, as an all-reduce does (used by the
/// estimators' and the one-shot solves' tests).
final class SimulatedProcesses: @unchecked Sendable {
    let sizes: [Int]
    let offsets: [Int]
    let matrix: DenseMatrix
    private let condition = NSCondition()
    private var arrived = 0
    private var generation = 0
    // Raw storage: the threads write distinct entries at once, which Swift arrays (whose
    // every write checks the buffer's uniqueness) do not allow.
    private let slots: UnsafeMutablePointer<Double>
    private let full: UnsafeMutablePointer<Double>
    /// Hook calls per process, for the counts the estimator reports.
    let calls: UnsafeMutablePointer<Int>
    static let slotCapacity = 64

    init(sizes: [Int], matrix: DenseMatrix) {
        self.sizes = sizes
        var offsets = [0]
        for s in sizes.dropLast() { offsets.append(offsets.last! + s) }
        self.offsets = offsets
        self.matrix = matrix
        slots = .allocate(capacity: sizes.count * Self.slotCapacity)
        full = .allocate(capacity: matrix.n)
        calls = .allocate(capacity: sizes.count)
        calls.initialize(repeating: 0, count: sizes.count)
    }

    deinit {
        slots.deallocate()
        full.deallocate()
        calls.deallocate()
    }

    private func barrier() {
        condition.lock()
        let g = generation
        arrived += 1
        if arrived == sizes.count {
            arrived = 0
            generation += 1
            condition.broadcast()
        } else {
            while generation == g { condition.wait() }
        }
        condition.unlock()
    }

    func reduce(_ rank: Int, _ values: UnsafeMutableBufferPointer<Double>) -> Bool {
        calls[rank] += 1
        precondition(values.count <= Self.slotCapacity)
        for i in 0..<values.count { slots[rank * Self.slotCapacity + i] = values[i] }
        barrier()
        for i in 0..<values.count {
            var sum = 0.0
            for p in 0..<sizes.count { sum += slots[p * Self.slotCapacity + i] }
            values[i] = sum
        }
        barrier()
        return true
    }

    /// Rows `rank` of A x, from every process's slice of x.
    func product(_ rank: Int, _ x: UnsafeBufferPointer<Double>, _ y: UnsafeMutableBufferPointer<Double>) {
        for i in 0..<x.count { full[offsets[rank] + i] = x[i] }
        barrier()
        for i in 0..<y.count {
            var s = 0.0
            for k in 0..<matrix.n { s += matrix[offsets[rank] + i, k] * full[k] }
            y[i] = s
        }
        barrier()
    }

    /// Runs `body(rank)` on one thread per process and waits for all.
    func run(_ body: @escaping @Sendable (Int) -> Void) {
        let done = DispatchGroup()
        for rank in 0..<sizes.count {
            done.enter()
            let thread = Thread { body(rank); done.leave() }
            thread.start()
        }
        done.wait()
    }
}
