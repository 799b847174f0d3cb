#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

extension LineAlignedMemory {
    /// A test hook: counts the allocations one thread makes and fails every one after the
    /// first `failAfter`, as an exhausted system would, so that a test can make each
    /// allocation of a creation fail in turn (`measuring(failingAfter:_:)`). Nothing else
    /// uses it.
    ///
    /// Scoped to the thread that armed it, not process-wide: tests run in parallel, and
    /// a countdown every thread shared would fail some other test's allocation.
    /// Unarmed, an allocation pays one relaxed atomic load and takes no lock: a lock taken
    /// on every allocation could be held by another thread at a fork, and the child's
    /// first allocation would then trap (the library is fork-safe; see HandleRegistry).
    struct FailureInjection {
        private let thread: pthread_t
        private let failAfter: Int?
        private var counts = Counts()

        /// What the armed thread allocated through `LineAlignedMemory`.
        struct Counts: Equatable {
            /// Allocations attempted, the failed one included.
            var allocations = 0
            /// Bytes asked for by the allocations that succeeded.
            var bytes = 0
            /// Allocations not yet released: 0 after a creation that failed and cleaned up.
            var live = 0
        }

        private static let armed = Mutex<FailureInjection?>(nil)
        /// Whether a test armed the hook: read before the lock, which only tests take.
        private static let isArmed = Atomic<Bool>(false)

        /// Runs `body` with this thread's allocations counted, the first `failAfter`
        /// succeeding and the later ones failing (nil: none fails); returns `body`'s result
        /// and the counts. One thread at a time.
        static func measuring<R>(failingAfter failAfter: Int?, _ body: () -> R) -> (result: R, counts: Counts) {
            armed.withLock { $0 = FailureInjection(thread: pthread_self(), failAfter: failAfter) }
            isArmed.store(true, ordering: .sequentiallyConsistent)
            let result = body()
            isArmed.store(false, ordering: .sequentiallyConsistent)
            let counts = armed.withLock { injection in
                defer { injection = nil }
                return injection?.counts ?? Counts()
            }
            return (result, counts)
        }

        /// Whether an allocation of `bytes` may go ahead (false only for those a test makes
        /// fail: every one after the first `failAfter`).
        static func admits(_ bytes: Int) -> Bool {
            guard isArmed.load(ordering: .relaxed) else { return true }
            return armed.withLock { injection in
                guard var armed = injection, pthread_equal(armed.thread, pthread_self()) != 0 else { return true }
                defer { injection = armed }
                armed.counts.allocations += 1
                if let failAfter = armed.failAfter, armed.counts.allocations > failAfter { return false }
                armed.counts.bytes += bytes
                armed.counts.live += 1
                return true
            }
        }

        static func released() {
            guard isArmed.load(ordering: .relaxed) else { return }
            armed.withLock { injection in
                guard injection != nil, pthread_equal(injection!.thread, pthread_self()) != 0 else { return }
                injection!.counts.live -= 1
            }
        }
    }
}
