import Synchronization

/// Addresses of the handles that are alive. Every entry point looks its handle up here
/// before touching it, so a NULL, garbage or already destroyed handle is answered with
/// LANCBIO_ERR_INVALID_HANDLE instead of a crash in the host process.
let liveHandles = Mutex<Set<UInt>>([])

func register(_ handle: AnyObject) -> OpaquePointer {
    let pointer = Unmanaged.passRetained(handle).toOpaque()
    _ = liveHandles.withLock { $0.insert(UInt(bitPattern: pointer)) }
    return OpaquePointer(pointer)
}

/// The live handle at `pointer`, or nil.
func lookUp<H: AnyObject>(_ pointer: OpaquePointer?, as type: H.Type) -> H? {
    guard let pointer else { return nil }
    let raw = UnsafeMutableRawPointer(pointer)
    guard liveHandles.withLock({ $0.contains(UInt(bitPattern: raw)) }) else { return nil }
    return Unmanaged<AnyObject>.fromOpaque(raw).takeUnretainedValue() as? H
}

/// Forgets and releases the live handle of type H at `pointer`; unknown pointers and
/// handles of another kind (an estimator passed to the bilevel destroy) are ignored.
func unregister<H: AnyObject>(_ pointer: OpaquePointer?, as type: H.Type) {
    guard let pointer, lookUp(pointer, as: H.self) != nil else { return }
    let raw = UnsafeMutableRawPointer(pointer)
    guard liveHandles.withLock({ $0.remove(UInt(bitPattern: raw)) != nil }) else { return }
    Unmanaged<AnyObject>.fromOpaque(raw).release()
}
