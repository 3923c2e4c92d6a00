#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Work handed from any task to a connection's thread.
enum Job: Sendable {
    case publish(AMQPMessage, CheckedContinuation<PublishOutcome, any Error>)
    case ack(tag: UInt64, multiple: Bool, generation: UInt64)
    case reject(tag: UInt64, requeue: Bool, generation: UInt64)
    case rpc(RPCRequest, CheckedContinuation<RPCResult, any Error>)
    case close(CheckedContinuation<Void, Never>?)
}

/// A synchronous AMQP method (or a short series of them) run on the connection's thread.
enum RPCRequest: Sendable {
    case declare(AMQPTopology)
    case declareQueue(AMQPQueueDeclaration)
    case declareQueuePassive(String)
    case bind(AMQPBinding)
    case unbind(AMQPBinding)
    case deleteQueue(String)
    case deleteExchange(String)
    case consume(ConsumeSpec)
    case get(queue: String, noAck: Bool)
    case cancelConsumers
}

enum RPCResult: Sendable {
    case done
    case queue(name: String, messageCount: UInt32, consumerCount: UInt32)
    case consumerTag(String)
    case delivery(AMQPDelivery?)
}

/// The only state shared between callers and the connection's thread: a job queue
/// guarded by a mutex, a self-pipe that wakes the thread's poll(), and the
/// connected/generation flags callers read. The pipe's ends are closed only when the
/// last reference goes away, so a late `post` never writes into a reused descriptor.
final class Mailbox: Sendable {
    struct State {
        var jobs: [Job] = []
        var wakePending = false
        var connected = false
        var generation: UInt64 = 0
        var stopped = false
        var waiters: [UInt64: CheckedContinuation<Void, any Error>] = [:]
        var nextWaiterID: UInt64 = 0
    }

    let state = Mutex(State())
    let wakeReadFD: Int32
    private let wakeWriteFD: Int32

    init() {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { fatalError("pipe() failed: errno \(errno)") }
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        wakeReadFD = fds[0]
        wakeWriteFD = fds[1]
    }

    deinit {
        close(wakeReadFD)
        close(wakeWriteFD)
    }

    /// Queues a job for the thread and wakes it. Returns false once the thread has stopped.
    func post(_ job: Job) -> Bool {
        let (accepted, mustWake) = state.withLock { state -> (Bool, Bool) in
            guard !state.stopped else { return (false, false) }
            state.jobs.append(job)
            let mustWake = !state.wakePending
            state.wakePending = true
            return (true, mustWake)
        }
        if mustWake { wake() }
        return accepted
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWriteFD, &byte, 1)
    }

    /// Called by the thread: empties the pipe and takes every queued job.
    func takeJobs() -> [Job] {
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(wakeReadFD, &buffer, buffer.count) > 0 {}
        return state.withLock { state in
            state.wakePending = false
            defer { state.jobs.removeAll(keepingCapacity: true) }
            return state.jobs
        }
    }

    var isConnected: Bool { state.withLock { $0.connected } }
    var generation: UInt64 { state.withLock { $0.generation } }

    func setConnected(_ connected: Bool, generation: UInt64) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            state.connected = connected
            state.generation = generation
            guard connected else { return [] }
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Marks the thread gone and returns the jobs nobody will run.
    func stop() -> [Job] {
        let (jobs, waiters) = state.withLock { state in
            state.stopped = true
            state.connected = false
            defer {
                state.jobs.removeAll()
                state.waiters.removeAll()
            }
            return (state.jobs, Array(state.waiters.values))
        }
        for waiter in waiters { waiter.resume(throwing: AMQPError.closed) }
        return jobs
    }

    /// Suspends until the connection is up (or the connection stops, or the task is cancelled).
    func waitUntilConnected() async throws {
        let id = state.withLock { state in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Immediate { case connected, stopped, cancelled, wait }
                let immediate = state.withLock { state -> Immediate in
                    if state.connected { return .connected }
                    if state.stopped { return .stopped }
                    if Task.isCancelled { return .cancelled }
                    state.waiters[id] = continuation
                    return .wait
                }
                switch immediate {
                case .connected: continuation.resume()
                case .stopped: continuation.resume(throwing: AMQPError.closed)
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .wait: break
                }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume(throwing: CancellationError())
        }
    }
}
