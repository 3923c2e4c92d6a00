import DequeModule
import Foundation

/// One dedicated OS thread that owns one blocking C connection (`State`) and runs jobs against
/// it one at a time, in submission order.
///
/// Why: hiredis blocks in `read(2)` (libpq no longer does: `Postgres` runs it non-blocking under
/// one event loop). Swift's cooperative pool has as many threads as cores (2 here), so a blocking
/// call on it stalls every task in the process. Async callers hop onto this thread with `run(_:)` and are resumed through a continuation when the job is done.
///
/// A caller already on a thread that may block (a `BlockingExecutor`'s) runs its job itself when
/// the connection is idle, without the two thread switches of a hop: a command's PostgreSQL and
/// Redis calls cost a system call, not a trip through this thread and back.
///
/// `@unchecked Sendable` because: `state` (which holds the non-Sendable C handle) is read and
/// written by one thread at a time: this object's thread inside jobs and `teardown`, or an inline
/// caller while `inline` is set, which this thread waits out (both under `condition`, whose lock
/// orders the memory). The job queue and flags are guarded by `condition`. Nothing else is mutable.
///
public final class ConnectionThread<State>: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs = Deque<(inout State) -> Void>()
    private var stopping = false
    private var finished = false
    /// This thread is running a job.
    private var running = false
    /// A caller is running a job inline.
    private var inline = false
    private var finishWaiters: [CheckedContinuation<Void, Never>] = []
    private var state: State
    private let teardown: (inout State) -> Void

    /// - Parameters:
    ///   - name: thread name (shows in debuggers and `top -H`).
    ///   - state: the handle-owning state; from now on touched only on the new thread.
    ///   - teardown: runs on the thread after the last job, e.g. to close the C handle.
    public init(name: String, state: sending State, teardown: @escaping @Sendable (inout State) -> Void) {
        self.state = state
        self.teardown = teardown
        NamedThread.start(name) { [self] in self.loop() }
    }

    /// Runs `body` on the connection thread and returns its result.
    /// Throws `closedError` without running `body` once `shutdown()` was called.
    public func run<T: Sendable>(
        closedError: @autoclosure () -> any Error,
        _ body: @escaping @Sendable (inout State) throws -> T
    ) async throws -> T {
        let closed = closedError()
        if BlockingExecutor.isCurrentThread, let result = runInline(body) { return try result.get() }
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let accepted = enqueue { state in
                continuation.resume(with: Result { try body(&state) })
            }
            if !accepted { continuation.resume(throwing: closed) }
        }
    }

    /// Queues `job` to run on the connection thread and returns at once; false (and `job` is
    /// dropped) once `shutdown()` was called. For a client that batches its callers' work into one
    /// job and resumes them itself.
    public func submit(_ job: @escaping @Sendable (inout State) -> Void) -> Bool {
        enqueue(job)
    }

    /// Stops accepting jobs. Jobs already queued still run, then `teardown`, then the thread exits.
    public func shutdown() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    /// `shutdown()`, then waits until the thread has run its last job and `teardown`.
    public func shutdownAndWait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            stopping = true
            if finished {
                condition.unlock()
                continuation.resume()
            } else {
                finishWaiters.append(continuation)
                condition.signal()
                condition.unlock()
            }
        }
    }

    /// Runs `body` on the calling thread if the connection is idle (nothing queued or running);
    /// nil when it is not (the caller hops instead).
    private func runInline<T>(_ body: (inout State) throws -> T) -> Result<T, any Error>? {
        condition.lock()
        guard !stopping, !running, !inline, jobs.isEmpty else {
            condition.unlock()
            return nil
        }
        inline = true
        condition.unlock()
        let result = Result { try body(&state) }
        condition.lock()
        inline = false
        condition.signal()
        condition.unlock()
        return result
    }

    private func enqueue(_ job: @escaping (inout State) -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if stopping { return false }
        jobs.append(job)
        condition.signal()
        return true
    }

    private func loop() {
        while true {
            condition.lock()
            while inline || (jobs.isEmpty && !stopping) {
                condition.wait()
            }
            guard let job = jobs.popFirst() else {
                // stopping, and nothing left to run
                condition.unlock()
                break
            }
            running = true
            condition.unlock()
            job(&state)
            condition.lock()
            running = false
            condition.unlock()
        }
        teardown(&state)
        condition.lock()
        finished = true
        let waiters = finishWaiters
        finishWaiters = []
        jobs.removeAll()
        condition.unlock()
        for waiter in waiters { waiter.resume() }
    }
}
