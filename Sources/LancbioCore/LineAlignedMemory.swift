#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Zeroed memory that starts on a 64-byte cache line, so that no vector load of an
/// aligned row straddles two lines (malloc and calloc align to 16 bytes only; a large
/// block starts 16 bytes into its pages).
///
/// Release builds over-allocate a calloc block by one line and keep calloc's pointer just
/// before the aligned start: large blocks then still arrive as fresh zero pages that take
/// no memory until written. Debug builds, which the sanitizers use, take exactly the bytes
/// asked for from posix_memalign and clear them, so that an access just past the end lands
/// outside the block and is reported (in the padded block it could land in the slack).
enum LineAlignedMemory {
    static let line = 64

    /// `bytes` zero bytes on a line boundary, or nil if the system has no memory for them
    /// (or a test made this allocation fail: `FailureInjection`).
    static func allocate(_ bytes: Int) -> UnsafeMutableRawPointer? {
        guard FailureInjection.admits(bytes) else { return nil }
        #if DEBUG
        return exact(bytes)
        #else
        return padded(bytes)
        #endif
    }

    /// Releases memory from `allocate`.
    static func release(_ start: UnsafeMutableRawPointer) {
        FailureInjection.released()
        #if DEBUG
        releaseExact(start)
        #else
        releasePadded(start)
        #endif
    }

    static func padded(_ bytes: Int) -> UnsafeMutableRawPointer? {
        let (total, overflow) = bytes.addingReportingOverflow(line)
        guard !overflow, let raw = calloc(total, 1) else { return nil }
        // calloc aligns to at least 8 bytes, which leaves room for the pointer before the next line.
        let aligned = (UInt(bitPattern: raw) &+ UInt(line)) & ~UInt(line - 1)
        let start = UnsafeMutableRawPointer(bitPattern: aligned)!
        start.storeBytes(of: raw, toByteOffset: -MemoryLayout<UnsafeMutableRawPointer>.stride,
                         as: UnsafeMutableRawPointer.self)
        return start
    }

    static func releasePadded(_ start: UnsafeMutableRawPointer) {
        free(start.load(fromByteOffset: -MemoryLayout<UnsafeMutableRawPointer>.stride, as: UnsafeMutableRawPointer.self))
    }

    static func exact(_ bytes: Int) -> UnsafeMutableRawPointer? {
        var start: UnsafeMutableRawPointer? = nil
        guard posix_memalign(&start, line, bytes) == 0, let start else { return nil }
        memset(start, 0, bytes)
        return start
    }

    static func releaseExact(_ start: UnsafeMutableRawPointer) { free(start) }
}
