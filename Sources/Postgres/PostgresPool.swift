import Logging
import Synchronization

/// A fixed-size pool of libpq connections, in non-blocking mode under the process's one
/// `SocketReactor`.
///
/// - Connections open lazily, on the first call through a lease.
/// - Leasing is async and FIFO: when all connections are leased, callers wait in arrival order
///   (a waiting task that is cancelled stops waiting and throws `CancellationError`).
/// - A connection found broken at the start of a lease is reconnected; one a previous lease left
///   inside a transaction is rolled back first.
/// - Blocking never happens on Swift's cooperative threads.
public final class PostgresPool: Sendable {
    private let slots: [SessionSlot]
    private let state: Mutex<LeaseState>
    private let logger: Logger

    private struct LeaseState: ~Copyable {
        var idle: [Int]
        var waiters: [(id: UInt64, continuation: CheckedContinuation<Int, any Error>)] = []
        var nextID: UInt64 = 1
        var closed = false
    }

    public init(configuration: PostgresConfiguration, size: Int, logger: Logger) {
        precondition(size > 0, "PostgresPool needs at least one connection")
        let host = configuration["host"] ?? configuration["hostaddr"] ?? "default"
        let database = configuration["dbname"] ?? "default"
        slots = (0..<size).map { index in
            let label = "\(host)/\(database)#\(index)"
            return SessionSlot(session: LibPQSession(conninfo: configuration.conninfo, label: label,
                                                     pipelining: configuration.pipelining, logger: logger))
        }
        state = Mutex(LeaseState(idle: Array((0..<size).reversed())))
        self.logger = logger
    }

    /// Leases a connection for the duration of `body`. Waits (FIFO) while all are leased.
    /// `body` runs in the caller's isolation; the connection must not escape it.
    nonisolated(nonsending)
    public func withConnection<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        let (index, lease) = try await acquire()
        let connection = PostgresConnection(slot: slots[index], lease: lease)
        defer {
            connection.endLease()
            release(index)
        }
        return try await body(connection)
    }

    /// `BEGIN`, `body`, `COMMIT` on one leased connection. If `body` throws, or `COMMIT` fails,
    /// the transaction is rolled back and the error rethrown. If `body` swallowed an error so
    /// that the server already aborted the transaction, `COMMIT` answers `ROLLBACK`: that is
    /// thrown as a `PostgresError` with SQLSTATE 25P02 rather than reported as success.
    /// No retry here: on `isSerializationFailure` / `isDeadlock` the caller decides.
    nonisolated(nonsending)
    public func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await withConnection { connection in
            try await connection.execute(simple: "BEGIN")
            do {
                let value = try await body(connection)
                let tag = try await connection.executeReturningTag(simple: "COMMIT")
                guard tag == "COMMIT" else { throw PostgresError.rolledBackAtCommit(tag: tag) }
                return value
            } catch {
                // Best effort: after a lost connection or a failed COMMIT there may be nothing to roll back.
                _ = try? await connection.executeReturningTag(simple: "ROLLBACK")
                throw error
            }
        }
    }

    /// One statement on any connection.
    public func query(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) async throws -> PostgresResult {
        try await withConnection { connection in try await connection.query(sql, parameters) }
    }

    /// Fails waiting and future leases, lets calls already queued finish, then closes every
    /// connection. Calls made through leases still open afterwards throw.
    public func close() async {
        let waiters = state.withLock { state in
            state.closed = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.continuation.resume(throwing: PostgresError(message: "PostgresPool is closed")) }
        for slot in slots { await slot.close() }
        logger.debug("postgres pool closed")
    }

    // MARK: leasing

    private enum Acquired {
        case ready(Int)
        case wait
        case failed(any Error)
    }

    private func acquire() async throws -> (index: Int, lease: UInt64) {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        let index = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int, any Error>) in
                let outcome: Acquired = state.withLock { state in
                    if state.closed { return .failed(PostgresError(message: "PostgresPool is closed")) }
                    // Checked under the lock: onCancel sets the flag before taking the lock, so
                    // either we see it here or onCancel finds this waiter in the queue.
                    if Task.isCancelled { return .failed(CancellationError()) }
                    if let index = state.idle.popLast() { return .ready(index) }
                    state.waiters.append((id, continuation))
                    return .wait
                }
                switch outcome {
                case .ready(let index): continuation.resume(returning: index)
                case .failed(let error): continuation.resume(throwing: error)
                case .wait: break
                }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Int, any Error>? in
                guard let position = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiters.remove(at: position).continuation
            }
            waiter?.resume(throwing: CancellationError())
        }
        return (index, id)
    }

    private func release(_ index: Int) {
        let next = state.withLock { state -> CheckedContinuation<Int, any Error>? in
            if state.waiters.isEmpty {
                state.idle.append(index)
                return nil
            }
            return state.waiters.removeFirst().continuation
        }
        next?.resume(returning: index)
    }
}
