/// The byte-level encoding of checkpoints: a writer and a reader of 8-byte fields, and the
/// checksum. `Checkpoint` lays the fields out; each piece of state encodes itself with these.
///
/// Every field occupies a multiple of 8 bytes, in the byte order of the machine that wrote
/// it (the checkpoint header records which): integers and flags as 64-bit integers,
/// reals as Double bit patterns, vectors as their values' bytes, zero-padded to 8 bytes.
/// Fixed-size fields keep every later field at an offset that depends only on the sizes
/// already read, so the reader can check each length before it trusts it.
enum StateArchive {
    /// Bytes per field and the unit all vectors are padded to.
    static let fieldBytes = 8

    /// Bytes of `count` values of T, padded to whole fields; nil on overflow.
    static func vectorBytes<T>(_: T.Type, count: Int) -> Int? {
        let (bytes, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard !overflow, count >= 0, bytes <= Int.max - fieldBytes else { return nil }
        return (bytes + fieldBytes - 1) / fieldBytes * fieldBytes
    }

    // MARK: Checksum

    private static let fnvOffset: UInt64 = 0xCBF2_9CE4_8422_2325
    private static let fnvPrime: UInt64 = 0x0000_0100_0000_01B3

    /// The checkpoint checksum: FNV-1a-64 (Fowler, Noll, Vo) in four interleaved byte lanes,
    /// combined by FNV-1a-64 over the lanes' 32 little-endian bytes.
    ///
    ///     lane_k = FNV-1a-64(bytes k, k + 4, k + 8, ...)        k = 0 ... 3
    ///     checksum = FNV-1a-64(LE8(lane_0) LE8(lane_1) LE8(lane_2) LE8(lane_3))
    ///
    /// The four independent multiply chains run at about 3.5 GB/s where plain FNV-1a, one
    /// chain, runs at 0.9 GB/s: the checksum would otherwise cost four times the copy of the
    /// state. Every FNV-1a step is a bijection of its hash for a fixed byte and tells two
    /// bytes apart for a fixed hash, so a change confined to one byte (any single corrupted
    /// byte) always changes the checksum.
    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        guard let base = bytes.baseAddress else { return combine(fnvOffset, fnvOffset, fnvOffset, fnvOffset) }
        let p = base.assumingMemoryBound(to: UInt8.self)
        let count = bytes.count, whole = count & ~3
        var h0 = fnvOffset, h1 = fnvOffset, h2 = fnvOffset, h3 = fnvOffset
        var i = 0
        while i < whole {
            h0 = (h0 ^ UInt64(p[i])) &* fnvPrime
            h1 = (h1 ^ UInt64(p[i &+ 1])) &* fnvPrime
            h2 = (h2 ^ UInt64(p[i &+ 2])) &* fnvPrime
            h3 = (h3 ^ UInt64(p[i &+ 3])) &* fnvPrime
            i &+= 4
        }
        if i < count { h0 = (h0 ^ UInt64(p[i])) &* fnvPrime }
        if i &+ 1 < count { h1 = (h1 ^ UInt64(p[i &+ 1])) &* fnvPrime }
        if i &+ 2 < count { h2 = (h2 ^ UInt64(p[i &+ 2])) &* fnvPrime }
        return combine(h0, h1, h2, h3)
    }

    private static func combine(_ h0: UInt64, _ h1: UInt64, _ h2: UInt64, _ h3: UInt64) -> UInt64 {
        var h = fnvOffset
        func absorb(_ lane: UInt64) {
            for k in 0..<8 { h = (h ^ ((lane >> (8 * UInt64(k))) & 0xFF)) &* fnvPrime }
        }
        absorb(h0); absorb(h1); absorb(h2); absorb(h3)
        return h
    }
}

/// Appends fields to a checkpoint: into a buffer of exactly the size a counting pass of the
/// same writes found, or, with no buffer, only counting.
struct StateWriter {
    private let base: UnsafeMutableRawPointer?
    private let capacity: Int
    /// Bytes written (or counted) so far.
    private(set) var count = 0

    /// A writer that only counts.
    init() {
        base = nil
        capacity = .max
    }

    /// A writer into `buffer`, which must hold everything that will be written (the size a
    /// counting writer found for the same writes).
    init(into buffer: UnsafeMutableRawBufferPointer) {
        base = buffer.baseAddress
        capacity = buffer.count
    }

    private mutating func reserve(_ bytes: Int) -> UnsafeMutableRawPointer? {
        // The counting pass sized the buffer for these very writes: overrunning it is a
        // bug in an encoder, never a caller's mistake.
        precondition(bytes <= capacity - count, "StateWriter: a checkpoint encoder wrote more than it counted")
        defer { count += bytes }
        return base.map { $0 + count }
    }

    mutating func word(_ value: UInt64) {
        reserve(StateArchive.fieldBytes)?.storeBytes(of: value, as: UInt64.self)
    }

    mutating func integer(_ value: Int) { word(UInt64(bitPattern: Int64(value))) }

    mutating func real(_ value: Double) { word(value.bitPattern) }

    mutating func flag(_ value: Bool) { word(value ? 1 : 0) }

    /// `count` values of T from `values`, zero-padded to whole fields.
    mutating func vector<T>(_ values: UnsafePointer<T>, count n: Int) {
        let bytes = n * MemoryLayout<T>.stride
        guard let padded = StateArchive.vectorBytes(T.self, count: n), let start = reserve(padded) else { return }
        start.copyMemory(from: values, byteCount: bytes)
        if padded > bytes { (start + bytes).initializeMemory(as: UInt8.self, repeating: 0, count: padded - bytes) }
    }

    /// `count` Doubles from `values`.
    mutating func reals(_ values: UnsafePointer<Double>, count n: Int) { vector(values, count: n) }
}

/// Reads the fields a `StateWriter` wrote, checking every length against the bytes left
/// before reading, and every value against the range the caller gives. It never writes:
/// state is decoded in full and checked before any of it is installed.
///
/// Failures are `.invalidCheckpoint` errors naming the field.
struct StateReader {
    private let bytes: UnsafeRawBufferPointer
    /// Offset of the next field.
    private(set) var offset: Int
    /// Where the readable fields end (the checksum follows).
    let end: Int

    init(_ bytes: UnsafeRawBufferPointer, from offset: Int, to end: Int) {
        self.bytes = bytes
        self.offset = offset
        self.end = end
    }

    /// Bytes left before `end`.
    var remaining: Int { end - offset }

    private mutating func take(_ count: Int, _ what: String) throws(EstimatorError) -> UnsafeRawPointer {
        guard count >= 0, count <= remaining, let base = bytes.baseAddress else {
            throw .invalidCheckpoint("the checkpoint ends inside \(what)")
        }
        defer { offset += count }
        return base + offset
    }

    mutating func word(_ what: String) throws(EstimatorError) -> UInt64 {
        try take(StateArchive.fieldBytes, what).loadUnaligned(as: UInt64.self)
    }

    /// An integer in `range`.
    mutating func integer(_ what: String, in range: ClosedRange<Int>) throws(EstimatorError) -> Int {
        let value = Int64(bitPattern: try word(what))
        guard value >= Int64(range.lowerBound), value <= Int64(range.upperBound) else {
            throw .invalidCheckpoint("\(what) = \(value) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        return Int(value)
    }

    /// A count: an integer in 0...`limit`. The default bound (about 1.4e14) is beyond any
    /// run's steps or products, and small enough that the counters never overflow after.
    mutating func count(_ what: String, atMost limit: Int = Int(Int32.max) << 16) throws(EstimatorError) -> Int {
        try integer(what, in: 0...limit)
    }

    /// A Double, NaN rejected (and infinities unless `finite` is false).
    mutating func real(_ what: String, finite: Bool = true) throws(EstimatorError) -> Double {
        let value = Double(bitPattern: try word(what))
        guard !value.isNaN, !finite || value.isFinite else {
            throw .invalidCheckpoint("\(what) = \(value) is not \(finite ? "finite" : "a number")")
        }
        return value
    }

    /// 0 or 1.
    mutating func flag(_ what: String) throws(EstimatorError) -> Bool {
        switch try word(what) {
        case 0: return false
        case 1: return true
        case let other: throw .invalidCheckpoint("\(what) = \(other) is not a flag (0 or 1)")
        }
    }

    /// The bytes of `count` values of T, all finite; not copied (the caller copies them
    /// with `install(_:into:count:)` once everything has been read).
    mutating func vector<T: BinaryFloatingPoint>(_: T.Type, count n: Int, _ what: String) throws(EstimatorError)
        -> UnsafeRawPointer {
        guard let padded = StateArchive.vectorBytes(T.self, count: n) else {
            throw .invalidCheckpoint("\(what) has an impossible length (\(n) values)")
        }
        let start = try take(padded, what)
        // The caller's buffer need not be aligned for T; loadUnaligned compiles to plain loads.
        let stride = MemoryLayout<T>.stride
        var finite = true
        for i in 0..<n { finite = finite && start.loadUnaligned(fromByteOffset: i &* stride, as: T.self).isFinite }
        guard finite else { throw .invalidCheckpoint("\(what) contains NaN or infinity") }
        return start
    }

    /// Copies `count` values of T that `vector` returned into `destination`.
    static func install<T>(_ source: UnsafeRawPointer, into destination: UnsafeMutablePointer<T>, count n: Int) {
        UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: n * MemoryLayout<T>.stride)
    }

    /// Fails unless every field up to `end` was read.
    func expectEnd() throws(EstimatorError) {
        guard remaining == 0 else {
            throw .invalidCheckpoint("\(remaining) bytes remain after the recorded state: the checkpoint is inconsistent")
        }
    }
}
