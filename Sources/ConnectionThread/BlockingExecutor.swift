import DequeModule
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A task executor with one dedicated OS thread, on which a task may block: a `ConnectionThread`
/// called from this thread runs the call here, inline, instead of hopping to its own thread and
/// back (two thread switches and two wake-ups per call; the kernel's share of the authorize
/// worker's CPU was 38%, most of it those switches).
///
/// Give each executor to one task at a time (with its structured children), as `CommandWorker`
/// does with one per command in flight: a task blocked here holds up every other job queued on
/// it. Jobs run in the order they were enqueued.
///
/// `@unchecked Sendable` because: the queue and `stopping` are guarded by `condition`; nothing
/// else is mutable.
public final class BlockingExecutor: TaskExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs = Deque<UnownedJob>()
    private var stopping = false

    public init(name: String) {
        NamedThread.start(name) { [self] in self.loop() }
    }

    /// Whether the calling thread is a `BlockingExecutor`'s.
    public static var isCurrentThread: Bool { pthread_getspecific(blockingThreadKey) != nil }

    public func enqueue(_ job: UnownedJob) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// The thread ends once every job enqueued so far has run. Enqueue nothing after this.
    public func shutdown() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        pthread_setspecific(blockingThreadKey, UnsafeRawPointer(bitPattern: 1))
        let executor = asUnownedTaskExecutor()
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            guard let job = jobs.popFirst() else {
                condition.unlock()
                return
            }
            condition.unlock()
            job.runSynchronously(on: executor)
        }
    }
}

/// Set (non-nil) on every `BlockingExecutor` thread.
private let blockingThreadKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key, nil)
    return key
}()
