/// Checkpoints of an estimator (see `Checkpoint`): its committed state as bytes, and
/// estimators made from them. An estimator restored from a checkpoint, or loaded with one,
/// takes bitwise the steps the saved estimator would have taken next.
///
/// Only committed state is saved: a step in progress (reverse communication, a product
/// closure running) makes every call here fail with `.invalidState`. Costs are linear in
/// the state saved: the estimate, and for Lanczos the live cycle (j + 3 vectors at
/// dimension j, none when the next step restarts).
extension Estimator {
    /// Bytes `save(into:)` writes for the current state. It changes with the state
    /// (Lanczos: with the subspace dimension): ask right before saving.
    /// - Throws: `.invalidState` during a step.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public func checkpointSize() throws(EstimatorError) -> Int {
        try checkNoStep("save")
        return encodeCheckpoint(into: nil)
    }

    /// Writes a checkpoint of the committed state into `buffer`.
    /// - Parameter buffer: At least `checkpointSize()` bytes, any alignment; bytes after the
    ///   checkpoint are left alone.
    /// - Returns: The bytes written.
    /// - Throws: `.invalidState` during a step; `.invalidArgument` when `buffer` is too
    ///   small (nothing is written then).
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public func save(into buffer: UnsafeMutableRawBufferPointer) throws(EstimatorError) -> Int {
        try checkNoStep("save")
        let size = encodeCheckpoint(into: nil)
        guard buffer.count >= size else {
            throw .invalidArgument("the buffer holds \(buffer.count) bytes; the checkpoint needs \(size)")
        }
        return encodeCheckpoint(into: buffer)
    }

    private func encodeCheckpoint(into buffer: UnsafeMutableRawBufferPointer?) -> Int {
        Checkpoint.encode(.estimator, T.self, n: n, method: method, bilevel: nil, into: buffer) { archiveState(to: &$0) }
    }

    /// A new estimator in the state `checkpoint` recorded, with its n and method.
    /// - Throws: `.invalidArgument` for a bilevel optimizer's checkpoint or one of another
    ///   precision than T; `.invalidCheckpoint` when its state is inconsistent.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public convenience init(restoring checkpoint: Checkpoint) throws(EstimatorError) {
        try Self.checkKind(checkpoint)
        try self.init(n: checkpoint.n, method: checkpoint.method)
        var reader = checkpoint.stateReader()
        let install = try unarchiveState(from: &reader)
        try reader.expectEnd()
        install()
    }

    /// Replaces the state with the one `checkpoint` recorded. On any error the estimator
    /// is unchanged.
    /// - Throws: `.invalidArgument` when the checkpoint is a bilevel optimizer's, of another
    ///   precision, dimension or method (options included); `.invalidState` during a step;
    ///   `.invalidCheckpoint` when its state is inconsistent.
    @_specialize(exported: true, where T == Double)
    @_specialize(exported: true, where T == Float)
    public func load(_ checkpoint: Checkpoint) throws(EstimatorError) {
        try checkNoStep("load")
        try Self.checkKind(checkpoint)
        try checkFits(checkpoint)
        var reader = checkpoint.stateReader()
        let install = try unarchiveState(from: &reader)
        try reader.expectEnd()
        install()
    }

    private static func checkKind(_ checkpoint: Checkpoint) throws(EstimatorError) {
        guard checkpoint.kind == .estimator else {
            throw .invalidArgument("the checkpoint is a bilevel optimizer's, not an estimator's")
        }
        guard checkpoint.holds(T.self) else {
            throw .invalidArgument("the checkpoint holds \(checkpoint.scalarName) values, this estimator float\(8 * MemoryLayout<T>.size)")
        }
    }

    /// The checkpoint's configuration is this estimator's.
    func checkFits(_ checkpoint: Checkpoint) throws(EstimatorError) {
        guard checkpoint.n == n else {
            throw .invalidArgument("the checkpoint is of dimension n = \(checkpoint.n), this estimator's \(n)")
        }
        guard checkpoint.method == method else {
            throw .invalidArgument(checkpoint.method.name == method.name
                ? "the checkpoint's \(method.name) options (\(checkpoint.method.optionSummary)) differ from this estimator's (\(method.optionSummary))"
                : "the checkpoint is of method \(checkpoint.method.name), this estimator's \(method.name)")
        }
    }
}
