#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Work that splits into two parts (by rows), each writing only its own outputs, so the
/// parts can run on two threads at once.
///
/// A stored closure rather than an overridable method: a closure formed in specialised
/// code stays specialised, while a generic class's vtable entry would run the unspecialised
/// (generic, far slower) kernel.
final class TwoPartWork {
    /// Runs part 0 or part 1.
    var run: (_ part: Int) -> Void = { _ in }
}

/// One process-wide helper thread: while a caller runs part 0 of a `TwoPartWork`, the
/// helper runs part 1. A single memory stream leaves part of the bandwidth unused (here
/// about 30 of 41 GB/s); the second core's stream takes the rest.
///
/// Whoever finds the helper busy (another estimator on another thread) runs both parts
/// itself, so callers never wait for each other; results do not depend on which thread
/// ran a part, since each part's work and summation order are fixed by the split alone.
/// Dispatching allocates nothing: the helper is created once, on first use of `shared`.
final class HelperThread: @unchecked Sendable {
    /// The helper, created on first access; nil if the thread could not be created.
    static let shared: HelperThread? = HelperThread()
    /// False runs every part on the calling thread (for tests: results must not change).
    nonisolated(unsafe) static var isEnabled = true

    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let done = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Held by the caller that owns the helper for one `run`.
    private let owner = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Guarded by `lock`.
    private var work: Unmanaged<TwoPartWork>?
    private var finished = true
    /// A forked child has no helper thread: it must run both parts itself.
    private let process = getpid()

    private init?() {
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
            return nil
        }, context)
        guard started == 0 else {
            Unmanaged<HelperThread>.fromOpaque(context).release()
            return nil
        }
    }

    /// Runs `work.run(0)` on the calling thread and `work.run(1)` on the helper
    /// when it is free; otherwise both parts here. Returns when both have finished.
    func run(_ work: TwoPartWork) {
        guard Self.isEnabled, getpid() == process, pthread_mutex_trylock(owner) == 0 else {
            work.run(0)
            work.run(1)
            return
        }
        pthread_mutex_lock(lock)
        self.work = .passUnretained(work)
        finished = false
        pthread_cond_signal(wake)
        pthread_mutex_unlock(lock)

        work.run(0)

        pthread_mutex_lock(lock)
        while !finished { pthread_cond_wait(done, lock) }
        self.work = nil
        pthread_mutex_unlock(lock)
        pthread_mutex_unlock(owner)
    }

    private func serve() -> Never {
        pthread_mutex_lock(lock)
        while true {
            while finished { pthread_cond_wait(wake, lock) }
            let current = work!
            pthread_mutex_unlock(lock)
            current.takeUnretainedValue().run(1)
            pthread_mutex_lock(lock)
            finished = true
            pthread_cond_signal(done)
        }
    }
}
