/// One statement and its parameters as a value: to run later, or with others in one `batch`.
public struct PostgresStatement: Sendable {
    public let sql: String
    let parameters: [String?]
    let isSimple: Bool

    /// A parameterized statement (`$1...$n`), prepared once per connection like `query`.
    public init(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) {
        self.sql = sql
        self.parameters = parameters.map { $0.flatMap { $0.postgresText } }
        self.isSimple = false
    }

    private init(simple sql: String) {
        self.sql = sql
        self.parameters = []
        self.isSimple = true
    }

    /// A parameterless statement sent as a simple query (`BEGIN`, `COMMIT`, `ROLLBACK`, `SET ...`).
    public static func simple(_ sql: String) -> PostgresStatement { PostgresStatement(simple: sql) }

    /// The statement and its parameters as one string: equal for equal statements, and an order
    /// in which to take the locks that statements take (parameters first, so one lock's exclusive
    /// form, `pg_advisory_xact_lock(`, sorts before its shared one, `pg_advisory_xact_lock_shared(`).
    public var identity: String {
        parameters.map { $0.map { "v" + $0 } ?? "n" }.joined(separator: "\u{1}") + "\u{2}" + sql
    }

    /// A simple `COMMIT`, whose tag says whether it committed.
    var isCommit: Bool { isSimple && sql.uppercased() == "COMMIT" }

    public static let begin = PostgresStatement.simple("BEGIN")
    public static let commit = PostgresStatement.simple("COMMIT")
    public static let rollback = PostgresStatement.simple("ROLLBACK")
}

extension PostgresConnection {
    /// Runs `statements` in order, stopping at the first
    /// error, which is thrown. A `COMMIT` that the server answers with `ROLLBACK` (an earlier
    /// statement failed) throws SQLSTATE 25P02. Statements within one explicit transaction go in
    /// one network round trip (libpq's pipeline mode; see `LibPQSession.batch`).
    ///
    /// Why: every round trip costs a wait for the socket and a resumption of the task, on both
    /// sides; a command's transaction needs four round trips this way instead of a dozen.
    public func batch(_ statements: [PostgresStatement]) async throws -> [PostgresResult] {
        try await run { session, lease in try await session.batch(statements, lease: lease) }
    }

    /// Whether `batch` sends `statements` as one pipeline (see `LibPQSession.batch`).
    public static func isPipelined(_ statements: [PostgresStatement], inOpenTransaction open: Bool) -> Bool {
        statements.count > 1 && LibPQSession.withinOneTransaction(statements, open: open)
    }
}
