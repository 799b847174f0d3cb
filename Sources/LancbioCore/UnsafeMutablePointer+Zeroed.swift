extension UnsafeMutablePointer where Pointee: BinaryFloatingPoint {
    /// A new buffer of `count` zeros, its first value on a 64-byte cache line (see
    /// `LineAlignedMemory`); release it with `deallocateZeroed()`.
    ///
    /// From calloc in release builds: large buffers arrive as fresh zero pages from the
    /// system, which take no memory until first written. A buffer a caller never uses (the
    /// product buffer of a host that only uses reverse communication, basis columns beyond
    /// the longest cycle so far) then costs address space only.
    static func allocate(zeroed count: Int) -> UnsafeMutablePointer<Pointee> {
        let count = Swift.max(count, 1)
        let (bytes, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<Pointee>.stride)
        guard !overflow, let start = LineAlignedMemory.allocate(bytes) else {
            // Creation checks that the storage can be allocated before allocating it, so
            // this is reached only when the system runs out of memory in between.
            fatalError("out of memory allocating \(count) values")
        }
        return start.bindMemory(to: Pointee.self, capacity: count)
    }

    func deallocateZeroed() { LineAlignedMemory.release(UnsafeMutableRawPointer(self)) }
}
