#if canImport(Glibc)
import Glibc
#endif
import CLancbio

/// A handle's last-error text: a fixed NUL-terminated buffer owned by the handle, so the
/// pointer handed to C stays valid until the next call and recording an error allocates
/// nothing. A value stored in the handle, not an object of its own: one allocation fewer
/// that the runtime could not report.
struct ErrorMessage: ~Copyable {
    static let capacity = 1024
    let buffer: UnsafeMutablePointer<CChar>

    /// - Throws: LANCBIO_ERR_OUT_OF_MEMORY when the buffer cannot be allocated.
    init() throws(CFailure) {
        guard let raw = calloc(Self.capacity, 1) else {
            throw CFailure(LANCBIO_ERR_OUT_OF_MEMORY, "out of memory: the handle's error message buffer could not be allocated")
        }
        buffer = raw.bindMemory(to: CChar.self, capacity: Self.capacity)
    }

    deinit { free(buffer) }

    func clear() { buffer[0] = 0 }

    /// Stores `text`, truncated to the buffer at a UTF-8 character boundary.
    func set(_ text: String) { Self.write(text, into: buffer) }

    /// Writes `text` into a buffer of `capacity` bytes, truncated at a UTF-8 character
    /// boundary, NUL-terminated.
    static func write(_ text: String, into buffer: UnsafeMutablePointer<CChar>) {
        var count = 0
        for byte in text.utf8 {
            // Stop before a multi-byte character that would not fit whole.
            if count >= capacity - 4 && byte & 0xC0 != 0x80 { break }
            if count >= capacity - 1 { break }
            buffer[count] = CChar(bitPattern: byte)
            count += 1
        }
        buffer[count] = 0
    }
}
