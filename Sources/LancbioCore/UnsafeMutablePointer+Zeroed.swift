extension UnsafeMutablePointer {
    /// A new buffer of `count` zeros, its first value on a 64-byte cache line (see
    /// `LineAlignedMemory`); release it with `deallocateZeroed()`. Objects hold theirs
    /// through `OwnedAllocations`, which releases them.
    ///
    /// From calloc in release builds: large buffers arrive as fresh zero pages from the
    /// system, which take no memory until first written. A buffer a caller never uses (the
    /// product buffer of a host that only uses reverse communication, basis columns beyond
    /// the longest cycle so far) then costs address space only.
    ///
    /// - Parameter count: values, >= 0 (0 allocates one, so the pointer is distinct).
    ///   Pointee is a plain value type whose all-zero bytes are a value (floating-point and
    ///   integer scalars, Bool, pthread types).
    /// - Throws: `.outOfMemory` when the system refuses the memory, or when count values
    ///   overflow the address space. Never traps: a library must not end its host process.
    static func allocate(zeroed count: Int) throws(EstimatorError) -> UnsafeMutablePointer<Pointee> {
        assert(_isPOD(Pointee.self), "zeroed buffers hold plain values")
        let count = Swift.max(count, 1)
        let (bytes, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<Pointee>.stride)
        guard !overflow else { throw .outOfMemory(bytes: Int.max) }
        guard let start = LineAlignedMemory.allocate(bytes) else { throw .outOfMemory(bytes: bytes) }
        return start.bindMemory(to: Pointee.self, capacity: count)
    }

    func deallocateZeroed() { LineAlignedMemory.release(UnsafeMutableRawPointer(self)) }
}
