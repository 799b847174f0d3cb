#if canImport(Glibc)
import Glibc
#endif
import CLancbio

/// The message of the last failed call on this thread that has no handle to hold it
/// (creation, options, one-shot solves): `lancbio_last_error()`.
///
/// One buffer per thread, from malloc on the first failure of that thread and freed when
/// the thread exits: a global buffer would let two threads creating estimators overwrite
/// each other's messages, and a message passed out of a failed create must stay readable
/// until the same thread makes its next such call.
enum ThreadLastError {
    private static let key: pthread_key_t? = {
        var key = pthread_key_t()
        guard pthread_key_create(&key, { free($0) }) == 0 else { return nil }
        return key
    }()

    private static let empty: StaticString = ""

    /// The calling thread's buffer, created when `create` is true.
    private static func buffer(create: Bool) -> UnsafeMutablePointer<CChar>? {
        guard let key else { return nil }
        if let existing = pthread_getspecific(key) { return existing.assumingMemoryBound(to: CChar.self) }
        guard create, let raw = malloc(ErrorMessage.capacity) else { return nil }
        guard pthread_setspecific(key, raw) == 0 else { free(raw); return nil }
        let buffer = raw.assumingMemoryBound(to: CChar.self)
        buffer[0] = 0
        return buffer
    }

    /// Runs one handle-less C call: clears the thread's message, records the message of a
    /// failure, and turns it into a status.
    static func call(_ body: () throws(CFailure) -> Int32) -> Int32 {
        buffer(create: false)?[0] = 0
        do {
            let status = try body()
            // A callback may have made a failing handle-less call of its own; the message
            // describes this call, which succeeded.
            buffer(create: false)?[0] = 0
            return status
        } catch {
            if let buffer = buffer(create: true) {
                ErrorMessage.write(error.message, into: buffer)
            }
            return error.status
        }
    }

    /// The calling thread's message, "" when its last handle-less call succeeded.
    static var text: UnsafePointer<CChar> {
        if let buffer = buffer(create: false) { return UnsafePointer(buffer) }
        return UnsafeRawPointer(empty.utf8Start).assumingMemoryBound(to: CChar.self)
    }
}
