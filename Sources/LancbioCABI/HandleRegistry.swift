#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLancbio
import Synchronization

// The live handles. Every entry point looks its handle up here before touching it, so a
// NULL, garbage or destroyed handle is answered with LANCBIO_ERR_INVALID_HANDLE instead of
// a crash in the host process.
//
// A handle is not the object's address but a slot of this table and that slot's
// generation, encoded as one pointer-sized value:
//
//     handle = generation << H | (slot + 1),   H = half the bits of a pointer (32)
//
// Each slot holds the object and a state word, generation << 1 | live. Creation takes a
// free slot, counts its generation up (1 ... 2^H - 1, then 1 again) and marks it live;
// destruction clears the live bit. A handle is live exactly when its slot's state is its
// own generation with the live bit, so a destroyed handle stays invalid when its slot
// (or its object's address, which the allocator reuses at once) serves a new handle: only
// 2^H - 1 more creations in that one slot would make the same value valid again. The
// value 0 is NULL, and no value below 2^H is ever a handle (generations start at 1), so
// small integers passed as handles are rejected too.
//
// Lookups, creation and destruction take no lock: a lookup is four atomic loads (segment
// directory, segment, state, object) after the decoding; free slots form a lock-free stack (its top tagged with a counter against ABA),
// fresh slots come from an atomic counter. A forked child therefore inherits a table that
// no dead thread can hold: a fork that lands between two of another thread's atomic steps
// at most leaves a slot taken but never marked live, or dead but never freed (which the
// child just never reuses), or a segment allocated but not installed (the child allocates
// its own). (A lock would stay locked in the child for ever, and a
// Synchronization.Mutex then traps.)
//
// Storage: segment k holds 64 * 2^k slots, allocated when the first of them is needed and
// never freed or moved, so a lookup racing with growth reads stable memory; 26 segments
// give 2^32 - 64 slots. The slot table never outgrows the handles themselves (each
// handle's object is larger than its 16-byte slot). The directory of segments and the
// segments come from malloc, so that running out of memory fails the creation with a
// status rather than trapping. Every global here is a constant-initialised atomic (no
// lazy initialisation, which a fork could also catch half done).
//
// Races: a lookup of a handle that another thread destroys at the same moment may still
// return the object (the header allows one thread per handle at a time); the table itself
// stays consistent under any interleaving of calls on different handles.

private typealias Segment = UnsafeMutablePointer<Atomic<UInt>>

private let halfBits = UInt.bitWidth / 2
private let lowMask: UInt = (1 << halfBits) - 1
private let firstSegmentLog2 = 6
private let segmentCount = halfBits - firstSegmentLog2
/// 64 (2^26 - 1) slots: slot + 1 always fits in the low `halfBits` bits.
private let capacity = (1 << firstSegmentLog2) * ((1 << segmentCount) - 1)

/// The segments, `segmentCount` atomic pointers (nil until allocated); nil until the
/// first creation. (Atomic, hence safe to share; the compiler cannot tell because pointers
/// are not Sendable.)
nonisolated(unsafe) private let directory = Atomic<UnsafeMutablePointer<Atomic<Segment?>>?>(nil)
/// Top of the stack of free slots: tag << halfBits | (slot + 1), 0 when empty. The tag
/// counts every change, so that a pop that read the top before other threads popped and
/// pushed it back fails its compare-exchange.
private let freeTop = Atomic<UInt>(0)
/// Slots below this have been handed out at least once.
private let freshSlots = Atomic<Int>(0)

/// Where a slot lives: segment k and the offset in it. Slot s is number s + 64 counted
/// from the start of an imaginary segment -1 of 64 slots, so k is the position of that
/// number's highest bit, minus 6.
@inline(__always)
private func position(of slot: Int) -> (segment: Int, offset: Int) {
    let number = UInt(slot) + (1 << firstSegmentLog2)
    let k = UInt.bitWidth - 1 - number.leadingZeroBitCount - firstSegmentLog2
    return (k, Int(number - (UInt(1 << firstSegmentLog2) << k)))
}

/// A slot's two words in its segment: the state, generation << 1 | live; and the object's
/// address while live, the next free slot + 1 (0: none) while on the free stack.
private struct Slot {
    let words: Segment
    var state: UnsafeMutablePointer<Atomic<UInt>> { words }
    var payload: UnsafeMutablePointer<Atomic<UInt>> { words + 1 }

    /// The slot if its segment exists.
    @inline(__always)
    init?(_ slot: Int) {
        guard let segments = directory.load(ordering: .acquiring) else { return nil }
        let (k, offset) = position(of: slot)
        guard let segment = segments[k].load(ordering: .acquiring) else { return nil }
        words = segment + 2 * offset
    }
}

/// The slot and generation that `pointer` encodes, if it could be a handle.
@inline(__always)
private func decode(_ pointer: OpaquePointer?) -> (slot: Int, generation: UInt)? {
    let value = UInt(bitPattern: pointer)
    let slot = Int(value & lowMask) - 1
    let generation = value >> halfBits
    guard slot >= 0, slot < capacity, generation != 0 else { return nil }
    return (slot, generation)
}

/// The slot of the live handle at `pointer`: its number, its words and its state word.
@inline(__always)
private func liveSlot(_ pointer: OpaquePointer?) -> (index: Int, slot: Slot, live: UInt)? {
    guard let (index, generation) = decode(pointer), let slot = Slot(index) else { return nil }
    let live = generation << 1 | 1
    guard slot.state.pointee.load(ordering: .acquiring) == live else { return nil }
    return (index, slot, live)
}

/// Makes `handle` live and returns its C handle; the table keeps one reference until
/// `unregister`.
func register(_ handle: AnyObject) throws(CFailure) -> OpaquePointer {
    guard let index = takeFreeSlot() ?? takeFreshSlot(), let slot = Slot(index) else {
        throw CFailure(LANCBIO_ERR_INVALID_ARGUMENT, "cannot allocate another handle (out of memory or handles)")
    }
    let previous = slot.state.pointee.load(ordering: .relaxed) >> 1
    let generation = previous == lowMask ? 1 : previous + 1
    slot.payload.pointee.store(UInt(bitPattern: Unmanaged.passRetained(handle).toOpaque()), ordering: .relaxed)
    slot.state.pointee.store(generation << 1 | 1, ordering: .releasing)
    // Never nil: the slot part is at least 1.
    return OpaquePointer(bitPattern: generation << halfBits | UInt(index + 1))!
}

/// The live handle of type H at `pointer`, or nil.
@inline(__always)
func lookUp<H: AnyObject>(_ pointer: OpaquePointer?, as type: H.Type) -> H? {
    guard let (_, slot, _) = liveSlot(pointer),
          let object = UnsafeRawPointer(bitPattern: slot.payload.pointee.load(ordering: .acquiring)) else { return nil }
    return Unmanaged<AnyObject>.fromOpaque(object).takeUnretainedValue() as? H
}

/// Forgets and releases the live handle of type H at `pointer`; unknown pointers, stale
/// ones (whatever lives in their slot now) and handles of another kind (an estimator
/// passed to the bilevel destroy) are ignored.
func unregister<H: AnyObject>(_ pointer: OpaquePointer?, as type: H.Type) {
    guard let (index, slot, live) = liveSlot(pointer),
          let object = UnsafeRawPointer(bitPattern: slot.payload.pointee.load(ordering: .acquiring)),
          Unmanaged<AnyObject>.fromOpaque(object).takeUnretainedValue() is H else { return }
    // Of two threads destroying the same handle, one clears the live bit; the other stops.
    guard slot.state.pointee.compareExchange(expected: live, desired: live & ~1,
                                             ordering: .acquiringAndReleasing).exchanged else { return }
    Unmanaged<AnyObject>.fromOpaque(object).release()
    pushFreeSlot(index, slot)
}

/// Pops a slot off the free stack.
private func takeFreeSlot() -> Int? {
    var top = freeTop.load(ordering: .acquiring)
    while top & lowMask != 0 {
        let index = Int(top & lowMask) - 1
        // Read before the exchange: if another thread popped this slot meanwhile, this is
        // not its successor any more, but then the tag has changed and the exchange fails.
        guard let slot = Slot(index) else { return nil }
        let next = slot.payload.pointee.load(ordering: .acquiring) & lowMask
        let tag = ((top >> halfBits) &+ 1) & lowMask
        let (exchanged, current) = freeTop.compareExchange(expected: top, desired: tag << halfBits | next,
                                                           ordering: .acquiringAndReleasing)
        if exchanged { return index }
        top = current
    }
    return nil
}

/// Pushes a dead slot onto the free stack.
private func pushFreeSlot(_ index: Int, _ slot: Slot) {
    var top = freeTop.load(ordering: .relaxed)
    while true {
        slot.payload.pointee.store(top & lowMask, ordering: .relaxed)
        let tag = ((top >> halfBits) &+ 1) & lowMask
        let (exchanged, current) = freeTop.compareExchange(expected: top, desired: tag << halfBits | UInt(index + 1),
                                                           ordering: .releasing)
        if exchanged { return }
        top = current
    }
}

/// A slot never handed out before, its segment allocated; nil when the table is full or
/// memory is exhausted.
private func takeFreshSlot() -> Int? {
    let index = freshSlots.wrappingAdd(1, ordering: .relaxed).oldValue
    guard index < capacity, let segments = ensureDirectory() else { return nil }
    let k = position(of: index).segment
    if segments[k].load(ordering: .acquiring) != nil { return index }
    let words = 2 << (firstSegmentLog2 + k)
    guard let raw = malloc(words * MemoryLayout<Atomic<UInt>>.stride) else { return nil }
    let segment = raw.bindMemory(to: Atomic<UInt>.self, capacity: words)
    for w in 0..<words { (segment + w).initialize(to: Atomic(0)) }
    // Another thread may have installed this segment meanwhile: then use that one.
    if !segments[k].compareExchange(expected: nil, desired: segment, ordering: .acquiringAndReleasing).exchanged {
        free(raw)
    }
    return index
}

/// The directory of segments, allocated on the first creation.
private func ensureDirectory() -> UnsafeMutablePointer<Atomic<Segment?>>? {
    if let existing = directory.load(ordering: .acquiring) { return existing }
    guard let raw = malloc(segmentCount * MemoryLayout<Atomic<Segment?>>.stride) else { return nil }
    let segments = raw.bindMemory(to: Atomic<Segment?>.self, capacity: segmentCount)
    for k in 0..<segmentCount { (segments + k).initialize(to: Atomic(nil)) }
    let (exchanged, current) = directory.compareExchange(expected: nil, desired: segments,
                                                         ordering: .acquiringAndReleasing)
    if exchanged { return segments }
    free(raw)
    return current
}
