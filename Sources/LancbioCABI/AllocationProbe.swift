#if canImport(Glibc)
import Glibc
#endif
import CLancbio

/// Headroom the probe asks for beyond the storage: each buffer's alignment line, the
/// allocator's bookkeeping (glibc serves a large block as its own mapping, rounded up to
/// whole pages; when the heap cannot grow it maps at least 1 MiB for the next small
/// block), and the small Swift objects of a creation (the handle, the estimator, the
/// method, its pass schedulers, their closures, the handle registry's entry: 1 to 3 KB,
/// measured with a counting malloc). The buffers' own
/// allocations fail with LANCBIO_ERR_OUT_OF_MEMORY; those objects' allocations cannot
/// (the Swift runtime aborts when one fails), so the spare is what keeps them from
/// meeting an exhausted system.
let allocationReserve = 2 << 20

/// Before creating, the C layer maps the storage a creation will allocate (`bytes`, the
/// core's exact count) plus `allocationReserve` once: if that fails (address-space limits,
/// no overcommit), creation fails with a status at once, before any allocation. The
/// allocations themselves are failable too; what this adds is room for the objects that
/// are not. With overcommit a later page fault can still exhaust memory; no library can
/// prevent that.
func ensureAllocatable(_ bytes: Int?) throws(CFailure) {
    guard let bytes else {
        throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "the requested dimensions need more memory than can be addressed")
    }
    // 0 bytes: options the core rejects (requiredBytes counts them so), and creation says
    // why, where a probe would only report the reserve.
    guard bytes > 0 else { return }
    // mmap rather than malloc: the compiler may elide an unused malloc/free pair (and with
    // it the probe), but not a system call. Large allocations are mmaps anyway, subject to
    // the same address-space limits and overcommit policy.
    let total = bytes + allocationReserve  // bytes <= 2^46 + small buffers: no overflow
    let region = mmap(nil, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    guard let region, region != MAP_FAILED else {
        throw CFailure(LANCBIO_ERR_OUT_OF_MEMORY,
                       "out of memory: the requested dimensions need \(bytes) bytes (and \(allocationReserve >> 20) MiB to spare), which the system refused (memory or address space exhausted)")
    }
    munmap(region, total)
}
