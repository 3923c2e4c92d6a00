import Synchronization

/// A connection leased from a `PostgresPool`, valid only inside the `withConnection` /
/// `transaction` body that received it.
///
/// Calls run one at a time, in order; a call sends its statements from the calling task and waits
/// for the reply without blocking a thread (`SocketReactor`). After the lease ends every call
/// throws. If the connection is lost during a lease, the rest of that lease's calls throw
/// `isConnectionFailure` errors; the pool reconnects on the next lease.
public final class PostgresConnection: Sendable {
    let slot: SessionSlot
    let lease: UInt64
    private let ended = Atomic<Bool>(false)

    init(slot: SessionSlot, lease: UInt64) {
        self.slot = slot
        self.lease = lease
    }

    /// Runs one statement with `$1...$n` parameters sent as text; a `nil` element (or an
    /// Optional holding nil) is bound as SQL NULL. The statement is prepared on the server once
    /// per connection (keyed by SQL text) and executed by name afterwards.
    ///
    /// One variant on purpose: a second one taking `[any PostgresEncodable]` made calls with
    /// an `[Int?]` argument ambiguous. Arrays of any encodable type convert to this parameter.
    public func query(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) async throws -> PostgresResult {
        let texts: [String?] = parameters.map { $0.flatMap { $0.postgresText } }
        return try await run { session, lease in try await session.query(sql, texts, lease: lease) }
    }

    /// As `query`, with the rows as one packed byte buffer: for reading thousands of rows without a
    /// `String` per cell (an export's pages).
    public func queryPacked(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) async throws -> PostgresPackedResult {
        let texts: [String?] = parameters.map { $0.flatMap { $0.postgresText } }
        return try await run { session, lease in try await session.queryPacked(sql, texts, lease: lease) }
    }

    /// Runs `sql` as a simple query (`PQexec`): several statements separated by `;`, no
    /// parameters, not prepared. For migrations and `BEGIN`/`COMMIT`.
    public func execute(simple sql: String) async throws {
        _ = try await executeReturningTag(simple: sql)
    }

    /// As `execute(simple:)`, returning the last statement's command tag.
    func executeReturningTag(simple sql: String) async throws -> String {
        try await run { session, lease in try await session.execute(simple: sql, lease: lease) }
    }

    func endLease() {
        ended.store(true, ordering: .releasing)
    }

    func run<T: Sendable>(_ body: (LibPQSession, UInt64) async throws -> T) async throws -> T {
        let usedAfterLease = PostgresError(message: "PostgresConnection used after its lease ended")
        guard !ended.load(ordering: .acquiring) else { throw usedAfterLease }
        return try await slot.run(closedError: PostgresError(message: "PostgresPool is closed")) { session in
            // Checked again in turn: the lease may have ended while this call waited.
            guard !ended.load(ordering: .acquiring) else { throw usedAfterLease }
            return try await body(session, lease)
        }
    }
}

/// One connection of a `PostgresPool`: its session, used by one call at a time, in arrival order.
final class SessionSlot: Sendable {
    private let session: LibPQSession
    private let state = Mutex<State>(State())

    private struct State: ~Copyable {
        var busy = false
        var closed = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    init(session: LibPQSession) {
        self.session = session
    }

    deinit {
        session.close()
    }

    /// Runs `body` with the session once the calls before it are done; throws `closedError`
    /// without running it once `close()` was called.
    func run<T>(closedError: @autoclosure () -> any Error, _ body: (LibPQSession) async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        guard !state.withLock({ $0.closed }) else { throw closedError() }
        return try await body(session)
    }

    /// Lets the calls already waiting finish, then closes the connection; later calls throw.
    func close() async {
        await acquire()
        state.withLock { $0.closed = true }
        session.close()
        release()
    }

    private func acquire() async {
        if state.withLock({ Self.take(&$0) }) { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            // Taken again under the lock: the session may have been released meanwhile.
            let now = state.withLock { state -> Bool in
                if Self.take(&state) { return true }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// Marks the session busy if it was free.
    private static func take(_ state: inout State) -> Bool {
        if state.busy { return false }
        state.busy = true
        return true
    }

    /// Hands the session to the next waiter (it stays busy), or marks it free.
    private func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.busy = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
