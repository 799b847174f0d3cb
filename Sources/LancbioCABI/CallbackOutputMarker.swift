/// What the library stores in out[0] before calling any callback, so that a callback that
/// returns 0 without having written its output is caught instead of its stale buffer being
/// used as a product or gradient.
///
/// This is not only a guard against careless C code. A Python callback made with ctypes
/// can fail before its first statement runs (an asynchronous exception such as
/// KeyboardInterrupt, raised by a signal handler on entry to the function): ctypes then
/// prints the exception and returns to the library without ever writing the return value,
/// so the library reads whatever the stack slot held, most often the 0 of the previous
/// call. Only the output buffer can tell that nothing ran.
///
/// The marker is a quiet NaN with payload 0x3CA11B ("callback"): arithmetic never produces
/// it (NaNs from arithmetic carry payload 0 or an operand's), and it fits the quiet
/// payload of Float (22 bits) as well as Double's.
///
/// Edge cases: a callback that writes out[0] but not the rest is not detected (the contract
/// asks for every value); one that writes exactly this NaN into out[0] is taken as not
/// having written anything, which is an error either way (a NaN product is one).
enum CallbackOutputMarker {
    @inline(__always)
    static func value<T: BinaryFloatingPoint>(_: T.Type = T.self) -> T {
        let quiet = T.RawSignificand(1) << (T.significandBitCount - 1)
        return T(sign: .plus, exponentBitPattern: T.RawExponent((1 << T.exponentBitCount) - 1),
                 significandBitPattern: quiet | 0x3CA11B)
    }

    /// Whether `x` is the marker, bit for bit.
    @inline(__always)
    static func isMarker<T: BinaryFloatingPoint>(_ x: T) -> Bool {
        let marker: T = value()
        return x.isNaN && x.sign == .plus && x.significandBitPattern == marker.significandBitPattern
    }

    /// Stores the marker in `out[0]`, runs `callback`, and says whether out[0] still holds
    /// the marker afterwards (the callback did not write its output).
    @inline(__always)
    static func leftUnwritten<T: BinaryFloatingPoint>(_ out: UnsafeMutablePointer<T>, _ callback: () -> Int32)
        -> (code: Int32, unwritten: Bool) {
        out.pointee = value()
        let code = callback()
        return (code, code == 0 && isMarker(out.pointee))
    }
}
