import CLancbio

// The structs of the C ABI start with an int64 struct_size and only ever grow at the end.
// These helpers read and write a caller's struct honouring its struct_size, so code
// compiled against an older or newer header keeps working.

/// The first published size of each versioned struct: callers built against that header
/// pass it, and fields appended since keep their defaults for them.
func minimumStructSize<S>(_ type: S.Type) -> Int {
    switch type {
    case is lancbio_estimator_options_t.Type: 104
    case is lancbio_step_info_t.Type: 112
    case is lancbio_bilevel_options_t.Type: 64
    case is lancbio_bilevel_info_t.Type: 80
    case is lancbio_solve_result_t.Type: 48
    default: MemoryLayout<S>.size
    }
}

/// Reads a caller's struct over `value` (which holds the defaults): copies the bytes its
/// struct_size covers; rejects a struct_size below the first published layout, and
/// non-zero bytes beyond this library's layout (fields of a newer header it cannot honour).
func readVersionedStruct<S>(_ pointer: UnsafeRawPointer, into value: inout S, name: String) throws(CFailure) {
    let known = MemoryLayout<S>.size
    let minimum = minimumStructSize(S.self)
    let size = pointer.loadUnaligned(as: Int64.self)
    guard size >= Int64(minimum), size <= 1 << 20 else {
        throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT,
                       "\(name).struct_size is \(size), expected at least \(minimum): initialise it with its *_init function or sizeof")
    }
    if Int(size) > known {
        for offset in known..<Int(size) where pointer.load(fromByteOffset: offset, as: UInt8.self) != 0 {
            throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT,
                           "\(name) has non-zero fields this library version does not know (byte \(offset)); it supports \(known) bytes")
        }
    }
    let count = min(Int(size), known)
    withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: UnsafeRawBufferPointer(start: pointer, count: count)) }
    withUnsafeMutableBytes(of: &value) { $0.storeBytes(of: Int64(known), as: Int64.self) }
}

/// Checks that a caller's output struct reaches at least the first published layout.
func checkWritableStruct<S>(_ pointer: UnsafeMutablePointer<S>, name: String) throws(CFailure) {
    let size = UnsafeRawPointer(pointer).loadUnaligned(as: Int64.self)
    let minimum = minimumStructSize(S.self)
    guard size >= Int64(minimum) else {
        throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT,
                       "\(name).struct_size is \(size), expected at least \(minimum): set it to sizeof the struct")
    }
}

/// Writes `value` into the part of a caller's struct that its struct_size covers,
/// keeping the caller's struct_size and leaving bytes beyond this library's layout (a
/// newer header's fields) untouched.
func writeVersionedStruct<S>(_ value: S, to pointer: UnsafeMutablePointer<S>) {
    let raw = UnsafeMutableRawPointer(pointer)
    let callerSize = raw.loadUnaligned(as: Int64.self)
    let count = min(Int(callerSize), MemoryLayout<S>.size)
    withUnsafeBytes(of: value) { raw.copyMemory(from: $0.baseAddress!, byteCount: count) }
    raw.storeBytes(of: callerSize, as: Int64.self)
}
