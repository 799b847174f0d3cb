import CLancbio

// The structs of the C ABI start with an int64 struct_size and only ever grow at the end.
// These helpers read and write a caller's struct honouring its struct_size, so code
// compiled against an older or newer header keeps working.

/// Reads a caller's struct into `value`: rejects a struct_size below this library's
/// layout, and non-zero bytes beyond it (fields of a newer header it cannot honour).
func readVersionedStruct<S>(_ pointer: UnsafeRawPointer, into value: inout S, name: String) throws(CFailure) {
    let known = MemoryLayout<S>.size
    let size = pointer.loadUnaligned(as: Int64.self)
    guard size >= Int64(known), size <= 1 << 20 else {
        throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT,
                       "\(name).struct_size is \(size), expected at least \(known): initialise it with its *_init function or sizeof")
    }
    for offset in known..<Int(size) where pointer.load(fromByteOffset: offset, as: UInt8.self) != 0 {
        throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT,
                       "\(name) has non-zero fields this library version does not know (byte \(offset)); it supports \(known) bytes")
    }
    withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: UnsafeRawBufferPointer(start: pointer, count: known)) }
}

/// Checks that a caller's output struct is at least this library's layout.
func checkWritableStruct<S>(_ pointer: UnsafeMutablePointer<S>, name: String) throws(CFailure) {
    let size = UnsafeRawPointer(pointer).loadUnaligned(as: Int64.self)
    guard size >= Int64(MemoryLayout<S>.size) else {
        throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT,
                       "\(name).struct_size is \(size), expected at least \(MemoryLayout<S>.size): set it to sizeof the struct")
    }
}

/// Writes `value` into a caller's struct, keeping the caller's struct_size and leaving
/// bytes beyond this library's layout (a newer header's fields) untouched.
func writeVersionedStruct<S>(_ value: S, to pointer: UnsafeMutablePointer<S>) {
    let raw = UnsafeMutableRawPointer(pointer)
    let callerSize = raw.loadUnaligned(as: Int64.self)
    withUnsafeBytes(of: value) { raw.copyMemory(from: $0.baseAddress!, byteCount: MemoryLayout<S>.size) }
    raw.storeBytes(of: callerSize, as: Int64.self)
}
