#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Calls that can stop in the middle and hand control back to their caller, for the
/// reverse communication of reductions: an estimator's method reduces deep inside its
/// step, and a caller whose collective cannot be called from there (an asynchronous
/// all-reduce, a GPU stream) must get control back at that point and later continue the
/// step where it stopped.
///
/// Each call runs on a worker thread of its own (one per object, started at creation):
/// `run` hands the body to the worker and waits; inside the body `suspend` blocks the
/// worker and returns control to the waiting caller, whose `run` (or `resume`) then returns
/// `.suspended`; `resume` continues the body. Exactly one of the two threads runs at any
/// time (a strict hand-off under one mutex), so the body uses the caller's state without
/// further synchronisation, and the floating-point environment travels with each hand-off.
final class SuspendableCalls {
    enum Outcome {
        case suspended
        case finished
    }

    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    private let changed: UnsafeMutablePointer<pthread_cond_t>
    private var thread = pthread_t()
    /// Whose turn it is: the caller's, or the worker's (with a body posted or resumed).
    private var workerTurn = false
    private var body: (() -> Void)?
    private var bodyDone = false
    private var aborting = false
    private var exiting = false
    private var environment = fenv_t()
    /// The process that started the worker: a forked child has no worker.
    private let owner: pid_t
    /// The worker's stack: the methods' frames are small, their vectors on the heap.
    private static let stackBytes = 1 << 20
    /// Whether a body is stopped in `suspend`, waiting for `resume`.
    private(set) var isSuspended = false

    /// - Throws: `.outOfMemory` when the thread or its synchronisation cannot be made.
    init() throws(EstimatorError) {
        guard let lock = malloc(MemoryLayout<pthread_mutex_t>.size)?.assumingMemoryBound(to: pthread_mutex_t.self) else {
            throw .outOfMemory(bytes: MemoryLayout<pthread_mutex_t>.size)
        }
        guard let changed = malloc(MemoryLayout<pthread_cond_t>.size)?.assumingMemoryBound(to: pthread_cond_t.self) else {
            free(lock)
            throw .outOfMemory(bytes: MemoryLayout<pthread_cond_t>.size)
        }
        self.lock = lock
        self.changed = changed
        pthread_mutex_init(lock, nil)
        pthread_cond_init(changed, nil)
        owner = getpid()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setstacksize(&attributes, Self.stackBytes)
        defer { pthread_attr_destroy(&attributes) }
        let context = Unmanaged.passRetained(self).toOpaque()
        let started = pthread_create(&thread, &attributes, { context in
            let calls = Unmanaged<SuspendableCalls>.fromOpaque(context!)
            calls.takeUnretainedValue().serve()
            calls.release()
            return nil
        }, context)
        guard started == 0 else {
            Unmanaged<SuspendableCalls>.fromOpaque(context).release()
            // The thread's stack is what the system refused.
            throw .outOfMemory(bytes: Self.stackBytes)
        }
    }

    deinit {
        pthread_mutex_destroy(lock)
        pthread_cond_destroy(changed)
        free(lock)
        free(changed)
    }

    /// Whether this is a forked child of the process that started the worker (which then
    /// does not exist here).
    var inForkedChild: Bool { getpid() != owner }

    /// Runs `body` on the worker until it finishes or suspends.
    func run(_ body: @escaping () -> Void) -> Outcome {
        pthread_mutex_lock(lock)
        self.body = body
        bodyDone = false
        aborting = false
        return handOver()
    }

    /// Continues a suspended body (its `suspend` returns `!aborting`) until it finishes
    /// or suspends again.
    func resume(aborting: Bool) -> Outcome {
        pthread_mutex_lock(lock)
        self.aborting = aborting
        isSuspended = false
        return handOver()
    }

    /// Whether the calling thread is the worker (only there can a body suspend).
    var onWorker: Bool { !inForkedChild && pthread_equal(pthread_self(), thread) != 0 }

    /// Called by the body on the worker: gives control back to the caller and waits to be
    /// resumed. Returns false when the caller resumed it to abort, and at once when called
    /// off the worker (nothing could resume it).
    func suspend() -> Bool {
        guard onWorker else { return false }
        pthread_mutex_lock(lock)
        isSuspended = true
        fegetenv(&environment)
        workerTurn = false
        pthread_cond_broadcast(changed)
        while !workerTurn { pthread_cond_wait(changed, lock) }
        fesetenv(&environment)
        let proceed = !aborting
        pthread_mutex_unlock(lock)
        return proceed
    }

    /// In a forked child, whose worker stayed in the parent: the suspended body is gone.
    func forgetSuspended() {
        isSuspended = false
    }

    /// Stops the worker (no body may be suspended) and waits for it; a forked child, which
    /// has no worker, only forgets it.
    func shutDown() {
        guard !inForkedChild else { return }
        pthread_mutex_lock(lock)
        exiting = true
        // A body still suspended (its owner should have resumed it to abort first) ends
        // its reduction failed rather than going on with unsummed values.
        aborting = true
        workerTurn = true
        pthread_cond_broadcast(changed)
        pthread_mutex_unlock(lock)
        pthread_join(thread, nil)
    }

    /// With the lock held: the worker's turn until it gives the turn back.
    private func handOver() -> Outcome {
        fegetenv(&environment)
        workerTurn = true
        pthread_cond_broadcast(changed)
        while workerTurn { pthread_cond_wait(changed, lock) }
        fesetenv(&environment)
        let outcome: Outcome = bodyDone ? .finished : .suspended
        pthread_mutex_unlock(lock)
        return outcome
    }

    private func serve() {
        pthread_mutex_lock(lock)
        while true {
            while !workerTurn { pthread_cond_wait(changed, lock) }
            if exiting { break }
            guard let body else {
                workerTurn = false
                pthread_cond_broadcast(changed)
                continue
            }
            fesetenv(&environment)
            self.body = nil
            pthread_mutex_unlock(lock)
            body()
            pthread_mutex_lock(lock)
            bodyDone = true
            fegetenv(&environment)
            workerTurn = false
            pthread_cond_broadcast(changed)
        }
        pthread_mutex_unlock(lock)
    }
}
