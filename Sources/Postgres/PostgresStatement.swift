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

    public static let begin = PostgresStatement.simple("BEGIN")
    public static let commit = PostgresStatement.simple("COMMIT")
    public static let rollback = PostgresStatement.simple("ROLLBACK")
}

extension PostgresConnection {
    /// Runs `statements` in order in one hop onto the connection's thread (each is still its own
    /// round trip to the server), stopping at the first error, which is thrown. A `COMMIT` that the
    /// server answers with `ROLLBACK` (an earlier statement failed) throws SQLSTATE 25P02.
    ///
    /// Why: every hop between a task and the connection thread costs two context switches; a
    /// command's transaction needs four hops this way instead of eight.
    public func batch(_ statements: [PostgresStatement]) async throws -> [PostgresResult] {
        try await run { session, lease in
            try statements.map { statement in
                guard statement.isSimple else { return try session.query(statement.sql, statement.parameters, lease: lease) }
                let tag = try session.execute(simple: statement.sql, lease: lease)
                if statement.sql.uppercased() == "COMMIT", tag != "COMMIT" {
                    throw PostgresError(sqlState: "25P02", message: "transaction was rolled back at COMMIT (\(tag)): a statement in it failed earlier")
                }
                return PostgresResult(rows: [], affectedRows: 0)
            }
        }
    }
}
