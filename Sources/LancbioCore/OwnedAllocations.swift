/// The zeroed buffers one object allocated, released when the object is destroyed: by
/// its deinit, or, when its initialiser throws part-way, by Swift, which destroys the
/// stored properties already initialised but runs no deinit. An object that holds its
/// buffers as raw pointers would leak those on a failed creation; one whose first stored
/// property is an `OwnedAllocations` and that allocates through it cannot.
///
///     private var allocations = OwnedAllocations()
///     private let residual: UnsafeMutablePointer<T>
///     init(n: Int) throws(EstimatorError) { residual = try allocations.zeroed(n) }
///
/// The pointers stay plain stored properties (free to swap or rotate); this keeps the
/// originals. Holds up to 8 buffers in place (the most one object of the library
/// allocates: the bilevel optimizer), so it allocates nothing
/// itself.
struct OwnedAllocations: ~Copyable {
    private var buffers = InlineArray<8, UnsafeMutableRawPointer?>(repeating: nil)
    private var count = 0

    init() {}

    /// A new buffer of `count` zeros (see `UnsafeMutablePointer.allocate(zeroed:)`),
    /// released with this owner.
    /// - Throws: `.outOfMemory`; the buffers allocated before stay owned.
    mutating func zeroed<Pointee>(_ count: Int) throws(EstimatorError) -> UnsafeMutablePointer<Pointee> {
        // More buffers than places is a mistake in this library, found by any test that
        // creates the object, never a caller's input.
        precondition(self.count < buffers.count, "an object allocates more buffers than OwnedAllocations holds")
        let buffer = try UnsafeMutablePointer<Pointee>.allocate(zeroed: count)
        buffers[self.count] = UnsafeMutableRawPointer(buffer)
        self.count += 1
        return buffer
    }

    deinit {
        for i in 0..<count {
            if let buffer = buffers[i] { LineAlignedMemory.release(buffer) }
        }
    }
}
