/// Everything that goes wrong in this module: a server error (with its SQLSTATE), a lost or
/// refused connection, a row that does not decode, or misuse (a lease used after it ended).
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    /// The five-character SQLSTATE, e.g. `23505`; nil when the error did not come from the server.
    public let sqlState: String?
    /// The server's primary message, or libpq's / this module's own.
    public let message: String
    public let detail: String?
    public let hint: String?
    /// The violated constraint's name, for integrity errors.
    public let constraint: String?
    public let table: String?
    /// For decoding errors: the column that did not decode.
    public let column: String?
    /// Set when libpq reported the connection unusable (status bad) or there was no result at all.
    let connectionLost: Bool

    init(
        sqlState: String? = nil, message: String, detail: String? = nil, hint: String? = nil,
        constraint: String? = nil, table: String? = nil, column: String? = nil, connectionLost: Bool = false
    ) {
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.hint = hint
        self.constraint = constraint
        self.table = table
        self.column = column
        self.connectionLost = connectionLost
    }

    /// A column is missing from the row, or its text is not of the asked type.
    public static func decoding(column: String, reason: String) -> PostgresError {
        PostgresError(message: "cannot decode column \"\(column)\": \(reason)", column: column)
    }

    /// A `COMMIT` the server answered with another tag (`ROLLBACK`): a statement in the
    /// transaction had failed, so nothing was committed. SQLSTATE 25P02.
    static func rolledBackAtCommit(tag: String) -> PostgresError {
        PostgresError(sqlState: "25P02", message: "transaction was rolled back at COMMIT (\(tag)): a statement in it failed earlier")
    }

    /// 23505
    public var isUniqueViolation: Bool { sqlState == "23505" }
    /// 40001: retry the whole transaction.
    public var isSerializationFailure: Bool { sqlState == "40001" }
    /// 40P01: retry the whole transaction.
    public var isDeadlock: Bool { sqlState == "40P01" }
    /// SQLSTATE class 08, a backend terminated by an operator (57P01-57P03), or libpq found the
    /// connection broken. The statement may or may not have run; the next lease reconnects.
    public var isConnectionFailure: Bool {
        connectionLost || sqlState?.hasPrefix("08") == true
            || sqlState == "57P01" || sqlState == "57P02" || sqlState == "57P03"
    }

    public var description: String {
        var text = "PostgresError"
        if let sqlState { text += " \(sqlState)" }
        text += ": \(message)"
        if let detail { text += " (detail: \(detail))" }
        if let hint { text += " (hint: \(hint))" }
        if let constraint { text += " [constraint \(constraint)]" }
        if connectionLost { text += " [connection lost]" }
        return text
    }
}
