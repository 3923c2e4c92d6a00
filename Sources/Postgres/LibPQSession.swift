import ConnectionThread
import Foundation
import CLibPQ
import Logging

/// One libpq connection and what belongs to it (its prepared-statement names). Not Sendable:
/// it lives inside one `ConnectionThread` and every method runs on that thread and may block.
final class LibPQSession {
    private let conninfo: String
    private let label: String
    let logger: Logger
    private var connection: OpaquePointer?  // PGconn *
    /// SQL text -> server-side prepared statement name, valid for the current `connection` only.
    private var statements: [String: String] = [:]
    private var statementCounter = 0
    /// The lease whose calls this session last served; a new value means a new lease started.
    private var servedLease: UInt64 = 0

    /// More distinct statements than this and the cache is dropped (`DEALLOCATE ALL`), so that
    /// callers who build SQL text dynamically cannot grow it without bound.
    static let statementCacheLimit = 1000

    init(conninfo: String, label: String, logger: Logger) {
        self.conninfo = conninfo
        self.label = label
        self.logger = logger
    }

    func close() {
        if let connection { PQfinish(connection) }
        connection = nil
        statements = [:]
    }

    // MARK: lease bookkeeping

    /// Called at the start of every call made through a lease. On the first call of a lease it
    /// repairs the connection: connects (lazily), reconnects when libpq or a cheap non-blocking
    /// read says it is dead, and rolls back a transaction a previous lease left open. Later in
    /// the same lease a dead connection is NOT replaced: statements after a lost connection
    /// must not silently run in a new session outside the caller's transaction.
    func beginCall(lease: UInt64) throws -> OpaquePointer {
        if servedLease != lease {
            servedLease = lease
            if let connection {
                // Picks up a FATAL message or EOF a terminated backend left on the socket.
                // libpq's socket is always non-blocking underneath, so this does not wait.
                if PQstatus(connection) == CONNECTION_OK && PQconsumeInput(connection) == 0 {
                    logger.debug("postgres connection found dead at lease start", metadata: ["connection": "\(label)"])
                }
                if PQstatus(connection) != CONNECTION_OK {
                    logger.warning("postgres connection lost; reconnecting", metadata: [
                        "connection": "\(label)", "error": "\(Self.connectionMessage(connection))",
                    ])
                    close()
                } else if PQtransactionStatus(connection) != PQTRANS_IDLE {
                    logger.warning("previous lease left a transaction open; rolling back", metadata: ["connection": "\(label)"])
                    if let result = PQexec(connection, "ROLLBACK") { PQclear(result) }
                    if PQstatus(connection) != CONNECTION_OK || PQtransactionStatus(connection) != PQTRANS_IDLE { close() }
                }
            }
        }
        if let connection {
            guard PQstatus(connection) == CONNECTION_OK else {
                throw PostgresError(
                    message: "connection was lost earlier in this lease: \(Self.connectionMessage(connection))",
                    connectionLost: true)
            }
            return connection
        }
        // Never connected, or the last attempt failed: no session state can be lost by connecting now.
        return try connect()
    }

    private func connect() throws -> OpaquePointer {
        guard let connection = PQconnectdb(conninfo) else {
            throw PostgresError(message: "libpq could not allocate a connection", connectionLost: true)
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = Self.connectionMessage(connection)
            PQfinish(connection)
            throw PostgresError(message: "connect failed: \(message)", connectionLost: true)
        }
        // libpq prints notices (and "message type 0x.. arrived from server while idle") to stderr
        // by default; route them to the logger instead. The session outlives the connection.
        PQsetNoticeProcessor(connection, { context, message in
            guard let context, let message else { return }
            let session = Unmanaged<LibPQSession>.fromOpaque(context).takeUnretainedValue()
            session.logger.debug("postgres notice", metadata: [
                "connection": "\(session.label)", "notice": "\(String(cString: message).trimmingTrailingNewlines)",
            ])
        }, Unmanaged.passUnretained(self).toOpaque())
        self.connection = connection
        statements = [:]
        statementCounter = 0
        logger.debug("postgres connected", metadata: [
            "connection": "\(label)", "backend_pid": "\(PQbackendPID(connection))",
        ])
        return connection
    }

    // MARK: statements

    /// Prepares `sql` once per connection (cached by text), then executes it with text parameters.
    func query(_ sql: String, _ parameters: [String?], lease: UInt64) throws -> PostgresResult {
        try query(sql, parameters, lease: lease, read: Self.read)
    }

    /// As `query`, with the rows packed into one byte buffer (`PostgresPackedResult`).
    func queryPacked(_ sql: String, _ parameters: [String?], lease: UInt64) throws -> PostgresPackedResult {
        try query(sql, parameters, lease: lease, read: Self.readPacked)
    }

    private func query<T>(_ sql: String, _ parameters: [String?], lease: UInt64, read: (OpaquePointer) -> T) throws -> T {
        let connection = try beginCall(lease: lease)
        do {
            return try executePrepared(connection, sql, parameters, read: read)
        } catch let error as PostgresError where Self.isStalePreparedStatement(error) {
            // The server no longer has the statement (someone ran DEALLOCATE / DISCARD on this
            // session) or its result columns changed under it (ALTER TABLE on `SELECT *`).
            // Prepare it afresh next time; right now too if no transaction was aborted by it.
            statements[sql] = nil
            guard PQtransactionStatus(connection) == PQTRANS_IDLE else { throw error }
            return try executePrepared(connection, sql, parameters, read: read)
        }
    }

    private static func isStalePreparedStatement(_ error: PostgresError) -> Bool {
        error.sqlState == "26000"
            || (error.sqlState == "0A000" && error.message.contains("cached plan must not change result type"))
    }

    /// Runs `sql` with `PQexec`: several statements allowed, no parameters. Returns the command
    /// tag of the last statement (e.g. `COMMIT`, or `ROLLBACK` when a COMMIT found the
    /// transaction aborted).
    @discardableResult
    func execute(simple sql: String, lease: UInt64) throws -> String {
        let connection = try beginCall(lease: lease)
        let result = PQexec(connection, sql)
        defer { if let result { PQclear(result) } }
        try check(result, connection)
        return String(cString: PQcmdStatus(result))
    }

    private func executePrepared<T>(_ connection: OpaquePointer, _ sql: String, _ parameters: [String?],
                                    read: (OpaquePointer) -> T) throws -> T {
        let name = try prepared(connection, sql)
        let result = withCStrings(parameters) { values in
            PQexecPrepared(connection, name, Int32(values.count), values.baseAddress, nil, nil, 0)
        }
        defer { if let result { PQclear(result) } }
        try check(result, connection)
        return read(result!)
    }

    private func prepared(_ connection: OpaquePointer, _ sql: String) throws -> String {
        if let name = statements[sql] { return name }
        if statements.count >= Self.statementCacheLimit, PQtransactionStatus(connection) != PQTRANS_INERROR {
            if let result = PQexec(connection, "DEALLOCATE ALL") {
                if PQresultStatus(result) == PGRES_COMMAND_OK { statements = [:] }
                PQclear(result)
            }
        }
        statementCounter += 1
        let name = "pf_\(statementCounter)"
        let result = PQprepare(connection, name, sql, 0, nil)
        defer { if let result { PQclear(result) } }
        try check(result, connection)
        statements[sql] = name
        return name
    }

    /// Throws unless `result` is a success.
    private func check(_ result: OpaquePointer?, _ connection: OpaquePointer) throws {
        guard let result else {
            throw PostgresError(message: Self.connectionMessage(connection), connectionLost: true)
        }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return
        default:
            func field(_ code: Int32) -> String? {
                PQresultErrorField(result, code).map { String(cString: $0) }
            }
            let primary = field(cpq_diag_message_primary())
                ?? String(cString: PQresultErrorMessage(result)).trimmingTrailingNewlines
            throw PostgresError(
                sqlState: field(cpq_diag_sqlstate()),
                message: primary.isEmpty ? Self.connectionMessage(connection) : primary,
                detail: field(cpq_diag_message_detail()),
                hint: field(cpq_diag_message_hint()),
                constraint: field(cpq_diag_constraint_name()),
                table: field(cpq_diag_table_name()),
                connectionLost: PQstatus(connection) != CONNECTION_OK)
        }
    }

    private static func read(_ result: OpaquePointer) -> PostgresResult {
        let rowCount = Int(PQntuples(result))
        let columnCount = Int(PQnfields(result))
        let layout = PostgresRow.Layout(names: (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) })
        var rows: [PostgresRow] = []
        rows.reserveCapacity(rowCount)
        for row in 0..<Int32(rowCount) {
            var values: [String?] = []
            values.reserveCapacity(columnCount)
            for column in 0..<Int32(columnCount) {
                if PQgetisnull(result, row, column) != 0 {
                    values.append(nil)
                } else {
                    let length = Int(PQgetlength(result, row, column))
                    let bytes = UnsafeRawPointer(PQgetvalue(result, row, column)!).assumingMemoryBound(to: UInt8.self)
                    values.append(String(decoding: UnsafeBufferPointer(start: bytes, count: length), as: UTF8.self))
                }
            }
            rows.append(PostgresRow(layout: layout, values: values))
        }
        let affected = Int(String(cString: PQcmdTuples(result))) ?? 0
        return PostgresResult(rows: rows, affectedRows: affected)
    }

    /// Every cell's bytes back to back in one buffer, with their bounds: no allocation per cell.
    private static func readPacked(_ result: OpaquePointer) -> PostgresPackedResult {
        let rowCount = Int(PQntuples(result))
        let columnCount = Int(PQnfields(result))
        var total = 0
        for row in 0..<Int32(rowCount) {
            for column in 0..<Int32(columnCount) { total += Int(PQgetlength(result, row, column)) }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(total)
        var bounds: [Int32] = []
        bounds.reserveCapacity(rowCount * columnCount * 2)
        for row in 0..<Int32(rowCount) {
            for column in 0..<Int32(columnCount) {
                guard PQgetisnull(result, row, column) == 0 else {
                    bounds.append(-1)
                    bounds.append(-1)
                    continue
                }
                let length = Int(PQgetlength(result, row, column))
                let value = UnsafeRawPointer(PQgetvalue(result, row, column)!).assumingMemoryBound(to: UInt8.self)
                bounds.append(Int32(bytes.count))
                bytes.append(contentsOf: UnsafeBufferPointer(start: value, count: length))
                bounds.append(Int32(bytes.count))
            }
        }
        return PostgresPackedResult(rowCount: rowCount, columnCount: columnCount, bytes: bytes, bounds: bounds)
    }

    private static func connectionMessage(_ connection: OpaquePointer) -> String {
        let text = String(cString: PQerrorMessage(connection)).trimmingTrailingNewlines
        return text.isEmpty ? "connection to server lost" : text
    }
}

/// Calls `body` with C strings for `strings` (nil stays NULL) that live for the duration of the call.
private func withCStrings<R>(_ strings: [String?], _ body: (UnsafeBufferPointer<UnsafePointer<CChar>?>) -> R) -> R {
    let copies: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0)! } }
    defer { for copy in copies { free(copy) } }
    return copies.map { UnsafePointer($0) }.withUnsafeBufferPointer(body)
}
