import ConnectionThread
import Synchronization

/// A connection leased from a `PostgresPool`, valid only inside the `withConnection` /
/// `transaction` body that received it.
///
/// Every call hops to the connection's own thread (libpq blocks there, never on Swift's
/// cooperative pool) and calls run one at a time, in order. After the lease ends every call
/// throws. If the connection is lost during a lease, the rest of that lease's calls throw
/// `isConnectionFailure` errors; the pool reconnects on the next lease.
public final class PostgresConnection: Sendable {
    let thread: ConnectionThread<LibPQSession>
    let lease: UInt64
    private let ended = Atomic<Bool>(false)

    init(thread: ConnectionThread<LibPQSession>, lease: UInt64) {
        self.thread = thread
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
        return try await run { session, lease in try session.query(sql, texts, lease: lease) }
    }

    /// As `query`, with the rows as one packed byte buffer: for reading thousands of rows without a
    /// `String` per cell (an export's pages).
    public func queryPacked(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) async throws -> PostgresPackedResult {
        let texts: [String?] = parameters.map { $0.flatMap { $0.postgresText } }
        return try await run { session, lease in try session.queryPacked(sql, texts, lease: lease) }
    }

    /// Runs `sql` as a simple query (`PQexec`): several statements separated by `;`, no
    /// parameters, not prepared. For migrations and `BEGIN`/`COMMIT`.
    public func execute(simple sql: String) async throws {
        _ = try await executeReturningTag(simple: sql)
    }

    /// As `execute(simple:)`, returning the last statement's command tag.
    func executeReturningTag(simple sql: String) async throws -> String {
        try await run { session, lease in try session.execute(simple: sql, lease: lease) }
    }

    func endLease() {
        ended.store(true, ordering: .releasing)
    }

    func run<T: Sendable>(_ body: @escaping @Sendable (LibPQSession, UInt64) throws -> T) async throws -> T {
        let lease = self.lease
        let usedAfterLease = PostgresError(message: "PostgresConnection used after its lease ended")
        guard !ended.load(ordering: .acquiring) else { throw usedAfterLease }
        return try await thread.run(closedError: PostgresError(message: "PostgresPool is closed")) { [self] session in
            // Checked again on the thread: the lease may have ended while this job waited.
            guard !self.ended.load(ordering: .acquiring) else { throw usedAfterLease }
            return try body(session, lease)
        }
    }
}
