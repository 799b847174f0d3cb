/// Checkpoints of a bilevel optimizer (see `Checkpoint`): the outer loop's committed state
/// and its estimator's. x and y are the caller's (each step updates them in place) and
/// are not part of it: save them alongside.
///
/// A restored or loaded optimizer, given the same x, y and problem, takes bitwise the
/// iterations the saved one would have taken next. Calls from inside the optimizer's own
/// step fail with `.invalidState`.
extension BilevelOptimizer {
    /// Bytes `save(into:)` writes for the current state.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public func checkpointSize() throws(EstimatorError) -> Int {
        try checkNotStepping("save")
        try estimator.checkNoStep("save")
        return encodeCheckpoint(into: nil)
    }

    /// Writes a checkpoint into `buffer` (at least `checkpointSize()` bytes, any alignment).
    /// - Returns: The bytes written.
    /// - Throws: `.invalidState` inside a step; `.invalidArgument` when `buffer` is too
    ///   small (nothing is written then).
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public func save(into buffer: UnsafeMutableRawBufferPointer) throws(EstimatorError) -> Int {
        let size = try checkpointSize()
        guard buffer.count >= size else {
            throw .invalidArgument("the buffer holds \(buffer.count) bytes; the checkpoint needs \(size)")
        }
        return encodeCheckpoint(into: buffer)
    }

    private func encodeCheckpoint(into buffer: UnsafeMutableRawBufferPointer?) -> Int {
        Checkpoint.encode(.bilevel, T.self, n: dy, method: estimator.method,
                          bilevel: Checkpoint.BilevelConfiguration(dx: dx, options: options), into: buffer) { w in
            estimator.archiveState(to: &w)
            archiveState(to: &w)
        }
    }

    /// A new optimizer in the state `checkpoint` recorded, with its dimensions, options and
    /// method.
    /// - Throws: `.invalidArgument` for an estimator's checkpoint or one of another
    ///   precision than T; `.invalidCheckpoint` when its state is inconsistent.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public convenience init(restoring checkpoint: Checkpoint) throws(EstimatorError) {
        let configuration = try Self.configuration(of: checkpoint)
        try self.init(dx: configuration.dx, dy: checkpoint.n, options: configuration.options, method: checkpoint.method)
        try install(checkpoint)
    }

    /// Replaces the state (the estimator's included) with the one `checkpoint` recorded.
    /// On any error the optimizer is unchanged.
    /// - Throws: `.invalidArgument` when the checkpoint is an estimator's, or of another
    ///   precision, dimensions, options or method; `.invalidState` inside a step;
    ///   `.invalidCheckpoint` when its state is inconsistent.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public func load(_ checkpoint: Checkpoint) throws(EstimatorError) {
        try checkNotStepping("load")
        try estimator.checkNoStep("load")
        let configuration = try Self.configuration(of: checkpoint)
        guard configuration.dx == dx, checkpoint.n == dy else {
            throw .invalidArgument("the checkpoint has dx = \(configuration.dx), dy = \(checkpoint.n); this optimizer \(dx), \(dy)")
        }
        guard configuration.options == options else {
            throw .invalidArgument("the checkpoint's outer-loop options differ from this optimizer's")
        }
        try estimator.checkFits(checkpoint)
        try install(checkpoint)
    }

    private func install(_ checkpoint: Checkpoint) throws(EstimatorError) {
        var reader = checkpoint.stateReader()
        let installEstimator = try estimator.unarchiveState(from: &reader)
        let installOuter = try unarchiveState(from: &reader)
        try reader.expectEnd()
        installEstimator()
        installOuter()
    }

    private static func configuration(of checkpoint: Checkpoint) throws(EstimatorError) -> Checkpoint.BilevelConfiguration {
        guard let configuration = checkpoint.bilevel else {
            throw .invalidArgument("the checkpoint is an estimator's, not a bilevel optimizer's")
        }
        guard checkpoint.holds(T.self) else {
            throw .invalidArgument("the checkpoint holds \(checkpoint.scalarName) values, this optimizer float\(8 * MemoryLayout<T>.size)")
        }
        return configuration
    }
}
