import Contract
import Fleet
import Foundation
import Logging
import Metrics
import Payments
import Postgres
import Store

/// `export.run`: writes a merchant's payment export (RULES "Export"; the CSV is `ExportCSV`).
///
/// Constant memory, crash-safe, never holding a delivery for long:
/// - the file is written in chunks of `--export-chunk-rows` rows, read by keyset (creation time,
///   number) after the last row written, never the whole result in memory (one page is read ahead
///   while the previous one is written);
/// - each chunk commits with its progress, in its own transaction (`ExportStorage.put` and
///   `ExportStore.advance`), so after `kill -9` the export resumes from the last committed chunk,
///   with no row duplicated or missing;
/// - a delivery writes for at most `--export-slice-seconds`, then continues by a follow-up
///   `export.run` (`export.progress` is that slice's outcome);
/// - the last slice digests the file (SHA-256, chunk by chunk) and completes the task, with
///   `export.completed`; a task that keeps failing ends `failed`, with `export.failed`.
public struct ExportHandler: CommandHandler {
    public let commandType = "export.run"
    let pool: PostgresPool
    /// Where pages are read ahead: its own connections, held only for a read, so a delivery never
    /// waits for a second connection of `pool` while holding its command's and its chunk's.
    let reads: PostgresPool
    let clock: WallClock
    let options: ExportOptions
    let storage: any ExportStorage
    let digests: ExportDigests
    let logger: Logger
    let exports = ExportStore()

    public func parse(_ data: JSONValue) -> Result<ExportRunRequest, ValidationFailure> { ExportRunRequest.parse(data) }

    public func handle(_ command: Command<ExportRunRequest>, in tx: PostgresConnection) async throws -> Outcome {
        guard var stored = try await exports.load(taskId: command.payload.taskId, merchantId: command.merchantId, on: tx) else {
            return .rejected(code: "not_found", message: "no export task \(command.payload.taskId)")
        }
        switch stored.task.status {
        case .completed, .failed, .expired:
            // Done already (a duplicate, or a continuation after the end): report it as it is.
            return .done([event(stored.task)])
        case .pending, .processing:
            break
        }
        do {
            let deadline = ContinuousClock.now + .seconds(options.sliceSeconds)
            var finished = false
            var page = try await fetch(after: stored)
            while true {
                // The next page is read (on the read pool) while this one is written: the database
                // and the worker take turns less.
                let next = page.end
                async let following = fetch(after: next)
                let written: [UInt8]
                (stored, finished, written) = try await write(page, onto: stored)
                Faults.point("after-export-chunk")
                if !written.isEmpty { digests.committed(taskId: stored.task.taskId, seq: stored.nextSeq - 1, data: written) }
                if finished || ContinuousClock.now >= deadline { break }
                page = try await following
            }
            guard finished else {
                logger.info("export continues in a follow-up", metadata: [
                    "task": "\(stored.task.taskId)", "rows_done": "\(stored.task.rowsDone)", "rows_total": "\(stored.task.rowsTotal)"])
                return .done([event(stored.task)],
                             followUps: [FollowUp(type: commandType, merchantId: command.merchantId, key: "export.run:\(stored.task.taskId):\(stored.nextSeq)",
                                                  data: ExportRunRequest(taskId: stored.task.taskId, step: Int64(stored.nextSeq)))])
            }
            var task = stored.task
            let now = clock.now
            task.status = .completed
            task.rowCount = task.rowsDone
            task.size = stored.bytes
            task.sha256 = try await exports.digest(of: stored, storage: storage, digests: digests)
            task.expiresAt = Timestamp.format(now.addingTimeInterval(TimeInterval(options.keepHours) * 3_600))
            task.version += 1
            task.updatedAt = Timestamp.format(now)
            logger.info("export completed", metadata: ["task": "\(task.taskId)", "rows": "\(task.rowsDone)", "bytes": "\(stored.bytes)"])
            return .done([event(task)], effects: [exports.finish(task)])
        } catch where command.isFinalAttempt {
            var task = stored.task
            task.status = .failed
            task.failureMessage = TextRules.forLog("the export could not be written: \(error)", limit: 300)
            task.version += 1
            task.updatedAt = Timestamp.format(clock.now)
            return .done([event(task)], effects: [exports.finish(task)])
        }
    }

    /// Rows of the file after a position (a read, outside any transaction, on the read pool).
    struct Page: Sendable {
        let rows: ExportPage
        /// The position after its last row (its start when empty).
        let end: StoredExport
    }

    func fetch(after position: StoredExport) async throws -> Page {
        let read = try await reads.withConnection { try await exports.rows(after: position, limit: options.chunkRows, on: $0) }
        var end = position
        if !read.isEmpty {
            end.lastCreatedAt = read.lastCreatedAt
            end.lastPaymentNo = read.lastPaymentNo
        }
        return Page(rows: read, end: end)
    }

    /// Writes `page` as the next chunk, in its own transaction with the chunk's progress; returns the
    /// task after it, whether the file is complete, and the chunk's bytes (none when there was
    /// nothing left to write). The task must still stand where this delivery last saw it: if
    /// another one moved it on, this one stops (and is retried from where the task now stands).
    func write(_ page: Page, onto stored: StoredExport) async throws -> (StoredExport, Bool, [UInt8]) {
        var bytes = stored.nextSeq == 0 ? ExportCSV.head() : []
        bytes.reserveCapacity(bytes.count + page.rows.count * 200)
        for index in 0..<page.rows.count { ExportCSV.append(try page.rows.row(index), to: &bytes) }
        let done = page.rows.count < options.chunkRows
        return try await pool.transaction { chunkTx in
            guard var current = try await exports.load(taskId: stored.task.taskId, merchantId: stored.task.merchantId, lock: true, on: chunkTx) else {
                throw StoreError.corrupt("export task \(stored.task.taskId) vanished")
            }
            guard current.nextSeq == stored.nextSeq, current.lastPaymentNo == stored.lastPaymentNo else {
                throw StoreError.corrupt("export \(stored.task.taskId) was moved on by another delivery")
            }
            let now = clock.now
            if current.task.status == .pending { current = try await exports.start(current, at: now, on: chunkTx) }
            // The last chunk may be empty (the rows ended exactly at a chunk's end): nothing to store.
            if bytes.isEmpty { return (current, true, []) }
            try await storage.put(taskId: current.task.taskId, seq: current.nextSeq, rows: page.rows.count, data: bytes, in: chunkTx)
            let after = try await exports.advance(current, rows: page.rows.count, bytes: bytes.count, lastCreatedAt: page.end.lastCreatedAt,
                                                  lastPaymentNo: page.end.lastPaymentNo, at: now, on: chunkTx)
            Counter(label: "payfleet_export_rows_total").increment(by: page.rows.count)
            return (after, done, bytes)
        }
    }

    func event(_ task: ExportTask) -> Event {
        Event(type: task.eventType, merchantId: task.merchantId, resourceKey: "export:\(task.taskId)", data: task)
    }
}
