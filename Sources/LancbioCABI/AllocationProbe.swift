#if canImport(Glibc)
import Glibc
#endif
import CLancbio

/// Swift aborts the process when an allocation fails, which a library must never do to
/// its host. Before creating a handle, the C layer maps the whole amount once: if that fails (address-space limits, no overcommit), creation fails with a
/// status instead. With overcommit a later page fault can still exhaust memory; no library
/// can prevent that.
func ensureAllocatable(_ bytes: Int?) throws(CFailure) {
    guard let bytes else {
        throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "the requested dimensions need more memory than can be addressed")
    }
    // 0 bytes: options the core rejects (requiredBytes counts them so), and creation says
    // why. mmap of 0 bytes fails with EINVAL, which would report "cannot allocate 0 bytes".
    guard bytes > 0 else { return }
    // mmap rather than malloc: the compiler may elide an unused malloc/free pair (and with
    // it the probe), but not a system call. Large allocations are mmaps anyway, subject to
    // the same address-space limits and overcommit policy.
    let region = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    guard let region, region != MAP_FAILED else {
        throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT,
                       "cannot allocate \(bytes) bytes for the requested dimensions (out of memory or address space)")
    }
    munmap(region, bytes)
}
