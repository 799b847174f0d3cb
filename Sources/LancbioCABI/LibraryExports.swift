import CLancbio

/// The package version; the Python package and the README carry the same number.
let libraryVersion: StaticString = "0.1.0"

@c @implementation
public func lancbio_abi_version() -> Int32 {
    LANCBIO_ABI_VERSION
}

@c @implementation
public func lancbio_version() -> UnsafePointer<CChar>? {
    UnsafeRawPointer(libraryVersion.utf8Start).assumingMemoryBound(to: CChar.self)
}

@c @implementation
public func lancbio_status_string(_ status: Int32) -> UnsafePointer<CChar>? {
    UnsafeRawPointer(statusDescription(status).utf8Start).assumingMemoryBound(to: CChar.self)
}

@c @implementation
public func lancbio_last_error() -> UnsafePointer<CChar>? {
    ThreadLastError.text
}
