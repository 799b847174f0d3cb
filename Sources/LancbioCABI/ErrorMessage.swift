/// A handle's last-error text: a fixed NUL-terminated buffer owned by the handle, so the
/// pointer handed to C stays valid until the next call and recording an error allocates
/// nothing.
final class ErrorMessage {
    static let capacity = 1024
    let buffer: UnsafeMutablePointer<CChar>

    init() {
        buffer = .allocate(capacity: Self.capacity)
        buffer.initialize(repeating: 0, count: Self.capacity)
    }

    deinit { buffer.deallocate() }

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
