import Contract
import Crypto
import Foundation
import Payments
import Postgres
import Synchronization

/// Where an export's file lives, chunk by chunk. The worker writes through it and the ingress
/// reads through it, so any ingress replica can serve a download, and a store outside PostgreSQL
/// (S3-compatible) can replace `PostgresExportStorage` without touching the worker.
public protocol ExportStorage: Sendable {
    /// Stores chunk `seq` of the task's file, inside `transaction`, which also records the
    /// chunk's progress: both commit or neither. A store outside PostgreSQL writes under the
    /// chunk's name, overwriting, so a chunk written again after a crash replaces its first try.
    func put(taskId: String, seq: Int, rows: Int, data: [UInt8], in transaction: PostgresConnection) async throws
    /// Chunk `seq` of the task's file.
    func read(taskId: String, seq: Int) async throws -> [UInt8]
    /// Removes the task's file.
    func delete(taskId: String) async throws
}

/// The export files in PostgreSQL (`export_chunks`), one row per chunk.
public struct PostgresExportStorage: ExportStorage {
    let pool: PostgresPool

    public init(pool: PostgresPool) { self.pool = pool }

    public func put(taskId: String, seq: Int, rows: Int, data: [UInt8], in transaction: PostgresConnection) async throws {
        _ = try await transaction.query("""
            INSERT INTO export_chunks (task_id, seq, rows, data) VALUES ($1, $2, $3, $4)
            ON CONFLICT (task_id, seq) DO UPDATE SET rows = EXCLUDED.rows, data = EXCLUDED.data
            """, [taskId, seq, rows, String(decoding: data, as: UTF8.self)])
    }

    public func read(taskId: String, seq: Int) async throws -> [UInt8] {
        guard let row = try await pool.query("SELECT data FROM export_chunks WHERE task_id = $1 AND seq = $2", [taskId, seq]).first else {
            throw StoreError.corrupt("export \(taskId) has no chunk \(seq)")
        }
        return Array(try row.string("data").utf8)
    }

    public func delete(taskId: String) async throws {
        _ = try await pool.query("DELETE FROM export_chunks WHERE task_id = $1", [taskId])
    }
}

/// A page of an export's rows as read: one packed buffer, each row viewed in place.
public struct ExportPage: Sendable {
    let result: PostgresPackedResult
    static let keysetColumn = ExportColumn.allCases.count

    public var count: Int { result.rowCount }
    public var isEmpty: Bool { count == 0 }

    /// Row `index`; throws if its currency is not one PayFleet knows (a corrupt row).
    public func row(_ index: Int) throws -> ExportPageRow {
        guard let code = result.string(index, ExportColumn.currency.rawValue), let currency = Currency(rawValue: code) else {
            throw StoreError.corrupt("payment \(result.string(index, 0) ?? "?") cannot be exported: its currency")
        }
        return ExportPageRow(result: result, index: index, currency: currency)
    }

    /// Where the page ends: its last row's creation time (PostgreSQL's text) and number.
    public var lastCreatedAt: String? { isEmpty ? nil : result.string(count - 1, Self.keysetColumn) }
    public var lastPaymentNo: String? { isEmpty ? nil : result.string(count - 1, ExportColumn.paymentNo.rawValue) }
}

/// One row of an `ExportPage`, its cells' bytes as PostgreSQL sent them.
public struct ExportPageRow: ExportCells {
    let result: PostgresPackedResult
    let index: Int
    public let currency: Currency

    public func text(_ column: ExportColumn) -> ArraySlice<UInt8>? { result.cell(index, column.rawValue) }

    /// An integer column's value (PostgreSQL prints bigints as ASCII digits, maybe with a `-`).
    public func minorUnits(_ column: ExportColumn) -> Int64 {
        guard let digits = result.cell(index, column.rawValue) else { return 0 }
        var value: Int64 = 0, negative = false
        for byte in digits {
            if byte == UInt8(ascii: "-") { negative = true } else { value = value &* 10 &+ Int64(byte &- UInt8(ascii: "0")) }
        }
        return negative ? -value : value
    }
}

/// An export task as the worker sees it: the resource, and where its file stands.
public struct StoredExport: Sendable {
    public var task: ExportTask
    /// Chunks written (the next one's number).
    public var nextSeq: Int
    public var bytes: Int64
    /// The last row written, by creation time (PostgreSQL's own text, exact to the microsecond) and number.
    public var lastCreatedAt: String?
    public var lastPaymentNo: String?
}

/// Export tasks, their progress, and the payments they read.
public struct ExportStore: Sendable {
    public init() {}

    static let columns = """
        task_id, merchant_id, status, to_char(start_date, 'YYYY-MM-DD') AS start_date, to_char(end_date, 'YYYY-MM-DD') AS end_date,
        format, rows_done, rows_total, next_seq, bytes, last_created_at::text AS last_created_at, last_payment_no, sha256, expires_at,
        failure_message, version, created_at, updated_at
        """

    /// Records a new task (`pending`); a retried request under the same key finds the first one.
    public func create(taskId: String, merchantId: String, request: ExportRequest, at time: Date,
                       on connection: PostgresConnection) async throws -> ExportTask {
        _ = try await connection.query("""
            INSERT INTO export_tasks (task_id, merchant_id, status, start_date, end_date, format, created_at, updated_at)
            VALUES ($1, $2, 'pending', $3::date, $4::date, $5, $6::timestamptz, $6::timestamptz)
            ON CONFLICT (task_id) DO NOTHING
            """, [taskId, merchantId, request.startDate, request.endDate, request.format, time])
        guard let stored = try await load(taskId: taskId, merchantId: merchantId, on: connection) else {
            throw StoreError.corrupt("export task \(taskId) belongs to another merchant")
        }
        return stored.task
    }

    /// The task, only if it belongs to `merchantId`; `lock` holds it for this transaction.
    public func load(taskId: String, merchantId: String, lock: Bool = false, on connection: PostgresConnection) async throws -> StoredExport? {
        try await connection.query("""
            SELECT \(Self.columns) FROM export_tasks WHERE task_id = $1 AND merchant_id = $2\(lock ? " FOR UPDATE" : "")
            """, [taskId, merchantId]).first.map(Self.stored(from:))
    }

    /// Starts a pending task: counts its rows.
    public func start(_ stored: StoredExport, at time: Date, on connection: PostgresConnection) async throws -> StoredExport {
        let range = Self.range(stored.task)
        let total = try await connection.query("""
            SELECT count(*) AS n FROM payments WHERE merchant_id = $1 AND created_at >= $2::timestamptz AND created_at < $3::timestamptz
            """, [stored.task.merchantId, range.start, range.end]).rows[0].int64("n")
        var started = stored
        started.task.status = .processing
        started.task.rowsTotal = total
        started.task.version += 1
        started.task.updatedAt = Timestamp.format(time)
        _ = try await connection.query("""
            UPDATE export_tasks SET status = 'processing', rows_total = $2, version = $3, updated_at = $4::timestamptz WHERE task_id = $1
            """, [stored.task.taskId, total, started.task.version, time])
        return started
    }

    /// The next rows of the task's file, after the last one written, at most `limit`. The keyset
    /// bound is written so that a prepared statement's generic plan still starts the index scan
    /// there (an `IS NULL OR` would make every chunk scan from the first row).
    public func rows(after stored: StoredExport, limit: Int, on connection: PostgresConnection) async throws -> ExportPage {
        let range = Self.range(stored.task)
        // The columns in `ExportColumn` order, then the keyset position; packed, with no `String`
        // per cell: a chunk is thousands of rows. (No output column may be named like a column of
        // ORDER BY: `ORDER BY created_at` would sort by that output column, the whole range.)
        let result = try await connection.queryPacked("""
            SELECT payment_no, order_no, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS created,
                to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS updated, status, currency, amount,
                refunded_amount, channel_fee, channel, pay_method, country, pre_auth_no, subject, failure_code, failure_message,
                metadata::text, created_at::text AS keyset_at
            FROM payments
            WHERE merchant_id = $1 AND created_at >= $2::timestamptz AND created_at < $3::timestamptz
              AND (created_at, payment_no) > (COALESCE($4::timestamptz, '-infinity'), COALESCE($5::text, ''))
            ORDER BY created_at, payment_no LIMIT $6
            """, [stored.task.merchantId, range.start, range.end, stored.lastCreatedAt, stored.lastPaymentNo, limit])
        return ExportPage(result: result)
    }

    /// Records a written chunk: the task moves on only from where it stood (`expectedSeq`).
    public func advance(_ stored: StoredExport, rows: Int, bytes: Int, lastCreatedAt: String?, lastPaymentNo: String?, at time: Date,
                        on connection: PostgresConnection) async throws -> StoredExport {
        var after = stored
        after.nextSeq += 1
        after.bytes += Int64(bytes)
        after.task.rowsDone += Int64(rows)
        after.lastCreatedAt = lastCreatedAt ?? stored.lastCreatedAt
        after.lastPaymentNo = lastPaymentNo ?? stored.lastPaymentNo
        after.task.version += 1
        after.task.updatedAt = Timestamp.format(time)
        let updated = try await connection.query("""
            UPDATE export_tasks SET next_seq = $3, bytes = $4, rows_done = $5, last_created_at = $6::timestamptz, last_payment_no = $7,
                version = $8, updated_at = $9::timestamptz
            WHERE task_id = $1 AND next_seq = $2
            """, [stored.task.taskId, stored.nextSeq, after.nextSeq, after.bytes, after.task.rowsDone, after.lastCreatedAt,
                  after.lastPaymentNo, after.task.version, time]).affectedRows
        guard updated == 1 else { throw StoreError.corrupt("export \(stored.task.taskId) moved on concurrently") }
        return after
    }

    /// The statement that ends a task (`completed` with its file's size and digest, or `failed`).
    public func finish(_ task: ExportTask) -> PostgresStatement {
        PostgresStatement("""
            UPDATE export_tasks SET status = $2, sha256 = $3, expires_at = $4::timestamptz, failure_message = $5, version = $6,
                updated_at = $7::timestamptz
            WHERE task_id = $1
            """, [task.taskId, task.status.rawValue, task.sha256, task.expiresAt.flatMap(Timestamp.parse), task.failureMessage, task.version,
                  Timestamp.parse(task.updatedAt)])
    }

    /// The SHA-256 of the task's file: as this process hashed it while writing, when it wrote every
    /// chunk; else read back chunk by chunk.
    public func digest(of stored: StoredExport, storage: any ExportStorage, digests: ExportDigests) async throws -> String {
        if let digest = digests.take(taskId: stored.task.taskId, chunks: stored.nextSeq) { return digest }
        var hash = SHA256()
        for seq in 0..<stored.nextSeq { hash.update(data: try await storage.read(taskId: stored.task.taskId, seq: seq)) }
        return Hex.encode(hash.finalize())
    }

    /// Marks `expired` every export past its time (completed ones past `expires_at`; unfinished
    /// ones older than `keep`); returns their ids, whose files the caller removes.
    public func expire(now: Date, keep: TimeInterval, on connection: PostgresConnection) async throws -> [String] {
        try await connection.query("""
            UPDATE export_tasks SET status = 'expired', version = version + 1, updated_at = $1::timestamptz
            WHERE status <> 'expired'
              AND ((status = 'completed' AND expires_at <= $1::timestamptz) OR (status <> 'completed' AND created_at <= $2::timestamptz))
            RETURNING task_id
            """, [now, now.addingTimeInterval(-keep)]).rows.map { try $0.string("task_id") }
    }

    /// The task's days as times: `start_date` 00:00 to the day after `end_date`, UTC.
    static func range(_ task: ExportTask) -> (start: Date, end: Date) {
        (UTCDay(task.startDate)?.start ?? Date(), UTCDay(task.endDate)?.end ?? Date())
    }

    static func stored(from row: PostgresRow) throws -> StoredExport {
        let taskId = try row.string("task_id")
        guard let status = ExportStatus(rawValue: try row.string("status")) else { throw StoreError.corrupt("export task \(taskId)") }
        let bytes = try row.int64("bytes")
        let task = ExportTask(taskId: taskId, merchantId: try row.string("merchant_id"), status: status,
                              startDate: try row.string("start_date"), endDate: try row.string("end_date"), format: try row.string("format"),
                              rowsDone: try row.int64("rows_done"), rowsTotal: try row.int64("rows_total"),
                              rowCount: status == .completed ? try row.int64("rows_done") : nil, size: status == .completed ? bytes : nil,
                              sha256: status == .completed ? try row.optionalString("sha256") : nil,
                              expiresAt: status == .completed ? try row.optionalDate("expires_at").map(Timestamp.format) : nil,
                              failureMessage: try row.optionalString("failure_message"), version: try row.int("version"),
                              createdAt: Timestamp.format(try row.date("created_at")), updatedAt: Timestamp.format(try row.date("updated_at")))
        return StoredExport(task: task, nextSeq: try row.int("next_seq"), bytes: bytes, lastCreatedAt: try row.optionalString("last_created_at"),
                            lastPaymentNo: try row.optionalString("last_payment_no"))
    }
}

/// The SHA-256 of the export files this process is writing, fed with each chunk once it committed,
/// so a file written start to end here needs no second read. A chunk out of turn (another process
/// wrote some, or this one restarted) drops the entry, and the digest is then read back instead.
public final class ExportDigests: Sendable {
    // Not Sendable (SHA256 is not): it never leaves the mutex.
    private struct Running {
        var next: Int
        var hash: SHA256
    }

    private let running = Mutex<[String: Running]>([:])

    public init() {}

    /// Chunk `seq` of the task's file committed with these bytes.
    public func committed(taskId: String, seq: Int, data: [UInt8]) {
        running.withLock { running in
            var entry = seq == 0 ? Running(next: 0, hash: SHA256()) : running[taskId]
            guard entry?.next == seq else {
                running[taskId] = nil
                return
            }
            entry?.hash.update(data: data)
            entry?.next += 1
            // Entries of exports finished elsewhere are never taken: keep the map small.
            if running.count >= 1_000 { running.removeAll() }
            running[taskId] = entry
        }
    }

    /// The file's digest if this process hashed all of its `chunks`; forgets the task either way.
    public func take(taskId: String, chunks: Int) -> String? {
        running.withLock { running in
            defer { running[taskId] = nil }
            guard let entry = running[taskId], entry.next == chunks else { return nil }
            return Hex.encode(entry.hash.finalize())
        }
    }
}
