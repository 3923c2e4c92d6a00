import ConnectionThread
import Foundation
import CLibPQ
import Logging

/// One libpq connection and what belongs to it (its prepared-statement names).
///
/// libpq runs in non-blocking mode: a call sends its statements from the calling task and waits
/// for the socket through `SocketReactor` (a continuation, not a blocked thread), then reads the
/// results on the task's own thread.
///
/// `@unchecked Sendable` because: it is used by one call at a time, under its `PostgresPool`
/// slot's lock, which orders the memory between the tasks that take turns with it.
final class LibPQSession: @unchecked Sendable {
    private let conninfo: String
    private let label: String
    let logger: Logger
    private var connection: OpaquePointer?  // PGconn *
    /// SQL text -> server-side prepared statement name, valid for the current `connection` only.
    private var statements: [String: String] = [:]
    private var statementCounter = 0
    /// Prepared statement name -> the column names of its results, read once per statement
    /// (building them for every result was 0.9% of the authorize worker's CPU). Emptied whenever
    /// `statements` is, since names are reused then; a statement prepared again gets a new name.
    private var layouts: [String: PostgresRow.Layout] = [:]
    /// Counts `DEALLOCATE ALL`s: names taken from the cache before a change are stale.
    private var cacheGeneration = 0
    /// The lease whose calls this session last served; a new value means a new lease started.
    private var servedLease: UInt64 = 0
    /// Set when a pipeline could not be left cleanly: every later call of the lease fails, and the
    /// next lease reconnects.
    private var broken = false

    /// More distinct statements than this and the cache is dropped (`DEALLOCATE ALL`), so that
    /// callers who build SQL text dynamically cannot grow it without bound.
    static let statementCacheLimit = 1000

    private let pipelining: Bool

    init(conninfo: String, label: String, pipelining: Bool = true, logger: Logger) {
        self.conninfo = conninfo
        self.pipelining = pipelining
        self.label = label
        self.logger = logger
    }

    func close() {
        if let connection { PQfinish(connection) }
        connection = nil
        statements = [:]
        layouts = [:]
    }

    // MARK: lease bookkeeping

    /// Called at the start of every call made through a lease. On the first call of a lease it
    /// repairs the connection: connects (lazily), reconnects when libpq or a cheap non-blocking
    /// read says it is dead, and rolls back a transaction a previous lease left open. Later in
    /// the same lease a dead connection is NOT replaced: statements after a lost connection
    /// must not silently run in a new session outside the caller's transaction.
    func beginCall(lease: UInt64) async throws -> OpaquePointer {
        if servedLease != lease {
            servedLease = lease
            if broken {
                broken = false
                close()
            }
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
                    if let result = try? await exec(connection, "ROLLBACK") { PQclear(result) }
                    if PQstatus(connection) != CONNECTION_OK || PQtransactionStatus(connection) != PQTRANS_IDLE { close() }
                }
            }
        }
        if let connection {
            guard PQstatus(connection) == CONNECTION_OK, !broken else {
                throw PostgresError(
                    message: "connection was lost earlier in this lease: \(Self.connectionMessage(connection))",
                    connectionLost: true)
            }
            return connection
        }
        // Never connected, or the last attempt failed: no session state can be lost by connecting now.
        return try await connect()
    }

    /// Connects on a thread of its own (`PQconnectdb` blocks, and honours `connect_timeout`, which
    /// libpq's polling connect leaves to the caller), then switches the connection to non-blocking.
    private func connect() async throws -> OpaquePointer {
        let conninfo = self.conninfo
        let opened = await withCheckedContinuation { (continuation: CheckedContinuation<UnsafeSendablePointer, Never>) in
            NamedThread.start("postgres-connect") { continuation.resume(returning: UnsafeSendablePointer(pointer: PQconnectdb(conninfo))) }
        }
        guard let connection = opened.pointer else {
            throw PostgresError(message: "libpq could not allocate a connection", connectionLost: true)
        }
        guard PQstatus(connection) == CONNECTION_OK, PQsetnonblocking(connection, 1) == 0 else {
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
        layouts = [:]
        statementCounter = 0
        logger.debug("postgres connected", metadata: [
            "connection": "\(label)", "backend_pid": "\(PQbackendPID(connection))",
        ])
        return connection
    }

    // MARK: statements

    /// Prepares `sql` once per connection (cached by text), then executes it with text parameters.
    func query(_ sql: String, _ parameters: [String?], lease: UInt64) async throws -> PostgresResult {
        try await query(sql, parameters, lease: lease, read: { result, name in self.read(result, statement: name) })
    }

    /// As `query`, with the rows packed into one byte buffer (`PostgresPackedResult`).
    func queryPacked(_ sql: String, _ parameters: [String?], lease: UInt64) async throws -> PostgresPackedResult {
        try await query(sql, parameters, lease: lease, read: { result, _ in Self.readPacked(result) })
    }

    private func query<T>(_ sql: String, _ parameters: [String?], lease: UInt64, read: (OpaquePointer, String) -> T) async throws -> T {
        let connection = try await beginCall(lease: lease)
        do {
            return try await executePrepared(connection, sql, parameters, read: read)
        } catch let error as PostgresError where Self.isStalePreparedStatement(error) {
            // The server no longer has the statement (someone ran DEALLOCATE / DISCARD on this
            // session) or its result columns changed under it (ALTER TABLE on `SELECT *`).
            // Prepare it afresh next time; right now too if no transaction was aborted by it.
            statements[sql] = nil
            guard PQtransactionStatus(connection) == PQTRANS_IDLE else { throw error }
            return try await executePrepared(connection, sql, parameters, read: read)
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
    func execute(simple sql: String, lease: UInt64) async throws -> String {
        let connection = try await beginCall(lease: lease)
        let result = try await exec(connection, sql)
        defer { if let result { PQclear(result) } }
        try check(result, connection)
        return String(cString: PQcmdStatus(result))
    }

    // MARK: pipelines

    /// Runs `statements` in order, stopping at the first error, which is thrown. A `COMMIT` that
    /// the server answers with `ROLLBACK` throws SQLSTATE 25P02.
    ///
    /// A batch that lies within one explicit transaction (it starts with `BEGIN`, or runs inside
    /// an open transaction, and ends it, if at all, only with its last statement) is sent in
    /// libpq's pipeline mode: every statement goes out at once, followed by one Sync, and the
    /// results are read in order: one network round trip instead of one per statement. After an
    /// error the server skips the rest (the transaction is aborted either way), so the outcome is
    /// the same as running them one by one. Any other batch runs one statement at a time, so
    /// that autocommit statements after a failed one are not run.
    func batch(_ statements: [PostgresStatement], lease: UInt64) async throws -> [PostgresResult] {
        let connection = try await beginCall(lease: lease)
        guard pipelining, PostgresConnection.isPipelined(statements, inOpenTransaction: PQtransactionStatus(connection) == PQTRANS_INTRANS) else {
            return try await runEach(statements, lease: lease)
        }
        // New statements are prepared first (one round trip each, once per connection). Should the
        // cache be dropped meanwhile (its size limit), the names taken before are gone: again.
        let generation = cacheGeneration
        var names = try await preparedNames(connection, statements)
        if cacheGeneration != generation { names = try await preparedNames(connection, statements) }
        guard PQenterPipelineMode(connection) == 1 else { return try await runEach(statements, lease: lease) }
        // Results left unread (the connection broke halfway): the session is unusable for the
        // rest of this lease, and the next lease reconnects.
        defer { if PQexitPipelineMode(connection) != 1 { broken = true } }
        for (statement, name) in zip(statements, names) {
            let sent = if let name {
                withCStrings(statement.parameters) { values in
                    PQsendQueryPrepared(connection, name, Int32(values.count), values.baseAddress, nil, nil, 0)
                }
            } else {
                PQsendQueryParams(connection, statement.sql, 0, nil, nil, nil, nil, 0)
            }
            guard sent == 1 else { throw lost(connection) }
        }
        guard PQpipelineSync(connection) == 1 else { throw lost(connection) }
        try await flush(connection)

        var results: [PostgresResult] = [], failure: PostgresError?
        results.reserveCapacity(statements.count)
        for (statement, name) in zip(statements, names) {
            guard let result = try await nextResult(connection) else { throw lost(connection) }
            defer { PQclear(result) }
            switch PQresultStatus(result) {
            case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
                let tag = String(cString: PQcmdStatus(result))
                if statement.isCommit, tag != "COMMIT" { failure = failure ?? .rolledBackAtCommit(tag: tag) }
                results.append(statement.isSimple ? PostgresResult(rows: [], affectedRows: 0) : read(result, statement: name))
            case PGRES_PIPELINE_ABORTED:
                break
            default:
                let error = Self.error(of: result, connection)
                if Self.isStalePreparedStatement(error) { statements.forEach { self.statements[$0.sql] = nil } }
                failure = failure ?? error
            }
            // Each statement's results (an aborted one's too) end with a NULL.
            if let extra = try await nextResult(connection) {
                PQclear(extra)
                throw PostgresError(message: "pipeline: more than one result for one statement", connectionLost: true)
            }
        }
        guard let sync = try await nextResult(connection) else { throw lost(connection) }
        let synced = PQresultStatus(sync) == PGRES_PIPELINE_SYNC
        PQclear(sync)
        guard synced else { throw PostgresError(message: "pipeline: no sync point after the batch", connectionLost: true) }
        if let failure { throw failure }
        return results
    }

    private func preparedNames(_ connection: OpaquePointer, _ statements: [PostgresStatement]) async throws -> [String?] {
        var names: [String?] = []
        names.reserveCapacity(statements.count)
        for statement in statements { names.append(statement.isSimple ? nil : try await prepared(connection, statement.sql)) }
        return names
    }

    private func runEach(_ statements: [PostgresStatement], lease: UInt64) async throws -> [PostgresResult] {
        var results: [PostgresResult] = []
        results.reserveCapacity(statements.count)
        for statement in statements { results.append(try await run(statement, lease: lease)) }
        return results
    }

    /// One statement of a batch on its own.
    private func run(_ statement: PostgresStatement, lease: UInt64) async throws -> PostgresResult {
        guard statement.isSimple else { return try await query(statement.sql, statement.parameters, lease: lease) }
        let tag = try await execute(simple: statement.sql, lease: lease)
        if statement.isCommit, tag != "COMMIT" { throw PostgresError.rolledBackAtCommit(tag: tag) }
        return PostgresResult(rows: [], affectedRows: 0)
    }

    /// True when every statement runs inside one explicit transaction: the first is `BEGIN` or
    /// one is `open` already, no other statement begins one, and only the last may end it.
    static func withinOneTransaction(_ statements: [PostgresStatement], open: Bool) -> Bool {
        func keyword(_ statement: PostgresStatement) -> String? {
            statement.isSimple ? statement.sql.split(separator: " ").first.map { $0.uppercased() } : nil
        }
        var inside = open
        for (index, statement) in statements.enumerated() {
            switch keyword(statement) {
            case "BEGIN", "START":
                guard !inside else { return false }
                inside = true
            case "COMMIT", "ROLLBACK", "END", "ABORT":
                guard inside, index == statements.count - 1 else { return false }
            default:
                guard inside else { return false }
            }
        }
        return true
    }

    /// The error for a connection that broke mid-call. The rest of the lease fails, and the next
    /// lease reconnects: what was sent and read is not known.
    private func lost(_ connection: OpaquePointer) -> PostgresError {
        broken = true
        return PostgresError(message: Self.connectionMessage(connection), connectionLost: true)
    }

    private func executePrepared<T>(_ connection: OpaquePointer, _ sql: String, _ parameters: [String?],
                                    read: (OpaquePointer, String) -> T) async throws -> T {
        let name = try await prepared(connection, sql)
        let sent = withCStrings(parameters) { values in
            PQsendQueryPrepared(connection, name, Int32(values.count), values.baseAddress, nil, nil, 0)
        }
        guard sent == 1 else { throw lost(connection) }
        let result = try await collect(connection)
        defer { if let result { PQclear(result) } }
        try check(result, connection)
        return read(result!, name)
    }

    private func prepared(_ connection: OpaquePointer, _ sql: String) async throws -> String {
        if let name = statements[sql] { return name }
        if statements.count >= Self.statementCacheLimit, PQtransactionStatus(connection) != PQTRANS_INERROR {
            if let result = try await exec(connection, "DEALLOCATE ALL") {
                if PQresultStatus(result) == PGRES_COMMAND_OK {
                    statements = [:]
                    layouts = [:]
                    cacheGeneration += 1
                }
                PQclear(result)
            }
        }
        statementCounter += 1
        let name = "pf_\(statementCounter)"
        guard PQsendPrepare(connection, name, sql, 0, nil) == 1 else { throw lost(connection) }
        let result = try await collect(connection)
        defer { if let result { PQclear(result) } }
        try check(result, connection)
        statements[sql] = name
        return name
    }

    // MARK: non-blocking I/O

    /// `PQexec` without blocking: sends `sql` as a simple query and returns its last result
    /// (nil when the connection broke before any).
    private func exec(_ connection: OpaquePointer, _ sql: String) async throws -> OpaquePointer? {
        guard PQsendQuery(connection, sql) == 1 else { return nil }
        return try await collect(connection)
    }

    /// Flushes what was sent, then reads every result of the current command and returns the last
    /// (what `PQexec` returns), or nil when there was none (the connection broke).
    private func collect(_ connection: OpaquePointer) async throws -> OpaquePointer? {
        try await flush(connection)
        var last: OpaquePointer?
        while let result = try await nextResult(connection) {
            if let last { PQclear(last) }
            last = result
        }
        return last
    }

    /// Sends everything libpq has buffered, waiting for the socket whenever it is full (and reading
    /// what the server sent meanwhile, as libpq asks, so that neither side waits for the other).
    private func flush(_ connection: OpaquePointer) async throws {
        while true {
            switch PQflush(connection) {
            case 0: return
            case 1:
                try await waitForSocket(connection, writable: true)
                guard PQconsumeInput(connection) == 1 else { throw lost(connection) }
            default: throw lost(connection)
            }
        }
    }

    /// `PQgetResult` without blocking: waits for the socket until the next result is complete.
    /// A lost connection is reported by `PQgetResult` (or nil); any other failed read throws.
    private func nextResult(_ connection: OpaquePointer) async throws -> OpaquePointer? {
        while PQisBusy(connection) == 1 {
            try await waitForSocket(connection, writable: false)
            guard PQconsumeInput(connection) == 1 else {
                // A lost connection (closed socket): `PQgetResult` reports it without waiting.
                // Anything else, and it could block: give up on the connection instead.
                if PQstatus(connection) == CONNECTION_BAD { break }
                throw lost(connection)
            }
        }
        return PQgetResult(connection)
    }

    private func waitForSocket(_ connection: OpaquePointer, writable: Bool) async throws {
        let fd = PQsocket(connection)
        guard fd >= 0 else { throw lost(connection) }
        try await SocketReactor.shared.wait(fd: fd, writable: writable)
    }

    /// Throws unless `result` is a success.
    private func check(_ result: OpaquePointer?, _ connection: OpaquePointer) throws {
        guard let result else { throw lost(connection) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return
        default:
            throw Self.error(of: result, connection)
        }
    }

    /// The server's error in `result`, with its diagnostic fields.
    private static func error(of result: OpaquePointer, _ connection: OpaquePointer) -> PostgresError {
        func field(_ code: Int32) -> String? {
            PQresultErrorField(result, code).map { String(cString: $0) }
        }
        let primary = field(cpq_diag_message_primary())
            ?? String(cString: PQresultErrorMessage(result)).trimmingTrailingNewlines
        return PostgresError(
            sqlState: field(cpq_diag_sqlstate()),
            message: primary.isEmpty ? connectionMessage(connection) : primary,
            detail: field(cpq_diag_message_detail()),
            hint: field(cpq_diag_message_hint()),
            constraint: field(cpq_diag_constraint_name()),
            table: field(cpq_diag_table_name()),
            connectionLost: PQstatus(connection) != CONNECTION_OK)
    }

    private func read(_ result: OpaquePointer, statement name: String?) -> PostgresResult {
        let rowCount = Int(PQntuples(result))
        let affected = Int(String(cString: PQcmdTuples(result))) ?? 0
        // Most statements return no row (an INSERT, an UPDATE): no column names to read.
        guard rowCount > 0 else { return PostgresResult(rows: [], affectedRows: affected) }
        let columnCount = Int(PQnfields(result))
        let layout: PostgresRow.Layout
        if let name, let known = layouts[name], known.names.count == columnCount {
            layout = known
        } else {
            layout = PostgresRow.Layout(names: (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) })
            if let name { layouts[name] = layout }
        }
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
///
/// All of them are copied, NUL-terminated, into one buffer (on the stack when small), with one
/// array of pointers into it: a payment's insert has 27 parameters, and a copy and a free per
/// parameter (`strdup`) showed up in the worker's profile.
/// A `PGconn *` handed from the connecting thread to the task that owns it from then on.
private struct UnsafeSendablePointer: @unchecked Sendable { let pointer: OpaquePointer? }

private func withCStrings<R>(_ strings: [String?], _ body: (UnsafeBufferPointer<UnsafePointer<CChar>?>) -> R) -> R {
    var total = 0
    for string in strings { if let string { total += string.utf8.count + 1 } }
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(total, 1)) { bytes in
        withUnsafeTemporaryAllocation(of: UnsafePointer<CChar>?.self, capacity: max(strings.count, 1)) { pointers in
            var offset = 0
            for (index, string) in strings.enumerated() {
                guard let string else {
                    pointers.initializeElement(at: index, to: nil)
                    continue
                }
                let start = bytes.baseAddress! + offset
                var text = string
                let count = text.withUTF8 { utf8 in
                    if let source = utf8.baseAddress { start.initialize(from: source, count: utf8.count) }
                    return utf8.count
                }
                start[count] = 0
                pointers.initializeElement(at: index, to: UnsafeRawPointer(start).assumingMemoryBound(to: CChar.self))
                offset += count + 1
            }
            return body(UnsafeBufferPointer(start: pointers.baseAddress, count: strings.count))
        }
    }
}
