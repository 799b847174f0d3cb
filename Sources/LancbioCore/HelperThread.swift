#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Work on n rows cut into `chunks` independent pieces, each writing only its own outputs,
/// so that two threads can share them. Each piece is told which of the two threads runs it
/// (0: the caller, 1: the helper), so that the threads can keep separate scratch space.
///
/// A stored closure rather than an overridable method: a closure formed in specialised
/// code stays specialised, while a generic class's vtable entry would run the unspecialised
/// (generic, far slower) kernel. What one pass works on (its vectors, which may be the
/// caller's) is not stored: `runAll` hands each chunk a pointer to the pass's description,
/// a value on the caller's stack that lives exactly as long as the call.
final class ChunkedWork {
    /// Bytes a `ChunkedWork` of `chunks` chunks allocates.
    static func storageBytes(chunks: Int) -> Int { (chunks + 1) * MemoryLayout<Int>.stride }

    private var allocations = OwnedAllocations()
    let chunks: Int
    /// Runs one chunk, 0 ..< chunks, on thread `worker` (0 or 1), of the pass that `pass`
    /// describes (valid during the call only).
    var run: (_ chunk: Int, _ worker: Int, _ pass: UnsafeRawPointer) -> Void = { _, _, _ in }
    /// Chunk c covers rows bounds[c] ..< bounds[c + 1].
    private let bounds: UnsafeMutablePointer<Int>

    /// - Throws: `.outOfMemory`, with nothing left allocated.
    init(rows n: Int, chunks: Int) throws(EstimatorError) {
        self.chunks = chunks
        bounds = try allocations.zeroed(chunks + 1)
        // Multiples of 8 rows keep every chunk's vectors aligned like the whole.
        for c in 0...chunks { bounds[c] = c == chunks ? n : (n * c / chunks) & ~7 }
    }

    /// The rows of `chunk`: the first, and how many.
    func rows(of chunk: Int) -> (start: Int, count: Int) {
        (bounds[chunk], bounds[chunk + 1] - bounds[chunk])
    }

    /// Runs every chunk of the pass that `pass` describes, shared with the helper thread
    /// when there is one.
    func runAll(_ pass: UnsafeRawPointer) {
        if let helper = HelperThread.shared {
            helper.run(self, pass)
        } else {
            for chunk in 0..<chunks { run(chunk, 0, pass) }
        }
    }
}

/// One process-wide helper thread that shares the chunks of a `ChunkedWork` with the
/// calling thread. A single memory stream leaves part of the bandwidth unused (here about
/// 30 of 41 GB/s from memory, more from cache); the second core's stream takes the rest.
///
/// The caller never depends on the helper: it claims chunks itself until none are left,
/// and if the helper has not woken by then (the other core is busy), the work is withdrawn
/// and the caller has done it all; it waits only for a chunk the helper is running.
/// Whoever finds the helper owned by another thread runs every chunk itself. Results do not
/// depend on which thread ran a chunk: chunks and their summation order are fixed by sizes.
///
/// After a job the helper polls for the next one for a short while before it sleeps: the
/// passes of one Lanczos step come microseconds apart, and a futex wake-up costs more than
/// a small pass; the polling yields the core to any other runnable thread. How long it
/// polls adapts to the gaps between passes (`pollWindow`), so that where the caller's own
/// work between calls (its product, often a BLAS call with worker threads of its own) is
/// longer than polling could bridge, the helper stops spinning through it. (Idle priority
/// was measured too: it never slows other processes, but BLAS worker threads that spin
/// after each call, as OpenBLAS's do, then starve the helper, and the caller ends up doing
/// every chunk itself.)
/// Dispatching allocates nothing; the thread is created on first use of `shared`.
final class HelperThread: @unchecked Sendable {
    /// The helper, created on first access; nil if the thread could not be created.
    static let shared: HelperThread? = HelperThread()
    /// False runs every chunk on the calling thread (for tests: results must not change).
    nonisolated(unsafe) static var isEnabled = true
    /// How long the helper polls for more work before sleeping, while that bridges most
    /// gaps (`pollWindow`): longer than a caller usually spends between two steps on its
    /// own work (its product, the next b) at the sizes that split, so the helper is awake
    /// when the next step's passes come. Waking a sleeping helper takes tens of
    /// microseconds on a virtual machine; measured against
    /// 50 us (alternating builds, reverse communication from C): steps at n = 1e5 took 4%
    /// (j = 40) and 11% (j = 10) less time, and at n = 1e4, j = 10 the occasional run where
    /// the helper kept arriving late disappeared.
    static let pollNanoseconds = 250_000
    /// The shortest polling, where the gaps between passes are longer than `pollNanoseconds`:
    /// it still bridges the gaps between the passes of one call (the caller's own work
    /// between them, a few microseconds at the sizes that split).
    static let minimumPollNanoseconds = 20_000
    /// How long the helper polls after a job: `pollNanoseconds` while most gaps between
    /// passes are short enough for that to bridge, else `minimumPollNanoseconds` (see
    /// `bridgeableShare`). Set by the owner at the start of each pass, read by the helper
    /// when it starts polling.
    private let pollWindow = Atomic<Int>(HelperThread.pollNanoseconds)
    /// When the last pass that owned the helper ended, and `bridgeableShare` of the gaps
    /// so far (guarded by `owner`). Measured by the caller, whether or not the helper
    /// ran a chunk: the gap is the caller's own work between two passes.
    private var lastPassEnd = 0
    private var bridgeable = HelperThread.shareScale
    static let shareScale = 1024

    /// The share of the gaps between passes that polling for `pollNanoseconds` bridges, in
    /// 1/`shareScale`ths, after one more gap of `gap` nanoseconds: a running average over
    /// the last eight or so gaps longer than `minimumPollNanoseconds` (the shortest window
    /// bridges shorter ones: the passes of one call). A product that takes longer than
    /// polling can bridge, between two calls, counts against it.
    static func bridgeableShare(after share: Int, gap: Int) -> Int {
        guard gap > minimumPollNanoseconds else { return share }
        return share + ((gap <= pollNanoseconds ? shareScale : 0) - share) / 8
    }

    /// The polling window for a `bridgeableShare`: the long one while it bridges at least
    /// three gaps in four. Polling through the rest costs their whole window in core time,
    /// taken from whatever runs beside the caller (a BLAS pool's workers, whose product the
    /// caller is waiting for); a helper that sleeps instead arrives a wake-up (tens of
    /// microseconds) late at the next pass.
    static func pollWindow(share: Int) -> Int {
        4 * share >= 3 * shareScale ? pollNanoseconds : minimumPollNanoseconds
    }

    private static let idle = 0, posted = 1, taken = 2, finished = 3
    private let state = Atomic<Int>(0)
    private let nextChunk = Atomic<Int>(0)
    /// The job; written by its owner before `state` becomes `posted` (release), read by
    /// the helper after it sees `posted` (acquire).
    private var work: Unmanaged<ChunkedWork>?
    /// The description of the posted job's pass; cleared when the job ends.
    private var pass: UnsafeRawPointer?

    // The slow paths: sleeping helper, waiting owner. `sleeping` and `ownerWaiting` are
    // guarded by `lock`.
    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    private let wake: UnsafeMutablePointer<pthread_cond_t>
    private let done: UnsafeMutablePointer<pthread_cond_t>
    private var sleeping = false
    private var ownerWaiting = false
    /// Held by the caller that owns the helper for one `run`.
    private let owner: UnsafeMutablePointer<pthread_mutex_t>
    /// Back-off, guarded by `owner`: when the helper did not help (it never started although
    /// it was awake, it ran less than a quarter of the chunks, or the owner had to sleep until
    /// it finished a chunk: its core is shared or taken), the next `skip` runs keep every
    /// chunk on the calling thread; the pause doubles while that repeats.
    private var skip = 0
    private var backOff = 0
    /// Set in a forked child, which has no helper thread: it must run every chunk itself
    /// (and must not touch locks the fork may have copied while held).
    nonisolated(unsafe) private static var inForkedChild = false
    /// The owner's floating-point environment (rounding, flush-to-zero), published with the
    /// job: chunks must round alike whichever thread runs them.
    private var environment = fenv_t()

    private init?() {
        // From malloc, failable like every allocation here (no helper then), and outside
        // the counts that tests keep of a creation's buffers: the helper is made once per
        // process, by whichever creation comes first.
        func allocate<P>(_: P.Type) -> UnsafeMutablePointer<P>? {
            calloc(1, MemoryLayout<P>.stride)?.bindMemory(to: P.self, capacity: 1)
        }
        let newLock = allocate(pthread_mutex_t.self), newOwner = allocate(pthread_mutex_t.self)
        let newWake = allocate(pthread_cond_t.self), newDone = allocate(pthread_cond_t.self)
        guard let newLock, let newOwner, let newWake, let newDone else {
            free(newLock); free(newOwner); free(newWake); free(newDone)
            return nil
        }
        (lock, owner, wake, done) = (newLock, newOwner, newWake, newDone)
        pthread_atfork(nil, nil, { HelperThread.inForkedChild = true })
        pthread_mutex_init(lock, nil)
        pthread_mutex_init(owner, nil)
        pthread_cond_init(wake, nil)
        pthread_cond_init(done, nil)
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        // The helper only runs kernels: a small stack is ample.
        pthread_attr_setstacksize(&attributes, 1 << 18)
        defer { pthread_attr_destroy(&attributes) }
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let started = pthread_create(&thread, &attributes, { context in
            Unmanaged<HelperThread>.fromOpaque(context!).takeUnretainedValue().serve()
        }, context)
        guard started == 0 else {
            Unmanaged<HelperThread>.fromOpaque(context).release()
            return nil
        }
    }

    /// Reached only when the thread could not be started: a running helper is never freed.
    deinit {
        pthread_mutex_destroy(lock); pthread_mutex_destroy(owner)
        pthread_cond_destroy(wake); pthread_cond_destroy(done)
        free(lock); free(owner); free(wake); free(done)
    }

    /// Runs every chunk of `work`, sharing them with the helper when it is free; returns
    /// when all have finished.
    func run(_ work: ChunkedWork, _ pass: UnsafeRawPointer) {
        guard Self.isEnabled, !Self.inForkedChild, pthread_mutex_trylock(owner) == 0 else {
            for chunk in 0..<work.chunks { work.run(chunk, 0, pass) }
            return
        }
        defer { pthread_mutex_unlock(owner) }
        bridgeable = Self.bridgeableShare(after: bridgeable, gap: Self.now() - lastPassEnd)
        pollWindow.store(Self.pollWindow(share: bridgeable), ordering: .relaxed)
        defer { lastPassEnd = Self.now() }
        if skip > 0 {
            skip -= 1
            for chunk in 0..<work.chunks { work.run(chunk, 0, pass) }
            return
        }
        // The helper reads both only between claiming the job and finishing it; the
        // caller's pass ends with this call, so neither outlives it.
        defer { self.work = nil; self.pass = nil }
        self.work = .passUnretained(work)
        self.pass = pass
        fegetenv(&environment)
        nextChunk.store(0, ordering: .relaxed)
        state.store(Self.posted, ordering: .releasing)
        pthread_mutex_lock(lock)
        let wasAwake = !sleeping
        if sleeping { pthread_cond_signal(wake) }
        pthread_mutex_unlock(lock)

        let started = Self.now()
        let ran = runChunks(work, worker: 0, pass)
        // Still posted: the helper never started, and now never will. Expected when it was
        // asleep (the first pass after a pause); when it was polling, its core is taken.
        if state.compareExchange(expected: Self.posted, desired: Self.idle, ordering: .acquiringAndReleasing).exchanged {
            if wasAwake { backOffAgain() }
            return
        }
        // It is running a chunk, which should end within about a chunk's time (measured
        // on this thread), unless the helper's core was taken from it.
        let now = Self.now()
        let chunkTime = (now - started) / max(ran, 1)
        let patience = now + 2 * chunkTime + 20_000
        var polls = 0
        while state.load(ordering: .acquiring) != Self.finished {
            polls += 1
            if polls & 63 == 0 && Self.now() > patience { break }
        }
        if state.load(ordering: .acquiring) == Self.finished {
            // A helper that shares its core with another thread (or was woken onto the
            // caller's core) finishes its chunks, but few of them: no gain, only overhead.
            // (Chunks of a few microseconds are over before a polling helper reacts.)
            if chunkTime > 10_000 && 4 * (work.chunks - ran) < work.chunks { backOffAgain() } else { backOff = 0 }
        } else {
            backOffAgain()
            pthread_mutex_lock(lock)
            while state.load(ordering: .acquiring) != Self.finished {
                ownerWaiting = true
                pthread_cond_wait(done, lock)
            }
            ownerWaiting = false
            pthread_mutex_unlock(lock)
        }
        state.store(Self.idle, ordering: .relaxed)
    }

    private func backOffAgain() {
        backOff = min(max(2 * backOff, 1), 1024)
        skip = backOff
    }

    /// Claims and runs chunks until none are left; returns how many this thread ran.
    @discardableResult
    private func runChunks(_ work: ChunkedWork, worker: Int, _ pass: UnsafeRawPointer) -> Int {
        var ran = 0
        while true {
            let chunk = nextChunk.wrappingAdd(1, ordering: .relaxed).oldValue
            guard chunk < work.chunks else { return ran }
            work.run(chunk, worker, pass)
            ran += 1
        }
    }

    private func serve() -> Never {
        while true {
            if !claimPolling() {
                pthread_mutex_lock(lock)
                while state.load(ordering: .acquiring) != Self.posted {
                    sleeping = true
                    pthread_cond_wait(wake, lock)
                }
                sleeping = false
                pthread_mutex_unlock(lock)
                // The owner may withdraw the job between that check and this claim.
                guard state.compareExchange(expected: Self.posted, desired: Self.taken,
                                            ordering: .acquiringAndReleasing).exchanged else { continue }
            }
            fesetenv(&environment)
            runChunks(work!.takeUnretainedValue(), worker: 1, pass!)
            state.store(Self.finished, ordering: .releasing)
            pthread_mutex_lock(lock)
            if ownerWaiting { pthread_cond_signal(done) }
            pthread_mutex_unlock(lock)
        }
    }

    /// Polls for a posted job for up to `pollWindow`; true once one is claimed.
    private func claimPolling() -> Bool {
        let deadline = Self.now() + pollWindow.load(ordering: .relaxed)
        var polls = 0
        while true {
            if state.load(ordering: .relaxed) == Self.posted,
               state.compareExchange(expected: Self.posted, desired: Self.taken,
                                     ordering: .acquiringAndReleasing).exchanged {
                return true
            }
            polls += 1
            if polls & 255 == 0 {
                if Self.now() > deadline { return false }
                // Polling must not crowd out runnable threads (the caller's, BLAS workers).
                sched_yield()
            }
        }
    }

    private static func now() -> Int {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return t.tv_sec * 1_000_000_000 + t.tv_nsec
    }
}
