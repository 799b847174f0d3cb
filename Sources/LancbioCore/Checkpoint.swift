/// A checkpoint: the committed state of an estimator or a bilevel optimizer as bytes, from
/// which an identical one is made (`Estimator(restoring:)`, `BilevelOptimizer(restoring:)`)
/// or an existing one is put back (`load`). A restored object's next steps are bitwise
/// those the saved one would have taken. docs/algorithms.md section 12 describes the format.
///
/// This value is a checked view of a caller's bytes: creating it verifies the header, the
/// size and the checksum and decodes the configuration (what creation needs: dimensions,
/// method and options, precision); the state fields are decoded, checked and installed by
/// `load`. It points into those bytes: use it while they are alive and unchanged.
///
/// Layout (version 3): 8-byte fields (`StateArchive`) in the writer's byte order,
///
///     0   magic "LBIOCKPT"                  8   byte-order mark 0x0102030405060708
///     16  format version (3)                24  size in bytes, checksum included
///     32  kind (1 estimator, 2 bilevel)     40  bits of the scalar (64, 32)
///     48  configuration: n, the method's code and options; bilevel: dx and its options
///         state: the estimator's (counters, last info, v, the method's own state);
///         bilevel: then its own (iteration, totals, last info, hyper-gradient)
///     size - 8  checksum (`StateArchive.checksum`) of every byte before it
public struct Checkpoint {
    /// What a checkpoint holds.
    public enum Kind: UInt64, Sendable {
        case estimator = 1
        case bilevel = 2
    }

    /// The outer loop's part of a bilevel checkpoint's configuration.
    public struct BilevelConfiguration: Equatable, Sendable {
        public let dx: Int
        public let options: BilevelOptions
    }

    /// The format this library writes and reads. 2: the step info records
    /// residual_uncertain, Lanczos its exact_residual option and the scales of its cycle.
    public static let formatVersion = 3
    /// The magic "LBIOCKPT" as the 64-bit word whose bytes, in memory, spell it.
    static let magic = UInt64(littleEndian: 0x5450_4B43_4F49_424C)
    static let byteOrderMark: UInt64 = 0x0102_0304_0506_0708
    /// Bytes before the configuration, and the checksum's.
    static let headerBytes = 48
    static let checksumBytes = 8

    public let kind: Kind
    /// Bits of the stored values: 64 for Double, 32 for Float.
    public let scalarBits: Int
    /// The estimator's dimension (a bilevel optimizer's dy).
    public let n: Int
    /// The estimator's method and options.
    public let method: EstimatorMethod
    /// dx and the outer-loop options of a bilevel checkpoint; nil for an estimator's.
    public let bilevel: BilevelConfiguration?

    private let bytes: UnsafeRawBufferPointer
    /// Where the state fields start.
    private let stateOffset: Int

    /// Checks `bytes` as a checkpoint and decodes its configuration. Nothing is allocated
    /// before the checks: the dimensions are bounded by the bytes present.
    ///
    /// Checked in this order, each with its own message: the magic, the byte-order mark
    /// (a checkpoint from a machine of the other byte order is refused, not converted),
    /// the format version (before anything a later version might lay out differently),
    /// the recorded size against `bytes.count` (exactly: trailing bytes are refused too),
    /// the checksum, then the kind, scalar, dimensions and options.
    /// - Throws: `.invalidCheckpoint` saying what is wrong.
    public init(validating bytes: UnsafeRawBufferPointer) throws(EstimatorError) {
        let count = bytes.count
        var header = StateReader(bytes, from: 0, to: count)
        let magicPrefix = withUnsafeBytes(of: Self.magic) { magic in (0..<min(count, 8)).allSatisfy { bytes[$0] == magic[$0] } }
        guard magicPrefix else {
            throw .invalidCheckpoint("not a lancbio checkpoint (it does not start with \"LBIOCKPT\")")
        }
        let minimum = Self.headerBytes + Self.checksumBytes
        guard count >= minimum else {
            throw .invalidCheckpoint("truncated: \(count) bytes, and a checkpoint has at least \(minimum)")
        }
        _ = try header.word("the magic")
        let mark = try header.word("the byte-order mark")
        guard mark == Self.byteOrderMark else {
            throw .invalidCheckpoint(mark == Self.byteOrderMark.byteSwapped
                ? "the checkpoint was written on a machine of the other byte order; checkpoints are not portable across byte orders"
                : "corrupted: the byte-order mark is \(hex(mark))")
        }
        let version = try header.word("the format version")
        guard version == UInt64(Self.formatVersion) else {
            throw .invalidCheckpoint("format version \(version) is not this library's (\(Self.formatVersion))"
                + (version > UInt64(Self.formatVersion) ? ": a newer lancbio wrote it" : ""))
        }
        let size = try header.word("the size")
        guard size == UInt64(count) else {
            throw .invalidCheckpoint(size > UInt64(count)
                ? "truncated: \(count) bytes of a checkpoint of \(size)"
                : "\(count) bytes were given for a checkpoint of \(size) (pass exactly the bytes saved)")
        }
        let end = count - Self.checksumBytes
        var trailer = StateReader(bytes, from: end, to: count)
        guard try trailer.word("the checksum") == StateArchive.checksum(UnsafeRawBufferPointer(rebasing: bytes[..<end])) else {
            throw .invalidCheckpoint("corrupted: the checksum does not match the contents")
        }

        guard let kind = Kind(rawValue: try header.word("the kind")) else {
            throw .invalidCheckpoint("unknown kind of checkpoint")
        }
        let scalarBits = try header.integer("the scalar's bits", in: 0...128)
        guard [16, 32, 64].contains(scalarBits) else {
            throw .invalidCheckpoint("the scalar's bits are \(scalarBits), not 64, 32 or 16")
        }
        var configuration = StateReader(bytes, from: header.offset, to: end)
        let n = try configuration.integer("n", in: 1...(1 << 40))
        let method = try EstimatorMethod.unarchive(from: &configuration)
        var bilevel: BilevelConfiguration? = nil
        var vectorValues = n
        if kind == .bilevel {
            let dx = try configuration.integer("dx", in: 1...(1 << 40))
            bilevel = BilevelConfiguration(dx: dx, options: try BilevelOptions.unarchive(from: &configuration))
            vectorValues += dx
        }
        // The state holds v (n values) and the hyper-gradient (dx): a corrupted dimension
        // that passed the checksum still cannot make creation allocate beyond what the
        // bytes could describe.
        guard vectorValues <= configuration.remaining / (scalarBits / 8) else {
            throw .invalidCheckpoint("the checkpoint is too short for its dimensions (n = \(n)\(bilevel.map { ", dx = \($0.dx)" } ?? ""))")
        }
        self.kind = kind
        self.scalarBits = scalarBits
        self.n = n
        self.method = method
        self.bilevel = bilevel
        self.bytes = bytes
        stateOffset = configuration.offset
    }

    /// Whether the checkpoint stores values of T.
    public func holds<T: BinaryFloatingPoint>(_: T.Type) -> Bool { scalarBits == 8 * MemoryLayout<T>.size }

    /// "float64" or "float32": the stored scalar, for messages.
    public var scalarName: String { "float\(scalarBits)" }

    /// A reader of the state fields.
    func stateReader() -> StateReader {
        StateReader(bytes, from: stateOffset, to: bytes.count - Self.checksumBytes)
    }

    /// Writes a checkpoint into `buffer`, or with none only measures it: the header, the
    /// configuration, `state`, the checksum. `buffer` holds at least the measured size.
    /// Returns the checkpoint's size in bytes.
    static func encode<T>(_ kind: Kind, _: T.Type, n: Int, method: EstimatorMethod, bilevel: BilevelConfiguration?,
                          into buffer: UnsafeMutableRawBufferPointer?, state: (inout StateWriter) -> Void) -> Int {
        func fields(_ w: inout StateWriter, size: Int) {
            w.word(magic)
            w.word(byteOrderMark)
            w.integer(formatVersion)
            w.integer(size)
            w.word(kind.rawValue)
            w.integer(8 * MemoryLayout<T>.size)
            w.integer(n)
            method.archive(to: &w)
            if let bilevel {
                w.integer(bilevel.dx)
                bilevel.options.archive(to: &w)
            }
            state(&w)
        }
        var counter = StateWriter()
        fields(&counter, size: 0)
        let size = counter.count + checksumBytes
        guard let buffer else { return size }
        var writer = StateWriter(into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<size]))
        fields(&writer, size: size)
        writer.word(StateArchive.checksum(UnsafeRawBufferPointer(rebasing: buffer[..<(size - checksumBytes)])))
        return size
    }
}

private func hex(_ word: UInt64) -> String { "0x" + String(word, radix: 16) }
